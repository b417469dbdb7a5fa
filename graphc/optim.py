"""Optimizers with ``torch.optim``'s formulas and argument names.

An optimizer is a small frozen dataclass: its hyperparameters (passed to the compiled
loop at run time, so a new learning rate does not recompile) and the lines of its update,
which the code generator inlines into the training loop. Inside those lines ``theta[idx]``
is the parameter, ``grad[idx]`` its gradient, ``state[j, idx]`` its j-th state slot and
``count`` the 1-based step number.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import GraphcError


def _check(opt: object) -> None:
    for f in fields(opt):
        v = getattr(opt, f.name)
        if isinstance(v, tuple):
            continue
        if not isinstance(v, (int, float)) or v != v or v < 0:
            raise GraphcError(f"{type(opt).__name__}: {f.name} must be a non-negative number, got {v!r}")


@dataclass(frozen=True)
class SGD:
    """``p -= lr * g``, with torch's momentum, dampening, Nesterov and weight decay."""

    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        _check(self)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise GraphcError("SGD: nesterov needs momentum > 0 and dampening = 0 (as in torch)")

    @property
    def hyper(self) -> dict[str, float]:
        h = {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening}
        return h | ({"weight_decay": self.weight_decay} if self.weight_decay else {})

    @property
    def slots(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum else ()

    @property
    def formula(self) -> str:
        return "SGD: p -= lr * g" + (" (g with momentum)" if self.momentum else "")

    def update_lines(self) -> list[str]:
        lines = ["g = grad[idx]"]
        if self.weight_decay:
            lines.append("g += weight_decay * theta[idx]")
        if self.momentum:
            lines += [
                "buf = g if count == 1 else momentum * state[0, idx] + (1.0 - dampening) * g",
                "state[0, idx] = buf",
                "g = g + momentum * buf" if self.nesterov else "g = buf",
            ]
        return lines + ["theta[idx] -= lr * g"]


@dataclass(frozen=True)
class Adam:
    """torch.optim.Adam (L2 ``weight_decay`` added to the gradient)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check(self)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise GraphcError(f"Adam: betas must be two numbers in [0, 1), got {self.betas!r}")

    @property
    def hyper(self) -> dict[str, float]:
        b1, b2 = self.betas
        h = {"lr": self.lr, "beta1": b1, "beta2": b2, "eps": self.eps}
        return h | ({"weight_decay": self.weight_decay} if self.weight_decay else {})

    slots = ("exp_avg", "exp_avg_sq")
    formula = "Adam: p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)"

    def update_lines(self) -> list[str]:
        lines = ["g = grad[idx]"]
        if self.weight_decay:
            lines.append("g += weight_decay * theta[idx]")
        return lines + [
            "m = beta1 * state[0, idx] + (1.0 - beta1) * g",
            "v = beta2 * state[1, idx] + (1.0 - beta2) * g * g",
            "state[0, idx] = m",
            "state[1, idx] = v",
            "denom = math.sqrt(v) / math.sqrt(1.0 - beta2**count) + eps",
            "theta[idx] -= lr / (1.0 - beta1**count) * m / denom",
        ]
