"""Every registry op: forward value vs numpy, gradient vs central differences (float64).

All ops go into ONE compiled graph (one Numba compile); each op has its own parameters,
data and weight array, so one op is checked at a time by zeroing the other weights.
"""

import math
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.ir.ops import ELEMENTWISE

from .gradcheck import directional_check

# Independent references: numpy, never SymPy.
NUMPY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power,
    "neg": np.negative, "sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log,
    "sqrt": np.sqrt, "tanh": np.tanh, "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "relu": lambda z: np.maximum(z, 0.0), "abs": np.abs, "maximum": np.maximum, "minimum": np.minimum,
    "where": lambda c, a, b: np.where(c > 0, a, b),
    "gelu": np.vectorize(lambda z: 0.5 * z * (1 + math.erf(z / math.sqrt(2)))),
    "softplus": lambda z: np.logaddexp(0.0, z),
    "gt": lambda a, b: np.where(a > b, a, b), "ge": lambda a, b: np.where(a >= b, a, b),
    "lt": lambda a, b: np.where(a < b, a, b), "le": lambda a, b: np.where(a <= b, a, b),
    "arctan": np.arctan, "arcsin": np.arcsin, "arccos": np.arccos, "arctan2": np.arctan2, "sinh": np.sinh,
    "cosh": np.cosh, "arcsinh": np.arcsinh, "arccosh": np.arccosh, "arctanh": np.arctanh, "log1p": np.log1p,
    "expm1": np.expm1, "log2": np.log2, "log10": np.log10, "exp2": np.exp2, "erf": np.vectorize(math.erf),
    "erfc": np.vectorize(math.erfc), "square": np.square, "sign": np.sign, "floor": np.floor, "ceil": np.ceil,
    "round": np.round, "clip": np.clip, "hypot": np.hypot, "logaddexp": np.logaddexp,
}
OPS = list(ELEMENTWISE.values())
N = 64


def build(op, args):
    if op.name == "where":
        return gc.where(args[0] > 0, args[1], args[2])
    if op.out_dtype == "bool":  # comparisons: exercised through where
        return gc.where(op(args[0], args[1]), args[0], args[1])
    return op(*args)


def sample(op, rng):
    lo, hi = op.domain
    xs = rng.uniform(lo, hi, size=(op.nargs, N))
    if op.kinks:  # stay away from the points where the derivative jumps
        gap = xs[0] - (xs[1] if op.nargs == 2 else 0.0)
        xs[0] = np.where(np.abs(gap) < 0.05, xs[0] + 0.1, xs[0])
    return xs


@pytest.fixture(scope="module")
def all_ops():
    """loss = sum_k sum(w_k * op_k(x_k0 + p_k0, ...)); one compile for every op."""
    terms, names = [], {}
    for op in OPS:
        xs = [gc.data(f"{op.name}_x{j}") for j in range(op.nargs)]
        ps = [gc.param(f"{op.name}_p{j}") for j in range(op.nargs)]
        w = gc.data(f"{op.name}_w")
        terms.append(gc.sum(w * build(op, [x + p for x, p in zip(xs, ps)])))
        names[op.name] = ([x.name for x in xs], [p.name for p in ps], w.name)
    loss = terms[0]
    for t in terms[1:]:
        loss = loss + t
    with warnings.catch_warnings():  # where's condition shift has no gradient, and says so
        warnings.simplefilter("ignore", UserWarning)
        f = gc.compile(loss)
    rng = np.random.default_rng(42)
    base = {}
    for op in OPS:
        xnames, pnames, wname = names[op.name]
        for name, values in zip(xnames, sample(op, rng)):
            base[name] = values
        base.update({p: 0.0 for p in pnames})
        base[wname] = np.zeros(N)
    return f, names, base, rng


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_forward_matches_numpy(all_ops, op):
    f, names, base, rng = all_ops
    xnames, _, wname = names[op.name]
    w = rng.standard_normal(N)
    r = f({**base, wname: w})
    expected = np.sum(w * NUMPY[op.name](*[base[x] for x in xnames]))
    assert r.loss == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("op", [op for op in OPS], ids=[op.name for op in OPS])
def test_gradient_matches_finite_differences(all_ops, op):
    f, names, base, rng = all_ops
    _, pnames, wname = names[op.name]
    bindings = {**base, wname: rng.standard_normal(N)}
    directional_check(f, bindings, pnames, rtol=1e-6)


def test_every_op_has_a_numpy_reference():
    assert set(ELEMENTWISE) <= set(NUMPY), "add a numpy reference for each new op"


def test_relu_derivative_at_zero_is_zero_like_torch():
    a = gc.param("a")
    f = gc.compile(gc.relu(a) + gc.abs(a))
    r = f(a=0.0)
    assert r.grads["a"] == 0.0


def test_maximum_splits_ties_like_torch():
    a, b = gc.params("a b")
    r = gc.compile(gc.maximum(a, b))(a=1.0, b=1.0)
    assert r.grads == {"a": 0.5, "b": 0.5}


def test_a_given_derivative_is_the_one_used_even_if_wrong():
    """Like autograd.Function.backward: graphc trusts derivative= over SymPy."""
    x = gc.data("x")
    a = gc.param("a")
    honest = gc.function("P3", lambda z: (5 * z**3 - 3 * z) / 2)
    liar = gc.function("P3", lambda z: (5 * z**3 - 3 * z) / 2, derivative=lambda z: 7 + 0 * z)
    xs = np.array([0.5, -1.0, 2.0])
    r_honest = gc.compile(gc.sum(honest(a * x)))(x=xs, a=0.3)
    r_liar = gc.compile(gc.sum(liar(a * x)))(x=xs, a=0.3)
    assert r_liar.loss == pytest.approx(r_honest.loss, rel=1e-13)  # CSE may group the sum differently
    assert r_liar.grads["a"] == pytest.approx(7 * xs.sum())
    z = 0.3 * xs
    assert r_honest.grads["a"] == pytest.approx(np.sum(1.5 * (5 * z**2 - 1) * xs))
