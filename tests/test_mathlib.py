"""graphc's own exp and tanh (codegen/mathlib.py): accuracy, special values, vectorization, wiring."""

import json
import math
import os
import platform
import re
import subprocess
import sys

import mpmath
import numba
import numpy as np
import pytest
import sympy as sp

import graphc as gc
from graphc import loader
from graphc.codegen import emit, mathlib
from graphc.codegen.printer import printer
from graphc.compile import Timings, make_plan
from graphc.graph import RESERVED


@pytest.fixture(scope="module")
def loops():
    """loop_exp / loop_tanh (the helpers) and loop_math_exp / loop_math_tanh, in a module laid
    out as a generated one: imports, OPTS, then the helpers' text."""
    text = mathlib.loops([("exp", "_exp"), ("tanh", "_tanh"), ("math_exp", "math.exp"), ("math_tanh", "math.tanh")])
    return loader.load(text, stem="mathlib_test")[0]


def run(loop, xs, dtype):
    xs = np.asarray(xs, dtype=dtype)
    out = np.empty_like(xs)
    loop(xs, out)
    return out


def ulps(got, want):
    """|got - want| in units in the last place of their type; NaN == NaN and +0 == -0."""
    got, want = np.asarray(got), np.asarray(want, dtype=got.dtype)
    ints = {np.dtype(np.float64): np.int64, np.dtype(np.float32): np.int32}[got.dtype]
    g, w = got.view(ints).astype(np.int64), want.view(ints).astype(np.int64)
    low = np.iinfo(ints).min
    g, w = np.where(g < 0, low - g, g), np.where(w < 0, low - w, w)  # monotone in the value
    d = np.abs(g - w).astype(np.float64)
    d[np.isnan(got) & np.isnan(want)] = 0
    d[np.isnan(got) ^ np.isnan(want)] = np.inf
    return d


def math_exp(v):
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


REF = {"exp": np.frompyfunc(math_exp, 1, 1), "tanh": np.frompyfunc(math.tanh, 1, 1)}
RANGES = {
    "exp": [(-0.35, 0.35), (-1, 1), (-40, 40), (-745.2, 709.8), (700, 709.8), (-745.2, -700), (-110, 90)],
    "tanh": [(-0.625, 0.625), (0.5, 0.75), (-3, 3), (-20, 20), (-1000, 1000), (-1e-5, 1e-5)],
}


@pytest.mark.parametrize("name", ["exp", "tanh"])
def test_float64_within_glibc_by_dense_random_samples(loops, name):
    """At most 1 ulp from math.exp, 3 from math.tanh (_tanh: 2 ulp; glibc's tanh is itself up
    to ~1 ulp off)."""
    rng = np.random.default_rng(1)
    xs = np.concatenate([rng.uniform(lo, hi, 100_000) for lo, hi in RANGES[name]])
    got = run(getattr(loops, f"loop_{name}"), xs, np.float64)
    with np.errstate(over="ignore"):
        d = ulps(got, REF[name](xs).astype(np.float64))
    assert d.max() <= (1 if name == "exp" else 3), xs[np.argmax(d)]


BOUND = {"exp": 1, "tanh": 2}  # float64 ulp from the correctly rounded value (mathlib's docstring)


@pytest.mark.parametrize("name", ["exp", "tanh"])
def test_float64_within_its_bound_of_the_correctly_rounded_value(loops, name):
    rng = np.random.default_rng(2)
    xs = np.concatenate([rng.uniform(lo, hi, 300) for lo, hi in RANGES[name]])
    got = run(getattr(loops, f"loop_{name}"), xs, np.float64)
    mpmath.mp.prec = 120
    f = getattr(mpmath, name)
    want = np.array([float(f(mpmath.mpf(float(v)))) for v in xs])  # inputs stay below overflow
    d = ulps(got, want)
    assert d.max() <= BOUND[name], xs[np.argmax(d)]


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs x87 80-bit long double")
def test_float64_tanh_within_two_ulp_on_a_million_points(loops):
    """Dense check against tanhl (64-bit mantissa, 11 bits beyond float64): the errors of the
    one-path tanh add up where 1 - e and 1 + e round apart, |x| in 0.17..0.6 (k = -1)."""
    rng = np.random.default_rng(11)
    xs = np.concatenate([rng.uniform(-1, 1, 400_000) * 10.0 ** rng.uniform(-12, 1.4, 400_000),
                         rng.uniform(-0.7, 0.7, 400_000), rng.uniform(-21, 21, 200_000)])
    got = run(loops.loop_tanh, xs, np.float64)
    want = np.tanh(xs.astype(np.longdouble)).astype(np.float64)
    d = ulps(got, want)
    assert d.max() <= 2, xs[np.argmax(d)]
    assert (d == 0).mean() > 0.6  # most results are the correctly rounded one
    np.testing.assert_array_equal(run(loops.loop_tanh, -xs, np.float64), -got)  # odd


