"""Optimizers and learning-rate schedules with ``torch.optim``'s formulas and argument names.

An optimizer is a small frozen dataclass: its hyperparameters (passed to the compiled
loop at run time, so a new learning rate does not recompile) and the lines of its update,
which the code generator inlines into the training loop. Inside those lines ``theta[idx]``
is the parameter, ``grad[idx]`` its gradient, ``state[j, idx]`` its j-th state slot,
``count`` the 1-based step number and ``lr_t`` the learning rate of this step (``lr``, or
what the schedule makes of it). Only the *structure* (which terms exist) is part of the
generated source; the numbers are not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Sequence

from .errors import GraphcError
from .graph import Node
from .ops import param
from .schedule import Plan


def _check(obj: object, skip: tuple[str, ...] = ()) -> None:
    for f in fields(obj):
        v = getattr(obj, f.name)
        if f.name in skip or isinstance(v, (tuple, bool)) or v is None:
            continue
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise GraphcError(f"{type(obj).__name__}: {f.name} must be a non-negative number, got {v!r}")


def _check_schedule(opt: Any) -> None:
    s = opt.schedule
    if s is not None and not isinstance(s, Schedule):
        raise GraphcError(
            f"{type(opt).__name__}: schedule must be gc.StepLR, gc.ExponentialLR or "
            f"gc.CosineAnnealingLR, got {s!r}"
        )


# ---- learning-rate schedules (one lr per optimizer step, like scheduler.step() after it) ----
class Schedule:
    """The learning rate of step ``count`` (1-based) as one line of generated code."""

    line: str = "lr_t = lr"

    @property
    def hyper(self) -> dict[str, float]:
        return {f.name.lower(): float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class StepLR(Schedule):
    """torch.optim.lr_scheduler.StepLR: ``lr * gamma ** (epoch // step_size)``."""

    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _check(self)
        if not isinstance(self.step_size, int) or self.step_size < 1:
            raise GraphcError(f"StepLR: step_size must be an integer >= 1, got {self.step_size!r}")

    line = "lr_t = lr * gamma ** ((count - 1) // step_size)  # StepLR"


@dataclass(frozen=True)
class ExponentialLR(Schedule):
    """torch.optim.lr_scheduler.ExponentialLR: ``lr * gamma ** epoch``."""

    gamma: float

    def __post_init__(self) -> None:
        _check(self)

    line = "lr_t = lr * gamma ** (count - 1)  # ExponentialLR"


@dataclass(frozen=True)
class CosineAnnealingLR(Schedule):
    """torch.optim.lr_scheduler.CosineAnnealingLR (closed form):
    ``eta_min + (lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``."""

    T_max: int
    eta_min: float = 0.0

    def __post_init__(self) -> None:
        _check(self)
        if not isinstance(self.T_max, int) or self.T_max < 1:
            raise GraphcError(f"CosineAnnealingLR: T_max must be an integer >= 1, got {self.T_max!r}")

    line = "lr_t = eta_min + (lr - eta_min) * (1.0 + math.cos(math.pi * (count - 1) / t_max)) / 2.0  # cosine"


# ---- optimizers -------------------------------------------------------------------------
class Optimizer:
    """Shared parts: run-time hyperparameters, per-step lines, state slots."""

    slots: tuple[str, ...] = ()
    schedule: Schedule | None = None

    def own_hyper(self) -> dict[str, float]:
        raise NotImplementedError

    @property
    def hyper(self) -> dict[str, float]:
        """Names and values passed to the compiled loop (in this order) at run time."""
        h = {k: float(v) for k, v in self.own_hyper().items()}
        return h | (self.schedule.hyper if self.schedule is not None else {})

    def initial_state(self, slot: str) -> float:
        return 0.0

    def step_lines(self) -> list[str]:
        """Lines run once per step, before the per-parameter update."""
        return [(self.schedule or Schedule()).line]

    @property
    def signature(self) -> str:
        """What the generated code depends on: the update's terms, not the numbers."""
        names = ", ".join(self.hyper)
        return f"{type(self).__name__}({names}) with state {list(self.slots)}; values passed at run time"

    def slot(self, name: str) -> int:
        return self.slots.index(name)

    def decay_line(self) -> list[str]:
        return ["g += weight_decay * theta[idx]"] if self.weight_decay else []


@dataclass(frozen=True)
class SGD(Optimizer):
    """``p -= lr * g``, with torch's momentum, dampening, Nesterov and weight decay."""

    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        _check(self, ("schedule",))
        _check_schedule(self)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise GraphcError("SGD: nesterov needs momentum > 0 and dampening = 0 (as in torch)")

    def own_hyper(self) -> dict[str, float]:
        h = {"lr": self.lr}
        h |= {"momentum": self.momentum, "dampening": self.dampening} if self.momentum else {}
        return h | ({"weight_decay": self.weight_decay} if self.weight_decay else {})

    @property
    def slots(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum else ()

    @property
    def formula(self) -> str:
        return "SGD: p -= lr * g" + (" (g with momentum)" if self.momentum else "")

    def update_lines(self) -> list[str]:
        lines = ["g = grad[idx]", *self.decay_line()]
        if self.momentum:
            lines += [
                "buf = g if count == 1 else momentum * state[0, idx] + (1.0 - dampening) * g",
                "state[0, idx] = buf",
                "g = g + momentum * buf" if self.nesterov else "g = buf",
            ]
        return lines + ["theta[idx] -= lr_t * g"]


@dataclass(frozen=True)
class Adam(Optimizer):
    """torch.optim.Adam (L2 ``weight_decay`` added to the gradient)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        _check(self, ("schedule",))
        _check_schedule(self)
        b = self.betas
        ok = isinstance(b, tuple) and len(b) == 2
        if not ok or not all(isinstance(v, (int, float)) and 0 <= v < 1 for v in b):
            raise GraphcError(f"{type(self).__name__}: betas must be two numbers in [0, 1), got {b!r}")

    def own_hyper(self) -> dict[str, float]:
        b1, b2 = self.betas
        h = {"lr": self.lr, "beta1": b1, "beta2": b2, "eps": self.eps}
        return h | ({"weight_decay": self.weight_decay} if self.weight_decay else {})

    slots = ("exp_avg", "exp_avg_sq")
    formula = "Adam: p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)"

    def update_lines(self) -> list[str]:
        return ["g = grad[idx]", *self.decay_line(), *self.moment_lines()]

    @staticmethod
    def moment_lines() -> list[str]:
        return [
            "m = beta1 * state[0, idx] + (1.0 - beta1) * g",
            "v = beta2 * state[1, idx] + (1.0 - beta2) * g * g",
            "state[0, idx] = m",
            "state[1, idx] = v",
            "denom = math.sqrt(v) / math.sqrt(1.0 - beta2**count) + eps",
            "theta[idx] -= lr_t / (1.0 - beta1**count) * m / denom",
        ]


@dataclass(frozen=True)
class AdamW(Adam):
    """torch.optim.AdamW: decoupled weight decay ``p *= 1 - lr * weight_decay``, then Adam."""

    weight_decay: float = 1e-2

    formula = "AdamW: p *= 1 - lr * weight_decay; then Adam without L2"

    def update_lines(self) -> list[str]:
        decay = ["theta[idx] *= 1.0 - lr_t * weight_decay"] if self.weight_decay else []
        return ["g = grad[idx]", *decay, *self.moment_lines()]


@dataclass(frozen=True)
class RMSprop(Optimizer):
    """torch.optim.RMSprop, with its ``momentum`` and ``centered`` options."""

    lr: float = 1e-2
    alpha: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    centered: bool = False
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        _check(self, ("schedule",))
        _check_schedule(self)
        if self.alpha > 1:
            raise GraphcError(f"RMSprop: alpha must be in [0, 1], got {self.alpha!r}")

    def own_hyper(self) -> dict[str, float]:
        h = {"lr": self.lr, "alpha": self.alpha, "eps": self.eps}
        h |= {"momentum": self.momentum} if self.momentum else {}
        return h | ({"weight_decay": self.weight_decay} if self.weight_decay else {})

    @property
    def slots(self) -> tuple[str, ...]:
        return ("square_avg",) + ("momentum_buffer",) * bool(self.momentum) + ("grad_avg",) * self.centered

    formula = "RMSprop: v = alpha * v + (1 - alpha) * g**2; p -= lr * g / (sqrt(v) + eps)"

    def update_lines(self) -> list[str]:
        lines = [
            "g = grad[idx]",
            *self.decay_line(),
            "v = alpha * state[0, idx] + (1.0 - alpha) * g * g",
            "state[0, idx] = v",
        ]
        if self.centered:
            k = self.slot("grad_avg")
            lines += [
                f"g_avg = alpha * state[{k}, idx] + (1.0 - alpha) * g",
                f"state[{k}, idx] = g_avg",
                "avg = math.sqrt(v - g_avg * g_avg) + eps",
            ]
        else:
            lines.append("avg = math.sqrt(v) + eps")
        if self.momentum:
            return lines + [
                "buf = momentum * state[1, idx] + g / avg",
                "state[1, idx] = buf",
                "theta[idx] -= lr_t * buf",
            ]
        return lines + ["theta[idx] -= lr_t * g / avg"]


@dataclass(frozen=True)
class Adagrad(Optimizer):
    """torch.optim.Adagrad: ``sum += g**2; p -= lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum) + eps)``."""

    lr: float = 1e-2
    lr_decay: float = 0.0
    weight_decay: float = 0.0
    initial_accumulator_value: float = 0.0
    eps: float = 1e-10
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        _check(self, ("schedule",))
        _check_schedule(self)

    def own_hyper(self) -> dict[str, float]:
        h = {"lr": self.lr, "eps": self.eps}
        h |= {"lr_decay": self.lr_decay} if self.lr_decay else {}
        return h | ({"weight_decay": self.weight_decay} if self.weight_decay else {})

    slots = ("sum",)
    formula = "Adagrad: sum += g**2; p -= clr * g / (sqrt(sum) + eps)"

    def initial_state(self, slot: str) -> float:
        return float(self.initial_accumulator_value)

    def update_lines(self) -> list[str]:
        clr = "clr = lr_t / (1.0 + (count - 1) * lr_decay)" if self.lr_decay else "clr = lr_t"
        return [
            "g = grad[idx]",
            *self.decay_line(),
            clr,
            "s = state[0, idx] + g * g",
            "state[0, idx] = s",
            "theta[idx] -= clr * g / (math.sqrt(s) + eps)",
        ]



# ---- second order: exact Hessians from differentiating the gradient graph again ----------
@dataclass(frozen=True)
class Newton(Optimizer):
    """Damped Newton: solve ``(H + damping * I) delta = grad``, then ``p -= lr * delta``.

    ``H`` is the exact Hessian: graphc differentiates the gradient graph once more, and the
    compiled loop computes loss, gradient and Hessian in the same fused pass. For scalar
    parameters only (a handful: the linear solve is dense).
    """

    lr: float = 1.0
    damping: float = 0.0
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        _check(self, ("schedule",))
        _check_schedule(self)

    second_order = True
    formula = "Newton: solve (H + damping * I) delta = grad; p -= lr * delta"

    def own_hyper(self) -> dict[str, float]:
        return {"lr": self.lr, "damping": self.damping}

    def solve_lines(self, n: int) -> list[str]:
        return [
            f"hess = np.empty(({n}, {n}))  # grad[{n}:] holds the Hessian's upper triangle, row by row",
            f"delta = grad[:{n}].copy()",
            f"k = {n}",
            f"for r in range({n}):",
            f"    for c in range(r, {n}):",
            "        hess[r, c] = grad[k]",
            "        hess[c, r] = grad[k]",
            "        k += 1",
            "    hess[r, r] += damping",
            "solve(hess, delta)  # delta = (H + damping * I)^-1 grad",
            f"for idx in range({n}):",
            "    theta[idx] -= lr_t * delta[idx]",
        ]

    def helpers(self) -> list[str]:
        return [SOLVE]


SOLVE = '''@numba.njit(**OPTS)
def solve(A, b):
    """Solve A x = b in place (b becomes x): Gaussian elimination with partial pivoting."""
    n = b.shape[0]
    for col in range(n):
        piv = col
        for r in range(col + 1, n):
            if abs(A[r, col]) > abs(A[piv, col]):
                piv = r
        for c in range(n):
            A[col, c], A[piv, c] = A[piv, c], A[col, c]
        b[col], b[piv] = b[piv], b[col]
        for r in range(col + 1, n):
            f = A[r, col] / A[col, col]
            for c in range(col, n):
                A[r, c] -= f * A[col, c]
            b[r] -= f * b[col]
    for r in range(n - 1, -1, -1):
        s = b[r]
        for c in range(r + 1, n):
            s -= A[r, c] * b[c]
        b[r] = s / A[r, r]'''


@dataclass
class HessianPlan(Plan):
    """A Plan whose gradient vector also carries the Hessian's upper triangle."""

    n_hessian: int = 0

    @property
    def n_grads(self) -> int:
        return super().n_grads + self.n_hessian


