"""Conformance helpers: graphc against numpy (values) and torch's conventions (gradients).

The contract (DESIGN.md): an expression computes what numpy computes for it as written, NaN
and inf included, on every target and dtype; gradients follow torch's conventions. This
module holds the references and the machinery; ``test_conformance.py`` holds the tests.

References, all independent of graphc's registry and of SymPy:

- values: numpy (mpmath for erf/erfc, scipy.special for logsumexp/softmax), in the dtype under test;
- gradients: ``REFS``, a hand-written table of closed-form derivatives evaluated with numpy,
  written the way torch's backward formulas are (so that their NaN/inf behaviour at the
  edges is torch's: ``arcsinh'(1e300)`` is ``(x*x + 1)**-0.5 = 0``, ``relu'(nan)`` is 1, ...);
- torch autograd itself when torch is importable (``make conformance`` installs it).

Few compiles: ONE compiled function per (target, dtype) holds every unary op, with
``loss = sum_k v_k * sum(op_k(x + p_k))``; at ``v_k = 1``, ``p_k = -0.0`` and one sample x,
d(loss)/d(v_k) is op_k(x) and d(loss)/d(p_k) is op_k'(x), whatever the other ops give
(``x + -0.0`` is x for every x, -0.0 included). A second function holds the ops of two and
three arguments the same way (data x0, x1, x2), two more the reductions (over samples, and
logsumexp / softmax / log_softmax along a row). Each call is one point of the edge grid;
calls are cheap.

Signed zeros are not compared: every result comes back through a sum that starts at +0.0,
so op(x) = -0.0 reads as +0.0.
"""

from __future__ import annotations

import functools
import math
import operator
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import scipy.special as sps

import graphc as gc
from graphc.ir.ops import ELEMENTWISE

try:  # optional: make conformance installs it
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

inf, nan = math.inf, math.nan
TARGETS = ("cpu", "parallel", "cuda")
DTYPES = ("float64", "float32")
SQRT1_2 = math.sqrt(0.5)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
TWO_SQRTPI = 2 / math.sqrt(math.pi)
LN2, LN10 = math.log(2.0), math.log(10.0)


# ---- the edge grid ------------------------------------------------------------------------
def unary_points(dtype: str) -> np.ndarray:
    """Edge values of one argument, (M, 1), as values of ``dtype`` (float32: its own extremes)."""
    if dtype == "float64":
        extremes = [5e-324, 1e-310, 1e-300, 1e300, 1.7976931348623157e308]
        big = [700.0, 710.0, 746.0]  # exp overflows above 709.78, underflows below -745.1
    else:
        extremes = [1.4e-45, 1e-40, 1e-30, 1e30, 3.4028235e38]
        big = [88.0, 89.0, 104.0]  # float32 exp: overflow above 88.72, underflow below -103.3
    ordinary = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 0.25, 0.75, 0.999, 1.001, 1e-8, 20.0, 30.0, 7.3]
    mags = [0.0] + extremes + big + ordinary + [inf]
    values = [m for v in mags for m in (v, -v)] + [nan]
    return np.array(values, dtype=dtype)[:, None]


def binary_points(dtype: str) -> np.ndarray:
    """All pairs (a, b) of a smaller edge set: (n*n, 2)."""
    small = [1e-310, 1e-300] if dtype == "float64" else [1e-40, 1e-30]
    huge = 1e300 if dtype == "float64" else 1e30
    vals = [0.0, -0.0, *small, -small[1], 0.5, 1.0, -1.0, 2.0, -2.5, 3.0, huge, -huge, inf, -inf, nan]
    v = np.array(vals, dtype=dtype)
    a, b = np.meshgrid(v, v, indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1)


TERNARY_PAIRS = [(0.0, 1.0), (1.0, 0.0), (-inf, inf), (nan, 1.0), (0.0, nan), (1.0, 1.0), (-0.0, 0.0),
                 (0.5, 0.5), (-2.5, inf)]


def ternary_points(dtype: str) -> np.ndarray:
    """(a, lo, hi) triples: a from the binary edge set, (lo, hi) from TERNARY_PAIRS."""
    a = [float(v) for v in dict.fromkeys(key(v)[0] for v in binary_points(dtype)[:, 0])]  # -0.0 kept
    rows = [(x, lo, hi) for x in a for lo, hi in TERNARY_PAIRS]
    return np.array(rows, dtype=dtype)


def key(args: Any) -> tuple[str, ...]:
    """Exact identity of a point: -0.0 differs from 0.0, every NaN is 'nan'."""
    return tuple("nan" if math.isnan(float(a)) else repr(float(a)) for a in np.atleast_1d(args))


# ---- the reference table ------------------------------------------------------------------
def _where(cond, a, b):
    return np.where(cond, a, b)


def _max_grads(a, b):  # torch: ties split 0.5/0.5; NaN in either gives 1 to both
    ga = _where(a == b, 0.5, _where(a < b, 0.0, 1.0))
    gb = _where(a == b, 0.5, _where(b < a, 0.0, 1.0))
    return ga, gb


def _min_grads(a, b):
    ga = _where(a == b, 0.5, _where(a > b, 0.0, 1.0))
    gb = _where(a == b, 0.5, _where(b > a, 0.0, 1.0))
    return ga, gb


def _clip_grads(x, lo, hi):  # clip = minimum(maximum(x, lo), hi), chained
    m = np.maximum(x, lo)
    dm_dx, dm_dlo = _max_grads(x, lo)
    do_dm, do_dhi = _min_grads(m, hi)
    return do_dm * dm_dx, do_dm * dm_dlo, do_dhi


