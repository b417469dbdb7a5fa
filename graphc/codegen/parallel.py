"""Parallel CPU target: the CPU loop run over fixed-size blocks of samples with ``prange``.

Each block writes its own partial sums; the partials are added in block order. Block
boundaries do not depend on the thread count, so neither do the bits of the result.
Every accumulator stays a scalar local of the serial loop: prange has no reduction
variables to analyse, so compile time does not grow with the parameter count.
"""

from __future__ import annotations

from .cpu import CpuEmitter

BLOCK = 16384  # samples per block; below this many samples the serial loop runs


class ParallelEmitter(CpuEmitter):
    target = "parallel"
    inline_evaluate = False  # evaluate holds the prange loop (train calls it)
    text_inline = False

    @property
    def evaluate_jit(self) -> str:
        # no pass over the samples (the loss ignores them): parallel=True would only warn
        return "@numba.njit(parallel=True, **OPTS)" if self.sizes else self.jit

    def options(self) -> str:
        block = f"BLOCK = {BLOCK}  # samples per block: fixed, so results do not depend on the thread count"
        return super().options() + "\n" + block

    def run_loop(self, k: int) -> list[str]:
        off, m = self.offsets[k], self.sizes[k]
        call = f"sums_{k}(blk * BLOCK, min(n, blk * BLOCK + BLOCK), n, {self.args}, theta, acc, part[blk])"
        return [
            "    if n <= BLOCK:",
            f"        sums_{k}(np.int64(0), n, n, {self.args}, theta, acc, acc[{off}:{off + m}])",
            "    else:",
            "        nblocks = (n + BLOCK - 1) // BLOCK",
            f"        part = np.empty((nblocks, {m}))",
            "        for blk in numba.prange(nblocks):",
            f"            {call}",
            f"        for j in range({m}):",
            f"            acc[{off} + j] = 0.0",
            "        for blk in range(nblocks):  # combine in block order",
            f"            for j in range({m}):",
            f"                acc[{off} + j] += part[blk, j]",
        ]
