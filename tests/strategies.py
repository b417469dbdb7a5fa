"""Random expression graphs for property tests, with an independent SymPy reference.

An expression is a small tuple tree, ``("mul", ("x",), ("sin", ("a",)))``. ``to_graph`` builds
it with the public graphc ops; ``to_sympy`` builds the same maths with SymPy directly (never
through graphc's op registry), so the reference shares no code with the compiler. Trees only
use domain-safe forms (``log(1 + e*e)``, ``e1 / (1 + e2*e2)``, ...); kinked ops (abs, relu,
maximum, minimum, where) record where their derivative jumps, and ``Case`` drops the samples
that lie near a kink, so central differences never straddle one.

Hypothesis profiles: ``ci`` (derandomized, few examples: each one compiles a kernel) is the
default; ``GRAPHC_FUZZ=1`` selects ``fuzz`` (random, many more examples), as ``make fuzz`` does.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from hypothesis import HealthCheck, Phase, assume, settings
from hypothesis import strategies as st

os.environ.setdefault("GRAPHC_CACHE_DIR", tempfile.mkdtemp(prefix="graphc-test-cache-"))

import graphc as gc  # noqa: E402

from .gradcheck import directional_derivatives  # noqa: E402

# ---- hypothesis profiles ------------------------------------------------------------------
_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.filter_too_much])
settings.register_profile("graphc-ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("graphc-fuzz", derandomize=False, report_multiple_bugs=False,  # no shrinking:
                          phases=[Phase.explicit, Phase.reuse, Phase.generate], **_COMMON)  # each step compiles
FUZZ = os.environ.get("GRAPHC_FUZZ", "") not in ("", "0")
PROFILE = settings.get_profile("graphc-fuzz" if FUZZ else "graphc-ci")


def examples(ci: int, fuzz: int) -> settings:
    """Settings for one property: ``ci`` examples in CI, ``fuzz`` under GRAPHC_FUZZ=1."""
    return settings(PROFILE, max_examples=fuzz if FUZZ else ci)


# ---- the expression language ----------------------------------------------------------------
UNARY = ("neg", "sin", "cos", "tanh", "sigmoid", "exp_tanh", "log1sq", "sqrt1sq", "square", "cube")
BINARY = ("add", "sub", "mul", "div1sq", "pow1sq")
KINKED_UNARY = ("abs", "relu")
KINKED_BINARY = ("maximum", "minimum")
LEAVES = ("x", "z", "a", "b", "c", "w0", "dot")
DATA = {"x": (None,), "z": (None,), "xx": (None, 2)}
PARAMS = {"a": (), "b": (), "c": (), "w": (2,)}
LEAF_USES = {"x": {"x"}, "z": {"z"}, "a": {"a"}, "b": {"b"}, "c": {"c"}, "w0": {"w"}, "dot": {"xx", "w"}}


def trees(kinked: bool = True, max_leaves: int = 8) -> st.SearchStrategy:
    consts = st.integers(-8, 8).map(lambda k: ("const", k / 4))
    named = st.sampled_from(LEAVES).map(lambda s: (s,))
    leaves = st.one_of(named, named, named, consts)  # mostly inputs and params
    unary, binary = UNARY + (KINKED_UNARY if kinked else ()), BINARY + (KINKED_BINARY if kinked else ())

    def extend(children: st.SearchStrategy) -> st.SearchStrategy:
        parts = [st.tuples(st.sampled_from(unary), children),
                 st.tuples(st.sampled_from(binary), children, children)]
        if kinked:
            parts.append(st.tuples(st.just("where"), children, children, children))
        return st.one_of(*parts)

    return st.recursive(leaves, extend, max_leaves=max_leaves)


FORMS = ("sum", "mean", "sumsq", "center")  # center: sum((e1 - mean(e2))**2), two passes


@st.composite
def cases(draw: st.DrawFn, kinked: bool = True, max_leaves: int = 8) -> "Case":
    form = draw(st.sampled_from(FORMS))
    exprs = [draw(trees(kinked, max_leaves)) for _ in range(2 if form == "center" else 1)]
    if not uses(exprs[0]) & set(DATA):  # keep a pass over the samples
        exprs[0] = ("add", exprs[0], ("x",))
    if not set().union(*map(uses, exprs)) & set(PARAMS):  # and something to differentiate
        exprs[0] = ("mul", exprs[0], ("a",))
    return Case(form, tuple(exprs), draw(st.integers(0, 2**32 - 1)))


def uses(tree: tuple) -> set[str]:
    if tree[0] == "const":
        return set()
    if len(tree) == 1:
        return set(LEAF_USES[tree[0]])
    return set().union(*(uses(t) for t in tree[1:]))


# ---- graphc -----------------------------------------------------------------------------
def to_graph(tree: tuple, env: dict) -> gc.Node:
    op, args = tree[0], [to_graph(t, env) for t in tree[1:]] if tree[0] != "const" else []
    if op == "const":
        return gc.constant(tree[1])
    if len(tree) == 1:
        return {"w0": lambda: env["w"][0], "dot": lambda: env["xx"] @ env["w"]}.get(op, lambda: env[op])()
    return _GC[op](*args)


_GC = {  # gc.<op> looked up at build time, so a test may swap one for a broken op
    "neg": lambda e: -e, "sin": lambda e: gc.sin(e), "cos": lambda e: gc.cos(e),
    "tanh": lambda e: gc.tanh(e), "sigmoid": lambda e: gc.sigmoid(e),
    "exp_tanh": lambda e: gc.exp(gc.tanh(e)), "log1sq": lambda e: gc.log(1 + e * e),
    "sqrt1sq": lambda e: gc.sqrt(1 + e * e), "square": lambda e: e**2, "cube": lambda e: e**3,
    "add": lambda p, q: p + q, "sub": lambda p, q: p - q, "mul": lambda p, q: p * q,
    "div1sq": lambda p, q: p / (1 + q * q), "pow1sq": lambda p, q: (1 + p * p) ** gc.tanh(q),
    "abs": lambda e: gc.abs(e), "relu": lambda e: gc.relu(e),
    "maximum": lambda p, q: gc.maximum(p, q), "minimum": lambda p, q: gc.minimum(p, q),
    "where": lambda c, p, q: gc.where(c > 0, p, q),
}


def loss_graph(form: str, exprs: list[gc.Node]) -> gc.Node:
    e = exprs[0]
    if form == "sum":
        return gc.sum(e)
    if form == "mean":
        return gc.mean(e)
    if form == "sumsq":
        return gc.sum(e * e)
    return gc.sum((e - gc.mean(exprs[1])) ** 2)


# ---- the SymPy reference (independent of graphc's registry) -------------------------------
SYMBOLS = {name: sp.Symbol(name, real=True) for name in ("x", "z", "xx0", "xx1", "a", "b", "c", "w0", "w1")}
PARAM_SYMBOLS = {"a": ["a"], "b": ["b"], "c": ["c"], "w": ["w0", "w1"]}


def to_sympy(tree: tuple, kinks: list) -> sp.Expr:
    """The SymPy form of ``tree``; appends to ``kinks`` each expression whose sign may not flip."""
    s = SYMBOLS
    op = tree[0]
    if op == "const":
        return sp.Rational(tree[1]).limit_denominator(4)
    if len(tree) == 1:
        return {"w0": s["w0"], "dot": s["xx0"] * s["w0"] + s["xx1"] * s["w1"]}.get(op, s.get(op))
    args = [to_sympy(t, kinks) for t in tree[1:]]
    if op in ("abs", "relu"):
        kinks.append(args[0])
    elif op in ("maximum", "minimum"):
        kinks.append(args[0] - args[1])
    elif op == "where":
        kinks.append(args[0])
    return _SP[op](*args)


_SP = {
    "neg": lambda e: -e, "sin": sp.sin, "cos": sp.cos, "tanh": sp.tanh,
    "sigmoid": lambda e: 1 / (1 + sp.exp(-e)), "exp_tanh": lambda e: sp.exp(sp.tanh(e)),
    "log1sq": lambda e: sp.log(1 + e**2), "sqrt1sq": lambda e: sp.sqrt(1 + e**2),
    "square": lambda e: e**2, "cube": lambda e: e**3, "add": lambda p, q: p + q,
    "sub": lambda p, q: p - q, "mul": lambda p, q: p * q, "div1sq": lambda p, q: p / (1 + q**2),
    "pow1sq": lambda p, q: (1 + p**2) ** sp.tanh(q), "abs": sp.Abs, "relu": lambda e: sp.Max(e, 0),
    "maximum": sp.Max, "minimum": sp.Min, "where": lambda c, p, q: sp.Piecewise((p, c > 0), (q, True)),
}


@dataclass
class Reference:
    """Loss, gradient and their error scales, computed in numpy from SymPy expressions."""

    loss: float
    loss_scale: float  # what float rounding errors of the loss are relative to
    grads: dict[str, np.ndarray]
    grad_scales: dict[str, np.ndarray]


@dataclass
class Case:
    """One random loss: its form, its expression trees and the seed of its data."""

    form: str
    exprs: tuple
    seed: int
    used: set = field(init=False)

    def __post_init__(self) -> None:
        self.used = set().union(*(uses(t) for t in self.exprs))

    def __repr__(self) -> str:
        return f"Case(form={self.form!r}, exprs={self.exprs!r}, seed={self.seed})"

    @property
    def params(self) -> list[str]:
        return [p for p in PARAMS if p in self.used]

    def graph(self) -> gc.Node:
        env = {k: gc.data(k, shape=s) for k, s in DATA.items()}
        env |= {k: gc.param(k, shape=s) for k, s in PARAMS.items()}
        return loss_graph(self.form, [to_graph(t, env) for t in self.exprs])

    def bindings(self, n: int, margin: float = 1e-3) -> dict:
        """Data and parameters; samples within ``margin`` of a kink are left out."""
        rng = np.random.default_rng(self.seed)
        values = {k: rng.uniform(-1.5, 1.5, size=(n,) + s[1:]) for k, s in DATA.items()}
        values |= {k: rng.uniform(-1.5, 1.5, size=s) for k, s in PARAMS.items()}
        kinks: list = []
        for t in self.exprs:
            to_sympy(t, kinks)
        keep = np.ones(n, dtype=bool)
        params = {s for p in PARAM_SYMBOLS.values() for s in p}
        for k in kinks:  # a kink that no parameter moves cannot be straddled
            if {str(s) for s in k.free_symbols} & params:
                keep &= np.abs(self._per_sample(k, values)) >= margin
        if keep.sum() < max(4, n // 4):
            assume(False)  # too close to kinks everywhere: draw another case
        out = {k: values[k][keep] for k in DATA if k in self.used}
        out |= {k: (float(values[k]) if not PARAMS[k] else values[k]) for k in self.params}
        return out

    def _per_sample(self, expr: sp.Expr, values: dict) -> np.ndarray:
        args = _flat_args(values)
        f = sp.lambdify(list(SYMBOLS.values()), expr, modules=MODULES)
        n = len(values["x"])
        return np.broadcast_to(np.asarray(f(*[np.broadcast_to(args[k], (n,)) for k in SYMBOLS]), dtype=float), (n,))

    def reference(self, bindings: dict) -> Reference:
        """Forward value and gradients from SymPy (``sympy.diff`` of the whole expression)."""
        exprs = [to_sympy(t, []) for t in self.exprs]
        args = _flat_args(bindings)
        n = len(next(bindings[k] for k in DATA if k in bindings))
        plist = [s for p in self.params for s in PARAM_SYMBOLS[p]]

        def ev(expr: sp.Expr) -> np.ndarray:
            f = sp.lambdify(list(SYMBOLS.values()), expr, modules=MODULES)
            vals = [np.broadcast_to(args.get(k, 0.0), (n,)) for k in SYMBOLS]  # all arrays: lambdify's
            return np.broadcast_to(np.asarray(f(*vals), dtype=float), (n,))  # logical_and.reduce needs it

        e = [ev(x) for x in exprs]
        de = [{p: ev(sp.diff(x, SYMBOLS[p])) for p in plist} for x in exprs]
        loss, scale, grads, gscale = _combine(self.form, e, de, plist)
        return Reference(loss, scale, _group(grads, self.params), _group(gscale, self.params))


def _select(condlist, choicelist, default=np.nan):
    """numpy.select that accepts scalars among the conditions and choices (lambdify's Piecewise)."""
    arrays = np.broadcast_arrays(*[np.asarray(v) for v in [*condlist, *choicelist, default]])
    k = len(condlist)
    return np.select([c.astype(bool) for c in arrays[:k]], arrays[k:2 * k], arrays[-1])


MODULES = [{"select": _select}, "numpy"]


def _flat_args(values: dict) -> dict:
    args = {k: v for k, v in values.items() if k in ("x", "z", "a", "b", "c")}
    if "xx" in values:
        args["xx0"], args["xx1"] = values["xx"][:, 0], values["xx"][:, 1]
    if "w" in values:
        args["w0"], args["w1"] = values["w"][0], values["w"][1]
    return args


def _combine(form: str, e: list, de: list, plist: list) -> tuple:
    """Loss and gradients of ``form`` from per-sample values and derivatives, with error scales."""
    n = len(e[0])
    if form in ("sum", "mean"):
        k = 1.0 if form == "sum" else 1.0 / n
        return (k * np.sum(e[0]), k * np.sum(np.abs(e[0])),
                {p: k * np.sum(de[0][p]) for p in plist}, {p: k * np.sum(np.abs(de[0][p])) for p in plist})
    if form == "sumsq":
        return (np.sum(e[0] ** 2), np.sum(e[0] ** 2),
                {p: np.sum(2 * e[0] * de[0][p]) for p in plist},
                {p: np.sum(np.abs(2 * e[0] * de[0][p])) for p in plist})
    m = np.mean(e[1])
    r = e[0] - m
    dm = {p: np.mean(de[1][p]) for p in plist}
    return (np.sum(r**2), np.sum((np.abs(e[0]) + np.mean(np.abs(e[1]))) ** 2),
            {p: np.sum(2 * r * (de[0][p] - dm[p])) for p in plist},
            {p: np.sum(2 * (np.abs(e[0]) + np.mean(np.abs(e[1])))
                       * (np.abs(de[0][p]) + np.mean(np.abs(de[1][p])))) for p in plist})


def _group(flat: dict, params: list) -> dict:
    out = {}
    for p in params:
        vals = [flat[s] for s in PARAM_SYMBOLS[p]]
        out[p] = float(vals[0]) if not PARAMS[p] else np.array(vals, dtype=float)
    return out


# ---- checks shared by the property tests --------------------------------------------------
def assert_close(got, want, scale, rtol: float, what: str, atol: float = 0.0) -> None:
    """|got - want| <= rtol * scale + atol elementwise (scale: the sum of magnitudes added).

    ``atol`` covers terms SymPy cancels exactly (``sin(e) - sin(e)``): the scale is then 0,
    but compiled code adds the rounding of intermediate values of order 1.
    """
    got, want, scale = (np.asarray(v, dtype=float) for v in (got, want, scale))
    err = np.abs(got - want)
    bound = rtol * (scale + np.abs(want)) + atol + 1e-300
    assert np.all(err <= bound), f"{what}: got {got}, want {want}, error {err} > {bound}"


def n_samples(bindings: dict) -> int:
    return max(len(bindings[k]) for k in DATA if k in bindings)


def directional_check(f, bindings: dict, wrt: list[str], loss_scale: float, rtol: float = 1e-6,
                      seed: int = 0) -> tuple[float, float]:
    """(L(p + eps v) - L(p - eps v)) / 2 eps == <grad L(p), v> for a random direction v (STYLE.md)."""
    numeric, analytic, _, eps = directional_derivatives(f, bindings, wrt, seed)
    n = n_samples(bindings)
    roundoff = 1e-15 * (loss_scale + 1e-3 * n) / eps  # a few ulps of the loss, divided by the step
    bound = rtol * max(abs(numeric), abs(analytic)) + 10 * roundoff
    assert abs(numeric - analytic) <= bound, f"directional derivative: numeric {numeric} vs analytic {analytic}"
    return numeric, analytic