def _pow_grads(a, b):  # torch: d/da = 0 where b == 0; d/db = 0 where a == 0 and b >= 0
    da = _where(b == 0, 0.0, b * a ** (b - 1))
    db = _where((a == 0) & (b >= 0), 0.0, a**b * np.log(a))
    return da, db


def _atan2_grads(a, b):  # torch: a*a + b*b == 0 gives 0 (not 0/0)
    r = a * a + b * b
    zero = r == 0
    safe = _where(zero, 1.0, r)
    return _where(zero, 0.0, b / safe), _where(zero, 0.0, -a / safe)


def _gelu(x):  # torch's erf form, x * cdf(x), the cdf by erfc (accurate in the left tail)
    return (x / 2) * sps.erfc(-x * SQRT1_2)


def _gelu_grad(x):  # cdf + x*pdf
    return sps.erfc(-x * SQRT1_2) / 2 + x * (np.exp(-0.5 * x * x) * INV_SQRT_2PI)


# Rounding scales (see mismatches): what an error of one eps is relative to, where a formula
# is ill-conditioned. Arguments are float64 arrays; the default is the result itself.
def _one(x, want):  # 1 - tanh(x)**2, (1 - s)*s: terms of size 1 cancel
    return np.ones_like(x)


def _near_one(x, want):  # 1 - x*x (or x*x - 1): x*x's rounding, divided by what is left
    return np.abs(want) * x * x / np.abs(1 - x * x)


def _squared(x, want):  # exp(-x*x): x*x's rounding is a relative error of x*x in the result
    return np.abs(want) * (1 + x * x)


def _gelu_vscale(x, want):  # erfc's argument x/sqrt2 is rounded: relative condition ~ x*x
    return np.abs(want) * (1 + x * x)


def _gelu_gscale(x, want):  # cdf + x*pdf cancel near x = -0.75; the argument's rounding as above
    cdf, pdf = sps.erfc(-x * SQRT1_2) / 2, np.exp(-0.5 * x * x) * INV_SQRT_2PI
    return (cdf + np.abs(x) * pdf) * (1 + x * x)