@pytest.mark.parametrize("name", ["exp", "tanh"])
def test_float32_arguments_within_one_ulp_of_float32(loops, name):
    rng = np.random.default_rng(3)
    ranges = RANGES[name] + [(-104, -86), (80, 89)] if name == "exp" else RANGES[name]
    xs = np.concatenate([rng.uniform(lo, hi, 50_000) for lo, hi in ranges]).astype(np.float32)
    got = run(getattr(loops, f"loop_{name}"), xs, np.float32)
    assert got.dtype == np.float32
    with np.errstate(over="ignore"):
        want = REF[name](xs.astype(np.float64)).astype(np.float64).astype(np.float32)
    d = ulps(got, want)
    assert d.max() <= 1, xs[np.argmax(d)]


SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 1e-310, -1e-310, 1e-300, 1e-20, 0.625, -0.625, 19.0, 19.5, 22.0,
           709.78, 709.79, 710.0, -745.13, -745.14, -746.0, 1e308, -1e308, math.inf, -math.inf, math.nan]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_special_values_follow_math(loops, dtype):
    with np.errstate(over="ignore"):
        xs = np.array(SPECIAL).astype(dtype)
    exp, tanh = run(loops.loop_exp, xs, dtype), run(loops.loop_tanh, xs, dtype)
    with np.errstate(over="ignore"):
        want_exp = REF["exp"](xs.astype(np.float64)).astype(np.float64).astype(dtype)
    want_tanh = REF["tanh"](xs.astype(np.float64)).astype(np.float64).astype(dtype)
    assert ulps(exp, want_exp).max() <= 1, list(zip(xs, exp, want_exp))
    assert ulps(tanh, want_tanh).max() <= (3 if dtype == np.float64 else 1), list(zip(xs, tanh, want_tanh))
    # the semantics themselves, exactly
    assert exp[SPECIAL.index(math.inf)] == math.inf and exp[SPECIAL.index(-math.inf)] == 0
    assert exp[SPECIAL.index(710.0)] == math.inf and exp[SPECIAL.index(-746.0)] == 0
    assert np.isnan(exp[-1]) and np.isnan(tanh[-1])
    assert tanh[SPECIAL.index(math.inf)] == 1 and tanh[SPECIAL.index(-math.inf)] == -1
    assert SPECIAL[1] == 0 and math.copysign(1, tanh[1]) == -1  # tanh(-0) = -0
    assert exp[SPECIAL.index(0.0)] == 1 and exp[SPECIAL.index(5e-324)] == 1


def test_exp_overflow_and_underflow_edges_exactly(loops):
    edges = np.array([709.782712893384, 709.7827128933841, -745.1332191019411, -745.1332191019412])
    got = run(loops.loop_exp, edges, np.float64)
    assert got[0] == math.exp(edges[0]) and got[1] == math.inf
    assert got[2] == 5e-324 and got[3] == 0.0
    sub = np.linspace(-745.13, -708.4, 20001)  # the subnormal results: exact to the last bit
    assert ulps(run(loops.loop_exp, sub, np.float64), REF["exp"](sub).astype(np.float64)).max() <= 1


def test_integer_arguments_are_promoted_to_float64(loops):
    assert loops._exp(2, loops.EXP_C) == pytest.approx(math.exp(2), rel=1e-15)
    assert loops._tanh(-1, loops.TANH_C) == pytest.approx(math.tanh(-1), rel=1e-15)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="vector width checked for x86-64")
@pytest.mark.parametrize("name", ["exp", "tanh"])
def test_loop_calling_a_helper_is_inlined_and_vectorized(loops, name):
    """No call to the helpers left in the loop, and vector arithmetic in its IR."""
    fn = numba.njit(**dict(loops.OPTS, cache=False))(getattr(loops, f"loop_{name}").py_func)
    fn(np.ones(64), np.empty(64))
    ir = fn.inspect_llvm(fn.signatures[0])
    assert re.search(r"(fdiv|fmul)[^\n]*<\d+ x double>", ir)
    assert not re.search(r"call [^\n]*(@tanh|@exp|5_tanh|4_exp|11_exp_reduce)", ir)


