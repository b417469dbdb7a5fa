"""numpy on graph nodes (issue #16): ufuncs, numpy's operators and array functions build graphc
nodes (graphc/ir/interop.py); what graphc lacks is an UnsupportedError that says what to use.
Also: a gc.function body that calls numpy or math on its symbolic argument, or branches on it,
gets a GraphcError saying what to write instead.
"""

import math

import numpy as np
import pytest

import graphc as gc
from graphc.ir import interop

x, y = gc.data("x"), gc.data("y")
a, b = gc.params("a b")
X = gc.data("X", shape=(None, 3))
W = gc.param("W", shape=(2, 3))


# ---- ufuncs build the same node as graphc's function ---------------------------------------
UNARY_UFUNCS = [
    (np.sin, gc.sin), (np.cos, gc.cos), (np.tan, gc.tan), (np.exp, gc.exp), (np.log, gc.log),
    (np.sqrt, gc.sqrt), (np.tanh, gc.tanh), (np.abs, gc.abs), (np.absolute, gc.abs), (np.fabs, gc.abs),
    (np.arcsin, gc.arcsin), (np.arccos, gc.arccos), (np.arctan, gc.arctan), (np.sinh, gc.sinh),
    (np.cosh, gc.cosh), (np.arcsinh, gc.arcsinh), (np.arccosh, gc.arccosh), (np.arctanh, gc.arctanh),
    (np.exp2, gc.exp2), (np.expm1, gc.expm1), (np.log2, gc.log2), (np.log10, gc.log10),
    (np.log1p, gc.log1p), (np.square, gc.square), (np.sign, gc.sign), (np.floor, gc.floor),
    (np.ceil, gc.ceil), (np.rint, gc.round),
]
BINARY_UFUNCS = [
    (np.maximum, gc.maximum), (np.minimum, gc.minimum), (np.arctan2, gc.arctan2), (np.hypot, gc.hypot),
    (np.logaddexp, gc.logaddexp), (np.add, lambda p, q: p + q), (np.subtract, lambda p, q: p - q),
    (np.multiply, lambda p, q: p * q), (np.divide, lambda p, q: p / q), (np.power, lambda p, q: p**q),
]


def same(p, q):
    """Two nodes with the same op, attributes, shape and expression."""
    return (isinstance(p, gc.Node) and isinstance(q, gc.Node) and p.op == q.op and p.shape == q.shape
            and p.dtype == q.dtype and str(p) == str(q) and p.attr("fn") is q.attr("fn"))


@pytest.mark.parametrize("ufunc, fn", UNARY_UFUNCS, ids=[u.__name__ for u, _ in UNARY_UFUNCS])
def test_unary_ufuncs_build_graphc_nodes(ufunc, fn):
    assert same(ufunc(a * x), fn(a * x))


@pytest.mark.parametrize("ufunc, fn", BINARY_UFUNCS, ids=[u.__name__ for u, _ in BINARY_UFUNCS])
def test_binary_ufuncs_build_graphc_nodes(ufunc, fn):
    assert same(ufunc(x, a), fn(x, a))
    assert same(ufunc(2.0, x), fn(2.0, x))


def test_every_table_entry_builds_a_node():
    for ufunc, build in interop.UFUNCS.items():
        args = [x, a][: ufunc.nin] if ufunc is not np.matmul else [X, W.T]
        assert isinstance(ufunc(*args), gc.Node), ufunc.__name__


def test_numpy_operators_on_the_left_build_nodes():
    assert same(np.array(2.0) * x, 2.0 * x)
    assert same(np.float64(3.0) - x, 3.0 - x)
    assert same(np.array(2.0) ** x, 2.0**x)
    assert same(np.float32(1.5) / x, 1.5 / x)
    assert (np.array(0.5) > x).dtype == "bool" and str(np.array(0.5) > x) == "0.5 > x"
    assert (np.ones(3) @ W.T).shape == (2,)
    assert same(np.negative(x), -x) and np.positive(x) is x
    assert same(np.reciprocal(x), 1.0 / x)


