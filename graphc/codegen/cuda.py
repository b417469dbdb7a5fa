"""CUDA target: ``numba.cuda`` kernels over the same Plan and expression printer as the CPU.

Each pass over the samples is one grid-stride kernel. Every thread sums its samples into a
column of a shared-memory array; a fixed tree adds the columns; each block writes its row
of partial sums; the block that finishes last (an integer ticket decides which, never a
float atomic) adds the rows in block order. The same input thus gives the same bits on
every run. The last pass's kernel also finishes the loss and gradient and, when training,
logs the loss and applies the optimizer update: ONE launch per step for a one-pass plan.
``train`` runs the whole training loop in one block, for data too small to fill the GPU.
"""

from __future__ import annotations

from ..errors import UnsupportedError
from ..ir.graph import spell
from ..planning.schedule import N_SYMBOL
from . import mathlib
from .cpu import CpuEmitter

SHARED_BYTES = 48 * 1024  # static shared memory per block that every CUDA GPU provides
MIN_THREADS = 32

# Helpers that never see a user symbol; {NAME} fields become the module's (collision-free) names.
HELPERS = '''
@cuda.jit(device=True)
def {block_sum}(out, m):
    """Add out[j, :] over the block's threads into out[j, 0], j < m: a fixed tree, fixed order."""
    tid = cuda.threadIdx.x
    width = {THREADS} // 2
    while width > 0:
        cuda.syncthreads()
        if tid < width:
            for j in range(m):
                out[j, tid] += out[j, tid + width]
        width //= 2
    cuda.syncthreads()


@cuda.jit(device=True)
def {combine}(out, m, part, nblocks, k, acc, off):
    """Reduce the block, write its row of part; the LAST block to finish adds all rows into
    acc[off:off + m] and returns True. nblocks[k] counts the blocks done with pass k (an
    integer ticket: it picks the block, the float additions keep one order)."""
    last = cuda.shared.array(1, numba.int32)
    {block_sum}(out, m)
    tid = cuda.threadIdx.x
    if tid == 0:
        for j in range(m):
            part[cuda.blockIdx.x, j] = out[j, 0]
        cuda.threadfence()  # the row is visible to all blocks before the ticket is taken
        last[0] = 1 if cuda.atomic.add(nblocks, k, 1) == cuda.gridDim.x - 1 else 0
    cuda.syncthreads()
    if last[0] == 0:
        return False
    cuda.threadfence()
    for j in range(m):
        total = 0.0
        for b in range(tid, cuda.gridDim.x, {THREADS}):  # thread tid adds rows tid, tid + THREADS, ...
            total += part[b, j]
        out[j, tid] = total
    {block_sum}(out, m)
    if tid == 0:
        for j in range(m):
            acc[off + j] = out[j, 0]
        nblocks[k] = 0  # ready for the next launch
    return True
'''

AFTER_STEP = '''
@cuda.jit(device=True)
def {after_step}(loss, step, count, log_every, history, stopped, theta, grad, hyper, state):
    """Log the loss; stop before the update if it is not finite (as on the cpu), else update.
    count is the number of steps taken before this launch sequence (when resuming)."""
    if step % log_every == log_every - 1:
        history[step // log_every] = loss
    if not math.isfinite(loss):
        stopped[0] = step
    else:
        update(theta, grad, hyper, state, count + step + 1)
'''


