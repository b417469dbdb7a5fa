"""The target registry: one record per target. Callers ask a target for a capability and
never compare its name (``targets.get("cuda").device``, not ``target == "cuda"``).

A target is where the generated code runs: which emitter prints it for each schedule
(``codegen/``), and what the runtime around it can do.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .errors import TargetError


@dataclass(frozen=True)
class Target:
    name: str
    emitters: tuple[tuple[str, str], ...]  # (schedule, "module:Class" under graphc.codegen)
    batches: bool  # fit(batch_size=...) runs its mini-batches inside the compiled loop
    device: bool  # data and parameters live on a device; calls go through its runtime
    threaded: bool  # runs Numba's threads (serialized under the workqueue layer: threads.guard)
    summary: str
    runtime: str = ""  # the module (under graphc) that checks and drives a device target
    forward: tuple[tuple[str, str], ...] = ()  # (schedule, "module:Class") printing forward functions

    @property
    def schedules(self) -> tuple[str, ...]:
        return tuple(schedule for schedule, _ in self.emitters)

    @property
    def blocks(self) -> bool:
        """Whether wide layers can run here blocked (arrays of samples, np.dot)."""
        return "blocked" in self.schedules

    def emitter(self, schedule: str, forward: bool = False) -> type:
        """The emitter class that prints a plan of ``schedule`` for this target (``forward``:
        a forward function's plan)."""
        path = dict(self.forward if forward else self.emitters).get(schedule)
        if path is None and forward:
            raise TargetError(f"forward functions (gc.compile of an array, res.predict) of the {schedule} schedule "
                              f"do not run on target {self.name!r} yet; use target='cpu' or 'parallel'")
        if path is None:
            raise TargetError(f"schedule={schedule!r} does not run on target {self.name!r} "
                              f"(it runs {' and '.join(self.schedules)}); use schedule='fused' there")
        module, cls = path.split(":")
        return getattr(importlib.import_module(f"graphc.codegen.{module}"), cls)

    def require(self) -> None:
        """A clear TargetError now if the target cannot run here (no GPU, no numba.cuda)."""
        if self.runtime:
            importlib.import_module(f"graphc.{self.runtime}").require()


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("cpu", (("fused", "cpu:CpuEmitter"), ("blocked", "blocked:BlockedCpuEmitter")),
           batches=True, device=False, threaded=False, summary="@njit, one core",
           forward=(("fused", "forward:ForwardEmitter"), ("blocked", "forward:BlockedForwardEmitter"))),
    Target("parallel", (("fused", "parallel:ParallelEmitter"), ("blocked", "blocked:BlockedParallelEmitter")),
           batches=True, device=False, threaded=True, summary="@njit(parallel=True), fixed blocks of samples over all cores",
           forward=(("fused", "forward:ParallelForwardEmitter"), ("blocked", "forward:BlockedParallelForwardEmitter"))),
    Target("cuda", (("fused", "cuda:CudaEmitter"),),
           batches=False, device=True, threaded=False, summary="numba.cuda kernels, data resident on the GPU",
           runtime="runtime.cuda", forward=(("fused", "forward:CudaForwardEmitter"),)),
]}


def get(name: Any) -> Target:
    """The target called ``name``, or a TargetError listing the targets there are."""
    target = TARGETS.get(name) if isinstance(name, str) else None
    if target is None:
        raise TargetError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    return target