def _mp(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """mpmath's function at 50 digits, rounded to x's dtype (scipy.special.erfc(7.3) is 16 ulp off);
    beyond |x| = 30 (and for inf, NaN) scipy's, where erf is +-1 and erfc 0 or 2."""
    import mpmath

    fn = getattr(mpmath, name)

    def value(x: np.ndarray) -> np.ndarray:
        with mpmath.workdps(50):
            out = [float(fn(mpmath.mpf(float(v)))) if abs(v) < 30 else float(getattr(sps, name)(v)) for v in x]
        return np.array(out).astype(x.dtype)

    return value


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@dataclass(frozen=True)
class Ref:
    """One op: its numpy value, closed-form partials (None: no gradient), torch form."""

    name: str
    nargs: int
    value: Callable[..., Any]
    grads: Callable[..., Any] | None  # (*args) -> one partial (nargs == 1) or a tuple of them
    torch: Callable[..., Any] | None = None  # (*tensors) -> tensor; None: no torch counterpart
    build: Callable[..., Any] | None = None  # (*nodes) -> node; default: registry op, else gc.<name>
    diff: tuple[bool, ...] | None = None  # which arguments get a parameter (default: all, if grads)
    vscale: Callable[..., Any] | None = None  # (*args, want) -> rounding scale of the value
    gscale: Callable[..., Any] | None = None  # (*args, want) -> rounding scale of every partial
    note: str = ""

    @property
    def differentiable(self) -> tuple[bool, ...]:
        if self.diff is not None:
            return self.diff
        return (self.grads is not None,) * self.nargs

    def partials(self, *args: np.ndarray) -> list[np.ndarray | None]:
        with np.errstate(all="ignore"):
            g = self.grads(*args) if self.grads is not None else None
        g = g if isinstance(g, tuple) else (g,)
        out, it = [], iter(g)
        for k, d in enumerate(self.differentiable):
            out.append(np.broadcast_to(np.asarray(next(it), dtype=args[k].dtype), args[k].shape) if d else None)
        return out

    def ref_value(self, *args: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.broadcast_to(np.asarray(self.value(*args)).astype(args[0].dtype), args[0].shape)


def _t(name: str) -> Callable[..., Any]:
    return lambda *a: getattr(torch, name)(*a)


def _zero(x):
    return np.zeros_like(x)


REFS: dict[str, Ref] = {r.name: r for r in [
    # ---- one argument
    Ref("neg", 1, np.negative, lambda x: -np.ones_like(x), _t("neg")),
    Ref("sin", 1, np.sin, np.cos, _t("sin")),
    Ref("cos", 1, np.cos, lambda x: -np.sin(x), _t("cos")),
    Ref("tan", 1, np.tan, lambda x: 1 + np.tan(x) ** 2, _t("tan")),
    Ref("exp", 1, np.exp, np.exp, _t("exp")),
    Ref("log", 1, np.log, lambda x: 1 / x, _t("log")),
    Ref("sqrt", 1, np.sqrt, lambda x: 1 / (2 * np.sqrt(x)), _t("sqrt")),
    Ref("tanh", 1, np.tanh, lambda x: 1 - np.tanh(x) ** 2, _t("tanh"), gscale=_one),
    Ref("sigmoid", 1, _sigmoid, lambda x: (1 - _sigmoid(x)) * _sigmoid(x), _t("sigmoid"), gscale=_one),
    Ref("relu", 1, lambda x: np.maximum(x, 0), lambda x: _where(np.maximum(x, 0) <= 0, 0.0, 1.0), _t("relu"),
        note="relu'(0) = 0, relu'(nan) = 1 (torch: threshold_backward on the result)"),
    Ref("gelu", 1, _gelu, _gelu_grad, lambda x: torch.nn.functional.gelu(x), vscale=_gelu_vscale,
        gscale=_gelu_gscale),
    Ref("softplus", 1, lambda x: np.logaddexp(0, x), _sigmoid, lambda x: torch.nn.functional.softplus(x)),
    Ref("abs", 1, np.abs, lambda x: np.sign(np.nan_to_num(x, nan=0.0)), _t("abs"),
        note="abs'(x) = sign(x), 0 at 0 and at nan"),
    Ref("arctan", 1, np.arctan, lambda x: 1 / (1 + x * x), _t("arctan")),
    Ref("arcsin", 1, np.arcsin, lambda x: 1 / np.sqrt(1 - x * x), _t("arcsin"), gscale=_near_one),
    Ref("arccos", 1, np.arccos, lambda x: -1 / np.sqrt(1 - x * x), _t("arccos"), gscale=_near_one),
    Ref("sinh", 1, np.sinh, np.cosh, _t("sinh")),
    Ref("cosh", 1, np.cosh, np.sinh, _t("cosh")),
    Ref("arcsinh", 1, np.arcsinh, lambda x: 1 / np.sqrt(x * x + 1), _t("arcsinh")),
    Ref("arccosh", 1, np.arccosh, lambda x: 1 / np.sqrt(x * x - 1), _t("arccosh"), gscale=_near_one),
    Ref("arctanh", 1, np.arctanh, lambda x: 1 / (1 - x * x), _t("arctanh"), gscale=_near_one),
    Ref("log1p", 1, np.log1p, lambda x: 1 / (x + 1), _t("log1p")),
    Ref("expm1", 1, np.expm1, lambda x: np.expm1(x) + 1, _t("expm1")),
    Ref("log2", 1, np.log2, lambda x: 1 / (x * LN2), _t("log2")),
    Ref("log10", 1, np.log10, lambda x: 1 / (x * LN10), _t("log10")),
    Ref("exp2", 1, np.exp2, lambda x: np.exp2(x) * LN2, _t("exp2")),
    Ref("erf", 1, _mp("erf"), lambda x: TWO_SQRTPI * np.exp(-x * x), _t("erf"), gscale=_squared),
    Ref("erfc", 1, _mp("erfc"), lambda x: -TWO_SQRTPI * np.exp(-x * x), _t("erfc"), gscale=_squared),
    Ref("square", 1, np.square, lambda x: 2 * x, _t("square")),
    Ref("sign", 1, np.sign, _zero, _t("sign"), note="value: numpy's sign(nan) = nan (torch gives 0)"),
    Ref("floor", 1, np.floor, _zero, _t("floor")),
    Ref("ceil", 1, np.ceil, _zero, _t("ceil")),
    Ref("round", 1, np.round, _zero, _t("round"), note="half to even, like numpy"),
    # ---- two arguments
    Ref("add", 2, np.add, lambda a, b: (np.ones_like(a), np.ones_like(b)), _t("add")),
    Ref("sub", 2, np.subtract, lambda a, b: (np.ones_like(a), -np.ones_like(b)), _t("sub")),
    Ref("mul", 2, np.multiply, lambda a, b: (b, a), _t("mul")),
    Ref("div", 2, np.divide, lambda a, b: (1 / b, -((a / b) / b)), _t("div"), note="d/db = -(a/b)/b"),
    Ref("pow", 2, np.power, _pow_grads, _t("pow")),
    Ref("maximum", 2, np.maximum, _max_grads, _t("maximum")),
    Ref("minimum", 2, np.minimum, _min_grads, _t("minimum")),
    Ref("arctan2", 2, np.arctan2, _atan2_grads, _t("arctan2")),
    Ref("hypot", 2, np.hypot, lambda a, b: (a / np.hypot(a, b), b / np.hypot(a, b)), _t("hypot")),
    Ref("logaddexp", 2, np.logaddexp,
        lambda a, b: (1 / (1 + np.exp(b - a)), 1 / (1 + np.exp(a - b))), _t("logaddexp")),
    # comparisons (a number where used as one: 1.0 or 0.0, NaN compares False); no gradient
    Ref("gt", 2, lambda a, b: (a > b).astype(a.dtype), None),
    Ref("ge", 2, lambda a, b: (a >= b).astype(a.dtype), None),
    Ref("lt", 2, lambda a, b: (a < b).astype(a.dtype), None),
    Ref("le", 2, lambda a, b: (a <= b).astype(a.dtype), None),
    # ---- three arguments
    Ref("where", 3, lambda c, a, b: np.where(c > 0, a, b),
        lambda c, a, b: (np.where(c > 0, 1.0, 0.0), np.where(c > 0, 0.0, 1.0)),
        lambda c, a, b: torch.where(c > 0, a, b), build=lambda c, a, b: gc.where(c > 0, a, b),
        diff=(False, True, True), note="where(c > 0, a, b)"),
    Ref("clip", 3, lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi), _clip_grads,
        lambda x, lo, hi: torch.minimum(torch.maximum(x, lo), hi),
        note="clip(x, lo, hi) = minimum(maximum(x, lo), hi): ties 0.5/0.5"),
]}


def present(name: str) -> bool:
    """Whether graphc has this op now: in the registry, or as a public ``gc.<name>``."""
    return name in ELEMENTWISE or callable(getattr(gc, name, None))


def builder(ref: Ref) -> Callable[..., Any]:
    if ref.build is not None:
        return ref.build
    if ref.name in ELEMENTWISE:
        return ELEMENTWISE[ref.name]
    return getattr(gc, ref.name)


def available(nargs: tuple[int, ...]) -> list[Ref]:
    return [r for r in REFS.values() if r.nargs in nargs and present(r.name)]


def missing() -> list[str]:
    return [name for name in REFS if not present(name)]


def unreferenced() -> list[str]:
    """Registry ops this suite has no reference for."""
    return [name for name in ELEMENTWISE if name not in REFS]


# ---- compiled groups and their results on the grid ----------------------------------------
@dataclass
class Outcome:
    """One op on a grid: points (M, nargs), graphc's value (M,) and partials (nargs x (M,) | None)."""

    points: np.ndarray
    value: np.ndarray
    grads: list[np.ndarray | None]
    raised: dict[int, str] = field(default_factory=dict)  # point index -> the exception of its call

    def raised_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.points), dtype=bool)
        mask[list(self.raised)] = True
        return mask


