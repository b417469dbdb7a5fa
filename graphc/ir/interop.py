"""numpy functions on graph nodes build graph nodes: ``np.sin(node)``, ``np.maximum(a, b)``,
``np.array(2.0) * node``, ``np.sum(node, axis=0)``, ``np.where(x > 0, x, 0)`` ...

``Node.__array_ufunc__`` (ufuncs, and numpy's operators on arrays and numpy scalars) and
``Node.__array_function__`` (``np.sum``, ``np.stack`` ...) delegate to ``array_ufunc`` and
``array_function`` here. ``UFUNCS`` and ``FUNCTIONS`` map numpy's objects to graphc's
builders, with numpy's argument names and defaults (``np.stack`` stacks on axis 0, as numpy
does; ``gc.stack`` on -1). Anything else, and the arguments that make no sense for a graph
(``out=``, ``where=``, ``dtype=`` ...), raise an ``UnsupportedError`` that names the numpy
function and says what to write instead.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import numpy as np

from . import ops
from .graph import Node
from ..errors import GraphcError, UnsupportedError

_NO_VALUE = getattr(np, "_NoValue", None)  # numpy's "argument not given"


def _op(name: str) -> Callable[..., Any]:
    return functools.partial(ops.apply, ops.ELEMENTWISE[name])


UFUNCS: dict[np.ufunc, Callable[..., Any]] = {
    np.add: _op("add"), np.subtract: _op("sub"), np.multiply: _op("mul"), np.divide: _op("div"),
    np.power: _op("pow"), np.float_power: _op("pow"), np.negative: _op("neg"),
    np.positive: lambda e: ops.as_node(e, "positive"), np.reciprocal: lambda e: _op("div")(1.0, e),
    np.absolute: ops.abs, np.fabs: ops.abs, np.sqrt: ops.sqrt, np.square: ops.square, np.sign: ops.sign,
    np.sin: ops.sin, np.cos: ops.cos, np.tan: ops.tan, np.arcsin: ops.arcsin, np.arccos: ops.arccos,
    np.arctan: ops.arctan, np.arctan2: ops.arctan2, np.hypot: ops.hypot, np.sinh: ops.sinh,
    np.cosh: ops.cosh, np.tanh: ops.tanh, np.arcsinh: ops.arcsinh, np.arccosh: ops.arccosh,
    np.arctanh: ops.arctanh, np.exp: ops.exp, np.exp2: ops.exp2, np.expm1: ops.expm1, np.log: ops.log,
    np.log2: ops.log2, np.log10: ops.log10, np.log1p: ops.log1p, np.logaddexp: ops.logaddexp,
    np.floor: ops.floor, np.ceil: ops.ceil, np.rint: ops.round, np.maximum: ops.maximum,
    np.minimum: ops.minimum, np.greater: _op("gt"), np.greater_equal: _op("ge"), np.less: _op("lt"),
    np.less_equal: _op("le"), np.matmul: ops.matmul,
}

# what to write instead of a numpy function or ufunc graphc does not have (by numpy's name)
_COMPARE = "graphc has the comparisons >, >=, < and <= (for gc.where): write gc.where(a >= b, ...)"
_MAX = "use gc.maximum of slices (gc.maximum(e[:, 0], e[:, 1]) ...), or gc.logsumexp for a smooth maximum"
HINTS = {
    "equal": _COMPARE, "not_equal": _COMPARE,
    "fmax": "use gc.maximum (NaN propagates, as in np.maximum; graphc has no NaN-ignoring fmax)",
    "fmin": "use gc.minimum (NaN propagates, as in np.minimum; graphc has no NaN-ignoring fmin)",
    "trunc": "use gc.where(x < 0, gc.ceil(x), gc.floor(x))",
    "fix": "use gc.where(x < 0, gc.ceil(x), gc.floor(x))",
    "cbrt": "use gc.sign(x) * gc.abs(x) ** (1 / 3)",
    "remainder": "use x - gc.floor(x / y) * y", "mod": "use x - gc.floor(x / y) * y",
    "floor_divide": "use gc.floor(x / y)",
    "max": _MAX, "amax": _MAX,
    "min": "use gc.minimum of slices (gc.minimum(e[:, 0], e[:, 1]) ...)",
    "amin": "use gc.minimum of slices (gc.minimum(e[:, 0], e[:, 1]) ...)",
    "prod": "write the product out (e[0] * e[1] * ...)",
    "ravel": "use gc.flatten or gc.reshape", "squeeze": "use gc.reshape or an index (e[:, 0])",
    "shape": "use node.shape", "ndim": "use node.ndim",
}
_METHODS = {"reduce": {"add": "use gc.sum(e, axis)"}, "outer": {"multiply": "use e[:, None] * f[None, :]"}}


def _numpy_name(fn: Any) -> str:
    name = getattr(fn, "__name__", repr(fn))
    if isinstance(fn, np.ufunc):
        return f"numpy.{name}" if getattr(np, name, None) is fn else f"the ufunc {name!r}"
    module = getattr(fn, "__module__", None) or "numpy"
    return f"{module}.{name}"


def _unsupported(what: str, hint: str | None) -> UnsupportedError:
    hint = hint or ("write it with graphc's functions (gc.sin, gc.sum, gc.where, ...: docs/api.md "
                    "lists them), or compile the graph and apply numpy to its result")
    return UnsupportedError(f"{what} is not supported on graph nodes; {hint}")


def _scipy_ufuncs() -> dict[Any, Callable[..., Any]]:
    special = sys.modules.get("scipy.special")  # only if the user imported it
    if special is None:
        return {}
    return {special.erf: ops.erf, special.erfc: ops.erfc, special.expit: ops.sigmoid}


def array_ufunc(ufunc: Any, method: str, inputs: tuple, kwargs: dict) -> Any:
    """``ufunc(*inputs, **kwargs)`` (numpy's ``__array_ufunc__``) as a graph node."""
    name = _numpy_name(ufunc)
    if method != "__call__":
        hint = _METHODS.get(method, {}).get(ufunc.__name__)
        raise _unsupported(f"{name}.{method}", hint)
    build = UFUNCS.get(ufunc) or _scipy_ufuncs().get(ufunc)
    if build is None:
        raise _unsupported(name, HINTS.get(ufunc.__name__))
    given = [k for k, v in kwargs.items()
             if not (k == "out" and all(o is None for o in (v if isinstance(v, tuple) else (v,))))]
    if given:
        raise UnsupportedError(
            f"{name}(..., {'=, '.join(given)}=): graphc builds a new node, so it takes "
            "no out=, where=, dtype=, casting= ... (choose the float type with gc.compile(dtype=...))"
        )
    return build(*inputs)


def _no(fn: str, **given: Any) -> None:
    """Raise for arguments given a value graphc cannot honor (None / not given is fine)."""
    bad = [k for k, v in given.items() if v is not None and v is not _NO_VALUE]
    if bad:
        raise UnsupportedError(
            f"numpy.{fn}(..., {', '.join(f'{k}=' for k in bad)}): not supported on graph nodes "
            "(graphc builds a new node; choose the float type with gc.compile(dtype=...))"
        )


def _given(v: Any) -> bool:
    return v is not _NO_VALUE


# numpy's signatures (numpy 2), the arguments graphc has no use for rejected by _no
def _sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=_NO_VALUE, where=_NO_VALUE):
    _no("sum", dtype=dtype, out=out, initial=initial, where=where)
    return ops.sum(a, axis, bool(keepdims) if _given(keepdims) else False)


