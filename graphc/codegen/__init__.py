"""Code generation: print a Plan as plain, readable Python for Numba, one emitter per target.

``emit(plan, target)`` returns the module source. The shared part here is small: the
header; the target registry (``graphc/targets.py``) names the emitter. ``cpu.py`` holds the loop nest every target shares,
``parallel.py`` the block-parallel driver, ``cuda.py`` the GPU kernels.
"""

from __future__ import annotations

from .. import targets
from ..errors import TargetError
from ..planning.plan import Plan

DTYPES = ("float64", "float32")


def emit(plan: Plan, target: str = "cpu", dtype: str = "float64", optimizer: object | None = None,
         batches: bool = False, validate: bool = False) -> str:
    """The generated module for ``plan`` on ``target`` (with a training loop if ``optimizer``;
    ``batches``: also the mini-batch loop ``train_batches``, cpu and parallel only;
    ``validate``: also the loops that validate at each logged step, ``train_val`` and
    ``train_batches_val``, cpu and parallel only)."""
    emitter = targets.get(target).emitter(plan.schedule, plan.forward)(plan, dtype, optimizer)
    emitter.batches = batches and optimizer is not None
    emitter.validate = validate and optimizer is not None
    return emitter.module()


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise TargetError(f"unknown dtype {dtype!r}; choose float64 or float32")
    return dtype
