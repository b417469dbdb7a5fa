"""Layers, activations and losses built from graph ops only (micrograd's nn.py is the model).

Every loss takes ``reduction="sum" | "mean"``; see docs/nn.md."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from .ir import ops
from .errors import GraphcError
from .ir.graph import Node, check_name, format_shape

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

    def init(self, seed: Any = 0) -> dict[str, np.ndarray]:
        """torch's default initialisation: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
        ``seed``: an int, None, or a ``np.random.Generator`` to draw from."""
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
    pred, target = _pair(pred, target, "mse_loss")
    return _reduce((pred - target) ** 2, reduction, "mse_loss")


def l1_loss(pred: Any, target: Any, reduction: str = "mean") -> Node:
    """Absolute error, summed or averaged over all elements (torch.nn.L1Loss)."""
    pred, target = _pair(pred, target, "l1_loss")
    return _reduce(ops.abs(pred - target), reduction, "l1_loss")


def huber_loss(pred: Any, target: Any, reduction: str = "mean", delta: float = 1.0) -> Node:
    """``0.5 d**2`` where ``|d| < delta``, else ``delta (|d| - delta/2)`` (torch.nn.HuberLoss)."""
    pred, target = _pair(pred, target, "huber_loss")
    if not isinstance(delta, (int, float)) or isinstance(delta, bool) or not delta > 0:
        raise GraphcError(f"huber_loss: delta must be a positive number, got {delta!r}")
    d = pred - target
    a = ops.abs(d)
    return _reduce(ops.where(a < delta, 0.5 * d**2, delta * (a - 0.5 * delta)), reduction, "huber_loss")


def binary_cross_entropy_with_logits(logits: Any, target: Any, reduction: str = "mean") -> Node:
    """``softplus(z) - z t``: log(1 + exp(z)) never overflows (torch.nn.BCEWithLogitsLoss)."""
    logits, target = _pair(logits, target, "binary_cross_entropy_with_logits")
    return _reduce(ops.softplus(logits) - logits * target, reduction, "binary_cross_entropy_with_logits")


def _max_along(z: Any, axis: int, fn: str) -> tuple[Node, int, Node]:
    """``z`` as a node, ``axis`` normalized, and the max over ``axis`` (NaN if any element is
    NaN), held constant for differentiation (``gc.stop_gradient``: exact, since the functions
    below do not depend on the shift) and kept as a size-1 axis, ready to broadcast."""
    z = ops.as_node(z, fn)
    if z.ndim == 0:
        raise GraphcError(f"{fn}: needs at least one axis")
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) or not -z.ndim <= axis < z.ndim:
        raise GraphcError(f"{fn}: axis {axis!r} is out of range for {z.label()} of shape {z.shape}")
    axis = int(axis) % z.ndim
    size = z.shape[axis]
    if not isinstance(size, int):
        raise GraphcError(f"{fn}: axis {axis} of {z.label()} is the sample dim; reduce a fixed axis")
    pick = lambda k: ops.index(z, (slice(None),) * axis + (k,))  # noqa: E731
    m = pick(0)
    for k in range(1, size):
        m = ops.maximum(m, pick(k))
    return z, axis, ops.index(ops.stop_gradient(m), (slice(None),) * axis + (None,))


def _finite_or_zero(m: Node) -> Node:
    # scipy.special.logsumexp's shift: a max that is inf, -inf or NaN shifts by 0 instead, so
    # logsumexp([inf, 1]) is inf and logsumexp([-inf, -inf]) is -inf (not inf - inf = NaN)
    return ops.where(ops.abs(m) < math.inf, m, 0.0)


def logsumexp(z: Any, axis: int = -1) -> Node:
    """``log(sum(exp(z), axis))``, stable, with scipy.special.logsumexp's values: the max over
    ``axis`` is subtracted first (0 where it is not finite). Gradient ``softmax(z)``."""
    z, axis, m = _max_along(z, axis, "logsumexp")
    m = _finite_or_zero(m)
    return ops.index(m, (slice(None),) * axis + (0,)) + ops.log(ops.sum(ops.exp(z - m), axis=axis))


def log_softmax(z: Any, axis: int = -1) -> Node:
    """``z - logsumexp(z)`` along ``axis``, as scipy.special.log_softmax and torch compute it:
    ``(z - max) - log(sum(exp(z - max)))``."""
    z, axis, m = _max_along(z, axis, "log_softmax")
    shifted = z - _finite_or_zero(m)
    lse = ops.log(ops.sum(ops.exp(shifted), axis=axis))
    return shifted - ops.index(lse, (slice(None),) * axis + (None,))


def softmax(z: Any, axis: int = -1) -> Node:
    """``exp(z) / sum(exp(z))`` along ``axis``, as scipy.special.softmax and torch compute it:
    ``exp(z - max) / sum(exp(z - max))``."""
    z, axis, m = _max_along(z, axis, "softmax")
    e = ops.exp(z - m)
    return e / ops.index(ops.sum(e, axis=axis), (slice(None),) * axis + (None,))


def cross_entropy(logits: Any, target: Any, reduction: str = "mean") -> Node:
    """Cross-entropy of class ``logits`` (N, C), the class axis last, against ``target``:

    - class indices of shape (N,) (``logits.shape`` without the class axis), as
      torch.nn.CrossEntropyLoss takes them: ``gc.data("labels")`` bound to an int array, or
      a numpy int array; per sample ``-log_softmax(z)[label]`` (``nll_loss`` of it);
    - one-hot rows or class probabilities (N, C): per sample ``-sum_c t_c log_softmax(z)_c``.

    ``mean`` averages over samples, ``sum`` adds. A label that is not one of 0 .. C-1 makes
    the loss NaN (fit stops with NonFiniteLoss), as torch raises an error for it."""
    logits = ops.as_node(logits, "cross_entropy")
    if logits.ndim < 1:
        raise GraphcError("cross_entropy: logits need a class axis (the last one)")
    target = ops.as_node(target, "cross_entropy")
    if target.ndim == logits.ndim - 1:  # class indices
        return nll_loss(log_softmax(logits, -1), target, reduction)
    logits, target = _pair(logits, target, "cross_entropy", labels=True)
    per_sample = -ops.sum(target * log_softmax(logits, -1), axis=-1)
    return _reduce(per_sample, reduction, "cross_entropy")


def nll_loss(log_probs: Any, labels: Any, reduction: str = "mean") -> Node:
    """``-log_probs[label]`` per sample (torch.nn.NLLLoss): ``log_probs`` (N, C), the class
    axis last, e.g. ``log_softmax(z)``; ``labels`` class indices (N,), as in cross_entropy.

    The pick runs inside the compiled loop with no gather: ``hit = (label[:, None] == k)``
    for k = 0 .. C-1 (exact: labels are bound as floats, integers up to 2**24 are exact in
    float32 too), ``-sum(where(hit, log_probs, 0), -1)``; ``where`` rather than a product
    keeps a -inf of another class out of it. A label outside 0 .. C-1, or not an integer,
    gives NaN."""
    log_probs = ops.as_node(log_probs, "nll_loss")
    if log_probs.ndim < 1:
        raise GraphcError("nll_loss: log_probs need a class axis (the last one)")
    classes = log_probs.shape[-1]
    if not isinstance(classes, int):
        raise GraphcError(f"nll_loss: the class axis of {log_probs.label()} is the sample dim; "
                          "put the classes last")
    labels = _labels(labels, log_probs, "nll_loss")
    # class k where |label - k| <= 0: one (N, C) comparison, exact (NaN compares false)
    column = ops.index(labels, (slice(None),) * labels.ndim + (None,))
    hit = ops.abs(column - ops.constant(np.arange(classes))) <= 0
    picked = ops.sum(ops.where(hit, log_probs, 0.0), axis=-1)
    found = ops.sum(ops.where(hit, 1.0, 0.0), axis=-1)  # 0 for a label that is not a class
    return _reduce(ops.where(found > 0.5, -picked, math.nan), reduction, "nll_loss")


def _labels(labels: Any, scores: Node, fn: str) -> Node:
    """``labels`` as a node of ``scores``' shape without the class axis; constant labels
    (a numpy array) are checked here, data labels give NaN where they are out of range."""
    node = ops.as_node(labels, fn)
    if node.shape != scores.shape[:-1]:
        fixed = node.op == "const"
        hint = " (a numpy array has a fixed length: bind labels with gc.data('labels'))" if fixed else ""
        raise GraphcError(
            f"{fn}: labels {node.label()} have shape {format_shape(node.shape)}; expected "
            f"{format_shape(scores.shape[:-1])}, the shape of {scores.label()} {format_shape(scores.shape)} "
            f"without its class axis{hint}"
        )
    if node.op == "const":
        values = node.attr("value")
        bad = values[(values != np.round(values)) | (values < 0) | (values >= scores.shape[-1])]
        if bad.size:
            last = scores.shape[-1] - 1
            raise GraphcError(f"{fn}: label {float(bad.flat[0]):g} is not a class index 0 .. {last}")
    return node


def accuracy(pred: Any, labels: Any, threshold: float | None = None) -> float:
    """Fraction of samples whose predicted class is their label (numpy, after training):
    ``pred`` (N, C) logits or probabilities (the class is the argmax of the last axis), or
    (N,) two-class scores with ``threshold`` (class 1 where pred > threshold: 0.5 for
    probabilities, 0.0 for logits); ``labels`` class indices (N,) or one-hot rows (N, C).
    A row with a NaN counts as wrong."""
    pred, labels = np.asarray(pred, dtype=float), np.asarray(labels)
    if labels.ndim == 2 and labels.shape == pred.shape:
        labels = np.argmax(labels, axis=-1)
    if pred.ndim == 1:
        if threshold is None:
            raise GraphcError("accuracy: 1-D predictions need threshold= "
                              "(0.5 for probabilities, 0.0 for logits)")
        guess, nan = (pred > threshold).astype(int), np.isnan(pred)
    elif pred.ndim == 2:
        guess, nan = np.argmax(pred, axis=-1), np.isnan(pred).any(axis=-1)
    else:
        raise GraphcError(f"accuracy: predictions must be (N, C) or (N,), got shape {pred.shape}")
    if labels.shape != guess.shape:
        raise GraphcError(f"accuracy: labels have shape {labels.shape}; "
                          f"predictions {pred.shape} need {guess.shape}")
    if labels.size == 0:
        raise GraphcError("accuracy: no samples")
    return float(np.mean((guess == labels) & ~nan))


def one_hot(labels: Any, num_classes: int | None = None) -> np.ndarray:
    """Class indices (N,) -> float one-hot rows (N, C), the target ``cross_entropy`` takes."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iub" or (labels.size and labels.min() < 0):
        raise GraphcError(f"one_hot: labels must be a 1-D array of class indices >= 0, got {labels.dtype} {labels.shape}")
    c = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if labels.size and labels.max() >= c:
        raise GraphcError(f"one_hot: label {int(labels.max())} is out of range for {c} classes")
    out = np.zeros((labels.size, c))
    out[np.arange(labels.size), labels] = 1.0
    return out


