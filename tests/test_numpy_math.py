"""numpy's math functions (issue #16) at the edges of floating point, cpu, float64 and float32.

Values against numpy (math.erf/erfc for erf/erfc) in the dtype under test; gradients at the
points where a convention decides them, against torch's backward formulas. Few compiles: one
function per dtype holds every unary op, ``loss = sum_k v_k * sum(op_k(x + p_k))``; at
``v_k = 1``, ``p_k = -0.0`` and one sample x, d(loss)/d(v_k) is op_k(x) and d(loss)/d(p_k)
is op_k'(x) (``x + -0.0`` is x for every x). A second function holds the ops of two and three
arguments the same way, a third softmax, log_softmax and logsumexp.
"""

import math
import warnings

import numpy as np
import pytest
import scipy.special as sps

import graphc as gc

inf, nan = math.inf, math.nan
DTYPES = ("float64", "float32")


def _vec(fn):
    return lambda x: np.vectorize(fn, otypes=[np.float64])(np.asarray(x, dtype=np.float64))


UNARY = {  # name: numpy's value
    "arctan": np.arctan, "arcsin": np.arcsin, "arccos": np.arccos, "sinh": np.sinh, "cosh": np.cosh,
    "arcsinh": np.arcsinh, "arccosh": np.arccosh, "arctanh": np.arctanh, "log1p": np.log1p,
    "expm1": np.expm1, "log2": np.log2, "log10": np.log10, "exp2": np.exp2, "erf": _vec(math.erf),
    "erfc": _vec(math.erfc), "square": np.square, "sign": np.sign, "floor": np.floor, "ceil": np.ceil,
    "round": np.round,
}
MULTI = {"arctan2": np.arctan2, "hypot": np.hypot, "logaddexp": np.logaddexp, "clip": np.clip}


def unary_points(dtype):
    fi = np.finfo(dtype)
    big = [700.0, 710.0, 1024.0, 1075.0] if dtype == "float64" else [88.0, 89.0, 128.0, 150.0]
    mags = [0.0, float(fi.smallest_subnormal), float(fi.tiny) / 8, 1e-8, 0.25, 0.5, 0.75, 0.999, 1.0,
            1.001, 1.5, 2.0, 2.5, 3.5, 7.3, 20.0, 30.0, *big, 1e30, float(fi.max), inf]
    return np.array([m for v in mags for m in (v, -v)] + [nan], dtype=dtype)


def binary_points(dtype):
    huge = 1e300 if dtype == "float64" else 1e30
    v = np.array([0.0, -0.0, float(np.finfo(dtype).smallest_subnormal), 0.5, -1.0, 2.5, huge, -huge, inf,
                  -inf, nan], dtype=dtype)
    a, b = np.meshgrid(v, v, indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1)


CLIP_BOUNDS = [(0.0, 1.0), (1.0, 0.0), (-inf, inf), (nan, 1.0), (0.0, nan), (0.5, 0.5), (-0.0, 0.0)]


def clip_points(dtype):
    xs = [0.0, -0.0, 0.5, 1.0, -2.5, 3.0, inf, -inf, nan]
    return np.array([(x, lo, hi) for x in xs for lo, hi in CLIP_BOUNDS], dtype=dtype)


def group(names, nargs):
    """loss = sum_k v_k * sum(op_k(x0 + p0_k, ...)); returns it and {op: (v, [p...])}."""
    xs = [gc.data(f"x{j}") for j in range(nargs)]
    terms, layout = [], {}
    for name in names:
        n = 3 if name == "clip" else (2 if name in MULTI else 1)
        v = gc.param(f"v_{name}")
        ps = [gc.param(f"p{j}_{name}") for j in range(n)]
        terms.append(v * gc.sum(getattr(gc, name)(*[x + p for x, p in zip(xs, ps)])))
        layout[name] = (v.name, [p.name for p in ps])
    loss = terms[0]
    for t in terms[1:]:
        loss = loss + t
    return loss, layout