@dataclass
class GroupRun:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # op -> why it could not be built
    compile_s: float = 0.0
    calls: int = 0
    run_s: float = 0.0


def build_group(refs: list[Ref], ndata: int) -> tuple[gc.Node | None, dict, dict[str, str]]:
    """loss = sum_k v_k * sum(op_k(x0 + p0_k, ...)) over the ops that build; and what did not."""
    xs = [gc.data(f"x{j}") for j in range(ndata)]
    terms, layout, broken = [], {}, {}
    for ref in refs:
        v = gc.param(f"v_{ref.name}")
        ps = [gc.param(f"p{j}_{ref.name}") if d else None for j, d in enumerate(ref.differentiable)]
        args = [x if p is None else x + p for x, p in zip(xs, ps)]
        try:
            term = v * gc.sum(builder(ref)(*args))
        except Exception as err:  # a registry op of another arity, a signature that changed, ...
            broken[ref.name] = f"{type(err).__name__}: {err}"
            continue
        terms.append(term)
        layout[ref.name] = (v.name, [p.name if p is not None else None for p in ps])
    loss = functools.reduce(operator.add, terms) if terms else None
    return loss, layout, broken


@contextmanager
def small_cuda_launches() -> Iterator[None]:
    """Tiny launches (the simulator runs one Python thread per GPU thread), as test_cuda.py."""
    from graphc.runtime import cuda as cuda_runtime

    saved = (cuda_runtime.options.threads, cuda_runtime.options.max_blocks)
    cuda_runtime.options.threads, cuda_runtime.options.max_blocks = 32, 4
    try:
        yield
    finally:
        cuda_runtime.options.threads, cuda_runtime.options.max_blocks = saved


def compile_quiet(loss: gc.Node, **kwargs: Any) -> gc.Compiled:
    with warnings.catch_warnings():  # a parameter that only moves a comparison has no gradient
        warnings.simplefilter("ignore", UserWarning)
        return gc.compile(loss, **kwargs)


def run_group(refs: list[Ref], grids: dict[int, np.ndarray], target: str, dtype: str) -> GroupRun:
    """Compile the ops of ``refs`` once and evaluate each op on the grid of its arity."""
    ndata = max(r.nargs for r in refs)
    loss, layout, broken = build_group(refs, ndata)
    run = GroupRun(broken=broken)
    if loss is None:
        return run
    params = {}
    for vname, pnames in layout.values():
        params[vname] = 1.0
        params.update({p: -0.0 for p in pnames if p is not None})  # x + -0.0 is x, -0.0 included
    by_arity: dict[int, list[str]] = {}
    for ref in refs:
        if ref.name in layout:
            by_arity.setdefault(ref.nargs, []).append(ref.name)
    with small_cuda_launches() if target == "cuda" else _nothing():
        start = time.perf_counter()
        f = compile_quiet(loss, target=target, dtype=dtype)
        for nargs, names in sorted(by_arity.items()):
            points = grids[nargs]
            m = len(points)
            outs = {n: Outcome(points, np.full(m, nan), [np.full(m, nan) if p else None for p in layout[n][1]])
                    for n in names}
            fill = np.ones(1, dtype=dtype)
            for i, pt in enumerate(points):
                data = {f"x{j}": (np.array([pt[j]], dtype=dtype) if j < nargs else fill) for j in range(ndata)}
                try:
                    r = f({**data, **params})
                except Exception as err:  # never expected: NaN/inf are values, not exceptions
                    for n in names:
                        outs[n].raised[i] = f"{type(err).__name__}: {err}"
                    continue
                finally:
                    if run.calls == 0:  # Numba compiles on the first call
                        run.compile_s = time.perf_counter() - start
                    run.calls += 1
                for n in names:
                    vname, pnames = layout[n]
                    outs[n].value[i] = r.grads[vname]
                    for j, p in enumerate(pnames):
                        if p is not None:
                            outs[n].grads[j][i] = r.grads[p]
            run.outcomes.update(outs)
        run.run_s = time.perf_counter() - start - run.compile_s
    return run


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# ---- comparison ---------------------------------------------------------------------------
# Tolerances: a few units in the last place of the reference (in the dtype under test), plus
# SCALE_EPS * eps * scale where an op's formula is ill-conditioned (Ref.vscale / gscale), plus,
# for gradients, the smallest normal number: below it, gradients underflow differently
# (softplus'(-710) is 4.5e-309 by exp(x)/(1 + exp(x)) and 0 by 1/(1 + exp(-x))).
VALUE_ULPS = 4
GRAD_ULPS = 16
SCALE_EPS = 8