def test_array_functions_follow_numpy_signatures():
    assert np.sum(X, axis=0).shape == (3,) and np.sum(X, axis=1, keepdims=True).shape == (gc.N, 1)
    assert np.mean(x).shape == () and str(np.mean(x)) == "mean(x)"
    assert str(np.clip(x, a, b)) == "clip(x, a, b)"
    assert str(np.clip(x, None, 1.0)) == "minimum(x, 1)" and str(np.clip(x, a_min=0.0, a_max=None)) == "maximum(x, 0)"
    assert str(np.where(x > 0, x, a)) == "where(x > 0, x, a)"
    assert np.transpose(W).shape == (3, 2) and np.transpose(W, (1, 0)).shape == (3, 2)
    assert np.stack([a, b]).shape == (2,) and np.stack([x, y], axis=1).shape == (gc.N, 2)
    assert np.stack([W, W]).shape == (2, 2, 3)  # numpy's default axis=0 (gc.stack's is -1)
    assert np.concatenate([W, W]).shape == (4, 3) and np.concatenate([W, W], axis=1).shape == (2, 6)
    assert np.reshape(W, (3, 2)).shape == (3, 2) and np.reshape(W, 6).shape == (6,)
    assert np.dot(W, np.ones(3)).shape == (2,) and np.dot(2.0, W).shape == (2, 3)
    assert np.einsum("ij,j->i", W, np.ones(3)).shape == (2,)
    assert np.broadcast_to(a, (4,)).shape == (4,) and np.expand_dims(x, 1).shape == (gc.N, 1)
    assert same(np.round(x), gc.round(x)) and same(np.around(x), gc.round(x))
    assert str(np.round(x, 2)) == str(gc.round(x, 2))
    assert same(np.matmul(X, W.T), X @ W.T)


def test_a_loss_written_with_numpy_compiles_and_matches_numpy():
    loss = np.sum(np.square(np.tanh(X @ np.transpose(W)) - y[:, None]), axis=None) + np.mean(
        np.clip(np.logaddexp(a * x, b), 0.0, 5.0) + np.where(x > 0, np.hypot(x, a), np.arctan2(x, b)))
    f = gc.compile(loss)
    rng = np.random.default_rng(1)
    xs, ys, XS, WS = rng.normal(size=7), rng.normal(size=7), rng.normal(size=(7, 3)), rng.normal(size=(2, 3))
    r = f(x=xs, y=ys, X=XS, W=WS, a=0.7, b=-0.3)
    want = np.sum(np.square(np.tanh(XS @ WS.T) - ys[:, None])) + np.mean(
        np.clip(np.logaddexp(0.7 * xs, -0.3), 0.0, 5.0) + np.where(xs > 0, np.hypot(xs, 0.7), np.arctan2(xs, -0.3)))
    assert r.loss == pytest.approx(want, rel=1e-13)


def test_scipy_special_ufuncs_build_graphc_nodes():
    sps = pytest.importorskip("scipy.special")
    assert same(sps.erf(x), gc.erf(x)) and same(sps.erfc(x), gc.erfc(x))
    assert same(sps.expit(x), gc.sigmoid(x))
    with pytest.raises(gc.UnsupportedError, match="'gamma' is not supported on graph nodes"):
        sps.gamma(x)