# ---- wiring: printer, source, emitters -------------------------------------------------
def test_printer_prints_math_by_default_and_helpers_with_vector_math():
    x = sp.Symbol("x")
    e = sp.tanh(x) + 1 / (1 + sp.exp(-x)) + sp.exp(2) * x + sp.sinh(x)
    plain = printer()
    assert "math.tanh(x)" in plain.doprint(e) and "math.exp(-x)" in plain.doprint(e) and not plain.used
    p = printer(vector_math=True)
    text = p.doprint(e)
    assert "_tanh(x, tanh_c)" in text and "_exp(-x, exp_c)" in text and "math.tanh" not in text
    assert "math.exp(2)" in text and "math.sinh(x)" in text  # constants and the rest: libm
    assert p.used == {"_exp", "_tanh"}


def test_source_orders_helpers_after_what_they_call():
    assert mathlib.source([]) == ""
    text = mathlib.source({"_tanh"})
    assert text.startswith("MATH_OPTS = ") and "def _exp(" not in text and "def _exp_reduce(" not in text
    assert mathlib.closure({"_exp"}) == ["_exp_reduce", "_exp"]
    assert mathlib.closure({"_exp", "_tanh"}) == ["_exp_reduce", "_exp", "_tanh"]
    with pytest.raises(KeyError):
        mathlib.source({"_sin"})
    assert mathlib.NAMES <= RESERVED and set(mathlib.SYMPY.values()) <= mathlib.NAMES


BIND_IN = '''def f(x):
    """Doc
    string."""
    return _tanh(x, tanh_c)


def g(x):
    return x


def h(x):
    y = _tanh(x, tanh_c)
    return _tanh(y, tanh_c) + _exp(y, exp_c)
'''


def test_bind_copies_the_constants_once_in_each_function_that_passes_them():
    out = mathlib.bind(BIND_IN).splitlines()
    copy = "    tanh_c = TANH_C.copy()  # constants as run-time values (see TANH_C)"
    assert out[3] == copy and out[4] == "    return _tanh(x, tanh_c)"  # after f's docstring
    h = out.index("def h(x):")
    assert out[h + 1] == "    exp_c = EXP_C.copy()  # constants as run-time values (see EXP_C)" and out[h + 2] == copy
    assert sum(line == copy for line in out) == 2  # g: none
    assert mathlib.bind("def k(x):\n    return x\n") == "def k(x):\n    return x\n"
    assert mathlib.call("_tanh", "a*x") == "_tanh(a*x, tanh_c)" and mathlib.call("_exp", "x") == "_exp(x, exp_c)"


def tanh_loss():
    x, y = gc.data("x"), gc.data("y")
    a, b = gc.params("a b")
    return gc.sum((gc.tanh(a * x) + gc.sigmoid(b * x) - y) ** 2)


def test_cpu_and_parallel_paste_the_helpers_cuda_keeps_math():
    p = make_plan(tanh_loss(), None, Timings())
    for target in ("cpu", "parallel"):
        src = emit(p, target)
        assert src.index("OPTS = dict(") < src.index("MATH_OPTS = ") < src.index("def _exp_reduce(")
        assert src.index("def _tanh(") < src.index("def sums_0(")
        assert "_tanh(" in src.split("def sums_0(")[1] and "math.tanh" not in src
        for helper, (array, local) in mathlib.CONSTANTS.items():
            assert src.index(f"{array} = np.array([") < src.index(f"def {helper}(x, c):")
            for fn in src.split("\ndef ")[1:]:  # each function that calls it copies its constants first
                if f"{helper}(" in fn and not fn.startswith(helper):
                    copy = f"{local} = {array}.copy()"
                    assert fn.count(copy) == 1 and fn.index(copy) < fn.index(f"{helper}(")
    cuda = emit(p, "cuda")
    assert "math.tanh(" in cuda and "_tanh" not in cuda and "MATH_OPTS" not in cuda


def test_compiled_model_with_tanh_and_sigmoid_matches_numpy():
    xs = np.linspace(-3, 3, 1001)
    ys = np.sin(xs)
    r = gc.compile(tanh_loss())(x=xs, y=ys, a=0.7, b=-1.3)
    want = np.sum((np.tanh(0.7 * xs) + 1 / (1 + np.exp(1.3 * xs)) - ys) ** 2)
    assert r.loss == pytest.approx(want, rel=1e-13)


EXPORT_CHECK = """
import importlib.util, sys, numpy as np
spec = importlib.util.spec_from_file_location("m", sys.argv[1]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
xs = np.linspace(-3, 3, 1001)
print(repr(m.loss_and_grads(xs, np.sin(xs), {"a": 0.7, "b": -1.3})[0]))
"""


