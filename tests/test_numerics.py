"""Numerics at the edges (issue #16): expressions compute what numpy computes as written, NaN
and inf included; gradients follow torch's conventions (docs/guarantees.md).

The reproducers of the issue are terms of ONE loss, ``sum_k v_k * term_k`` with a scalar
``v_k = 1`` per term and parameters of its own, so one compile per (target, dtype) checks them
all: ``d/dv_k`` is the term's value, the other gradients are the term's. Expected values are
numpy's, computed here in the same dtype; expected gradients are closed forms written with
numpy (torch's conventions, verified against torch 2.x autograd), never graphc's SymPy.
"""

from __future__ import annotations

import importlib
import math
import os
import pickle
import re
from types import SimpleNamespace

import numpy as np
import pytest
import sympy as sp

import graphc as gc
from graphc.ir import fold, ops
from graphc.codegen.printer import printer
from graphc.codegen import mathlib

N = 3
X1 = np.array([0.5, -1.0, 2.0])
ONES, ZEROS = np.ones(N), np.zeros(N)


def _gelu_grad(z):
    return 0.5 * math.erfc(-z / math.sqrt(2)) + z * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


# name: (term builder, data, params, numpy value(d, p), closed-form gradients(d, p))
CASES = {
    "where_inf_condition": (
        lambda d, p: gc.sum(gc.where(d["x1"] > p["a1"] / 0.0, d["x1"], 3.0) * p["a1"]),
        {"x1": X1}, {"a1": -1.6},
        lambda d, p: np.sum(np.where(d["x1"] > p["a1"] / 0.0, d["x1"], 3.0) * p["a1"]),
        lambda d, p: {"a1": np.sum(np.where(d["x1"] > p["a1"] / 0.0, d["x1"], 3.0))}),
    "log_of_x_minus_x": (
        lambda d, p: gc.sum(gc.sigmoid(gc.log(d["x2"] - d["x2"])) * p["a2"]),
        {"x2": ONES}, {"a2": 1.0},
        lambda d, p: np.sum(1 / (1 + np.exp(-np.log(d["x2"] - d["x2"]))) * p["a2"]),
        lambda d, p: {"a2": np.sum(1 / (1 + np.exp(-np.log(d["x2"] - d["x2"]))))}),
    "relu_nan": (
        lambda d, p: gc.sum(gc.relu(p["a3"]) * d["w"]),
        {"w": ONES}, {"a3": np.nan},
        lambda d, p: np.sum(np.maximum(p["a3"], 0) * d["w"]),
        lambda d, p: {"a3": np.sum(d["w"])}),  # torch: relu'(nan) = 1
    "maximum_nan": (
        lambda d, p: gc.sum(gc.maximum(p["a4"], p["b4"]) * d["w"]),
        {"w": ONES}, {"a4": 1.0, "b4": np.nan},
        lambda d, p: np.sum(np.maximum(p["a4"], p["b4"]) * d["w"]),
        lambda d, p: {"a4": np.sum(d["w"]), "b4": np.sum(d["w"])}),
    "maximum_tie_at_inf": (
        lambda d, p: gc.sum(gc.maximum(p["a15"], p["b15"]) * d["w"]),
        {"w": ONES}, {"a15": np.inf, "b15": np.inf},
        lambda d, p: np.sum(np.maximum(p["a15"], p["b15"]) * d["w"]),
        lambda d, p: {"a15": 0.5 * np.sum(d["w"]), "b15": 0.5 * np.sum(d["w"])}),
    "zero_base_pow": (
        lambda d, p: gc.sum(0.0 ** p["a5"] * d["w"]),
        {"w": ONES}, {"a5": 2.0},
        lambda d, p: np.sum(0.0 ** p["a5"] * d["w"]),
        lambda d, p: {"a5": 0.0}),  # torch masks d(0**b)/db for b >= 0
    "pow_at_zero_base": (
        lambda d, p: gc.sum(p["a6"] ** p["b6"] * d["w"]),
        {"w": ONES}, {"a6": 0.0, "b6": 2.0},
        lambda d, p: np.sum(p["a6"] ** p["b6"] * d["w"]),
        lambda d, p: {"a6": np.sum(p["b6"] * p["a6"] ** (p["b6"] - 1) * d["w"]), "b6": 0.0}),
    "negative_base_pow": (
        lambda d, p: gc.sum((-2.0) ** p["a7"] * d["w"]),
        {"w": ONES}, {"a7": 2.0},
        lambda d, p: np.sum(np.power(-2.0, p["a7"]) * d["w"]),
        lambda d, p: {"a7": np.nan}),  # (-2)**a * log(-2)
    "quotient_tiny_divisor": (
        lambda d, p: gc.sum(p["a8"] / p["b8"] * d["w"]),
        {"w": ONES}, {"a8": 0.0, "b8": 1e-310},
        lambda d, p: np.sum(p["a8"] / p["b8"] * d["w"]),
        lambda d, p: {"a8": np.sum(d["w"] / p["b8"]), "b8": np.sum(-(p["a8"] / p["b8"]) / p["b8"] * d["w"])}),
    "quotient_gradient_scale": (
        lambda d, p: gc.sum(p["a9"] / p["b9"] * d["w"]),
        {"w": ONES}, {"a9": 1e-300, "b9": 1e-300},
        lambda d, p: np.sum(p["a9"] / p["b9"] * d["w"]),
        lambda d, p: {"a9": np.sum(d["w"] / p["b9"]), "b9": np.sum(-(p["a9"] / p["b9"]) / p["b9"] * d["w"])}),
    "sqrt_at_zero": (
        lambda d, p: gc.sum(gc.sqrt(d["x10"] + p["a10"])),
        {"x10": ZEROS}, {"a10": 0.0},
        lambda d, p: np.sum(np.sqrt(d["x10"] + p["a10"])),
        lambda d, p: {"a10": np.inf}),
    "degenerate_power": (
        lambda d, p: gc.sum((p["c12"] / p["c12"]) ** (-d["x1"])),
        {"x1": X1}, {"c12": 2.0},
        lambda d, p: np.sum((p["c12"] / p["c12"]) ** (-d["x1"])),
        lambda d, p: {"c12": 0.0}),
    "inf_minus_inf": (
        lambda d, p: gc.sum((p["a13"] - p["a13"]) * d["w"]),
        {"w": ONES}, {"a13": np.inf},
        lambda d, p: np.sum((p["a13"] - p["a13"]) * d["w"]),
        lambda d, p: {"a13": 0.0}),
    "exp_of_log_negative": (
        lambda d, p: gc.sum(gc.exp(gc.log(p["a14"])) * d["w"]),
        {"w": ONES}, {"a14": -1.0},
        lambda d, p: np.sum(np.exp(np.log(p["a14"])) * d["w"]),
        lambda d, p: {"a14": np.nan}),
    "gelu_left_tail": (
        lambda d, p: gc.sum(gc.gelu(d["x10"] + p["a16"])),
        {"x10": ZEROS}, {"a16": -30.0},
        lambda d, p: np.sum(0.5 * (d["x10"] + p["a16"]) * np.vectorize(math.erfc)(-(d["x10"] + p["a16"]) / math.sqrt(2))),
        lambda d, p: {"a16": N * _gelu_grad(float(p["a16"]))}),
}