class Group:
    """One compiled group: ``at(point)`` -> {op: (value, [partials])} at one sample."""

    def __init__(self, names, nargs, dtype):
        loss, self.layout = group(names, nargs)
        with warnings.catch_warnings():  # sign, floor, ceil, round: their p_k get no gradient
            warnings.simplefilter("ignore", UserWarning)
            self.f = gc.compile(loss, dtype=dtype)
        self.dtype, self.nargs = dtype, nargs
        self.params = {}
        for v, ps in self.layout.values():
            self.params[v] = 1.0
            self.params.update({p: -0.0 for p in ps})

    def at(self, point):
        with np.errstate(over="ignore"):  # 1e300 as float32 is inf, on purpose
            point = np.atleast_1d(np.asarray(point, dtype=self.dtype))
        data = {f"x{j}": point[j:j + 1] if j < len(point) else np.ones(1, self.dtype) for j in range(self.nargs)}
        r = self.f({**data, **self.params})
        return {name: (r.grads[v], [r.grads[p] for p in ps]) for name, (v, ps) in self.layout.items()}


@pytest.fixture(scope="module", params=DTYPES)
def unary(request):
    return Group(list(UNARY), 1, request.param)


@pytest.fixture(scope="module", params=DTYPES)
def multi(request):
    return Group(list(MULTI), 3, request.param)


def close(got, want, dtype, ulps=4, rel=0.0):
    """NaN meets NaN, an inf the same inf, finite values within ``ulps`` of the dtype (or ``rel``)."""
    got, want = float(got), float(want)
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    if math.isinf(want) or math.isinf(got):
        return got == want
    w = np.abs(np.asarray(want, dtype=dtype))
    spacing = float(w - np.nextafter(w, np.zeros_like(w)))  # below |want|: finite at the largest float
    tiny = float(np.finfo(dtype).smallest_subnormal)
    return abs(got - want) <= max(ulps * max(spacing, tiny), rel * abs(want))


def reference(fn, args, dtype):
    with np.errstate(all="ignore"):
        return np.asarray(fn(*[np.asarray(a, dtype=dtype) for a in args])).astype(dtype)


# ---- values: numpy's -----------------------------------------------------------------------
def test_unary_values_are_numpys(unary):
    bad = []
    for x in unary_points(unary.dtype):
        got = unary.at(x)
        for name, fn in UNARY.items():
            want = reference(fn, [x], unary.dtype)
            if not close(got[name][0], want, unary.dtype):
                bad.append(f"{name}({x!r}) = {got[name][0]!r}, numpy {float(want)!r}")
    assert not bad, f"{unary.dtype}:\n" + "\n".join(bad)


def test_binary_and_clip_values_are_numpys(multi):
    bad = []
    for a, b in binary_points(multi.dtype):
        got = multi.at([a, b])
        for name in ("arctan2", "hypot", "logaddexp"):
            want = reference(MULTI[name], [a, b], multi.dtype)
            if not close(got[name][0], want, multi.dtype):
                bad.append(f"{name}({a!r}, {b!r}) = {got[name][0]!r}, numpy {float(want)!r}")
    for x, lo, hi in clip_points(multi.dtype):
        got = multi.at([x, lo, hi])["clip"][0]
        want = reference(np.clip, [x, lo, hi], multi.dtype)
        if not close(got, want, multi.dtype, ulps=0):
            bad.append(f"clip({x!r}, {lo!r}, {hi!r}) = {got!r}, numpy {float(want)!r}")
    assert not bad, f"{multi.dtype}:\n" + "\n".join(bad)


@pytest.mark.parametrize("name, x, want", [
    ("arcsin", 2.0, nan), ("arccosh", 1.0, 0.0), ("arctanh", 1.0, inf), ("arctanh", -1.0, -inf),
    ("log2", 0.0, -inf), ("log10", -0.0, -inf), ("log1p", -1.0, -inf), ("exp2", 1024.0, inf),
    ("exp2", -1080.0, 0.0), ("sign", nan, nan), ("sign", -0.0, 0.0), ("round", 2.5, 2.0),
    ("round", 3.5, 4.0), ("round", -0.5, -0.0), ("round", 0.49999999999999994, 0.0), ("floor", -0.5, -1.0),
    ("ceil", -0.5, -0.0), ("erfc", -10.0, 2.0), ("erfc", 10.0, 2.088487583762545e-45),
])
def test_edge_values_named_in_the_issue(unary, name, x, want):
    if unary.dtype == "float32" and abs(x) in (1024.0, 1080.0, 0.49999999999999994) or (name, x) == ("erfc", 10.0):
        want = float(reference(UNARY[name], [x], unary.dtype))  # float32: its own overflow, rounding
    got = unary.at(x)[name][0]
    assert close(got, want, unary.dtype), (name, x, got, want)