def _pair(pred: Any, target: Any, fn: str, labels: bool = False) -> tuple[Node, Node]:
    pred, target = ops.as_node(pred, fn), ops.as_node(target, fn)
    if pred.shape != target.shape:
        also = f", or class indices of shape {format_shape(pred.shape[:-1])}" if labels else " (gc.flatten?)"
        raise GraphcError(
            f"{fn}: prediction {pred.label()} has shape {format_shape(pred.shape)} but target {target.label()} "
            f"has {format_shape(target.shape)}; make them equal{also}"
        )
    return pred, target


# ---- activations: functions, and layer objects for Sequential -------------------------
tanh, relu, sigmoid, gelu, softplus = ops.tanh, ops.relu, ops.sigmoid, ops.gelu, ops.softplus


class _Activation:
    fn: Any = None

    def __call__(self, x: Any) -> Node:
        return type(self).fn(x)

    def parameters(self) -> list[Node]:
        return []

    def init(self, seed: Any = 0) -> dict[str, np.ndarray]:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Tanh(_Activation):
    fn = ops.tanh


class ReLU(_Activation):
    fn = ops.relu


class Sigmoid(_Activation):
    fn = ops.sigmoid


class GELU(_Activation):
    """The exact (erf) form, torch's default."""
    fn = ops.gelu


