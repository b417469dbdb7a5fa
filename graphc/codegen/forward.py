"""Forward functions: a forward ``Plan`` (``gc.compile`` of arrays, ``res.predict``) printed as
``forward(<data>, theta, acc, result_0, ...)``; a blocked one (wide layers) too.

The sums over the samples its outputs read are the CPU emitter's pass functions
(``sums_k``, run by the same driver as ``evaluate``'s: serial, or in blocks over the cores);
then one more loop visits the samples and stores each output element of the sample
(``result_0[i, 1] = ...``), with the loop's common subexpressions shared like a pass's; the
outputs without a sample dim are written last. A scalar output is a 1-element array.
"""

from __future__ import annotations

from ..ir.graph import N
from ..ir.indexing import fixed_shape, per_sample
from ..planning.plan import Plan
from . import mathlib
from .blocked import SAMPLE_INDEX, BlockedMixin, Writer, _axes, _loop_names
from .cpu import CpuEmitter
from .cuda import CudaEmitter
from .loops import Assign, Code, Element, Loop
from .parallel import ParallelEmitter


def result_name(k: int) -> str:
    """The argument holding output ``k`` (a codegen name: a user's ``result_0`` is spelled apart)."""
    return f"result_{k}"


class ForwardEmitter(CpuEmitter):
    plan: Plan
    store_range = "range(n)"

    @property
    def forward_jit(self) -> str:
        return self.jit

    def module(self) -> str:
        functions = [self.pass_function(k) for k in range(len(self.sizes))] + [self.forward()]
        helpers = mathlib.source(self.printer.used, float32=self.dtype == "float32")
        return self.assemble([self.preamble(), *([helpers] if helpers else []), *functions])

    def result_element(self, k: int, idx: tuple, sample: str | None) -> str:
        """Where element ``idx`` of output ``k`` goes."""
        node = self.plan.results[k]
        if not node.shape:
            return f"{result_name(k)}[0]"
        fixed, parts = iter(idx), []
        for d in node.shape:
            parts.append(sample if d is N else str(next(fixed)))
        return f"{result_name(k)}[{', '.join(parts)}]"

    def forward_head(self, visits: str = "") -> list[str]:
        """The decorator, def and docstring of ``forward``, then n and the passes' calls."""
        plan = self.plan
        results = ", ".join(result_name(k) for k in range(len(plan.results)))
        head = [
            self.forward_jit,
            f"def forward({self.args + ', ' if self.args else ''}theta, acc, {results}):",
            f'    """The outputs at theta, written into {results}{visits} (acc: scratch for the sums)."""',
            self.n_line("    ") if plan.sample_data else "    n = 0",
        ]
        for k in range(len(self.sizes)):
            head += self.run_loop(k)
        return head

    def used(self) -> set:
        """The symbols the stores and the fixed outputs read."""
        plan, store = self.plan, self.plan.lowered.stores
        exprs = [e for _, e in store.invariants + store.body] + list(store.sums)
        exprs += [e for _, e in plan.lowered.finish] + list(plan.lowered.outputs)
        return set().union(*(e.free_symbols for e in exprs))

    def forward(self) -> str:
        return self.function(self.forward_head(), self.forward_body)

    def forward_body(self) -> list[str]:
        plan, store = self.plan, self.plan.lowered.stores
        used = self.used()
        lines = self.loads(used, "    ")
        if store.invariants:
            lines.append("    # loop-invariant terms")
            lines += self.assign(store.invariants, "    ")
        if store.sums:
            lines += self.flat_views(used, "    ")
        return lines + self.store_lines(used, "    ") + self.fixed_lines("    ")

    def store_lines(self, used: set, indent: str) -> list[str]:
        """The loop over the samples that stores each sample's output elements."""
        plan, store, inner = self.plan, self.plan.lowered.stores, indent + "    "
        if not store.sums:
            return []
        lines = [f"{indent}for i in {self.store_range}:  # each sample's outputs"]
        lines += self.loads(used, inner, sample="i")
        lines += self.assign(store.body, inner)
        return lines + [f"{inner}{self.result_element(k, idx, 'i')} = {self.expr(e)}"
                        for (k, idx), e in zip(plan.lowered.store_targets, store.sums)]

    def fixed_lines(self, indent: str) -> list[str]:
        """The outputs without a sample dim."""
        plan = self.plan
        return self.assign(plan.lowered.finish, indent) + [f"{indent}{self.result_element(k, idx, None)} = {self.expr(e)}"
                                                   for (k, idx), e in zip(plan.lowered.fixed_targets, plan.lowered.outputs)]


