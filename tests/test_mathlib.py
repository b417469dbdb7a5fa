"""graphc's own exp, tanh, log, log1p (codegen/mathlib.py): accuracy, edge values, vectorization, wiring."""

import json
import math
import os
import platform
import re
import subprocess
import sys
from types import SimpleNamespace

import mpmath
import numba
import numpy as np
import pytest
import sympy as sp

import graphc as gc
from graphc.runtime import loader
from graphc.codegen import emit, mathlib
from graphc.codegen.printer import printer
from graphc.compile import Timings, make_plan
from graphc.ir.graph import RESERVED


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


def test_bindings_copy_the_constants_of_the_helpers_a_function_calls():
    copy = "    tanh_c = TANH_C.copy()  # constants as run-time values (see TANH_C)"
    assert mathlib.bindings({"_tanh"}, "    ") == [copy]
    assert mathlib.bindings({"_tanh", "_exp"}, "    ") == [
        "    exp_c = EXP_C.copy()  # constants as run-time values (see EXP_C)", copy]  # in CONSTANTS' order
    assert mathlib.bindings(set(), "    ") == []
    assert mathlib.call("_tanh", "a*x") == "_tanh(a*x, tanh_c)" and mathlib.call("_exp", "x") == "_exp(x, exp_c)"


def test_printer_collects_the_helpers_each_function_prints():
    import sympy as sp

    from graphc.codegen.printer import printer

    p, x = printer(vector_math=True), sp.Symbol("x")
    with p.collecting() as outer:
        p.doprint(sp.tanh(x))
        with p.collecting() as inner:
            p.doprint(sp.exp(x))
    assert outer == {"_tanh", "_exp"} and inner == {"_exp"} and p.used == {"_tanh", "_exp"}


def tanh_loss():
    x, y = gc.data("x"), gc.data("y")
    a, b = gc.params("a b")
    return gc.sum((gc.tanh(a * x) + gc.sigmoid(b * x) - y) ** 2)


def assert_constants_bound(src):
    """Each helper's constants array is defined before it, and each function that calls it
    copies them once, first; returns the helpers (with constants) found in src."""
    found = set()
    for helper, (array, local) in mathlib.CONSTANTS.items():
        if f"def {helper}(" not in src:
            continue
        found.add(helper)
        assert src.index(f"{array} = np.array([") < src.index(f"def {helper}(x, c):")
        for fn in src.split("\ndef ")[1:]:  # each function that calls it copies its constants first
            if f"{helper}(" in fn and not fn.startswith(helper):
                copy = f"{local} = {array}.copy()"
                assert fn.count(copy) == 1 and fn.index(copy) < fn.index(f"{helper}(")
    return found


def test_cpu_and_parallel_paste_the_helpers_cuda_keeps_math():
    p = make_plan(tanh_loss(), None, Timings())
    for target in ("cpu", "parallel"):
        src = emit(p, target)
        assert src.index("OPTS = dict(") < src.index("MATH_OPTS = ") < src.index("def _exp_reduce(")
        assert src.index("def _tanh(") < src.index("def sums_0(")
        assert "_tanh(" in src.split("def sums_0(")[1] and "math.tanh" not in src
        assert assert_constants_bound(src) == {"_exp", "_tanh"}
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
print(repr(m.loss_and_grads(x=xs, y=np.sin(xs), a=0.7, b=-1.3)[0]))
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
    assert len(rows) == 28 and sum("(float32 module)" in r for r in rows) == 4
    seconds = json.loads((tmp_path / "m.json").read_text())["seconds"]
    assert len(seconds) == 28 and all(len(ts) == 2 and min(ts) > 0 for ts in seconds.values())


