"""Nonlinear least squares: ``gc.least_squares`` and ``gc.curve_fit`` (docs/fitting.md).

    r = y - b1 * (1 - gc.exp(-b2 * x))            # one residual per sample
    res = gc.least_squares(r, data={"x": xs, "y": ys}, init={"b1": 500.0, "b2": 1e-4})
    res.params, res.cost, res.stderr, res.covariance

Levenberg-Marquardt as MINPACK runs it (``levmar.py``), with the Jacobian from graphc's
symbolic derivatives (``tangents.py``) and J^T J, J^T f and the cost summed in one fused pass
over the samples (``build.py``); the whole iteration runs in compiled code.
"""

from __future__ import annotations

import math
import numbers
import time
import weakref
from types import SimpleNamespace
from typing import Any, Mapping

import numpy as np

from ..errors import BindingError, GraphcError, NonFiniteLoss, ShapeError
from ..ir.graph import N, Node
from ..runtime.binding import as_float_array, bind_data
from . import build, levmar
from .result import SCIPY_STATUS, LeastSquaresResult, message

__all__ = ["least_squares", "curve_fit", "LeastSquaresResult"]


def least_squares(residuals: Node, data: Mapping[str, Any], init: Mapping[str, Any], *,
                  sigma: Any = None, absolute_sigma: bool = False,
                  bounds: Mapping[str, tuple[Any, Any]] | None = None, loss: str = "linear",
                  f_scale: float = 1.0, xtol: float = 1e-8, ftol: float = 1e-8, gtol: float = 1e-8,
                  max_steps: int | None = None, target: str = "cpu",
                  dtype: str = "float64", path: str = "auto") -> LeastSquaresResult:
    """Minimize ``0.5 * sum(rho(f**2))`` over the parameters, ``f = residuals / sigma``.

    ``residuals``: an expression with one value per sample (shape (N,), or (N, k): all k*N
    values are residuals). ``data``: the arrays of its gc.data inputs. ``init``: a starting
    value for every parameter it uses (a float, or an array of a tensor parameter's shape);
    its order is the order of ``res.x``, ``res.names`` and the covariance's rows.

    Options, with scipy's names and meanings: ``xtol``, ``ftol``, ``gtol`` (MINPACK's tests, as
    ``least_squares(method="lm")``), ``max_steps`` (``max_nfev``: evaluations; default 100 per
    parameter), ``loss`` ("linear", "soft_l1", "huber", "cauchy", "arctan") with ``f_scale``,
    ``sigma`` (curve_fit's: residuals divided by it; ``absolute_sigma``: the covariance is not
    rescaled by the residual variance), ``bounds`` ({name: (lo, hi)}, None or +-inf for no bound;
    a change of variables, see docs/fitting.md); ``target`` ("cpu" or "parallel"), ``dtype``;
    ``path``: how J^T J is formed ("fused": unrolled sums in one loop, up to 32 parameters;
    "dense": J's rows per block of samples and np.dot, up to build.MAX_PARAMS; "auto": fused up
    to build.FUSED_PARAMS parameters, dense above).
    """
    _check_options(loss, f_scale, xtol, ftol, gtol, max_steps)
    start = time.perf_counter()
    solver = build.solver(residuals, loss, sigma is not None, target, dtype, path)
    x0, order = _initial(solver, init)
    kinds, lo, hi = _bounds(solver, bounds, x0)
    max_nfev = 100 * solver.n if max_steps is None else int(max_steps)
    arrays, m = _bind(solver, data, sigma, dtype)
    plan = solver.plan
    theta = np.zeros(plan.n_theta, dtype=dtype)
    state, theta[:solver.n] = levmar.new_state(x0, kinds, lo, hi, ftol, xtol, gtol, max_nfev,
                                                      square=solver.dense)
    if solver.sums.f_scale is not None:
        theta[plan.layout[solver.sums.f_scale.name][0]] = f_scale
    grad, acc = np.zeros(plan.n_grads), np.zeros(plan.n_acc)
    compiled = solver.timings.get("numba", 0.0)
    run_start = time.perf_counter()
    solver.run(arrays, theta, grad, acc, state)
    seconds = time.perf_counter() - run_start - (solver.timings.get("numba", 0.0) - compiled)
    fs, ints, vecs, mats, hist = state
    info = int(ints[levmar.STATUS])
    if info == levmar.NOT_FINITE:
        raise NonFiniteLoss(f"least_squares: the cost at the initial point is {hist[0, 0]}; the residuals "
                            "must be finite where the fit starts (check init, and the data for NaN or inf)")
    x = theta[:solver.n].astype(np.float64)  # the solution, as step left it
    grad, jtj = vecs[levmar.GX], mats[levmar.AX]
    if order is not None:  # init's order differs from the solver's
        x, grad, jtj = x[order], grad[order], jtj[np.ix_(order, order)]
    return LeastSquaresResult(
        x=x, names=list(solver.labels) if order is None else [solver.labels[k] for k in order],
        shapes=dict(solver.shapes) if order is None else {name: solver.shapes[name] for name in init},
        cost=float(fs[levmar.COST]), grad=grad.copy(), jtj=jtj.copy(),
        status=SCIPY_STATUS[info], message=message(info), nfev=int(ints[levmar.NFEV]), trace=hist,
        m=m, absolute_sigma=absolute_sigma, seconds=seconds,
        timings={**solver.timings, "total": time.perf_counter() - start}, source=solver.source,
    )