def hessian_plan(loss: Node, wrt: Sequence[Node] | None) -> HessianPlan:
    """Loss, gradient and exact Hessian (upper triangle, row-major) as one fused Plan.

    The Hessian entries ride through the scheduler as the "gradients" of stand-in
    parameters ``hess_<p>_<q>``, which are then dropped from the parameter layout.
    """
    from . import autodiff, schedule
    from .compile import resolve_wrt
    from .graph import Graph, spell

    graph = Graph.from_outputs(loss)
    if loss.shape != ():
        raise GraphcError(f"the loss must be a scalar, but {loss.label()} has shape {loss.shape}")
    wrt = resolve_wrt(graph, wrt)
    for p in wrt:
        if p.shape != ():
            raise GraphcError(
                f"Newton: parameter {p.name!r} has shape {p.shape}; gc.Newton supports scalar parameters "
                "only (use a first-order optimizer, or split it into scalars with gc.params)"
            )
    grads = autodiff.gradients(loss, wrt)
    names = {p.name for p in graph.params}
    stand_ins, entries, labels = [], dict(grads), {}
    for i, p in enumerate(wrt):
        row = autodiff.gradients(grads[p], wrt[i:]) if grads[p] is not None else {}
        for q in wrt[i:]:
            name = f"hess_{spell(p.name)}_{spell(q.name)}"
            if name in names:
                raise GraphcError(f"Newton: parameter name {name!r} is reserved for Hessian entries; "
                                  "rename it")
            node = param(name)
            stand_ins.append(node)
            entries[node] = row.get(q)
            labels[name] = f"d2(loss)/d({p.name})d({q.name})"
    plan = schedule.fuse(loss, list(wrt) + stand_ins, entries, graph.params, graph.data)
    return _drop_stand_ins(plan, list(wrt), labels)


def _drop_stand_ins(plan: Plan, wrt: list, labels: dict[str, str]) -> HessianPlan:
    n, m = len(wrt), len(labels)
    shift = lambda k: k if k < n else k - m  # noqa: E731  (frozen parameters move down by m)
    layout = {name: (shift(off), shape) for name, (off, shape) in plan.layout.items() if name not in labels}
    for acc in plan.accumulators:
        for name, label in labels.items():
            if acc.comment == f"d(loss)/d({name})":
                acc.comment = label
    changed = dict(
        wrt=wrt,
        layout=layout,
        param_symbols={s: shift(k) for s, k in plan.param_symbols.items()},
        zero_grads=[z for z in plan.zero_grads if z not in labels],
    )
    kept = {f.name: getattr(plan, f.name) for f in fields(Plan)}
    return HessianPlan(**(kept | changed), n_hessian=m)

OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad, Newton)}
SCHEDULES = {cls.__name__: cls for cls in (StepLR, ExponentialLR, CosineAnnealingLR)}

__all__ = [
    "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Newton", "StepLR", "ExponentialLR", "CosineAnnealingLR",
]