def ulp(values: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of the dtype at |values| (at the largest finite value: the spacing below it)."""
    v = np.abs(np.asarray(values, dtype=np.float64)).astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        up = np.spacing(v)
        down = v - np.nextafter(v, np.zeros_like(v))
    return np.where(np.isfinite(up), up, down).astype(np.float64)


def tolerance(want: np.ndarray, dtype: str, ulps: float, scale: np.ndarray | None = None,
              floor: float = 0.0) -> np.ndarray:
    tol = ulps * ulp(want, dtype) + floor
    if scale is not None:
        with np.errstate(invalid="ignore", over="ignore"):
            tol = tol + SCALE_EPS * float(np.finfo(dtype).eps) * np.nan_to_num(np.abs(scale), nan=0.0, posinf=np.inf)
    return tol


def mismatches(got: np.ndarray, want: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """Boolean mask: NaN must meet NaN, an inf the same inf, finite values |got - want| <= tol."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    gn, wn = np.isnan(got), np.isnan(want)
    gi, wi = np.isinf(got), np.isinf(want)
    finite = ~(gn | wn | gi | wi)
    with np.errstate(invalid="ignore", over="ignore"):
        close = np.abs(got - want) <= tol
    bad = np.where(finite, ~close, False)
    bad |= gn != wn
    bad |= (gi | wi) & ~(gn | wn) & (got != want)
    return bad


def value_tolerance(ref: Ref, args: list[np.ndarray], want: np.ndarray, dtype: str) -> np.ndarray:
    scale = _scale(ref.vscale, args, want)
    return tolerance(want, dtype, VALUE_ULPS, scale)


def grad_tolerance(ref: Ref, args: list[np.ndarray], want: np.ndarray, dtype: str) -> np.ndarray:
    scale = _scale(ref.gscale, args, want)
    return tolerance(want, dtype, GRAD_ULPS, scale, float(np.finfo(dtype).tiny))


def _scale(fn: Callable[..., Any] | None, args: list[np.ndarray], want: np.ndarray) -> np.ndarray | None:
    if fn is None:
        return None
    with np.errstate(all="ignore"):
        return np.asarray(fn(*[np.asarray(a, dtype=np.float64) for a in args], np.asarray(want, np.float64)))


def describe(op: str, what: str, points: np.ndarray, got: np.ndarray, want: np.ndarray, bad: np.ndarray,
             limit: int = 40) -> str:
    idx = np.flatnonzero(bad)
    lines = [f"{op} {what}: {len(idx)} point(s) differ"]
    for i in idx[:limit]:
        args = ", ".join(repr(float(a)) for a in points[i])
        lines.append(f"  {op}({args}): graphc {float(got[i])!r}, reference {float(want[i])!r}")
    if len(idx) > limit:
        lines.append(f"  ... and {len(idx) - limit} more")
    return "\n".join(lines)


def torch_reference(ref: Ref, points: np.ndarray, dtype: str) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """torch's forward value and d(op)/d(arg k) by autograd, in ``dtype``, at every point."""
    tdtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    ts = [torch.tensor(points[:, k].astype(dtype), dtype=tdtype, requires_grad=d)
          for k, d in enumerate(ref.differentiable)]
    out = ref.torch(*ts)
    out.backward(torch.ones_like(out))
    grads = [t.grad.numpy().astype(np.float64) if d else None for t, d in zip(ts, ref.differentiable)]
    return out.detach().numpy().astype(np.float64), grads


def torch_applies(ref: Ref, points: np.ndarray, torch_value: np.ndarray, dtype: str) -> np.ndarray:
    """Points where torch's forward value is numpy's: elsewhere its gradient is of another function
    (torch's sinh(710) is inf, numpy's 1.1e308; its gelu(-30) is -0.0, numpy's -1.5e-196)."""
    args = [points[:, k] for k in range(ref.nargs)]
    want = ref.ref_value(*args)
    return ~mismatches(torch_value, want, value_tolerance(ref, args, want, dtype))


# ---- reductions: over samples, over a fixed axis, logsumexp / softmax along it -------------
ROW = 4
WEIGHTS = np.array([1.0, 2.0, 3.0, 4.0])  # per column: softmax's gradient is then not 0
SAMPLE_PATTERNS = {  # x (and each column of xx, rolled) over the samples
    "finite": [1.0, 2.0, 3.5],
    "inf": [1.0, inf, 2.0],
    "-inf": [-inf, 1.0, -inf],
    "inf-inf": [inf, -inf, 1.0],
    "nan": [nan, 1.0, 2.0],
    "nan-inf": [inf, nan, -inf],
    "huge": [1e300, 1e300, -1e300],
    "subnormal": [5e-324, 1e-310, -5e-324],
    "zeros": [-0.0, 0.0, -0.0],
}
LONG_PATTERNS = {  # several CUDA blocks, and parallel's block path (more than 16,384 samples)
    "long-nan": (100, {77: nan}),
    "long-inf": (40_000, {5: inf, 39_000: 2.0}),
}
ROW_PATTERNS = {
    "finite": [1.0, 2.0, 3.0, 4.0],
    "inf": [inf, 0.0, 0.0, 0.0],
    "-inf row": [-inf, -inf, -inf, -inf],
    "two inf": [inf, inf, 0.0, 0.0],
    "inf -inf": [inf, -inf, 0.0, 0.0],
    "nan": [nan, 0.0, 0.0, 0.0],
    "-inf": [-inf, 0.0, 1.0, 2.0],
    "wide": [1000.0, 1000.0, 0.0, -1000.0],
    "-huge": [-1e300, 0.0, 0.0, 0.0],
    "huge": [1e300, 1e300, 0.0, 0.0],
    "subnormal": [5e-324, -1e-310, 0.0, -0.0],
}


def sample_pattern(name: str, dtype: str) -> np.ndarray:
    if name in LONG_PATTERNS:
        n, at = LONG_PATTERNS[name]
        x = np.linspace(-1.0, 1.0, n)
        for i, v in at.items():
            x[i] = v
        return x.astype(dtype)
    with np.errstate(over="ignore"):
        return np.array(SAMPLE_PATTERNS[name], dtype=np.float64).astype(dtype)


def row_pattern(name: str, dtype: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.array(ROW_PATTERNS[name], dtype=np.float64).astype(dtype)


def columns(x: np.ndarray) -> np.ndarray:
    """(n, 4): column j is x rolled by j, so each column holds the pattern's values elsewhere."""
    return np.stack([np.roll(x, j) for j in range(ROW)], axis=1)


def _lookup(name: str) -> Callable[..., Any] | None:
    fn = getattr(gc, name, None)
    return fn if callable(fn) else getattr(gc.nn, name, None)


ROW_OPS = ("logsumexp", "softmax", "log_softmax")


@dataclass(frozen=True)
class Reduction:
    """One reduction term: how it is built, what it reads (samples or one row), its reference."""

    name: str
    over: str  # "samples": x and xx over many samples; "row": one sample, xx a row
    build: Callable[..., Any]  # (x, xx, p, P, v: list) -> term
    value: Callable[..., Any]  # numpy reference: (x, xx) -> value(s); float64
    grad: Callable[..., Any]  # numpy reference: (x, xx) -> d/dp (scalar) or d/dP (4,)
    vector: bool = False  # one v per column (softmax, log_softmax); P is (4,) for the xx terms


def _softmax(r):
    return sps.softmax(r)


def _lse_grad(r):
    """d logsumexp / dx: the stable softmax where logsumexp is finite; torch's exp(x - lse) where it
    is +-inf ([inf, 0, 0, 0] gives [nan, 0, 0, 0]; scipy's softmax would be NaN throughout)."""
    lse = sps.logsumexp(r)
    return sps.softmax(r) if np.isfinite(lse) else np.exp(r - lse)


def _reductions() -> list[Reduction]:
    w = WEIGHTS
    out = [
        Reduction("sum", "samples", lambda x, xx, p, P, v: v[0] * gc.sum(x + p),
                  lambda x, xx: np.sum(x), lambda x, xx: float(len(x))),
        Reduction("mean", "samples", lambda x, xx, p, P, v: v[0] * gc.mean(x + p),
                  lambda x, xx: np.sum(x) / len(x), lambda x, xx: 1.0),
        Reduction("mean_axis0", "samples", lambda x, xx, p, P, v: v[0] * gc.sum(gc.mean(xx + P, axis=0) * w),
                  lambda x, xx: np.sum(w * (np.sum(xx, axis=0) / len(xx))), lambda x, xx: w),
        Reduction("sum_axis1", "samples", lambda x, xx, p, P, v: v[0] * gc.sum(gc.sum(xx + P, axis=1) * x),
                  lambda x, xx: np.sum(np.sum(xx, axis=1) * x), lambda x, xx: np.full(ROW, np.sum(x))),
        Reduction("mean_axis1", "samples", lambda x, xx, p, P, v: v[0] * gc.sum(gc.mean(xx + P, axis=1)),
                  lambda x, xx: np.sum(np.sum(xx, axis=1) / ROW), lambda x, xx: np.full(ROW, len(xx) / ROW)),
    ]
    lse, sm, lsm = (_lookup(n) for n in ROW_OPS)
    if lse is not None:
        out.append(Reduction("logsumexp", "row", lambda x, xx, p, P, v: v[0] * gc.sum(lse(xx + P, axis=1)),
                             lambda x, xx: sps.logsumexp(xx[0]), lambda x, xx: _lse_grad(xx[0])))
    if sm is not None:
        out.append(Reduction(
            "softmax", "row",
            lambda x, xx, p, P, v: functools.reduce(operator.add, [
                v[j] * gc.sum(sm(xx + P, axis=1)[:, j]) for j in range(ROW)]),
            lambda x, xx: _softmax(xx[0]),
            lambda x, xx: _softmax(xx[0]) * (w - np.sum(_softmax(xx[0]) * w)), vector=True))
    if lsm is not None:
        out.append(Reduction(
            "log_softmax", "row",
            lambda x, xx, p, P, v: functools.reduce(operator.add, [
                v[j] * gc.sum(lsm(xx + P, axis=1)[:, j]) for j in range(ROW)]),
            lambda x, xx: sps.log_softmax(xx[0]),
            lambda x, xx: w - _lse_grad(xx[0]) * np.sum(w), vector=True))
    return out


@dataclass
class ReductionRun:
    outcomes: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    inputs: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    raised: dict[tuple[str, str], str] = field(default_factory=dict)  # a call that raised, per term
    broken: dict[str, str] = field(default_factory=dict)
    present: list[str] = field(default_factory=list)


def run_reductions(target: str, dtype: str, over: str, long: bool = True, row_ops: bool = True) -> ReductionRun:
    """One compile for the terms that reduce ``over`` "samples" (x, and xx's columns, hold the
    patterns) or one "row" (one sample; xx holds the pattern); one call per pattern.
    ``row_ops=False`` leaves out logsumexp / softmax / log_softmax (slow to compile)."""
    x, xx = gc.data("x"), gc.data("xx", shape=(None, ROW))
    terms, layout, run = [], {}, ReductionRun()
    for red in _reductions():
        if red.over != over or (red.name in ROW_OPS and not row_ops):
            continue
        n_v = ROW if red.vector else 1
        v = [gc.param(f"v{j}_{red.name}") for j in range(n_v)]
        p, P = gc.param(f"p_{red.name}"), gc.param(f"P_{red.name}", shape=(ROW,))
        try:
            term = red.build(x, xx, p, P, v)
        except Exception as err:
            run.broken[red.name] = f"{type(err).__name__}: {err}"
            continue
        terms.append(term)
        layout[red.name] = (red, [t.name for t in v], p.name if red.name in ("sum", "mean") else P.name)
        run.present.append(red.name)
    if not terms:
        return run
    loss = functools.reduce(operator.add, terms)
    ctx = small_cuda_launches() if target == "cuda" else _nothing()
    with ctx:
        f = compile_quiet(loss, target=target, dtype=dtype)
        params = {}
        for red, vnames, pname in layout.values():
            params.update({vn: (float(WEIGHTS[j]) if red.vector else 1.0) for j, vn in enumerate(vnames)})
            params[pname] = -0.0 if pname.startswith("p_") else np.full(ROW, -0.0)
        uses = {"x": over == "samples", "xx": any(r.name not in ("sum", "mean") for r, _, _ in layout.values())}
        if over == "samples":
            names = list(SAMPLE_PATTERNS) + (list(LONG_PATTERNS) if long else [])
            inputs = {n: (sample_pattern(n, dtype), columns(sample_pattern(n, dtype))) for n in names}
        else:
            inputs = {n: (np.ones(1, dtype=dtype), row_pattern(n, dtype)[None, :]) for n in ROW_PATTERNS}
        for name, (xs, xxs) in inputs.items():
            data = {k: v for k, v in (("x", xs), ("xx", xxs)) if uses[k]}
            try:
                r = f({**data, **params})
            except Exception as err:  # never expected: NaN/inf are values, not exceptions
                for red, _, _ in layout.values():
                    run.raised[(red.name, name)] = f"{type(err).__name__}: {err}"
                continue
            _collect(run, layout, r, name, xs, xxs)
    return run


def _collect(run: ReductionRun, layout: dict, r: Any, pattern: str, xs, xx) -> None:
    for red, vnames, pname in layout.values():
        value = np.array([r.grads[vn] for vn in vnames])
        run.outcomes[(red.name, pattern)] = (value, np.atleast_1d(np.asarray(r.grads[pname], dtype=np.float64)))
        run.inputs[(red.name, pattern)] = (xs.astype(np.float64), xx.astype(np.float64))


def reduction_reference(red: Reduction, xs: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values and gradients in float64 from the (dtype-rounded) inputs; float32 modules sum
    over samples in float64 too (docs/guarantees.md)."""
    with np.errstate(all="ignore"):
        return (np.atleast_1d(np.asarray(red.value(xs, xx), dtype=np.float64)),
                np.atleast_1d(np.asarray(red.grad(xs, xx), dtype=np.float64)))


def reduction_tolerance(xs: np.ndarray, xx: np.ndarray, want: np.ndarray, dtype: str) -> np.ndarray:
    """Rounding of sums: relative to the magnitudes added (and to the row's largest entry)."""
    finite = lambda a: np.abs(a[np.isfinite(a)])  # noqa: E731
    mags = max(np.sum(finite(xs)), np.sum(finite(xx)), 1.0)
    with np.errstate(invalid="ignore"):
        return 16 * float(np.finfo(dtype).eps) * (mags + np.nan_to_num(np.abs(want), posinf=0.0)) + 1e-300


# ---- random expression trees (tests/strategies.py) evaluated as written ----------------------
def _np_ops() -> dict[str, Callable[..., Any]]:
    return {
        "neg": lambda e: -e, "sin": np.sin, "cos": np.cos, "tanh": np.tanh,
        "sigmoid": lambda e: 1 / (1 + np.exp(-e)), "exp_tanh": lambda e: np.exp(np.tanh(e)),
        "log1sq": lambda e: np.log(1 + e * e), "sqrt1sq": lambda e: np.sqrt(1 + e * e),
        "square": lambda e: e**2, "cube": lambda e: e**3, "add": lambda p, q: p + q,
        "sub": lambda p, q: p - q, "mul": lambda p, q: p * q, "div1sq": lambda p, q: p / (1 + q * q),
        "pow1sq": lambda p, q: (1 + p * p) ** np.tanh(q), "abs": np.abs, "relu": lambda e: np.maximum(e, 0.0),
        "maximum": np.maximum, "minimum": np.minimum, "where": lambda c, p, q: np.where(c > 0, p, q),
    }


def _torch_ops() -> dict[str, Callable[..., Any]]:
    t = torch
    T = lambda v: v if isinstance(v, t.Tensor) else t.tensor(float(v), dtype=t.float64)  # noqa: E731
    return {
        "neg": lambda e: -e, "sin": lambda e: t.sin(T(e)), "cos": lambda e: t.cos(T(e)),
        "tanh": lambda e: t.tanh(T(e)), "sigmoid": lambda e: 1 / (1 + t.exp(-T(e))),
        "exp_tanh": lambda e: t.exp(t.tanh(T(e))), "log1sq": lambda e: t.log(1 + T(e) * e),
        "sqrt1sq": lambda e: t.sqrt(1 + T(e) * e), "square": lambda e: T(e) ** 2, "cube": lambda e: T(e) ** 3,
        "add": lambda p, q: T(p) + q, "sub": lambda p, q: T(p) - q, "mul": lambda p, q: T(p) * q,
        "div1sq": lambda p, q: T(p) / (1 + T(q) * q), "pow1sq": lambda p, q: (1 + T(p) * p) ** t.tanh(T(q)),
        "abs": lambda e: t.abs(T(e)), "relu": lambda e: t.relu(T(e)),
        "maximum": lambda p, q: t.maximum(T(p), T(q)), "minimum": lambda p, q: t.minimum(T(p), T(q)),
        "where": lambda c, p, q: t.where(T(c) > 0, T(p), T(q)),
    }


def _eval_tree(tree: tuple, env: dict, ops: dict) -> Any:
    op = tree[0]
    if op == "const":
        return tree[1]
    if len(tree) == 1:
        if op == "w0":
            return env["w"][0]
        if op == "dot":
            return env["xx"] @ env["w"]
        return env[op]
    return ops[op](*[_eval_tree(t, env, ops) for t in tree[1:]])


def _loss(form: str, es: list, lib: Any) -> Any:
    if form == "sum":
        return lib.sum(es[0])
    if form == "mean":
        return lib.mean(es[0])
    if form == "sumsq":
        return lib.sum(es[0] * es[0])
    return lib.sum((es[0] - lib.mean(es[1])) ** 2)


def tree_loss(case: Any, bindings: dict) -> float:
    """numpy, the tree as written (tests/strategies.py's to_graph, op by op), in float64."""
    env = {k: np.asarray(v, dtype=np.float64) for k, v in bindings.items()}
    with np.errstate(all="ignore"):
        es = [np.asarray(_eval_tree(t, env, _np_ops()), dtype=np.float64) for t in case.exprs]
        return float(_loss(case.form, es, np))


def tree_grads_torch(case: Any, bindings: dict) -> dict[str, Any]:
    """d(loss)/d(param) by torch autograd, float64."""
    if not case.params:
        return {}
    env = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=k in case.params)
           for k, v in bindings.items()}
    es = [_eval_tree(t, env, _torch_ops()) for t in case.exprs]
    es = [e if isinstance(e, torch.Tensor) else torch.tensor(float(e), dtype=torch.float64) for e in es]
    loss = _loss(case.form, es, torch)
    if loss.requires_grad:  # not when the parameters only reach where-conditions
        loss.backward()
    grads = {p: torch.zeros_like(env[p]) if env[p].grad is None else env[p].grad for p in case.params}  # where-only
    return {p: (float(g) if g.ndim == 0 else g.numpy().copy()) for p, g in grads.items()}


def tree_grads_fd(case: Any, bindings: dict) -> dict[str, Any]:
    """Central differences of ``tree_loss``, one parameter coordinate at a time (float64)."""
    out = {}
    for p in case.params:
        base = np.atleast_1d(np.asarray(bindings[p], dtype=np.float64))
        g = np.empty_like(base)
        for i in range(base.size):
            h = 1e-6 * max(1.0, abs(base[i]))
            vals = []
            for sign in (1.0, -1.0):
                moved = base.copy()
                moved[i] += sign * h
                vals.append(tree_loss(case, {**bindings, p: moved if np.ndim(bindings[p]) else float(moved[0])}))
            g[i] = (vals[0] - vals[1]) / (2 * h)
        out[p] = g if np.ndim(bindings[p]) else float(g[0])
    return out


TREE_EDGES = [0.0, -0.0, 5e-324, 1e300, -1e300, inf, -inf, nan, 1.5, -0.5]


def tree_edge_points(case: Any, bindings: dict) -> list[dict]:
    """One-sample bindings: x and z over TREE_EDGES (xx ordinary), the parameters as given."""
    params = {p: bindings[p] for p in case.params}
    xs = TREE_EDGES if "x" in case.used else [0.5]
    zs = TREE_EDGES if "z" in case.used else [0.5]
    out = []
    for x in xs:
        for z in zs:
            point = dict(params)
            if "x" in case.used:
                point["x"] = np.array([x])
            if "z" in case.used:
                point["z"] = np.array([z])
            if "xx" in case.used:
                point["xx"] = np.array([[0.3, -0.7]])
            out.append(point)
    return out


def value_class(v: float) -> str:
    return "nan" if math.isnan(v) else ("+inf" if v == inf else "-inf" if v == -inf else "finite")


# ---- known bugs: each one an xfail(strict=True) case of its own ----------------------------
@dataclass(frozen=True)
class Bug:
    """graphc differs from the reference here: op at args, for check 'value' | 'grad<k>' | 'torch<k>'."""

    op: str
    args: tuple
    check: str
    reason: str
    targets: tuple = ("cpu", "parallel", "cuda")
    dtypes: tuple = DTYPES
    simulator_only: bool = False  # cuda: only in Numba's CUDA simulator (a GPU is fine)

    def matches(self, op: str, check: str, target: str, dtype: str) -> bool:
        return (op == self.op and check == self.check and target in self.targets and dtype in self.dtypes
                and (not self.simulator_only or simulated()))

    def point_key(self, dtype: str) -> tuple[str, ...]:
        return key(np.array(self.args, dtype=dtype))


def simulated() -> bool:
    from numba import config

    return bool(config.ENABLE_CUDASIM)


# Empty: fixed so far. (The CUDA simulator's ZeroDivisionError on a row of -inf, where
# math.exp gave Python floats, was one: cuda_runtime.IEEE_MATH returns numpy scalars.)
KNOWN_BUGS: list[Bug] = []


def known_mask(op: str, check: str, target: str, dtype: str, points: np.ndarray) -> np.ndarray:
    """Points whose result is a known bug (tested on their own, as strict xfails)."""
    keys = {b.point_key(dtype) for b in KNOWN_BUGS if b.matches(op, check, target, dtype)}
    if not keys:
        return np.zeros(len(points), dtype=bool)
    return np.array([key(p) in keys for p in points])