def _mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=_NO_VALUE):
    _no("mean", dtype=dtype, out=out, where=where)
    return ops.mean(a, axis, bool(keepdims) if _given(keepdims) else False)


def _clip(a, a_min=_NO_VALUE, a_max=_NO_VALUE, out=None, *, min=_NO_VALUE, max=_NO_VALUE,  # noqa: A002
          **kwargs):
    _no("clip", out=out, **kwargs)
    lo = min if _given(min) else (a_min if _given(a_min) else None)
    hi = max if _given(max) else (a_max if _given(a_max) else None)
    return ops.clip(a, lo, hi)


def _where(condition, x=_NO_VALUE, y=_NO_VALUE):
    if not (_given(x) and _given(y)):
        raise _unsupported("numpy.where(condition) (the indices where it holds)",
                           "use np.where(condition, a, b) or gc.where(condition, a, b)")
    return ops.where(condition, x, y)


def _round(a, decimals=0, out=None):
    _no("round", out=out)
    return ops.round(a, decimals)


def _transpose(a, axes=None):
    return ops.transpose(a, axes)


def _stack(arrays, axis=0, out=None, *, dtype=None, casting=_NO_VALUE):
    _no("stack", out=out, dtype=dtype, casting=casting)
    return ops.stack(list(arrays), axis)