# ---- gradients: torch's conventions ---------------------------------------------------------
@pytest.mark.parametrize("name, x, want", [
    ("arcsin", 1.0, inf), ("arcsin", -1.0, inf), ("arccos", 1.0, -inf), ("arcsin", 2.0, nan),
    ("arccosh", 1.0, inf), ("arccosh", 0.5, nan), ("arctanh", 1.0, inf), ("arctanh", -1.0, inf),
    ("arctanh", 2.0, -1 / 3), ("log1p", -1.0, inf), ("log2", 0.0, inf), ("log10", 0.0, inf),
    ("arcsinh", 1e300, 0.0), ("arctan", inf, 0.0), ("expm1", 0.0, 1.0), ("exp2", 1.0, 2 * math.log(2)),
    ("erf", 0.0, 2 / math.sqrt(math.pi)), ("erfc", 30.0, 0.0), ("square", -3.0, -6.0),
    ("sign", nan, 0.0), ("sign", 0.0, 0.0), ("floor", nan, 0.0), ("floor", 2.0, 0.0),
    ("ceil", inf, 0.0), ("round", 2.5, 0.0), ("round", nan, 0.0),
])
def test_unary_gradient_conventions(unary, name, x, want):
    got = unary.at(x)[name][1][0]
    assert close(got, want, unary.dtype), (name, x, got, want)


@pytest.mark.parametrize("name, args, want", [
    ("arctan2", (0.0, 0.0), (0.0, 0.0)),  # torch masks the 0/0 at the origin
    ("arctan2", (-0.0, -0.0), (0.0, 0.0)),
    ("arctan2", (1.0, 1.0), (0.5, -0.5)),
    ("arctan2", (inf, 1.0), (0.0, nan)),  # -inf/inf
    ("hypot", (0.0, 0.0), (nan, nan)),  # a/hypot(a, b): 0/0, as torch
    ("hypot", (3.0, 4.0), (0.6, 0.8)),
    ("logaddexp", (0.0, 0.0), (0.5, 0.5)),
    ("logaddexp", (1000.0, 0.0), (1.0, 0.0)),
    ("logaddexp", (inf, inf), (nan, nan)),  # torch: 1/(1 + exp(inf - inf))
    ("logaddexp", (inf, 1.0), (1.0, 0.0)),
    ("clip", (0.5, 0.0, 1.0), (1.0, 0.0, 0.0)),
    ("clip", (0.0, 0.0, 1.0), (0.5, 0.5, 0.0)),  # a tie with lo splits 0.5/0.5
    ("clip", (1.0, 0.0, 1.0), (0.5, 0.0, 0.5)),  # a tie with hi
    ("clip", (2.0, 0.0, 1.0), (0.0, 0.0, 1.0)),
    ("clip", (0.5, 1.0, 0.0), (0.0, 0.0, 1.0)),  # lo > hi: numpy gives hi
    ("clip", (nan, 0.0, 1.0), (1.0, 1.0, 1.0)),  # NaN passes the gradient on
])
def test_multi_gradient_conventions(multi, name, args, want):
    got = multi.at(list(args))[name][1]
    assert all(close(g, w, multi.dtype) for g, w in zip(got, want)), (name, args, got, want)


def test_gradients_match_central_differences_inside_the_domains(unary):
    """Away from the edges, every unary derivative is the function's slope (float64 only)."""
    if unary.dtype != "float64":
        pytest.skip("central differences need float64")
    inside = {"arcsin": 0.3, "arccos": -0.4, "arccosh": 1.7, "arctanh": 0.6, "log1p": 0.2, "log2": 1.3,
              "log10": 2.2, "erfc": -0.7}
    h = 1e-6
    for name in UNARY:
        if name in ("sign", "floor", "ceil", "round"):
            continue
        x = inside.get(name, 0.8)
        slope = (unary.at(x + h)[name][0] - unary.at(x - h)[name][0]) / (2 * h)
        assert unary.at(x)[name][1][0] == pytest.approx(slope, rel=1e-6), name


# ---- softmax, log_softmax, logsumexp: scipy.special's values ---------------------------------
ROWS = [[1.0, 2.0, 3.0], [1000.0, 1000.0, 1000.0], [-inf, -inf, -inf], [inf, 1.0, 2.0], [nan, 1.0, 2.0],
        [-inf, 0.0, 1.0], [0.0, -1e300, 1e300], [-1000.0, 0.0, 1000.0]]