class ParallelForwardEmitter(ForwardEmitter, ParallelEmitter):
    """The sums in blocks over the cores (ParallelEmitter's driver), and the stores with
    ``prange``: each iteration writes its own sample's elements."""

    store_range = "numba.prange(n)"

    @property
    def forward_jit(self) -> str:
        return "@numba.njit(parallel=True, **OPTS)" if self.plan.lowered.stores.sums or self.sizes else self.jit


class BlockedForwardEmitter(BlockedMixin, ForwardEmitter):
    """A forward function of wide layers (a blocked forward ``Plan``): the sums its outputs read
    are the blocked pass functions; then one loop over blocks of ROWS samples computes the
    outputs' layers into block arrays (np.dot, loop nests; the loop IR and its passes, as in
    the pass functions) and stores each sample's output elements."""

    def forward(self) -> str:
        plan = self.plan
        head = self.forward_head(", ROWS samples at a time")
        w = Writer(self, len(self.sizes))  # after every pass: all sums are in acc
        stores: list = []
        fixed: list = []
        for k, node in enumerate(plan.results):
            fs = fixed_shape(node)
            idx = _loop_names(fs)
            value = w.elem(node, idx).xreplace(w.known)
            if per_sample(node):
                at = iter(idx)
                target = Element(result_name(k), [SAMPLE_INDEX if d is N else next(at) for d in node.shape])
                stores += Writer.loops(True, _axes(idx, fs), [Assign(target, value)], f"{result_name(k)}: {self.comment(node)}")
            else:
                fixed += Writer.loops(False, _axes(idx, fs), [Assign(Element(result_name(k), idx if fs else [0]), value)])
        rows = Code("rows = min(n - i0, ROWS)", frozenset({"n", "i0"}), frozenset({"rows"}))
        body = [*w.prologue, Loop("i0", (0, "n", "ROWS"), [rows, *w.block, *stores]), *fixed]
        return self.print_function(head, body)


class BlockedParallelForwardEmitter(BlockedForwardEmitter, ParallelForwardEmitter):
    """The sums in blocks over the cores; the stores' loop over blocks is serial (its scratch
    arrays are shared)."""

    @property
    def forward_jit(self) -> str:
        return "@numba.njit(parallel=True, **OPTS)" if self.sizes else self.jit

    def helper_jit(self, nargs: int) -> str:
        return self.jit  # not inlined into the prange loop (as BlockedParallelEmitter)


class CudaForwardEmitter(CudaEmitter):
    """A forward function on the GPU: every pass over the samples is a pass kernel (the sums
    go to acc, block partials combined in block order as for a loss); then the ``forward``
    kernel, grid-stride over the samples, stores each sample's output elements, and thread 0
    writes the outputs without a sample dim."""

    plan: Plan
    store_range = CudaEmitter.sample_range  # grid-stride
    # the CPU forward emitter's pieces (this class is a CudaEmitter, not a ForwardEmitter)
    used, result_element = ForwardEmitter.used, ForwardEmitter.result_element
    store_lines, fixed_lines = ForwardEmitter.store_lines, ForwardEmitter.fixed_lines

    def module(self) -> str:
        plan = self.plan
        parts = [self.loop_function(k, loop) for k, loop in enumerate(plan.lowered.loops)]
        parts += [self.pass_kernel(k) for k in range(len(plan.lowered.loops))]
        parts.append(self.forward())
        return self.assemble(self.head() + parts + [self.kernels()], "\n\n\n")

    def forward(self) -> str:
        plan, store = self.plan, self.plan.lowered.stores
        results = ", ".join(result_name(k) for k in range(len(plan.results)))
        used = self.used()
        lines = [
            self.kernel,
            f"def forward({self.data_args('theta', 'acc')}, {results}):",
            '    """Each sample\'s outputs (grid-stride), then the outputs without a sample dim (one thread)."""',
            self.n_line("    ") if plan.sample_data else "    n = 0",
            *self.loads(used, "    "),
            *self.assign(store.invariants, "    "),
        ]
        lines += self.store_lines(used, "    ")
        if plan.lowered.fixed_targets:
            lines += ["    if cuda.grid(1) == 0:", *self.fixed_lines("        ")]
        return "\n".join(lines)
