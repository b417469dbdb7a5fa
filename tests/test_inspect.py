"""Inspection: f.gradients, f.latex(), f.graph, f.stats, f.timings, f.export(path)."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import graphc as gc
from graphc import explain

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INIT = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("graphc-cache"))
    old = os.environ.get("GRAPHC_CACHE_DIR")
    os.environ["GRAPHC_CACHE_DIR"] = path
    yield path
    if old is None:
        del os.environ["GRAPHC_CACHE_DIR"]
    else:
        os.environ["GRAPHC_CACHE_DIR"] = old


def cubic():
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    return gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)


def samples(n=200):
    xs = np.linspace(-math.pi, math.pi, n)
    return xs, np.sin(xs)


def hand_gradients():
    a, b, c, d, x, y = sp.symbols("a b c d x y", real=True)
    term = (a + b * x + c * x**2 + d * x**3 - y) ** 2  # the loss of one sample
    return {str(p): sp.diff(term, p) for p in (a, b, c, d)}, (x, y)


def test_gradients_equal_the_hand_derivation_for_the_tutorial_cubic():
    f = gc.compile(cubic())
    hand, _ = hand_gradients()
    assert list(f.gradients) == ["a", "b", "c", "d"]
    for name, expr in f.gradients.items():
        assert sp.simplify(expr - hand[name]) == 0, name


def test_exact_gradients_sum_the_per_sample_terms_over_indexed_data():
    f = gc.compile(cubic())
    hand, (x, y) = hand_gradients()
    i = explain.SAMPLE
    xi, yi = sp.IndexedBase("x", real=True)[i], sp.IndexedBase("y", real=True)[i]
    for name, expr in explain.gradients(f.plan, per_sample=False).items():
        assert isinstance(expr, sp.Sum) and expr.limits[0][0] == i
        assert sp.simplify(expr.function - hand[name].xreplace({x: xi, y: yi})) == 0


def test_gradients_summed_over_the_samples_give_the_compiled_gradients():
    loss = cubic()
    f = gc.compile(loss)
    xs, ys = samples()
    r = f(x=xs, y=ys, **INIT)
    for name, expr in f.gradients.items():
        symbols = {s.name: s for s in expr.free_symbols}
        fn = sp.lambdify([symbols[k] for k in "abcdxy"], expr, "numpy")
        total = np.sum(fn(*INIT.values(), xs, ys))
        assert total == pytest.approx(r.grads[name], rel=1e-12)


def test_tensor_parameters_give_arrays_of_their_shape():
    xx = gc.data("xx", shape=(None, 3))
    lin = gc.nn.Linear(3, 1, name="lin")
    loss = gc.nn.mse_loss(gc.flatten(lin(xx)), gc.data("y"), reduction="mean")
    grads = gc.compile(loss).gradients
    assert grads["lin.weight"].shape == (1, 3) and grads["lin.bias"].shape == (1,)
    w, b = sp.IndexedBase("lin.weight", real=True), sp.IndexedBase("lin.bias", real=True)
    X, y, n = sp.IndexedBase("xx", real=True), sp.Symbol("y", real=True), explain.N_SYMBOL
    residual = b[0] + sum(w[0, k] * X[k] for k in range(3)) - y
    assert sp.simplify(grads["lin.weight"][0, 2] - 2 * residual * X[2] / n) == 0


def test_latex_parses_back_to_the_same_formulas():
    pytest.importorskip("antlr4", reason="sympy.parsing.latex needs antlr4-python3-runtime 4.11")
    from sympy.parsing.latex import parse_latex

    f = gc.compile(cubic())
    text = f.latex()
    assert text.startswith("\\begin{aligned}") and text.endswith("\\end{aligned}")
    lines = text.splitlines()[1:-1]
    hand, (x, y) = hand_gradients()
    a, b, c, d = sp.symbols("a b c d", real=True)
    wanted = [("L", (a + b * x + c * x**2 + d * x**3 - y) ** 2)] + [(name, hand[name]) for name in "abcd"]
    assert len(lines) == len(wanted)
    for line, (name, expected) in zip(lines, wanted):
        lhs, rhs = line.rstrip(" \\").split("&=")
        assert name in lhs and (name == "L" or "\\partial" in lhs)
        parsed = parse_latex(rhs)
        assert sp.latex(parsed)  # SymPy prints it back
        assert isinstance(parsed, sp.Sum), rhs
        # x_{i} is sample i of x: compare the summand with the one-sample formula
        rename = {s: sp.Symbol(s.name.split("_")[0], real=True) for s in parsed.function.free_symbols}
        got = parsed.function.xreplace(rename)
        assert sp.simplify(got - expected) == 0, (name, got)


def test_graph_prints_one_line_per_node():
    f = gc.compile(cubic())
    lines = f.graph.splitlines()
    assert lines[0].startswith("{ lambda") and lines[-1].startswith("  in (")
    assert len(lines) == 2 + 11  # the cubic has 11 op nodes
    assert any("sum v9" in line for line in lines)


def test_stats_count_the_fused_loop():
    s = gc.compile(cubic()).stats
    assert s.passes == 1 and s.accumulators == 5
    assert s.bytes_per_sample == 16  # x and y, float64, read once
    assert 0 < s.flops_per_sample < s.flops_before_cse
    assert s.step_time(10**6, bandwidth=16e9) == pytest.approx(1e-3)
    assert s.step_time(10**6, bandwidth=1e12, flops=1e9) == pytest.approx(s.flops_per_sample * 1e-3)
    assert "bytes read per sample" in str(s)
    assert gc.compile(cubic(), dtype="float32").stats.bytes_per_sample == 8


def test_count_ops_reads_small_powers_as_products():
    x, y = sp.symbols("x y")
    assert explain.count_ops(x**3 * y + sp.tanh(x) - 1 / y) == {"mul": 3, "add": 2, "tanh": 1, "div": 1}


EXPORT_CHECK = """
import importlib.util, json, sys
import numpy as np
sys.modules["graphc"] = None  # graphc must not be needed
def load(path):
    spec = importlib.util.spec_from_file_location(path.rsplit("/", 1)[-1][:-3], path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod
xs = np.linspace(-np.pi, np.pi, 200)
init = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}
loss, grads = load(sys.argv[1]).loss_and_grads(xs, np.sin(xs), init)
params, history = load(sys.argv[2]).fit(xs, np.sin(xs), init, steps=50, log_every=10)
print(json.dumps({"loss": loss, "grads": grads, "params": params, "history": history}))
"""


def test_export_runs_without_graphc(tmp_path):
    loss = cubic()
    xs, ys = samples()
    f = gc.compile(loss)
    res = gc.fit(loss, data={"x": xs, "y": ys}, init=INIT, optimizer=gc.SGD(lr=1e-4), steps=50, log_every=10)
    f.export(tmp_path / "cubic_grad.py")
    res.compiled.export(tmp_path / "cubic_fit.py")  # fit's function knows its optimizer
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", EXPORT_CHECK, str(tmp_path / "cubic_grad.py"),
                          str(tmp_path / "cubic_fit.py")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    r = f(x=xs, y=ys, **INIT)
    assert got["loss"] == r.loss and got["grads"] == r.grads
    assert got["params"] == res.params
    assert [tuple(h) for h in got["history"]] == res.history


TIMINGS = """
import json, numpy as np, graphc as gc
x, y = gc.data("x"), gc.data("y")
a, b = gc.params("a b")
f = gc.compile(gc.sum((a + b * x - y) ** 2))
f(x=np.arange(3.0), y=np.ones(3), a=0.5, b=0.5)
print(json.dumps(f.timings))
"""


def test_timings_show_a_cache_hit_in_a_second_process(tmp_path):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT)
    runs = [subprocess.run([sys.executable, "-c", TIMINGS], env=env, capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr + runs[1].stderr
    first, second = (json.loads(r.stdout) for r in runs)
    assert first["cache"] == "miss" and second["cache"] == "hit"
    assert first["plan"] == "miss" and second["plan"] == "hit"  # the plan cache: no SymPy the second time
    for stage in ("graph", "autodiff", "schedule", "cse", "codegen", "plancache", "load", "numba"):
        assert first[stage] >= 0
    for stage in ("graph", "plancache", "load", "numba"):
        assert second[stage] >= 0
    assert not {"autodiff", "schedule", "cse", "codegen"} & set(second)