def test_export_with_helpers_runs_without_graphc(tmp_path):
    f = gc.compile(tanh_loss())
    path = tmp_path / "tanh_model.py"
    f.export(path)
    assert "def _tanh(" in path.read_text()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", EXPORT_CHECK, str(path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    xs = np.linspace(-3, 3, 1001)
    assert float(out.stdout) == f(x=xs, y=np.sin(xs), a=0.7, b=-1.3).loss


@pytest.fixture(scope="module")
def loops32():
    """A float32 module's _tanh (the rational approximation XLA and Eigen use) and _exp."""
    text = mathlib.loops([("exp", "_exp"), ("tanh", "_tanh")], float32=True)
    return loader.load(text, stem="mathlib_test_f32")[0]


@pytest.fixture(scope="module")
def tanh32(loops32):
    return loops32.loop_tanh


def test_float32_module_exp_within_one_ulp_with_exact_edges(loops32):
    rng = np.random.default_rng(8)
    xs = np.concatenate([rng.uniform(lo, hi, 100_000) for lo, hi in RANGES["exp"] + [(-104, -86), (80, 89)]]
                        + [np.linspace(-110, 95, 200_001)]).astype(np.float32)
    got = run(loops32.loop_exp, xs, np.float32)
    with np.errstate(over="ignore"):
        want = REF["exp"](xs.astype(np.float64)).astype(np.float64).astype(np.float32)  # exact enough, then rounded
    d = ulps(got, want)
    assert d.max() <= 1, xs[np.argmax(d)]
    assert (d == 0).mean() > 0.85
    edges = np.array([88.72283, 88.72284, -103.97208, -103.97209, np.inf, -np.inf, 0.0, -0.0, np.nan], np.float32)
    e = run(loops32.loop_exp, edges, np.float32)
    assert e[0] == np.float32(3.4027985e38) and e[1] == np.inf and e[2] == np.float32(1e-45) and e[3] == 0
    assert e[4] == np.inf and e[5] == 0 and e[6] == 1 and e[7] == 1 and np.isnan(e[8])


def test_float32_module_tanh_within_six_ulp_and_never_past_one(tanh32):
    rng = np.random.default_rng(7)
    xs = np.concatenate([rng.uniform(lo, hi, 200_000) for lo, hi in RANGES["tanh"]]
                        + [np.linspace(-12, 12, 400_001)]).astype(np.float32)
    got = run(tanh32, xs, np.float32)
    want = np.tanh(xs.astype(np.float64)).astype(np.float32)  # float64 tanh, then rounded
    assert ulps(got, want).max() <= 6
    assert np.abs(got).max() <= 1.0
    np.testing.assert_array_equal(run(tanh32, -xs, np.float32), -got)  # odd
    special = run(tanh32, [np.inf, -np.inf, 0.0, -0.0, np.nan, 1e-30, -1e-40, 9.5, 100.0], np.float32)
    assert list(special[:2]) == [1.0, -1.0] and np.isnan(special[4])
    assert special[2] == 0 and not np.signbit(special[2]) and np.signbit(special[3])
    assert special[5] == np.float32(1e-30) and special[6] == np.float32(-1e-40) and list(special[7:]) == [1.0, 1.0]


def test_float32_models_print_their_own_tanh_and_exp():
    x, y = gc.data("x"), gc.data("y")
    h = gc.param("h")
    loss = gc.sum((gc.tanh(h * x) - y) ** 2)
    assert "XLA" in gc.compile(loss, dtype="float32").source
    assert "expm1" in gc.compile(loss).source and "XLA" not in gc.compile(loss).source
    sig = gc.sum((gc.sigmoid(h * x) - y) ** 2)
    assert "r**7" in gc.compile(sig, dtype="float32").source and "r**13" in gc.compile(sig).source


def test_bench_mathlib_checks_and_times_every_loop(tmp_path):
    """benchmarks/bench_mathlib.py on a few values: every loop agrees with numpy (it exits with
    an error otherwise) and is reported, in the table and in the JSON."""
    script = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "bench_mathlib.py")
    out = subprocess.run([sys.executable, script, "--n", "2000", "--repeats", "2", "--json", str(tmp_path / "m.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| float")]
    assert len(rows) == 14 and sum("(float32 module)" in r for r in rows) == 2
    seconds = json.loads((tmp_path / "m.json").read_text())["seconds"]
    assert len(seconds) == 14 and all(len(ts) == 2 and min(ts) > 0 for ts in seconds.values())