# ---- checking what the user passed ------------------------------------------------------
def _check_options(loss: str, f_scale: float, xtol: float, ftol: float, gtol: float, max_steps: Any) -> None:
    if loss not in build.LOSSES:
        raise GraphcError(f"least_squares: unknown loss {loss!r}; choose one of {', '.join(build.LOSSES)}")
    for name, value in (("f_scale", f_scale), ("xtol", xtol), ("ftol", ftol), ("gtol", gtol)):
        if type(value) is float and 0 <= value < math.inf:  # the common case, quickly
            continue
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not number or not math.isfinite(value) or value < 0:
            raise GraphcError(f"least_squares: {name} must be a finite number >= 0, got {value!r}")
    if not f_scale > 0:
        raise GraphcError(f"least_squares: f_scale must be > 0, got {f_scale!r}")
    if max_steps is not None and (not isinstance(max_steps, numbers.Integral) or isinstance(max_steps, bool)
                                  or max_steps < 1):
        raise GraphcError(f"least_squares: max_steps must be a positive int, got {max_steps!r}")


def _initial(solver: build.Solver, init: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """theta's first values (the parameters in the solver's order) from ``init``, and the
    permutation that puts them in init's order (None: the same order)."""
    if not isinstance(init, Mapping):
        raise BindingError(f"least_squares: init must be a dict {{name: value}}, got {type(init).__name__}")
    if init.keys() != solver.offsets.keys():
        unknown = [k for k in init if k not in solver.offsets]
        if unknown:
            raise BindingError(f"least_squares: init names {unknown[0]!r}, which the residuals do not use; "
                               f"their parameters: {', '.join(solver.offsets)}")
        missing = [k for k in solver.offsets if k not in init]
        raise BindingError(f"least_squares: init is missing parameter(s) {', '.join(map(repr, missing))}")
    x0 = np.empty(solver.n)
    order = []
    for name, value in init.items():
        off, shape = solver.offsets[name]
        size = math.prod(shape)
        if type(value) is float and not shape and math.isfinite(value):  # the common case, without numpy
            x0[off] = value
        else:
            arr = as_float_array(name, value, "float64")
            if arr.shape != shape:
                raise ShapeError(f"least_squares: init[{name!r}] has shape {arr.shape}; expected {shape}")
            if not np.isfinite(arr).all():
                raise GraphcError(f"least_squares: init[{name!r}] is not finite: {value!r}")
            x0[off:off + size] = arr.ravel()
        order.extend(range(off, off + size))
    return x0, (None if order == list(range(solver.n)) else np.array(order))


def _bounds(solver: build.Solver, bounds: Mapping[str, tuple[Any, Any]] | None,
            x0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per scalar parameter: the transform (levmar.FREE/LOWER/UPPER/BOTH) and its bounds; a
    start on a bound moves inside it (as scipy's make_strictly_feasible does)."""
    n = solver.n
    if bounds is None:
        return solver.unbounded  # read only: new_state copies them
    kinds = np.zeros(n, dtype=np.int64)
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    if not isinstance(bounds, Mapping):
        raise GraphcError(f"least_squares: bounds must be a dict {{name: (lo, hi)}}, "
                          f"got {type(bounds).__name__}")
    offsets = solver.offsets
    for name, pair in bounds.items():
        if name not in offsets:
            raise BindingError(f"least_squares: bounds name {name!r}, which the residuals do not use; "
                               f"their parameters: {', '.join(offsets)}")
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise GraphcError(f"least_squares: bounds[{name!r}] must be a pair (lo, hi), got {pair!r}")
        off, shape = offsets[name]
        size = math.prod(shape)
        for which, value, dest in (("lower", pair[0], lo), ("upper", pair[1], hi)):
            value = -np.inf if value is None and which == "lower" else np.inf if value is None else value
            try:
                arr = np.broadcast_to(np.asarray(value, dtype=np.float64), shape).ravel()
            except (TypeError, ValueError):
                raise GraphcError(f"least_squares: bounds[{name!r}] {which} bound {value!r} is not a number "
                                  f"or an array of shape {shape}") from None
            dest[off:off + size] = arr
    for j in range(n):
        if np.isnan(lo[j]) or np.isnan(hi[j]) or not lo[j] < hi[j]:
            raise GraphcError(f"least_squares: bounds of {solver.labels[j]} must satisfy lo < hi, "
                              f"got ({lo[j]}, {hi[j]})")
        if not lo[j] <= x0[j] <= hi[j]:
            raise GraphcError(f"least_squares: init {solver.labels[j]} = {x0[j]} is outside its bounds "
                              f"({lo[j]}, {hi[j]})")
        kinds[j] = (levmar.LOWER if np.isfinite(lo[j]) else 0) | (levmar.UPPER if np.isfinite(hi[j]) else 0)
        x0[j] = _strictly_inside(x0[j], lo[j], hi[j])
    return kinds, lo, hi


def _strictly_inside(x: float, lo: float, hi: float, rstep: float = 1e-10) -> float:
    if x == lo:
        x = lo + rstep * max(1.0, abs(lo))
    if x == hi:
        x = hi - rstep * max(1.0, abs(hi))
    return min(max(x, lo), hi) if lo < x < hi else 0.5 * (lo + hi)


def _bind(solver: build.Solver, data: Mapping[str, Any], sigma: Any, dtype: str) -> tuple[list, int]:
    """The data arrays of the generated evaluate, in the plan's order, and the number of residuals."""
    if not isinstance(data, Mapping):
        raise BindingError(f"least_squares: data must be a dict {{name: array}}, got {type(data).__name__}")
    names = solver.data_names
    if data.keys() != names.keys():
        unknown = [k for k in data if k not in names]
        if unknown:
            raise BindingError(f"least_squares: data names {unknown[0]!r}, which the residuals do not use; "
                               f"their inputs: {', '.join(names) or '(none)'}")
        missing = [k for k in names if k not in data]
        raise BindingError(f"least_squares: data is missing input(s) {', '.join(map(repr, missing))}")
    fast = _fast_bind(solver, data)
    if fast:
        arrays, n = fast
    else:  # levmar.fit is compiled for C-ordered arrays (Solver.run): a broadcast view becomes an array
        arrays, n = bind_data(SimpleNamespace(data=solver.user_data), data, dtype)
        arrays = [np.ascontiguousarray(a) for a in arrays]
    if n is None:
        raise ShapeError("least_squares: no input has a sample dim")
    if fast and solver.sums.sigma is None and solver.residual_shape == (N,):  # plan.data is user_data
        return arrays, n
    residual_shape = tuple(n if d is N else d for d in solver.residual_shape)
    given = dict(zip(names, arrays))
    if solver.sums.sigma is not None:
        given[solver.sums.sigma.name] = _sigma(sigma, residual_shape, dtype)
    return [given[d.name] for d in solver.plan.data], math.prod(residual_shape)


def _fast_bind(solver: build.Solver, data: Mapping[str, Any]) -> tuple[list, int] | None:
    """The common case without runtime.bind_data's conversions: 1-D C-ordered arrays of the
    solver's dtype, one per 1-D sample input, all of one length (None: take the general path)."""
    arrays, n = [], None
    for node in solver.user_data:
        arr = data[node.name]
        if (type(arr) is not np.ndarray or arr.dtype is not solver.np_dtype or node.shape != (N,)
                or arr.ndim != 1 or not arr.flags.c_contiguous or (n is not None and arr.shape[0] != n)
                or arr.shape[0] == 0):
            return None
        n = arr.shape[0]
        arrays.append(arr)
    return arrays, n


def _sigma(sigma: Any, shape: tuple, dtype: str) -> np.ndarray:
    arr = as_float_array("sigma", sigma, dtype)
    m = math.prod(shape)
    if arr.ndim == 2 and arr.shape[0] == arr.shape[1] == m and len(shape) == 1 and m > 1:
        raise GraphcError("least_squares: sigma is a covariance matrix; only 1-D sigma (one standard "
                          "deviation per residual) is supported")
    try:
        arr = np.broadcast_to(arr, shape)
    except ValueError:
        raise ShapeError(f"least_squares: sigma of shape {arr.shape} does not broadcast to the residuals' "
                         f"shape {shape}") from None
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise GraphcError("least_squares: sigma must be finite and > 0 everywhere")
    return np.ascontiguousarray(arr)


# ---- curve_fit -----------------------------------------------------------------------------
_YDATA: "weakref.WeakKeyDictionary[Node, tuple[Node, Node]]" = weakref.WeakKeyDictionary()


def curve_fit(model: Node, data: Mapping[str, Any], ydata: Any, p0: Mapping[str, Any], *, sigma: Any = None,
              absolute_sigma: bool = False, bounds: Mapping[str, tuple[Any, Any]] | None = None,
              full_output: bool = False, **options: Any) -> tuple:
    """scipy's ``curve_fit`` for a graph model: fits ``model`` (one prediction per sample) to
    ``ydata``; returns ``(popt, pcov)``: popt {name: value}, pcov in popt's order (with
    ``full_output``, the LeastSquaresResult too). Other options as ``least_squares``."""
    if not isinstance(model, Node):
        raise GraphcError(f"curve_fit: model must be a graph expression, got {type(model).__name__}")
    if model not in _YDATA:
        taken = build.taken_names(build.Graph.from_outputs(model))
        y = build.data_like(build.fresh_name("ydata", taken, model.shape, "data"), model)
        _YDATA[model] = (y, model - y)
    y, residuals = _YDATA[model]
    if not isinstance(data, Mapping):
        raise BindingError(f"curve_fit: data must be a dict {{name: array}}, got {type(data).__name__}")
    if y.name in data:
        raise BindingError(f"curve_fit: data names {y.name!r}; pass the observations as ydata")
    res = least_squares(residuals, {**data, y.name: ydata}, p0, sigma=sigma, absolute_sigma=absolute_sigma,
                        bounds=bounds, **options)
    return (res.params, res.covariance, res) if full_output else (res.params, res.covariance)