# ---- log and log1p ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def logs():
    """loop_log / loop_log1p (the helpers, float64 module; also its _log, LOG_C ...) and the
    float32 module's, as loop_log32 / loop_log1p32 (f32: that module): compiled once here."""
    calls = [("log", "_log"), ("log1p", "_log1p")]
    f64 = loader.load(mathlib.loops(calls), stem="mathlib_test_log")[0]
    f32 = loader.load(mathlib.loops(calls, float32=True), stem="mathlib_test_log_f32")[0]
    names = ("loop_log", "loop_log1p", "_log", "_log1p", "LOG_C", "LOG1P_C", "OPTS")
    return SimpleNamespace(**{k: getattr(f64, k) for k in names}, loop_log32=f32.loop_log,
                           loop_log1p32=f32.loop_log1p, f32=f32)


def log_samples(name, rng, n):
    """Dense samples of the whole domain: every binade (log-uniform), subnormals, the
    reduction's boundaries, 1 +- tiny; log1p: also negative arguments, up to -1 +- tiny."""
    parts = [np.exp(rng.uniform(-744.4, 709.7, n)), rng.uniform(0.5, 2.0, n), np.exp(rng.uniform(-0.36, 0.36, n)),
             rng.uniform(0, 2.3e-308, n // 4), 1 + rng.uniform(-1e-7, 1e-7, n // 4)]
    if name == "log1p":
        parts += [-np.exp(rng.uniform(-744.4, 0, n)), rng.uniform(-0.3, 0.42, n), rng.uniform(-1, -0.29, n),
                  -1 + np.exp(rng.uniform(-36.7, -1, n // 4)), rng.uniform(-1e-8, 1e-8, n // 4)]
    xs = np.concatenate(parts)
    return xs[xs > -1] if name == "log1p" else xs


def mp_log(name):
    mpmath.mp.prec = 120
    f = mpmath.log if name == "log" else mpmath.log1p
    return lambda v: float(f(mpmath.mpf(float(v))))


@pytest.mark.parametrize("name", ["log", "log1p"])
def test_log_float64_within_one_ulp_of_the_correctly_rounded_value(logs, name):
    """mpmath (120 bits) as the oracle, on 20,000 points over the whole domain (fdlibm's method:
    under 1 ulp of the exact value; measured on 10 million points, max 0.80 / 0.77 ulp)."""
    xs = log_samples(name, np.random.default_rng(21), 1_500)
    got = run(getattr(logs, f"loop_{name}"), xs, np.float64)
    want = np.array([mp_log(name)(v) for v in xs])
    d = ulps(got, want)
    assert d.max() <= 1, xs[np.argmax(d)]
    assert (d == 0).mean() > 0.9  # most results are the correctly rounded one


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="needs x87 80-bit long double")
@pytest.mark.parametrize("name", ["log", "log1p"])
def test_log_float64_within_one_ulp_on_a_million_points(logs, name):
    xs = log_samples(name, np.random.default_rng(22), 100_000)
    got = run(getattr(logs, f"loop_{name}"), xs, np.float64)
    want = getattr(np, name)(xs.astype(np.longdouble)).astype(np.float64)  # logl / log1pl, then rounded
    d = ulps(got, want)
    assert d.max() <= 1, xs[np.argmax(d)]


@pytest.mark.parametrize("name", ["log", "log1p"])
def test_log_float32_arguments_and_float32_module_within_one_ulp(logs, name):
    """float32 data: the float64 helper (computed in float64, then rounded) and the float32
    module's own (musl's logf / log1pf; exhaustively over all float32: max 0.84 ulp)."""
    rng = np.random.default_rng(23)
    xs = log_samples(name, rng, 100_000)
    xs = np.concatenate([xs[xs < 3e38], rng.uniform(-1, 3, 200_000), rng.uniform(0, 1.2e-38, 50_000)])
    xs = xs.astype(np.float32)
    xs = xs[(xs > (0 if name == "log" else -1)) & np.isfinite(xs)]
    want = getattr(np, name)(xs.astype(np.float64)).astype(np.float32)  # float64, then rounded
    for loop in (getattr(logs, f"loop_{name}"), getattr(logs, f"loop_{name}32")):
        got = run(loop, xs, np.float32)
        assert got.dtype == np.float32
        d = ulps(got, want)
        assert d.max() <= 1, xs[np.argmax(d)]
        assert (d == 0).mean() > 0.9  # float64 helper: 99.9%, the float32 module's: 94%


LOG_SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 1e-310, 2.2250738585072014e-308, 1e-300, 1.0, -1.0, 2.0, 0.5,
               1 + 2.0**-52, 1 - 2.0**-53, 1e-20, -1e-20, 1.1e-16, -1.1e-16, 1e-8, 0.4142, 0.4143, -0.2929,
               -0.2928, -0.5, -1 + 2.0**-53, -1 - 2.0**-52, -2.0, 1.7976931348623157e308, -1e308,
               math.inf, -math.inf, math.nan]


def numpy_reference(name, xs):
    with np.errstate(divide="ignore", invalid="ignore"):
        return getattr(np, name)(xs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_special_values_follow_numpy_exactly(logs, dtype):
    with np.errstate(over="ignore"):
        xs = np.array(LOG_SPECIAL).astype(dtype)
    loops = [("log", logs.loop_log), ("log1p", logs.loop_log1p)]
    if dtype == np.float32:
        loops += [("log", logs.loop_log32), ("log1p", logs.loop_log1p32)]
    for name, loop in loops:
        got = run(loop, xs, dtype)
        want = numpy_reference(name, xs)
        assert ulps(got, want).max() <= 1, list(zip(xs, got, want))
        special = ~np.isfinite(want) | (want == 0)  # exactly, sign of zero included
        if name == "log1p":
            special |= np.abs(xs) < 1e-16  # log1p(x) = x
        np.testing.assert_array_equal(got[special], want[special])
        assert (np.signbit(got) == np.signbit(want))[special & (want == 0)].all()
    with np.errstate(divide="ignore", invalid="ignore"):
        log, log1p = run(logs.loop_log, xs, dtype), run(logs.loop_log1p, xs, dtype)
    at = {v: k for k, v in reversed(list(enumerate(LOG_SPECIAL))) if v == v}  # (0.0 and -0.0: index 0)
    assert log[0] == -math.inf and log[1] == -math.inf and np.isnan(log[at[-2.0]])
    assert log[at[math.inf]] == math.inf and np.isnan(log[at[-math.inf]]) and np.isnan(log[-1])
    assert log[at[1.0]] == 0 and not np.signbit(log[at[1.0]])
    assert log1p[at[-1.0]] == -math.inf and np.isnan(log1p[at[-2.0]])
    if dtype == np.float64:  # (in float32 these round to -0.0 and -1.0)
        assert np.isnan(log[at[-5e-324]]) and np.isnan(log1p[at[-1 - 2.0**-52]])
        assert log1p[at[-1 + 2.0**-53]] == math.log1p(-1 + 2.0**-53)
    assert log1p[at[math.inf]] == math.inf and np.isnan(log1p[at[-math.inf]]) and np.isnan(log1p[-1])
    assert np.signbit(log1p[1]) and log1p[1] == 0  # log1p(-0) = -0
    assert log1p[at[1e-20]] == dtype(1e-20) and log1p[at[-1e-20]] == dtype(-1e-20)  # tiny x: x itself


def test_log_subnormals_exactly_as_numpy(logs):
    sub = np.concatenate([np.array([5e-324, 1e-323, 2.2250738585072009e-308]),
                          np.random.default_rng(24).uniform(0, 2.3e-308, 20_000)])
    assert ulps(run(logs.loop_log, sub, np.float64), np.log(sub)).max() <= 1
    np.testing.assert_array_equal(run(logs.loop_log1p, sub, np.float64), sub)  # log1p(x) = x below 2**-53
    np.testing.assert_array_equal(run(logs.loop_log1p, -sub, np.float64), -sub)
    sub32 = np.array([1e-45, 1e-40, 1.1754942e-38, 1.1754944e-38], np.float32)
    for loop in (logs.loop_log, logs.loop_log32):
        want = np.log(sub32.astype(np.float64)).astype(np.float32)
        assert ulps(run(loop, sub32, np.float32), want).max() <= 1


def test_log_integer_arguments_are_promoted_to_float64(logs):
    assert logs._log(10, logs.LOG_C) == pytest.approx(math.log(10), rel=1e-15)
    assert logs._log1p(3, logs.LOG1P_C) == pytest.approx(math.log1p(3), rel=1e-15)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="vector width checked for x86-64")
@pytest.mark.parametrize("name", ["log", "log1p"])
def test_loop_calling_log_is_inlined_and_vectorized(logs, name):
    """No call left (to libm or to the helpers), vector arithmetic in the IR, float64 and the
    float32 module's (whose integer work must stay 32-bit: float32 vectors)."""
    for module, width in ((logs, "double"), (logs.f32, "float")):
        loop = getattr(module, f"loop_{name}")
        fn = numba.njit(**dict(module.OPTS, cache=False))(loop.py_func)
        x = np.ones(64, dtype=np.float64 if width == "double" else np.float32)
        fn(x, np.empty_like(x))
        ir = fn.inspect_llvm(fn.signatures[0])
        assert re.search(rf"fdiv[^\n]*<\d+ x {width}>", ir)
        assert not re.search(r"call [^\n]*(@log|4_log|6_log1p|9_log_core)", ir)


def test_printer_prints_log_and_log1p_as_helpers():
    from sympy.codegen.cfunctions import log1p
    x = sp.Symbol("x")
    e = sp.log(x) + log1p(sp.exp(-x)) + sp.log(3) * x
    plain = printer()
    assert "math.log(x)" in plain.doprint(e) and "math.log1p(math.exp(-x))" in plain.doprint(e)
    p = printer(vector_math=True)
    text = p.doprint(e)
    assert "_log(x, log_c)" in text and "_log1p(_exp(-x, exp_c), log1p_c)" in text
    assert "math.log(3)" in text and p.used == {"_exp", "_log", "_log1p"}
    assert mathlib.closure({"_log1p", "_log"}) == ["_log_core", "_log", "_log1p"]
    assert mathlib.source({"_log1p"}).count("def _log_core(") == 1


def bce_loss():
    x1, x2, y = gc.data("x1"), gc.data("x2"), gc.data("y")
    w0, w1, w2 = gc.params("w0 w1 w2")
    z = w0 + w1 * x1 + w2 * x2
    return gc.sum(gc.relu(z) - z * y + gc.softplus(-gc.abs(z))) + gc.sum(gc.log(x1 * x1 + w0 * w0))


def test_model_with_softplus_and_log_prints_the_helpers_cuda_keeps_math():
    p = make_plan(bce_loss(), None, Timings())
    src = emit(p, "cpu")
    assert "_log1p(" in src.split("def sums_0(")[1] and "_log(" in src.split("def sums_0(")[1]
    assert "math.log" not in src.split("def sums_0(")[1]
    assert src.index("def _log_core(") < src.index("def _log(") < src.index("def sums_0(")
    assert assert_constants_bound(src) == {"_exp", "_log", "_log1p"}
    cuda = emit(p, "cuda")
    assert "math.log1p(" in cuda and "_log" not in cuda and "MATH_OPTS" not in cuda


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_model_with_softplus_and_log_matches_numpy(dtype):
    rng = np.random.default_rng(25)
    x1, x2 = rng.normal(size=2001), rng.normal(size=2001)
    y = (x1 - 2 * x2 + rng.normal(size=2001) > 0).astype(float)
    f = gc.compile(bce_loss(), dtype=dtype)
    r = f(x1=x1, x2=x2, y=y, w0=0.3, w1=-1.2, w2=2.5)
    z = 0.3 - 1.2 * x1 + 2.5 * x2
    want = np.sum(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))) + np.sum(np.log(x1 * x1 + 0.09))
    assert r.loss == pytest.approx(want, rel=1e-12 if dtype == "float64" else 1e-5)
    s = 1 / (1 + np.exp(-z)) - y
    assert r.grads["w1"] == pytest.approx(np.sum(s * x1), rel=1e-10 if dtype == "float64" else 1e-4)


def test_bench_bce_checks_and_times_graphc_and_the_hand_written_loops(tmp_path):
    """benchmarks/bench_bce.py on a few samples: the three implementations agree (it exits with
    an error otherwise) and each is timed, in the table and in the JSON it writes."""
    script = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "bench_bce.py")
    out = subprocess.run([sys.executable, script, "--n", "2000", "--steps", "3", "--repeats", "2", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert sum(line.startswith(("| graphc", "| numba")) for line in out.stdout.splitlines()) == 3
    (path,) = tmp_path.glob("bce_*.json")
    result = json.loads(path.read_text())
    assert set(result["ns_per_sample_step"]) == {"graphc", "numba (math)", "numba (mathlib)"}
    assert all(len(ts) == 2 and min(ts) > 0 for ts in result["seconds"].values())


# ---- the helpers' compiled home (mathlib.MODULES): compiled once per installation -------
def test_helper_modules_are_current():
    """graphc/codegen/helpers/ holds exactly the text ``python -m graphc.codegen.mathlib`` writes."""
    folder = os.path.join(os.path.dirname(mathlib.__file__), "helpers")
    want = {mathlib.MODULES[f32].rsplit(".", 1)[1] + ".py": mathlib.module_text(f32) for f32 in (False, True)}
    have = {name for name in os.listdir(folder) if re.fullmatch(r"f(64|32)_\w+\.py", name)}
    assert have == set(want), "run: python -m graphc.codegen.mathlib"
    for name, text in want.items():
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            assert f.read() == text, "run: python -m graphc.codegen.mathlib"


def test_generated_modules_call_the_compiled_helpers():
    """A generated module keeps the helpers' text but calls the copies compiled once per
    installation (its own are never compiled); float32 modules theirs, Newton's update solve."""
    import importlib

    f64, f32 = (importlib.import_module(mathlib.MODULES[k]) for k in (False, True))
    f = gc.compile(tanh_loss())
    assert "def _tanh(" in f.source and f.module._tanh is f64._tanh and f.module.TANH_C is f64.TANH_C
    assert f.module._exp is f64._exp and not hasattr(f64, "_sin")
    g = gc.compile(tanh_loss(), dtype="float32")
    assert g.module._tanh is f32._tanh and g.module._exp is f32._exp
    x, y = gc.data("x"), gc.data("y")
    b1, b2 = gc.params("b1 b2")
    xs = np.linspace(0, 4, 50)
    res = gc.fit(gc.sum((b1 * (1 - gc.exp(-b2 * x)) - y) ** 2), data={"x": xs, "y": 2 * (1 - np.exp(-xs))},
                 init={"b1": 1.5, "b2": 0.8}, optimizer=gc.Newton(damping=1e-6), steps=30)
    module, source = res.compiled.module, res.compiled.source
    assert module.newton_direction is f64.newton_direction and module.solve is f64.solve
    assert "def solve(A, b):" in source and "delta = newton_direction(grad, 2, damping)" in source
    assert res.params["b1"] == pytest.approx(2.0, rel=1e-9) and res.params["b2"] == pytest.approx(1.0, rel=1e-9)


def test_export_compiles_its_own_helpers_without_graphc(tmp_path):
    """An exported module without graphc to import: the text it holds is what runs."""
    f = gc.compile(tanh_loss())
    path = tmp_path / "tanh_model.py"
    f.export(path)
    blocked = "import sys; sys.modules['graphc'] = None\n" + EXPORT_CHECK  # import graphc raises ImportError
    out = subprocess.run([sys.executable, "-c", blocked, str(path)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    xs = np.linspace(-3, 3, 1001)
    assert float(out.stdout) == f(x=xs, y=np.sin(xs), a=0.7, b=-1.3).loss