class CudaEmitter(CpuEmitter):
    target = "cuda"
    vector_math = False  # CUDA's math.exp/math.tanh are fast native functions
    flat_reads = False  # no vectorizer to help; keep X[i, j]
    jit = "@cuda.jit(device=True)"

    def helper_jit(self, nargs: int) -> str:
        return self.jit
    kernel = "@cuda.jit(**OPTS)"

    def __init__(self, plan, dtype: str, optimizer: object | None = None, threads: int | None = None) -> None:
        super().__init__(plan, dtype, optimizer)
        if threads is None:
            from ..runtime.cuda import options

            threads = options.threads
        self.widths = [len(loop.accumulators) for loop in plan.lowered.loops]
        self.threads = self._threads(threads, max(self.widths, default=1))
        users = {spell(n.name) for n in plan.data} | {spell(name) for name in plan.layout}
        if optimizer is not None and optimizer.order > 1:  # the Newton solve runs on the cpu only
            raise UnsupportedError(f"{type(optimizer).__name__} is not available on target 'cuda'; use 'cpu'")
        self.g = {h: self._free(h, users) for h in ("THREADS", "block_sum", "combine", "finish",
                                                   "after_step", "train_step")}
        self.g.update({f"pass_{k}": self._free(f"pass_{k}", users) for k in range(len(plan.lowered.loops))})

    @staticmethod
    def _free(name: str, users: set[str]) -> str:
        """``name``, with a trailing ``_`` added while a user name would shadow it."""
        while name in users:
            name += "_"
        return name

    def _threads(self, threads: int, width: int) -> int:
        """Threads per block: a power of two whose (sums x threads) float64 tile fits shared memory."""
        if threads < MIN_THREADS or threads & (threads - 1):
            raise UnsupportedError(f"cuda: threads per block must be a power of two >= {MIN_THREADS}, got {threads}")
        while threads > MIN_THREADS and width * threads * 8 > SHARED_BYTES:
            threads //= 2
        if width * threads * 8 > SHARED_BYTES:
            raise UnsupportedError(
                f"cuda: one pass sums {width} values per sample; a block reduction of that many "
                f"does not fit in {SHARED_BYTES // 1024} KiB of shared memory (at most "
                f"{SHARED_BYTES // (8 * MIN_THREADS)}); use target='parallel'"
            )
        return threads

    # ---- the module ----
    def module(self) -> str:
        g, plan = self.g, self.plan
        parts = [self.loop_function(k, loop) for k, loop in enumerate(plan.lowered.loops)]
        parts.append(self.finish())
        parts += [self.pass_kernel(k) for k in range(len(plan.lowered.loops) - 1)]
        parts.append(self.evaluate())
        if self.optimizer is not None:
            parts += [self.update(), AFTER_STEP.format(**g).strip(), self.train_step(), self.train()]
        return self.assemble(self.head() + parts + [self.kernels()], "\n\n\n")

    def head(self) -> list[str]:
        """The imports and options, the reduction helpers, then the math helpers the functions
        printed so far call (mathlib's PORTABLE ones, as device functions)."""
        helpers = mathlib.device_source(self.printer.used, self.jit)
        return [self.preamble(), HELPERS.format(**self.g).strip(), *([helpers] if helpers else [])]

    def kernels(self) -> str:
        return f"KERNELS = {dict(sorted(self.g.items()))!r}  # role -> name in this module (names avoid the user's)"

    def header(self, digest: str) -> str:
        passes = len(self.plan.lowered.loops)
        return super().header(digest) + (
            f"\n# {passes} pass(es) over the samples, each one grid-stride kernel with a shared-memory"
            "\n# block reduction; partial sums are combined in block order (same bits every run)."
        )

    def preamble(self) -> str:
        return "\n".join([
            "import math", "", "import numba", "import numpy as np", "from numba import cuda", "",
            "OPTS = dict(cache=True)  # exact IEEE math (no fastmath): cuda agrees with cpu",
            f"{self.g['THREADS']} = {self.threads}  # threads per block; sizes the shared-memory reduction",
        ])

    # ---- pieces ----
    def data_args(self, *rest: str) -> str:
        return ", ".join([spell(d.name) for d in self.plan.data] + list(rest))

    def shared(self, width: int) -> str:
        return f"    out = cuda.shared.array(({width}, {self.g['THREADS']}), numba.float64)"

    # ---- one pass: this thread's share of the samples ----
    sample_range = "range(cuda.grid(1), n, cuda.gridsize(1))"  # grid-stride

    def loop_signature(self, k: int, m: int) -> list[str]:
        return [
            self.jit,
            f"def sums_{k}({self.data_args('theta', 'acc', 'out')}):",
            f'    """Pass {k}: this thread\'s samples (grid-stride) summed into out[0:{m}, thread]."""',
            self.n_line("    "),
        ]

    def out_slot(self, j: int) -> str:
        return f"out[{j}, cuda.threadIdx.x]"

    def run_pass(self, k: int) -> tuple[str, str]:
        """Pass k over the whole grid: the sums line, and the combine call (True in one block)."""
        off, m = self.offsets[k], self.widths[k]
        return (f"    sums_{k}({self.data_args('theta', 'acc', 'out')})",
                f"{self.g['combine']}(out, {m}, part, nblocks, {k}, acc, {off})")

    def guard(self) -> list[str]:
        return ["    if stopped[0] >= 0:", "        return  # training stopped at a non-finite loss"]

    # ---- the loss and gradient from the sums (one thread) ----
    def finish(self) -> str:
        plan = self.plan
        used = set().union(*(e.free_symbols for _, e in plan.lowered.finish), *(o.free_symbols for o in plan.lowered.outputs))
        lines = [
            self.jit,
            f"def {self.g['finish']}({self.data_args('theta', 'grad', 'acc')}):",
            f'    """Loss from the sums in acc (one thread); writes {self.grad_doc} into grad."""',
        ]
        if plan.lowered.loops or N_SYMBOL in used:
            lines.append(self.n_line("    "))
        lines += self.loads(used, "    ")
        lines += self.assign(plan.lowered.finish, "    ")
        lines += [f"    grad[{j}] = {self.expr(o)}" for j, o in enumerate(plan.lowered.outputs[1:])]
        lines.append(f"    return {self.expr(plan.lowered.outputs[0])}")
        return "\n".join(lines)

    def pass_kernel(self, k: int) -> str:
        lines = [
            self.kernel,
            f"def {self.g[f'pass_{k}']}({self.data_args('theta', 'acc', 'part', 'nblocks', 'stopped')}):",
            f'    """Pass {k} over all samples; its {self.widths[k]} sum(s) go to acc (read by the next pass)."""',
            self.shared(self.widths[k]),
            *self.guard(),
        ]
        sums, combine = self.run_pass(k)
        return "\n".join(lines + [sums, "    " + combine])

    def last_pass(self) -> list[str]:
        """Kernel lines through the `if` that one thread passes: after the last pass (or at once)."""
        plan = self.plan
        if not plan.lowered.loops:
            return ["    if cuda.grid(1) == 0:"]
        k = len(plan.lowered.loops) - 1
        sums, combine = self.run_pass(k)
        return [self.shared(self.widths[k]), *self.guard(), sums,
                f"    if {combine} and cuda.threadIdx.x == 0:"]

    # ---- loss and gradient at theta ----
    def evaluate(self) -> str:
        lines = [
            self.kernel,
            f"def evaluate({self.data_args('theta', 'acc', 'part', 'nblocks', 'stopped', 'grad', 'loss')}):",
            '    """The last pass, then (one thread) the loss into loss[0] and its gradient into grad."""',
            *self.last_pass(),
            f"        loss[0] = {self.g['finish']}({self.data_args('theta', 'grad', 'acc')})",
        ]
        return "\n".join(lines)

    # ---- training ----
    # update(): the CPU emitter's, as a device function (one thread updates every parameter)

    def after(self, indent: str) -> str:
        g = self.g
        loss = f"{g['finish']}({self.data_args('theta', 'grad', 'acc')})"
        return f"{indent}{g['after_step']}({loss}, step, count, log_every, history, stopped, theta, grad, hyper, state)"

    def train_step(self) -> str:
        args = self.data_args("theta", "acc", "part", "nblocks", "stopped", "grad", "hyper", "state",
                              "step", "count", "log_every", "history")
        lines = [
            self.kernel,
            f"def {self.g['train_step']}({args}):",
            '    """Step `step`: the last pass, loss and gradient, history, optimizer update: all on the GPU."""',
            *self.last_pass(),
            self.after("        "),
        ]
        return "\n".join(lines)

    def train(self) -> str:
        plan = self.plan
        args = self.data_args("theta", "acc", "stopped", "grad", "hyper", "state", "count", "steps", "log_every",
                              "history")
        lines = [
            self.kernel,
            f"def train({args}):",
            '    """All `steps` steps in ONE block: for data too small to fill the GPU, no launch per step."""',
        ]
        if plan.lowered.loops:
            lines.append(self.shared(max(self.widths)))
        lines.append("    for step in range(steps):")
        for k, m in enumerate(self.widths):
            lines += [
                f"        sums_{k}({self.data_args('theta', 'acc', 'out')})",
                f"        {self.g['block_sum']}(out, {m})",
                "        if cuda.threadIdx.x == 0:",
                f"            for j in range({m}):",
                f"                acc[{self.offsets[k]} + j] = out[j, 0]",
                "        cuda.syncthreads()",
            ]
        lines += [
            "        if cuda.threadIdx.x == 0:",
            self.after("            "),
            "        cuda.syncthreads()",
            "        if stopped[0] >= 0:",
            "            return",
        ]
        return "\n".join(lines)
