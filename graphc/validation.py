"""Validation during ``gc.fit``: the loss on held-out data at every logged step, and early
stopping on it.

The loss on ``val_data`` is a forward function of the loss (``forward.compile_forward``:
no gradients), compiled once, called with the validation data bound once. At a logged step
``t`` it is evaluated at the parameters the training loss of step ``t`` was computed at
(before update ``t``), so ``res.val_history`` pairs with ``res.history`` step for step: fit
runs the steps up to ``t`` in the compiled loop, evaluates the validation loss, then runs
step ``t``. ``patience`` stops the run after that many logged steps without a new best
validation loss; ``restore_best`` returns the parameters of the best one.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from . import forward
from .errors import GraphcError
from .graph import Node
from .runtime import bind_data, check_names, pack_params


class Validator:
    """The validation loss of ``loss`` on ``data`` at given parameters, with the best so far."""

    def __init__(self, loss: Node, data: Mapping[str, Any], target: str, dtype: str, patience: Any,
                 restore_best: Any) -> None:
        if not isinstance(data, Mapping):
            raise GraphcError(f"fit: val_data must be a dict of {{name: array}} like data, got {type(data).__name__}")
        if patience is not None and (not isinstance(patience, int) or isinstance(patience, bool) or patience < 1):
            raise GraphcError(f"fit: patience must be an integer >= 1 (logged steps), got {patience!r}")
        if not isinstance(restore_best, bool):
            raise GraphcError(f"fit: restore_best must be True or False, got {restore_best!r}")
        self.g = forward.compile_forward(loss, target, dtype)
        plan = self.g.plan
        check_names(plan, data, [])
        missing = [d.name for d in plan.data if d.name not in data]
        if missing:
            raise GraphcError(f"fit: val_data lacks {', '.join(map(repr, missing))} (it needs what data has)")
        self.patience, self.restore_best, self.dtype = patience, restore_best, dtype
        self.data = {d.name: data[d.name] for d in plan.data}
        self.arrays, self.n = bind_data(plan, self.data, dtype)  # converted once
        self.history: list[tuple[int, float]] = []
        self.best: tuple[float, int, dict[str, Any]] | None = None  # (loss, step, params)
        self.waited = 0

    def __call__(self, step: int, params: Mapping[str, Any]) -> float:
        """The validation loss at ``params`` (the parameters of step ``step``), recorded."""
        if self.g._device:
            value = self.g({**self.data, **{k: params[k] for k in self.g.plan.layout}}).value
        else:
            value = self.g.run(self.arrays, self.n, pack_params(self.g.plan, params, self.dtype)).value
        self.history.append((step, value))
        if self.best is None or value < self.best[0] or math.isnan(self.best[0]):
            kept = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in params.items()}
            self.best, self.waited = (value, step, kept), 0
        else:
            self.waited += 1
        return value

    @property
    def exhausted(self) -> bool:
        """No new best in ``patience`` logged steps."""
        return self.patience is not None and self.waited >= self.patience

    def best_params(self) -> dict[str, Any] | None:
        return self.best[2] if self.restore_best and self.best is not None else None
