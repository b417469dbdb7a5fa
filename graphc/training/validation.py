"""Validation during ``gc.fit``: the loss on held-out data at every logged step, and early
stopping on it.

At a logged step ``t`` the validation loss is evaluated at the parameters the training loss
of step ``t`` was computed at (before update ``t``), so ``res.val_history`` pairs with
``res.history`` step for step. ``patience`` stops the run after that many logged steps
without a new best validation loss (after the update of the step that ran out of patience);
``restore_best`` returns the parameters of the best one. A NaN validation loss is a best
only until the next logged step: any value replaces it.

Where it runs:

- ``InLoop`` (cpu and parallel targets): inside the compiled training loop. The generated
  module then holds ``train_val`` (``train_batches_val`` with ``batch_size``), the training
  loop with a few more lines: at a logged step they call ``evaluate`` on the validation data
  (which computes the gradient too: its cost at logged steps only), record the loss, keep a
  copy of the best parameters and count the logged steps since; a fit with validation is one
  compiled call like a fit without.
- ``Validator`` (cuda, whose training loop is launched from Python, and Dask data): from
  Python, between chunks of the compiled loop that end on logged steps, with a forward
  function of the loss (``forward.compile_forward``: no gradients).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .. import forward
from ..errors import GraphcError
from ..ir.graph import Node
from ..runtime.binding import bind_data, check_names, pack_params


def _check(data: Any, patience: Any, restore_best: Any) -> None:
    if not isinstance(data, Mapping):
        raise GraphcError(f"fit: val_data must be a dict of {{name: array}} like data, got {type(data).__name__}")
    if patience is not None and (not isinstance(patience, int) or isinstance(patience, bool) or patience < 1):
        raise GraphcError(f"fit: patience must be an integer >= 1 (logged steps), got {patience!r}")
    if not isinstance(restore_best, bool):
        raise GraphcError(f"fit: restore_best must be True or False, got {restore_best!r}")


def _inputs(plan: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data``'s arrays for the inputs of ``plan``, in their order; an error for unknown or
    missing names."""
    check_names(plan, data, [])
    missing = [d.name for d in plan.data if d.name not in data]
    if missing:
        raise GraphcError(f"fit: val_data lacks {', '.join(map(repr, missing))} (it needs what data has)")
    return {d.name: data[d.name] for d in plan.data}


class InLoop:
    """Validation inside the compiled training loop: the arguments of the generated
    ``train_val`` (``train_batches_val``) beyond ``train``'s, and what it leaves in them."""

    inside = True

    def __init__(self, compiled: Any, data: Mapping[str, Any], patience: Any, restore_best: Any) -> None:
        _check(data, patience, restore_best)
        self.binder = compiled.binder
        self.arrays = tuple(self.binder.data(_inputs(compiled.plan, data))[0])  # converted once
        self.patience, self.restore_best = patience, restore_best
        self.limit = patience if patience is not None else 1 << 62  # the loop's `patience`: never reached
        self.best = np.zeros(compiled.plan.n_theta, dtype=self.binder.np_dtype)  # those of the best loss
        self.state = np.array([np.nan, -1.0, 0.0])  # best validation loss, its step, logged steps since
        self.history: list[tuple[int, float]] = []
        self.logged = np.zeros(0)  # the last call's val_history

    def record(self, steps: list[int]) -> None:
        """The validation losses of the last call at its logged ``steps`` (those kept of history)."""
        self.history += zip(steps, self.logged[: len(steps)].tolist())

    @property
    def exhausted(self) -> bool:
        """No new best in ``patience`` logged steps (then the loop returned after that step)."""
        return self.patience is not None and self.state[2] >= self.patience

    def best_params(self) -> dict[str, Any] | None:
        return self.binder.params(self.best.copy()) if self.restore_best and self.state[1] >= 0 else None


class Validator:
    """The validation loss of ``loss`` on ``data`` at given parameters, evaluated from Python,
    with the best so far (cuda and Dask: see the module's docstring)."""

    inside = False

    def __init__(self, loss: Node, data: Mapping[str, Any], target: str, dtype: str, patience: Any,
                 restore_best: Any) -> None:
        _check(data, patience, restore_best)
        self.g = forward.compile_forward(loss, target, dtype)
        self.data = _inputs(self.g.plan, data)
        self.patience, self.restore_best, self.dtype = patience, restore_best, dtype
        self.arrays, self.n = bind_data(self.g.plan, self.data, dtype)  # converted once
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
