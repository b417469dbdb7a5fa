"""Run time: check and convert what the user binds, pack parameters, unpack results."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .errors import BindingError, DTypeError, ShapeError, TargetError
from .graph import N, format_shape
from .schedule import Plan


@dataclass(frozen=True)
class Result:
    """Loss and gradients at one point: ``r.loss`` (float), ``r.grads`` ({name: float | ndarray})."""

    loss: float
    grads: dict[str, Any]

    @property
    def value(self) -> float:
        """The loss: what ``.value`` is for a forward function (``gc.compile`` of an array)."""
        return self.loss

    def __repr__(self) -> str:
        return f"Result(loss={self.loss!r}, grads={self.grads!r})"


def merge(bindings: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(bindings or {})
    for k, v in kwargs.items():
        if k in merged:
            raise BindingError(f"input {k!r} is given twice")
        merged[k] = v
    return merged


def check_names(plan: Plan, given: Mapping[str, Any], need: list[str], what: str = "input") -> None:
    known = [d.name for d in plan.data] + list(plan.layout)
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
            raise BindingError(f"unknown {what} {name!r}{hint}")
    missing = [n for n in need if n not in given]
    if missing:
        raise BindingError(f"missing {what}(s): {', '.join(map(repr, missing))}")


def dtype_name(dtype: Any) -> str:
    """"float64" or "float32" for a dtype given as that string, a numpy type (``np.float32``,
    ``float``) or a ``np.dtype``: what ``compile`` and ``fit`` work with; else a TargetError."""
    if isinstance(dtype, str) and dtype in ("float64", "float32"):
        return dtype
    try:
        name = np.dtype(dtype).name if dtype is not None else None
    except TypeError:
        name = None
    if name not in ("float64", "float32"):
        raise TargetError(f"unknown dtype {dtype!r}; choose float64 or float32 (or np.float64, np.float32)")
    return name


def as_float_array(name: str, value: Any, dtype: str) -> np.ndarray:
    """``value`` as an array of ``dtype``; ints and bools convert, nothing is mutated.

    A C-ordered array of ``dtype`` (read-only too) is used as it is; other strided views are
    copied to C order, so equal values give equal bits whatever the layout. A broadcast
    view (a stride-0 axis) is never materialized: it is passed as it is, or one copy of
    its core is converted, so 2**31 samples made with np.broadcast_to never become 16 GB.
    """
    if hasattr(value, "__array__") or isinstance(value, (list, tuple, int, float, np.generic)):
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise DTypeError(f"input {name!r} is not a regular array of numbers: {exc}") from None
    else:
        raise DTypeError(f"input {name!r}: expected an array or a number, got {type(value).__name__}")
    if arr.dtype.kind == "c":
        raise DTypeError(f"input {name!r} is complex ({arr.dtype}); graphc computes with real numbers")
    if arr.dtype.kind not in "biuf":
        raise DTypeError(f"input {name!r} has dtype {arr.dtype}; expected real numbers")
    if 0 in arr.strides and arr.size > 1:  # a broadcast view: convert one copy of it, at most
        if arr.dtype == np.dtype(dtype):
            return arr
        core = arr[tuple(slice(0, 1) if st == 0 else slice(None) for st in arr.strides)]
        return np.broadcast_to(np.asarray(core, dtype=dtype), arr.shape)
    return np.asarray(arr, dtype=dtype, order="C")  # no copy if already C-ordered and of dtype


def bind_data(plan: Plan, given: Mapping[str, Any], dtype: str) -> tuple[list[np.ndarray], int | None]:
    """The data arrays in plan order, and the sample count they agree on."""
    arrays, n, n_from = [], None, None
    for node in plan.data:
        arr = as_float_array(node.name, given[node.name], dtype)
        if arr.ndim != node.ndim:
            raise ShapeError(
                f"input {node.name!r} has {arr.ndim} dim(s) (shape {arr.shape}); "
                f"expected {node.ndim}: {format_shape(node.shape)}"
            )
        for axis, (want, got) in enumerate(zip(node.shape, arr.shape)):
            if want is N:
                if n is not None and got != n:
                    raise ShapeError(
                        f"input {node.name!r} has {got} samples but {n_from!r} has {n}; "
                        "the sample dim must agree"
                    )
                n, n_from = got, node.name
            elif want != got:
                raise ShapeError(f"input {node.name!r} has shape {arr.shape}; expected {format_shape(node.shape)}")
        arrays.append(arr)
    if n == 0:
        raise ShapeError(f"input {n_from!r} has 0 samples; graphc needs at least one")
    return arrays, n


def pack_params(plan: Plan, given: Mapping[str, Any], dtype: str) -> np.ndarray:
    """All parameters, trained first, in one flat vector ``theta`` (see the source header)."""
    theta = np.empty(plan.n_theta, dtype=dtype)
    for name, (off, shape) in plan.layout.items():
        value = given[name]
        arr = as_float_array(name, value, "float64")
        if arr.shape != shape:
            raise ShapeError(f"parameter {name!r} has shape {arr.shape}; expected {shape}")
        theta[off : off + math.prod(shape)] = arr.ravel()
    return theta


def unpack(plan: Plan, flat: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Scalars as Python floats, tensors as new numpy arrays."""
    out: dict[str, Any] = {}
    for name in names:
        off, shape = plan.layout[name]
        chunk = flat[off : off + math.prod(shape)]
        out[name] = float(chunk[0]) if not shape else np.array(chunk).reshape(shape)
    return out
