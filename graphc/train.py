"""fit(): the whole training loop (every step, the update, the loss history) compiled into
one Numba function, called once."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from . import codegen, cuda_runtime
from .compile import Compiled, Timings, make_plan
from .errors import BindingError, GraphcError, NonFiniteLoss
from .graph import Node
from .optim import SGD
from .runtime import bind_data, check_names, pack_params, unpack


@dataclass
class FitResult:
    """``params`` ({name: float | ndarray}), ``history`` ([(step, loss), ...]) and more."""

    params: dict[str, Any]
    history: list[tuple[int, float]]
    steps: int
    seconds: float
    optimizer: Any
    state: dict[str, Any] = field(repr=False, default_factory=dict)
    compiled: Compiled | None = field(repr=False, default=None)

    @property
    def loss(self) -> float | None:
        """The last logged loss."""
        return self.history[-1][1] if self.history else None

    @property
    def source(self) -> str:
        return self.compiled.source if self.compiled else ""


def fit(
    loss: Node,
    data: Mapping[str, Any],
    init: Mapping[str, Any],
    optimizer: Any = None,
    steps: int = 1000,
    log_every: int = 100,
    target: str = "cpu",
    dtype: str = "float64",
    wrt: Sequence[Node] | None = None,
    check_finite: bool = True,
) -> FitResult:
    """Train the parameters of ``loss`` with ``optimizer`` for ``steps`` steps.

    ``history`` holds ``(t, loss_t)`` for each step t with ``t % log_every == log_every - 1``,
    ``loss_t`` taken before update t. A NaN or infinite loss stops training with a
    NonFiniteLoss error (``check_finite=False`` returns the partial result instead).
    """
    optimizer = SGD(lr=1e-3) if optimizer is None else optimizer
    for what, value in (("steps", steps), ("log_every", log_every)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < (0 if what == "steps" else 1):
            raise GraphcError(f"fit: {what} must be an integer >= {0 if what == 'steps' else 1}, got {value!r}")
    if not isinstance(data, Mapping) or not isinstance(init, Mapping):
        raise GraphcError("fit: data and init must be dicts of {name: value}")
    compiled = _compiled(loss, wrt, target, dtype, optimizer)
    plan = compiled.plan
    check_names(plan, {**data, **init}, [])
    _check_split(plan, data, init)
    if target == "cuda":
        return cuda_runtime.fit(compiled, data, init, optimizer, steps, log_every, check_finite)
    arrays, _ = bind_data(plan, data, dtype)
    theta = pack_params(plan, init, dtype)
    hyper = np.array(list(optimizer.hyper.values()), dtype=np.float64)
    state = np.zeros((len(optimizer.slots), plan.n_grads))
    history = np.zeros(steps // log_every)
    start = time.perf_counter()
    done = compiled.run(compiled.module.train, tuple(arrays), theta, hyper, state, 0, steps, log_every, history)
    seconds = time.perf_counter() - start
    kept = len(history) if done >= steps else (done + 1) // log_every  # logged before stopping
    logged = [(k * log_every + log_every - 1, float(v)) for k, v in enumerate(history[:kept])]
    names = list(plan.layout)
    result = FitResult(unpack(plan, theta, names), logged, int(done), seconds, optimizer,
                       {s: state[j].copy() for j, s in enumerate(optimizer.slots)}, compiled)
    if done < steps and check_finite:
        raise _nonfinite(done, result)
    return result


def _nonfinite(step: int, result: FitResult) -> NonFiniteLoss:
    err = NonFiniteLoss(
        f"the loss became non-finite at step {step}; training stopped there, before that "
        f"step's update. Parameters then: {_short(result.params)} (also in err.result)"
    )
    err.result = result
    return err


def _short(params: Mapping[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r}" if not isinstance(v, np.ndarray) else f"{k}=array{v.shape}" for k, v in params.items())
    return text if len(text) < 300 else text[:297] + "..."


def _check_split(plan: Any, data: Mapping[str, Any], init: Mapping[str, Any]) -> None:
    inputs = [d.name for d in plan.data]
    for name in data:
        if name in plan.layout:
            raise BindingError(f"{name!r} is a parameter; give its starting value in init, not data")
    for name in init:
        if name in inputs:
            raise BindingError(f"{name!r} is a data input; give it in data, not init")
    missing = [n for n in inputs if n not in data] + [n for n in plan.layout if n not in init]
    if missing:
        raise BindingError(f"fit: missing value(s) for {', '.join(map(repr, missing))}")


def _compiled(loss: Node, wrt: Sequence[Node] | None, target: str, dtype: str, optimizer: Any) -> Compiled:
    if not all(hasattr(optimizer, a) for a in ("hyper", "slots", "update_lines")):
        raise GraphcError(f"optimizer must be a graphc optimizer such as gc.SGD(lr=...), got {optimizer!r}")
    timings = Timings()
    plan = make_plan(loss, wrt, timings)
    with timings.stage("codegen"):
        source = codegen.emit(plan, target, codegen.check_dtype(dtype), optimizer)
    return Compiled(plan, source, target, dtype, timings, stem="graphc_fit")


__all__ = ["fit", "FitResult"]