def _problem():
    data = {name: gc.data(name) for case in CASES.values() for name in case[1]}
    params = {name: gc.param(name) for case in CASES.values() for name in case[2]}
    scale = {key: gc.param(f"v_{key}") for key in CASES}
    loss = sum(scale[key] * case[0](data, params) for key, case in CASES.items())
    bind = {k: v for case in CASES.values() for k, v in {**case[1], **case[2]}.items()}
    bind.update({f"v_{key}": 1.0 for key in CASES})
    return loss, bind


def _close(got, want, rtol):
    got, want = float(got), float(want)
    if math.isnan(want) or math.isinf(want):
        return (math.isnan(got) and math.isnan(want)) or got == want
    return math.isclose(got, want, rel_tol=rtol, abs_tol=1e-300)


def check_reproducers(target: str, dtype: str) -> None:
    loss, bind = _problem()
    res = gc.compile(loss, target=target, dtype=dtype)(**bind)
    rtol = 1e-12 if dtype == "float64" else 2e-5
    cast = np.dtype(dtype).type
    bad = []
    for key, (_, data, params, value, grads) in CASES.items():
        d = {k: v.astype(dtype) for k, v in data.items()}
        p = {k: cast(v) for k, v in params.items()}
        with np.errstate(all="ignore"):
            want = {name: cast(w) for name, w in {f"v_{key}": value(d, p), **grads(d, p)}.items()}
        for name, w in want.items():
            if not _close(res.grads[name], w, rtol):
                bad.append(f"{key}: d/d{name} = {res.grads[name]!r}, want {float(w)!r}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_reproducers_give_numpy_values_and_torch_gradients(target, dtype):
    check_reproducers(target, dtype)


@pytest.mark.cuda
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator computes with numpy scalars
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_reproducers_on_cuda(dtype):
    from numba import cuda

    if not cuda.is_available():
        pytest.skip("needs an NVIDIA GPU or NUMBA_ENABLE_CUDASIM=1")
    check_reproducers("cuda", dtype)


def test_negative_step_slices_have_numpy_shapes():
    q = gc.param("Q", shape=(5,))
    for key in [slice(None, None, -1), slice(3, None, -2), slice(-1, 0, -1), slice(4, -6, -1)]:
        assert q[key].shape == np.zeros(5)[key].shape, key


def test_reversed_parameter_gradient():
    q = gc.param("Q", shape=(3,))
    x = gc.data("x")
    f = gc.compile(gc.sum(gc.sum(q[::-1] * np.array([1.0, 2.0, 3.0])) * x))
    r = f(x=np.ones(2), Q=np.array([1.0, 10.0, 100.0]))
    assert r.loss == 2 * (100 + 20 + 3)
    np.testing.assert_array_equal(r.grads["Q"], 2 * np.array([3.0, 2.0, 1.0]))


# ---- ir/fold.py, the rule itself (no Numba) -------------------------------------------------------
x, y = sp.symbols("x y", real=True)


def compose(name, *args):
    return ops.ELEMENTWISE[name].compose([sp.sympify(a) for a in args])


NP_MATH = SimpleNamespace(log=np.log, exp=np.exp, sqrt=np.sqrt, inf=math.inf, nan=math.nan)
EDGES = [np.inf, -np.inf, np.nan, -1.0, 0.0, 1e200, 1e-20, 2.5]


@pytest.mark.parametrize("name, args, written", [
    ("sub", (x, x), lambda v: v - v),                       # SymPy: 0 (NaN at inf)
    ("mul", (x, 0), lambda v: v * 0.0),                     # SymPy: 0
    ("div", (x, x), lambda v: v / v),                       # SymPy: 1
    ("sub", (x + 1, x), lambda v: (v + 1) - v),             # SymPy: 1 (0 at 1e200, NaN at inf)
    ("exp", (sp.log(x),), lambda v: np.exp(np.log(v))),     # SymPy: x (NaN at -1)
    ("sqrt", (x * x,), lambda v: np.sqrt(v * v)),           # SymPy: |x| (inf at 1e200)
    ("ge", (x, x), lambda v: v >= v),                       # SymPy: True (False at NaN)
    ("add", (x, sp.oo), lambda v: v + np.inf),              # SymPy: oo (NaN at -inf)
])
def test_unsafe_folds_compute_as_written(name, args, written):
    args = [fold.number(math.inf) if a is sp.oo else a for a in args]
    code = printer().doprint(compose(name, *args))
    for v in EDGES:
        with np.errstate(all="ignore"):
            got = eval(code, {"math": NP_MATH}, {"x": np.float64(v)})  # noqa: S307 - graphc's own printout
            want = written(np.float64(v))
        assert np.array_equal(got, want, equal_nan=True), (code, v, got, want)


def test_safe_simplifications_still_happen():
    assert compose("mul", x, x) == x**2
    assert compose("add", x + 1, 2) == x + 3
    assert compose("pow", x, 1) == x
    pow_da = ops.derivative_node(gc.param("p") ** 2.0, 0).attr("fn")
    assert str(pow_da.compose([x + y, sp.Integer(2)])) == "2*(x + y)"  # the Piecewise on b == 0 resolves


def test_constants_fold_with_numpy_semantics():
    assert compose("log", 0) == fold.Literal.of(-math.inf)
    assert compose("div", 1, 0) == fold.Literal.of(math.inf)
    assert compose("div", 0, 0) == fold.Literal.of(math.nan)
    assert compose("sqrt", -1) == fold.Literal.of(math.nan)  # never I
    assert compose("pow", -2, 0.5) == fold.Literal.of(math.nan)
    assert compose("sin", 2) == sp.Float(np.sin(2.0))
    inf = fold.number(math.inf)
    assert compose("sub", inf, inf) == fold.Literal.of(math.nan)
    assert x in compose("add", x, inf).free_symbols  # x + oo is not oo (x may be -inf)


def test_division_is_printed_as_division():
    p = printer()
    q = compose("div", x, y)
    assert p.doprint(q) == "x/y"
    assert p.doprint(q * 3) in ("3*(x/y)", "(x/y)*3")
    assert p.doprint(ops.ELEMENTWISE["div"].partial(1).xreplace(dict(zip(ops.ELEMENTWISE["div"].args, (x, y))))) == "-((x/y)/y)"


def test_max_and_min_print_as_nan_propagating_selects():
    """Max and Min print as graphc's _maximum / _minimum (selects; a NaN anywhere gives NaN),
    nested for more arguments: each argument printed once."""
    helpers = importlib.import_module(mathlib.MODULES[False])  # the compiled helpers, callable from Python
    ns = {"math": math, "_maximum": helpers._maximum, "_minimum": helpers._minimum}
    z = sp.Symbol("z", real=True)
    for fn, ref in [(sp.Max, np.maximum), (sp.Min, np.minimum)]:
        code = printer().doprint(fn(x, y))
        for a, b in [(1.0, np.nan), (np.nan, 1.0), (2.0, 1.0), (1.0, 2.0), (np.inf, np.inf)]:
            got = eval(code, ns, {"x": a, "y": b})  # noqa: S307 - printed by graphc, inputs are floats
            assert np.array_equal(got, ref(a, b), equal_nan=True), (code, a, b)
        code = printer().doprint(fn(x, y, z))
        assert all(len(re.findall(rf"\b{s}\b", code)) == 1 for s in (x, y, z)), code
        for a, b, c in [(1.0, 2.0, 3.0), (3.0, np.nan, 1.0), (np.nan, 1.0, 2.0), (1.0, 2.0, np.nan), (-np.inf, 0.0, 2.0)]:
            got = eval(code, ns, {"x": a, "y": b, "z": c})  # noqa: S307
            assert np.array_equal(got, ref.reduce([a, b, c]), equal_nan=True), (code, a, b, c)


def test_literals_print_pickle_and_plain():
    for v in (math.inf, -math.inf, math.nan, -0.0):
        lit = fold.number(v)
        assert isinstance(lit, fold.Literal) and pickle.loads(pickle.dumps(lit)) == lit
        got = eval(printer().doprint(lit), {"math": math})  # noqa: S307
        assert math.copysign(1, got) == math.copysign(1, v) and (got == v or v != v)
    e = fold.Opaque(x, 1) - x + fold.Quotient(x, 2) * fold.number(math.inf)
    assert fold.plain(e) == sp.oo * x / 2


def test_fastmath_flags_are_reassoc_and_contract_only(cubic_cpu):
    assert 'fastmath={"reassoc", "contract"}' in cubic_cpu.source
    for flag in ("arcp", "nsz", "nnan", "ninf", "afn"):
        assert flag not in cubic_cpu.source.split("def ")[0]
    assert os.environ.get("NUMBA_FASTMATH") is None