@pytest.fixture(scope="module")
def softmaxes():
    X = gc.data("X", shape=(None, 3))
    W = {k: gc.param(f"W_{k}", shape=(3,)) for k in ("softmax", "log_softmax")}
    P = {k: gc.param(f"P_{k}", shape=(3,)) for k in ("softmax", "log_softmax", "logsumexp")}
    v = gc.param("v")
    loss = (gc.sum(W["softmax"] * gc.softmax(X + P["softmax"]))
            + gc.sum(W["log_softmax"] * gc.log_softmax(X + P["log_softmax"]))
            + v * gc.sum(gc.logsumexp(X + P["logsumexp"], axis=-1)))
    return gc.compile(loss)


def test_softmax_family_values_are_scipys(softmaxes):
    ones, zeros = np.ones(3), np.full(3, -0.0)
    params = {"W_softmax": ones, "W_log_softmax": ones, "v": 1.0,
              "P_softmax": zeros, "P_log_softmax": zeros, "P_logsumexp": zeros}
    for row in ROWS:
        x = np.array([row])
        with np.errstate(all="ignore"):
            want = {"softmax": sps.softmax(x, axis=-1)[0], "log_softmax": sps.log_softmax(x, axis=-1)[0],
                    "logsumexp": sps.logsumexp(x, axis=-1)[0]}
            want_grad = np.exp(x[0] - want["logsumexp"])  # torch: d logsumexp/dz = exp(z - result)
        r = softmaxes(X=x, **params)
        for k in ("softmax", "log_softmax"):
            got = r.grads[f"W_{k}"]
            assert all(close(g, w, "float64", ulps=8) for g, w in zip(got, want[k])), (k, row, got, want[k])
        assert close(r.grads["v"], want["logsumexp"], "float64"), (row, r.grads["v"], want["logsumexp"])
        got = r.grads["P_logsumexp"]
        # exp(z - result) loses ulps of the result (1000 + log 3): relative 1e-12
        assert all(close(g, w, "float64", rel=1e-12) for g, w in zip(got, want_grad)), (row, got, want_grad)


def test_nn_names_are_the_top_level_functions():
    assert gc.nn.softmax is gc.softmax and gc.nn.log_softmax is gc.log_softmax
    assert gc.nn.logsumexp is gc.logsumexp


def test_aliases_are_the_same_functions():
    for alias, name in [("atan", "arctan"), ("asin", "arcsin"), ("acos", "arccos"), ("atan2", "arctan2"),
                        ("asinh", "arcsinh"), ("acosh", "arccosh"), ("atanh", "arctanh")]:
        assert getattr(gc, alias) is getattr(gc, name)


def test_round_decimals_and_one_sided_clip_follow_numpy():
    x, a = gc.data("x"), gc.param("a")
    xs = np.array([1.2345, -2.675, 1250.0, 0.125, -0.5])
    loss = a * gc.sum(gc.round(x, 2) + gc.round(x, -2) + gc.round(x, 1) + gc.clip(x, None, 0.0) + gc.clip(x, 1.0, None))
    r = gc.compile(loss)(x=xs, a=1.0)
    want = np.sum(np.round(xs, 2) + np.round(xs, -2) + np.round(xs, 1) + np.clip(xs, None, 0.0) + np.clip(xs, 1.0, None))
    assert r.grads["a"] == pytest.approx(want, rel=1e-15)


def test_bad_arguments_are_graphc_errors():
    x = gc.data("x")
    with pytest.raises(gc.GraphcError, match="decimals"):
        gc.round(x, 1.5)
    with pytest.raises(gc.GraphcError, match="clip: give lo, hi or both"):
        gc.clip(x, None, None)
    with pytest.raises(gc.ShapeError, match="hypot"):
        gc.hypot(x, gc.data("X", shape=(None, 3)))
    with pytest.raises(gc.GraphcError, match="softmax: axis 2 is out of range"):
        gc.softmax(gc.data("X", shape=(None, 3)), axis=2)
    with pytest.raises(gc.GraphcError, match="logsumexp: axis 0 .* is the sample dim"):
        gc.logsumexp(gc.data("X", shape=(None, 3)), axis=0)


def test_erfc_of_a_negated_argument_does_not_cancel():
    """SymPy rewrites erfc(-w) as 2 - erfc(w), which is 0 instead of erfc's tail for w < -6."""
    x, a = gc.data("x"), gc.param("a")
    r = gc.compile(a * gc.sum(gc.erfc(-x) + gc.erfc(1.0 - x)))(x=np.array([-10.0]), a=1.0)
    assert r.grads["a"] == pytest.approx(math.erfc(10.0) + math.erfc(11.0), rel=1e-14)
