"""Run time: check and convert what the user binds, pack parameters, unpack results."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import BindingError, DTypeError, ShapeError, TargetError
from ..ir.graph import N, format_shape

Plan = Any  # plan.Plan: the runtime reads its layout, data and sizes, never its lowering


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


_PLAIN = (float, int, np.ndarray, np.float64, np.float32)  # parameter values that are never Dask arrays


class Binder:
    """The checks and conversions above, precomputed for one plan and dtype (issue #18).

    ``fast``, ``data``, ``theta``, ``grads`` and ``params`` take a fast path for what calls
    usually bind (C-ordered arrays of the compiled dtype, Python floats for scalar
    parameters) and otherwise return what the general functions above return, errors
    included: a fast path never accepts a value they would convert or refuse.
    """

    def __init__(self, plan: Plan, dtype: str) -> None:
        self.plan, self.dtype, self.np_dtype = plan, dtype, np.dtype(dtype)
        self.inputs = [d.name for d in plan.data]
        self.input_names, self.param_names = frozenset(self.inputs), frozenset(plan.layout)
        self.names = self.input_names | self.param_names
        # per data input: name, ndim, (axis, size) of each fixed dim, the sample axes
        self.dims = [(d.name, d.ndim, [(k, s) for k, s in enumerate(d.shape) if s is not N],
                      [k for k, s in enumerate(d.shape) if s is N]) for d in plan.data]
        # every parameter a scalar, theta[k] the k-th: theta is the list of their values
        self.all_scalar = all(plan.layout[name] == (k, ()) for k, name in enumerate(plan.layout))
        self.scalars = list(plan.layout) if self.all_scalar else []
        self.wrt = [p.name for p in plan.wrt]
        self.n_grads, self.n_acc = plan.n_grads, plan.n_acc
        self.wrt_scalar = self.all_scalar and self.wrt == list(plan.layout)[: len(self.wrt)]

    def fast(self, given: Mapping[str, Any]) -> tuple[list[np.ndarray], np.ndarray] | None:
        """(data arrays, theta) when ``given`` names every input and parameter and nothing
        else, with values the fast paths take as they are; None sends the caller to the
        general checks (and their errors), Dask arrays included."""
        if given.keys() != self.names:
            return None
        bound = self._fast_data(given)
        if bound is None:
            return None
        theta = self._fast_theta(given)
        return None if theta is None else (bound[0], theta)

    def data(self, given: Mapping[str, Any]) -> tuple[list[np.ndarray], int | None]:
        """``bind_data(plan, given, dtype)``."""
        bound = self._fast_data(given)
        return bind_data(self.plan, given, self.dtype) if bound is None else bound

    def theta(self, given: Mapping[str, Any]) -> np.ndarray:
        """``pack_params(plan, given, dtype)``."""
        theta = self._fast_theta(given)
        return pack_params(self.plan, given, self.dtype) if theta is None else theta

    def scratch(self) -> tuple[np.ndarray, np.ndarray]:
        """Zeroed ``grad`` and ``acc`` for one call of a generated function."""
        return np.zeros(self.n_grads), np.zeros(self.n_acc)

    def _fast_data(self, given: Mapping[str, Any]) -> tuple[list[np.ndarray], int | None] | None:
        arrays, n = [], None
        want = self.np_dtype
        for name, ndim, fixed, sample in self.dims:
            arr = given[name]
            if not (type(arr) is np.ndarray and arr.dtype == want and arr.ndim == ndim
                    and arr.flags.c_contiguous):
                return None
            shape = arr.shape
            for k, size in fixed:
                if shape[k] != size:
                    return None
            for k in sample:
                if n is None:
                    n = shape[k]
                elif shape[k] != n:
                    return None
            arrays.append(arr)
        return None if n == 0 else (arrays, n)

    def _fast_theta(self, given: Mapping[str, Any]) -> np.ndarray | None:
        if self.all_scalar:
            values = [given[name] for name in self.scalars]
            for v in values:  # a loop: all() over a generator costs more than the rest here
                if type(v) is not float:
                    return None
            return np.array(values, dtype=self.np_dtype)
        if all(type(given[name]) in _PLAIN for name in self.plan.layout):
            return pack_params(self.plan, given, self.dtype)
        return None

    def grads(self, flat: np.ndarray) -> dict[str, Any]:
        """``unpack(plan, flat, [p.name for p in plan.wrt])``."""
        if self.wrt_scalar:
            return dict(zip(self.wrt, flat.tolist()))  # zip stops at the last name in wrt
        return unpack(self.plan, flat, self.wrt)

    def params(self, theta: np.ndarray) -> dict[str, Any]:
        """``unpack(plan, theta, list(plan.layout))``."""
        if self.all_scalar:
            return dict(zip(self.plan.layout, theta.tolist()))
        return unpack(self.plan, theta, list(self.plan.layout))
