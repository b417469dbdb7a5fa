"""Layers and losses built from graph ops only (micrograd's nn.py is the model)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from . import ops
from .errors import GraphcError
from .graph import Node, check_name

_counter = itertools.count()


class Linear:
    """``y = x @ weight.T + bias`` with parameters ``<name>.weight`` (out, in) and ``<name>.bias`` (out,)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, name: str | None = None) -> None:
        for what, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise GraphcError(f"Linear: {what} must be a positive int, got {v!r}")
        self.name = check_name(name if name is not None else f"linear{next(_counter)}", "layer name")
        self.in_features, self.out_features = in_features, out_features
        self.weight = ops.param(f"{self.name}.weight", (out_features, in_features))
        self.bias = ops.param(f"{self.name}.bias", (out_features,)) if bias else None

    def __call__(self, x: Any) -> Node:
        y = ops.as_node(x, self.name) @ self.weight.T
        return y + self.bias if self.bias is not None else y

    def parameters(self) -> list[Node]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def init(self, seed: int | None = 0) -> dict[str, np.ndarray]:
        """torch's default initialisation: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias."""
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        values = {self.weight.name: rng.uniform(-bound, bound, (self.out_features, self.in_features))}
        if self.bias is not None:
            values[self.bias.name] = rng.uniform(-bound, bound, (self.out_features,))
        return values

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None}, name={self.name!r})"


def _reduce(e: Node, reduction: str, fn: str) -> Node:
    if reduction == "sum":
        return ops.sum(e)
    if reduction == "mean":
        return ops.mean(e)
    raise GraphcError(f"{fn}: reduction must be 'sum' or 'mean', got {reduction!r}")


def mse_loss(pred: Any, target: Any, reduction: str = "mean") -> Node:
    """Squared error, summed or averaged over all elements (torch.nn.MSELoss)."""
    pred, target = ops.as_node(pred, "mse_loss"), ops.as_node(target, "mse_loss")
    if pred.shape != target.shape:
        raise GraphcError(
            f"mse_loss: prediction {pred.label()} has shape {pred.shape} but target {target.label()} "
            f"has {target.shape}; make them equal (gc.flatten?)"
        )
    return _reduce((pred - target) ** 2, reduction, "mse_loss")