def _concatenate(arrays, axis=0, out=None, *, dtype=None, casting=_NO_VALUE):
    _no("concatenate", out=out, dtype=dtype, casting=casting)
    if axis is None:
        raise _unsupported("numpy.concatenate(..., axis=None)",
                           "use gc.concatenate of parts flattened by gc.reshape")
    return ops.concatenate(list(arrays), axis)


def _reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    _no("reshape", copy=copy)
    if order != "C":
        raise _unsupported(f"numpy.reshape(..., order={order!r})", "use order='C' (graphc's only order)")
    shape = newshape if shape is None else shape
    return ops.reshape(a, (shape,) if isinstance(shape, int) else tuple(shape))


def _dot(a, b, out=None):
    _no("dot", out=out)
    a, b = ops.as_node(a, "dot"), ops.as_node(b, "dot")
    return a * b if a.ndim == 0 or b.ndim == 0 else ops.matmul(a, b)


def _einsum(subscripts, *operands, out=None, dtype=None, order="K", casting="safe", optimize=False):
    _no("einsum", out=out, dtype=dtype)
    return ops.einsum(subscripts, *operands)


def _broadcast_to(array, shape, subok=False):
    return ops.broadcast_to(array, (shape,) if isinstance(shape, int) else tuple(shape))


def _expand_dims(a, axis):
    a = ops.as_node(a, "expand_dims")
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    ndim = a.ndim + len(axes)
    where = sorted(int(k) % ndim for k in axes)
    if len(set(where)) != len(where):
        raise GraphcError(f"expand_dims: repeated axis in {axis!r}")
    key = [None if k in where else slice(None) for k in range(ndim)]
    return ops.index(a, tuple(key))


FUNCTIONS: dict[Callable[..., Any], Callable[..., Any]] = {
    np.sum: _sum, np.mean: _mean, np.clip: _clip, np.where: _where, np.round: _round,
    np.around: _round, np.transpose: _transpose, np.stack: _stack, np.concatenate: _concatenate,
    np.reshape: _reshape, np.dot: _dot, np.einsum: _einsum, np.broadcast_to: _broadcast_to,
    np.expand_dims: _expand_dims,
}


def array_function(func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
    """``func(*args, **kwargs)`` (numpy's ``__array_function__``) as a graph node."""
    build = FUNCTIONS.get(func)
    if build is None:
        raise _unsupported(_numpy_name(func), HINTS.get(getattr(func, "__name__", "")))
    try:
        return build(*args, **kwargs)
    except TypeError as exc:  # a wrong argument: numpy's own message, as a GraphcError
        raise GraphcError(f"{_numpy_name(func)}: {exc}") from exc


def _node_array_ufunc(self: Node, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
    return array_ufunc(ufunc, method, inputs, kwargs)


def _node_array_function(self: Node, func: Any, types: Any, args: tuple, kwargs: dict) -> Any:
    return array_function(func, types, args, kwargs)


Node.__array_ufunc__ = _node_array_ufunc
Node.__array_function__ = _node_array_function
