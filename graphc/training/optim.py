"""Optimizers and learning-rate schedules with ``torch.optim``'s formulas and argument names.

An optimizer is a small frozen dataclass: its hyperparameters (passed to the compiled loop
at run time, so a new learning rate does not recompile) and its update, written as SymPy
expressions: ``update(p, g, state, t)`` returns the new value of a parameter element ``p``
with gradient ``g``, and the new value of each state slot (``state`` maps slot names to
their current values), at step ``t`` (the 1-based step count). The expressions are in
symbols: one per hyperparameter, named after its key in ``hyper`` (``h.lr``, ``h.beta1``,
...), and ``h.lr_t``, the learning rate of this step, which the schedule defines as an
expression of ``t`` and the hyperparameters (``Schedule.learning_rate``). The numbers never
enter an expression: only the *structure* (which terms exist) reaches the generated source,
which prints the expressions with the same printer and ``sympy.cse`` as the loss and
gradients (codegen/cpu.py, ``lower_update``).

``order`` is what an update needs: 1, the gradient; 2, also the exact Hessian (``Newton``:
the generated code solves for the Newton direction and passes it as ``g``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

import sympy as sp
from sympy.core.parameters import distribute

from ..errors import GraphcError
from ..ir.graph import Node

# The symbols an update is written in (``expressions``): the parameter element, its
# gradient, the 1-based step count and the learning rate of this step; hyperparameters and
# state slots get theirs from their names (``hyper_symbol``, ``slot_symbol``).
P = sp.Symbol("p", real=True)
G = sp.Symbol("g", real=True)
COUNT = sp.Symbol("count", integer=True, positive=True)
LR_T = sp.Symbol("lr_t", real=True)


def hyper_symbol(name: str) -> sp.Symbol:
    """The symbol of hyperparameter ``name`` (generated code loads it from ``hyper``)."""
    return sp.Symbol(name, real=True)


def slot_symbol(slot: str) -> sp.Symbol:
    """The current value of state slot ``slot`` of one parameter element."""
    return sp.Symbol(f"state_{slot}", real=True)


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


class Symbols:
    """``h.<name>``: the symbols of an optimizer's hyperparameters (and ``h.lr_t``); a name it
    does not have is a GraphcError naming the optimizer."""

    def __init__(self, owner: str, symbols: dict[str, sp.Symbol]) -> None:
        self._owner, self._symbols = owner, symbols

    def __getattr__(self, name: str) -> sp.Symbol:
        symbols = self.__dict__.get("_symbols", {})
        if name in symbols:
            return symbols[name]
        if name.startswith("_"):
            raise AttributeError(name)
        raise GraphcError(f"{self._owner}: its update uses h.{name}, which is not one of its "
                          f"hyperparameters ({', '.join(k for k in symbols if k != 'lr_t')})")


# ---- learning-rate schedules (one lr per optimizer step, like scheduler.step() after it) ----
class Schedule:
    """The learning rate of step ``t`` (1-based) as a SymPy expression (no schedule: ``lr``)."""

    @property
    def hyper(self) -> dict[str, float]:
        return {f.name.lower(): float(getattr(self, f.name)) for f in fields(self)}

    def learning_rate(self, t: sp.Expr, h: Symbols) -> sp.Expr:
        """The learning rate at step ``t`` in the optimizer's ``lr`` and this schedule's
        hyperparameters (``h.<key>``, keys as in ``hyper``)."""
        return h.lr


@dataclass(frozen=True)
class StepLR(Schedule):
    """torch.optim.lr_scheduler.StepLR: ``lr * gamma ** (epoch // step_size)``."""

    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _check(self)
        if not isinstance(self.step_size, int) or self.step_size < 1:
            raise GraphcError(f"StepLR: step_size must be an integer >= 1, got {self.step_size!r}")

    def learning_rate(self, t: sp.Expr, h: Symbols) -> sp.Expr:
        return h.lr * h.gamma ** sp.floor((t - 1) / h.step_size)


@dataclass(frozen=True)
class ExponentialLR(Schedule):
    """torch.optim.lr_scheduler.ExponentialLR: ``lr * gamma ** epoch``."""

    gamma: float

    def __post_init__(self) -> None:
        _check(self)

    def learning_rate(self, t: sp.Expr, h: Symbols) -> sp.Expr:
        return h.lr * h.gamma ** (t - 1)


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

    def learning_rate(self, t: sp.Expr, h: Symbols) -> sp.Expr:
        # the halving as 0.5 * (...): a Rational 1/2 would distribute over the sum
        return h.eta_min + sp.Float(0.5) * (h.lr - h.eta_min) * (1 + sp.cos(sp.pi * (t - 1) / h.t_max))


# ---- optimizers -------------------------------------------------------------------------
@dataclass(frozen=True)
class Update:
    """One optimizer step for one parameter element: its new value and each slot's."""

    param: sp.Expr
    state: dict[str, sp.Expr] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """An optimizer's step at the canonical symbols (P, G, slot_symbol(s), COUNT, LR_T and
    hyper_symbol(k)): what the code generator prints and the plan cache keys on."""

    lr: sp.Expr  # lr_t, in COUNT and the hyperparameters
    update: Update
    shift: sp.Expr | None = None  # order 2: what is added to the Hessian's diagonal


class Optimizer:
    """Shared parts: run-time hyperparameters, state slots, the symbolic step."""

    order = 1  # derivatives the update needs: 1 the gradient, 2 also the exact Hessian
    slots: tuple[str, ...] = ()
    schedule: Schedule | None = None

    def own_hyper(self) -> dict[str, float]:
        raise NotImplementedError

    def update(self, p: sp.Expr, g: sp.Expr, state: dict[str, sp.Expr], t: sp.Expr) -> Update:
        """The new ``p`` and slots after one step with gradient ``g`` at step ``t`` (SymPy)."""
        raise NotImplementedError

    @property
    def hyper(self) -> dict[str, float]:
        """Names and values passed to the compiled loop (in this order) at run time."""
        h = {k: float(v) for k, v in self.own_hyper().items()}
        return h | (self.schedule.hyper if self.schedule is not None else {})

    @property
    def second_order(self) -> bool:
        """``order >= 2`` (what training/train.py asks: a Hessian plan, on either schedule)."""
        return self.order >= 2

    @property
    def h(self) -> Symbols:
        """The symbols an update is written in: ``h.<hyper key>`` and ``h.lr_t``. Only this
        optimizer's keys exist, so an update cannot use a number the loop is not passed."""
        return Symbols(type(self).__name__, {k: hyper_symbol(k) for k in self.hyper} | {"lr_t": LR_T})

    def initial_state(self, slot: str) -> float:
        return 0.0

    def learning_rate(self, t: sp.Expr) -> sp.Expr:
        """The learning rate of step ``t``: the schedule's expression (``lr`` without one)."""
        return (self.schedule or Schedule()).learning_rate(t, self.h)

    def expressions(self) -> Step:
        """``update`` and ``lr`` at the canonical symbols, checked: the new state has one
        expression per slot, and every symbol is one the generated code defines."""
        state = {s: slot_symbol(s) for s in self.slots}
        with distribute(False):  # keep c*(a + b) a product, as written
            lr, upd = self.learning_rate(COUNT), self.update(P, G, state, COUNT)
            shift = self.diagonal_shift() if self.order >= 2 else None
        if set(upd.state) != set(self.slots):
            raise GraphcError(f"{type(self).__name__}.update: new state for {sorted(upd.state)}, "
                              f"but its slots are {list(self.slots)}")
        per_step = {COUNT, *(hyper_symbol(k) for k in self.hyper)}  # what lr_t may use
        known = per_step | {P, G, LR_T, *state.values()}
        exprs = [upd.param, *upd.state.values(), *([shift] if shift is not None else [])]
        stray = set().union(*(sp.sympify(e).free_symbols for e in exprs)) - known
        stray |= sp.sympify(lr).free_symbols - per_step
        if stray:
            raise GraphcError(f"{type(self).__name__}: its update or learning rate uses "
                              f"{sorted(map(str, stray))}, which the generated code does not define")
        return Step(lr, Update(upd.param, {s: upd.state[s] for s in self.slots}), shift)

    def structure(self) -> tuple:
        """What the generated code takes from this optimizer (the plan cache's key): the
        expressions over symbols, the hyperparameter and slot names; never the numbers."""
        step = self.expressions()
        exprs = (step.lr, step.update.param, *step.update.state.values(), step.shift)
        return (self.order, tuple(self.hyper), tuple(self.slots), self.formula,
                tuple(sp.srepr(e) for e in exprs))

    @property
    def signature(self) -> str:
        """What the generated code depends on: the update's terms, not the numbers."""
        names = ", ".join(self.hyper)
        return f"{type(self).__name__}({names}) with state {list(self.slots)}; values passed at run time"

    def decayed(self, p: sp.Expr, g: sp.Expr) -> sp.Expr:
        """``g + weight_decay * p`` (torch's L2 weight decay), or ``g`` without it."""
        return g + self.h.weight_decay * p if self.weight_decay else g


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

    def update(self, p: sp.Expr, g: sp.Expr, state: dict[str, sp.Expr], t: sp.Expr) -> Update:
        h, g = self.h, self.decayed(p, g)
        if not self.momentum:
            return Update(p - h.lr_t * g)
        moved = h.momentum * state["momentum_buffer"] + (1 - h.dampening) * g
        buf = sp.Piecewise((g, sp.Eq(t, 1)), (moved, True))  # torch: buf = g at the first step
        step = g + h.momentum * buf if self.nesterov else buf
        return Update(p - h.lr_t * step, {"momentum_buffer": buf})


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

    def update(self, p: sp.Expr, g: sp.Expr, state: dict[str, sp.Expr], t: sp.Expr) -> Update:
        return self.adam(p, self.decayed(p, g), state, t)

    def adam(self, p: sp.Expr, g: sp.Expr, state: dict[str, sp.Expr], t: sp.Expr) -> Update:
        """Adam's moments and step (torch's order: lr / bias1 * m / (sqrt(v) / sqrt(bias2) + eps))."""
        h = self.h
        m = h.beta1 * state["exp_avg"] + (1 - h.beta1) * g
        v = h.beta2 * state["exp_avg_sq"] + (1 - h.beta2) * g * g
        denom = sp.sqrt(v) / sp.sqrt(1 - h.beta2**t) + h.eps
        return Update(p - h.lr_t / (1 - h.beta1**t) * m / denom, {"exp_avg": m, "exp_avg_sq": v})


@dataclass(frozen=True)
class AdamW(Adam):
    """torch.optim.AdamW: decoupled weight decay ``p *= 1 - lr * weight_decay``, then Adam."""

    weight_decay: float = 1e-2

    formula = "AdamW: p *= 1 - lr * weight_decay; then Adam without L2"

    def update(self, p: sp.Expr, g: sp.Expr, state: dict[str, sp.Expr], t: sp.Expr) -> Update:
        h = self.h
        p = p * (1 - h.lr_t * h.weight_decay) if self.weight_decay else p
        return self.adam(p, g, state, t)


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

    def update(self, p: sp.Expr, g: sp.Expr, state: dict[str, sp.Expr], t: sp.Expr) -> Update:
        h, g = self.h, self.decayed(p, g)
        v = h.alpha * state["square_avg"] + (1 - h.alpha) * g * g
        new = {"square_avg": v}
        if self.centered:
            new["grad_avg"] = g_avg = h.alpha * state["grad_avg"] + (1 - h.alpha) * g
            avg = sp.sqrt(v - g_avg * g_avg) + h.eps
        else:
            avg = sp.sqrt(v) + h.eps
        if self.momentum:
            new["momentum_buffer"] = buf = h.momentum * state["momentum_buffer"] + g / avg
            return Update(p - h.lr_t * buf, new)
        return Update(p - h.lr_t * g / avg, new)


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

    def update(self, p: sp.Expr, g: sp.Expr, state: dict[str, sp.Expr], t: sp.Expr) -> Update:
        h, g = self.h, self.decayed(p, g)
        clr = h.lr_t / (1 + (t - 1) * h.lr_decay) if self.lr_decay else h.lr_t
        s = state["sum"] + g * g
        return Update(p - clr * g / (sp.sqrt(s) + h.eps), {"sum": s})


# ---- second order: exact Hessians from differentiating the gradient graph again ----------
@dataclass(frozen=True)
class Newton(Optimizer):
    """Damped Newton: solve ``(H + damping * I) delta = grad``, then ``p -= lr * delta``.

    ``H`` is the exact Hessian: graphc differentiates the gradient graph once more, and the
    compiled loop computes loss, gradient and Hessian in the same pass over the samples
    (fused, or blocked where the model has wide layers of constants). For scalar
    parameters only (a handful: the linear solve is dense). ``order = 2``: the generated
    code solves for ``delta`` and hands it to ``update`` as ``g``.
    """

    lr: float = 1.0
    damping: float = 0.0
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        _check(self, ("schedule",))
        _check_schedule(self)

    order = 2
    formula = "Newton: solve (H + damping * I) delta = grad; p -= lr * delta"

    def own_hyper(self) -> dict[str, float]:
        return {"lr": self.lr, "damping": self.damping}

    def diagonal_shift(self) -> sp.Expr:
        """What the solve adds to the Hessian's diagonal."""
        return self.h.damping

    def update(self, p: sp.Expr, g: sp.Expr, state: dict[str, sp.Expr], t: sp.Expr) -> Update:
        return Update(p - self.h.lr_t * g)  # g: the Newton direction delta


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad, Newton)}
SCHEDULES = {cls.__name__: cls for cls in (StepLR, ExponentialLR, CosineAnnealingLR)}

__all__ = [
    "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Newton", "StepLR", "ExponentialLR", "CosineAnnealingLR",
]