class Softplus(_Activation):
    fn = ops.softplus


class Sequential:
    """Layers applied in order: ``Sequential(Linear(3, 32), Tanh(), Linear(32, 1))``.

    Any callable is a layer; those with ``parameters()`` / ``init(seed)`` contribute them.
    """

    def __init__(self, *layers: Any) -> None:
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for k, layer in enumerate(layers):
            if not callable(layer):
                raise GraphcError(f"Sequential: layer {k} ({layer!r}) is not callable")
        self.layers = list(layers)

    def __call__(self, x: Any) -> Node:
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, k: int) -> Any:
        return self.layers[k]

    def __len__(self) -> int:
        return len(self.layers)

    def parameters(self) -> list[Node]:
        return [p for layer in self.layers for p in getattr(layer, "parameters", list)()]

    def init(self, seed: int | None = 0) -> dict[str, np.ndarray]:
        """Initial values of every layer's parameters (for ``fit(init=...)``), drawn from one
        generator seeded with ``seed``, layer after layer."""
        rng = np.random.default_rng(seed)
        values: dict[str, np.ndarray] = {}
        for layer in self.layers:
            if hasattr(layer, "init"):
                values.update(layer.init(rng))
        return values

    def __repr__(self) -> str:
        inner = ",\n".join(f"  {layer!r}" for layer in self.layers)
        return f"Sequential(\n{inner}\n)"