# ---- what graphc lacks: UnsupportedError naming numpy's function and the way out -------------
@pytest.mark.parametrize("call, match", [
    (lambda: np.max(x), r"numpy\.max is not supported .* gc\.maximum"),
    (lambda: np.amin(X, axis=1), r"numpy\.amin is not supported .* gc\.minimum"),
    (lambda: np.cumsum(x), r"numpy\.cumsum is not supported .*gc\.sin, gc\.sum, gc\.where"),
    (lambda: np.linalg.norm(x), r"numpy\.linalg\.norm is not supported"),
    (lambda: np.fmax(x, a), r"numpy\.fmax is not supported .* gc\.maximum"),
    (lambda: np.equal(x, a), r"numpy\.equal is not supported .* >, >=, < and <="),
    (lambda: np.float64(1.0) == x, r"numpy\.equal is not supported"),
    (lambda: np.trunc(x), r"numpy\.trunc .* gc\.where\(x < 0, gc\.ceil\(x\), gc\.floor\(x\)\)"),
    (lambda: np.mod(x, 2.0), r"numpy\.remainder .* gc\.floor"),
    (lambda: np.add.reduce(x), r"numpy\.add\.reduce is not supported .* gc\.sum"),
    (lambda: np.multiply.outer(x, a), r"numpy\.multiply\.outer"),
    (lambda: np.sin(x, out=np.empty(3)), r"numpy\.sin\(\.\.\., out=\)"),
    (lambda: np.add(x, a, where=True), r"numpy\.add\(\.\.\., where=\)"),
    (lambda: np.exp(x, dtype=np.float32), r"numpy\.exp\(\.\.\., dtype=\).*gc\.compile\(dtype="),
    (lambda: np.sum(x, dtype=np.float32), r"numpy\.sum\(\.\.\., dtype=\)"),
    (lambda: np.sum(x, initial=1.0), r"numpy\.sum\(\.\.\., initial=\)"),
    (lambda: np.where(x > 0), r"numpy\.where\(condition\) .* gc\.where\(condition, a, b\)"),
    (lambda: np.concatenate([W, W], axis=None), r"axis=None"),
])
def test_what_graphc_lacks_is_an_unsupported_error(call, match):
    with pytest.raises(gc.UnsupportedError, match=match):
        call()


def test_a_node_has_no_array_value():
    with pytest.raises(gc.GraphcError, match="no values until it is compiled and run"):
        np.array(x)
    with pytest.raises(gc.GraphcError, match="gc.stack"):
        np.asarray([a, b])
    with pytest.raises(gc.GraphcError, match="gc.stack"):
        gc.constant([a, 1.0])


def test_wrong_numpy_arguments_are_graphc_errors():
    with pytest.raises(gc.ShapeError, match="axis 3 is out of range"):
        np.sum(x, axis=3)
    with pytest.raises(gc.GraphcError, match="numpy.round: .*unexpected keyword"):
        interop.array_function(np.round, (gc.Node,), (x,), {"bogus": 1})


# ---- gc.function bodies run on SymPy symbols ------------------------------------------------
@pytest.mark.parametrize("body, match", [
    (lambda z: np.sin(z), r"numpy's functions need numbers: use graphc's \(gc\.sin\)"),
    (lambda z: np.exp(z) + 1, r"use graphc's \(gc\.exp\)"),
    (lambda z: np.cbrt(z), r"use graphc's \(gc\.sin, gc\.exp, \.\.\.\)"),
    (lambda z: math.exp(z), r"math\.\* functions, float\(\), int\(\) and round\(\) need numbers"),
    (lambda z: float(z) * 2, r"need numbers: use graphc's \(gc\.exp"),
    (lambda z: round(z), r"gc\.round"),
    (lambda z: z if z > 0 else -z, r"Python if/and/or.* gc\.where\(cond, a, b\)"),
    (lambda z: max(z, 0), r"gc\.maximum"),
    (lambda z: np.maximum(z, 0), r"gc\.where\(cond, a, b\), gc\.maximum"),
    (lambda z: np.where(z > 0, z, 0), r"gc\.where"),
    (lambda z: np.array([z, z]), r"must return a SymPy-compatible expression .* got ndarray"),
])
def test_function_bodies_that_need_numbers_say_what_to_write(body, match):
    with pytest.raises(gc.GraphcError, match=match) as info:
        gc.function("f", body)
    assert "function 'f'" in str(info.value)


def test_a_derivative_that_needs_numbers_says_so_too():
    with pytest.raises(gc.GraphcError, match="its derivative failed .*gc\\.exp"):
        gc.function("g", lambda z: gc.exp(z), derivative=lambda z: math.exp(z))


def test_function_bodies_may_use_the_new_functions():
    f = gc.function("soft_clip", lambda z: gc.clip(gc.arcsinh(z), -1, 1) + gc.logaddexp(z, 0) + gc.erfc(-z))
    r = gc.compile(gc.sum(f(a * x)))(x=np.array([0.5, -2.0]), a=1.0)
    xs = np.array([0.5, -2.0])
    want = np.sum(np.clip(np.arcsinh(xs), -1, 1) + np.logaddexp(xs, 0) + np.vectorize(math.erfc)(-xs))
    assert r.loss == pytest.approx(want, rel=1e-14)
