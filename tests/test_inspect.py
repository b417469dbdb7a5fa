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
from graphc.tools import explain

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
loss, grads = load(sys.argv[1]).loss_and_grads(x=xs, y=np.sin(xs), **init)
params, history = load(sys.argv[2]).fit(x=xs, y=np.sin(xs), init=init, steps=50, log_every=10)
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


# ---- blocked plans (wide layers): gradients in index notation ------------------------------
def evaluator(expr, free=()):
    """``expr`` (index notation) as a Python function of (values, *free indices): data,
    parameters and ``n`` by name from ``values``; every Sum runs as a Python loop."""
    consts: dict = {}

    def const(e):  # a constant array read at a symbolic index -> an IndexedBase of its own
        return consts.setdefault(e.base, sp.IndexedBase(f"_c{len(consts)}"))[e.indices]

    expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and isinstance(e.base, sp.NDimArray), const)
    bases = sorted(expr.atoms(sp.IndexedBase), key=str)
    labels = {b.label for b in bases}
    scalars = sorted((q for q in expr.free_symbols if q not in labels and q not in free
                      and not isinstance(q, sp.Indexed)), key=str)
    renamed = {**{b: sp.IndexedBase(f"_b{k}") for k, b in enumerate(bases)},
               **{q: sp.Symbol(f"_s{k}") for k, q in enumerate(scalars)}}
    fn = sp.lambdify([renamed[b] for b in bases] + [renamed[q] for q in scalars] + list(free),
                     expr.xreplace(renamed), modules="math")
    arrays = {str(c.label): np.array(a.tolist(), dtype=float) for a, c in consts.items()}

    def call(values, *idx):
        values = {**values, **arrays}
        arrays_ = [np.asarray(values[str(b.label)]) for b in bases]
        return fn(*arrays_, *[values[q.name] for q in scalars], *idx)

    return call


def gradient_values(g, values, shape):
    """A gradient from f.gradients (an expression, or a Lambda over the index symbols) at every index."""
    fn = evaluator(g.expr, g.variables) if isinstance(g, sp.Lambda) else evaluator(g)
    out = np.zeros(shape)
    for idx in np.ndindex(*shape):
        out[idx] = fn(values, *idx)
    return out


def test_blocked_gradients_read_per_sample_and_sum_to_hand_written_backprop():
    from tests.test_blocked import mlp, numpy_mlp

    loss, init = mlp((3, 4, 1))
    f = gc.compile(loss, schedule="blocked")  # inspection only: no Numba compile
    grads = f.gradients
    assert list(grads) == ["l0.weight", "l0.bias", "l1.weight", "l1.bias"]
    j, k = sp.symbols("j k", integer=True, nonnegative=True)
    assert isinstance(grads["l0.weight"], sp.Lambda) and grads["l0.weight"].variables == (j, k)
    text = str(grads["l0.weight"].expr)  # one sample: X[m] is this sample's row, the hidden units a Sum
    assert "X[k]" in text and "Sum(" in text and "(h, 0, 3)" in text and "[i" not in text
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((5, 3)), rng.standard_normal(5)
    _, ref = numpy_mlp(init, X, y, 2)
    for name, g in grads.items():
        total = sum(gradient_values(g, {**init, "X": X[s], "y": y[s], "n": 5}, init[name].shape)
                    for s in range(5))
        np.testing.assert_allclose(total, ref[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_blocked_and_fused_gradients_are_the_same_formulas():
    xx = gc.data("xx", shape=(None, 3))
    lin = gc.nn.Linear(3, 1, name="lin")
    loss = gc.nn.mse_loss(gc.flatten(lin(xx)), gc.data("y"), reduction="mean")
    fused = gc.compile(loss, schedule="fused").gradients
    blocked = gc.compile(loss, schedule="blocked").gradients
    for name, elems in fused.items():
        for idx in np.ndindex(*elems.shape):
            assert sp.simplify(blocked[name](*idx).doit() - elems[idx]) == 0, (name, idx)


def structural_terms():
    """Every structural op, as in tests/test_nn.py (stop_gradient aside: a loss formula does not show it)."""
    X, x = gc.data("X", shape=(None, 3)), gc.data("x")
    W, M = gc.param("W", (4, 3)), gc.param("M", (3, 3))
    b, v, s = gc.param("b", (4,)), gc.param("v", (4,)), gc.param("s")
    r = gc.param("r", (3, 1))
    h = gc.tanh(X @ W.T + b)
    return [
        gc.sum(gc.sin(X @ (M @ W[0]))) + gc.sum(W @ v[:3] * b) + v @ b,
        gc.sum(gc.tanh(X[:, None, :] * M) * r),
        gc.mean(gc.mean(h, axis=1, keepdims=True) ** 2) + gc.sum(gc.mean(X @ M, axis=0) ** 3),
        gc.sum(gc.broadcast_to(b, (3, 4)) * gc.broadcast_to(r, (3, 4))),
        gc.sum(h[:, 1:4:2] ** 2) + gc.sum(M[::2, 1] * W[1:3, 0]) + gc.sum(h[:, 3] * x),
        gc.sum(gc.transpose(M) @ M * gc.constant(np.arange(9.0).reshape(3, 3))),
        gc.sum(gc.flatten(X @ W[:1].T) * x) + gc.sum(gc.reshape(W, (2, 6)) ** 2 * gc.reshape(M, (9,))[:6]),
        gc.sum(gc.stack([s * b, v, b * v], axis=0) ** 2 * gc.constant(np.arange(12.0).reshape(3, 4))),
        gc.sum(gc.sin(gc.stack([x * s, x + b[0]], axis=-1) @ W[:2, :2])),
        gc.sum(gc.tanh(X @ gc.concatenate([W, M], axis=0).T)) + gc.sum(gc.concatenate([b, v, r[:, 0]]) ** 3),
        gc.sum(gc.einsum("ni,ij,nj->n", X, M, X) * x) + gc.einsum("ij,ij->", W, W),
        gc.sum(gc.log_softmax(X @ W.T + b, axis=1) * gc.softmax(X @ M, axis=1)[:, :1]),
        gc.sum(gc.relu(h - 0.1) * gc.where(x > 0, s, 2.0)[:, None]),
    ]


def test_blocked_exact_gradients_match_differences_of_the_loss_formula():
    """Every structural op's index arithmetic (index, unindex, stack, concatenate, reshape,
    keepdims, einsum, a sum over the samples inside another): d(loss formula)/dp by central
    differences equals the gradient formula, both evaluated by SymPy's lambdify."""
    loss = sum(structural_terms(), gc.constant(0.0))
    f = gc.compile(loss, schedule="blocked")
    exprs = explain.expressions(f.plan, per_sample=False)  # sums over the samples written out
    rng = np.random.default_rng(0)
    values = {"X": rng.standard_normal((3, 3)), "x": rng.standard_normal(3), "n": 3}
    values.update((p.name, rng.standard_normal(p.shape) * 0.5 if p.shape else 0.3) for p in f.plan.wrt)
    loss_at = evaluator(exprs["loss"])
    for p in f.plan.wrt:
        shape = np.shape(values[p.name])
        got = gradient_values(exprs[p.name], values, shape)
        fd = np.zeros(shape)
        for idx in np.ndindex(*shape):
            step = np.zeros(shape)
            step[idx] = 1e-6
            up, down = ({**values, p.name: values[p.name] + d} for d in (step, -step))
            fd[idx] = (loss_at(up) - loss_at(down)) / 2e-6
        np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-7, err_msg=p.name)


def test_a_wide_layer_is_one_sum_not_an_unrolled_expression():
    from tests.test_blocked import mlp

    loss, _ = mlp((3, 256, 1))
    f = gc.compile(loss)
    assert f.schedule == "blocked"
    g = f.gradients["l0.weight"]
    assert "(h, 0, 255)" in str(g.expr) and len(str(g)) < 1000  # 256 hidden units, written once
    weights = sp.IndexedBase("l0.weight", real=True)
    unrolled = g(0, 0).doit().atoms(sp.Indexed)  # .doit() writes the sums out
    assert {weights[h, m] for h in range(256) for m in range(3)} <= unrolled


def test_blocked_latex_stats_and_graph():
    from tests.test_blocked import mlp

    loss, _ = mlp((3, 4, 1))
    f = gc.compile(loss, schedule="blocked")
    text = f.latex()
    lines = text.splitlines()[1:-1]
    assert text.startswith("\\begin{aligned}") and text.endswith("\\end{aligned}") and len(lines) == 5
    assert lines[0].startswith("L &= \\sum_{i=0}^{n - 1}")
    assert "\\frac{\\partial L}{\\partial \\mathrm{l0\\_weight}_{j,k}} &= \\sum_{i=0}^{n - 1}" in lines[1]
    assert "{X}_{i,k}" in lines[1] and "\\sum_{h=0}^{3}" in lines[1]
    s = f.stats
    assert s.schedule == "blocked" and s.passes == 1 and s.accumulators == len(f.plan.accumulators)
    assert s.bytes_per_sample == 8 * (3 + 1)  # X's row and y, read once
    # forward X @ W0.T: 12 mul + 8 add; backward: d(l0.weight) alone sums 12 products per sample
    assert s.ops_after_cse["tanh"] >= 4 and s.flops_per_sample > 12 + 8 + 12
    assert "blocked schedule" in str(s) and "bytes read per sample" in str(s)
    assert gc.compile(loss, schedule="blocked", dtype="float32").stats.bytes_per_sample == 16
    assert f.graph.splitlines()[0].startswith("{ lambda X:(N, 3)")


def test_blocked_gradients_say_what_they_cannot_show(monkeypatch):
    from tests.test_blocked import mlp

    loss, _ = mlp((3, 4, 1))
    f = gc.compile(loss, schedule="blocked")

    def refuse(self, node, idx):
        raise gc.UnsupportedError("no reshape today")

    monkeypatch.setitem(explain.INDEX_RULES, "reshape", refuse)
    with pytest.raises(gc.UnsupportedError, match="no reshape today"):
        f.gradients
    shown = explain.shown_gradients(f.plan)
    assert all(isinstance(v, gc.UnsupportedError) for v in shown.values())


SAFE_EXPORT = """
import importlib.util, json, sys
import numpy as np
spec = importlib.util.spec_from_file_location("m", sys.argv[1]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
rng = np.random.default_rng(0)
X, T, W = rng.standard_normal((50, 3)), rng.standard_normal((50, 2)), rng.standard_normal((2, 3))
errors = []
for call in (lambda: m.loss_and_grads(X, T, W),                   # positional: refused
             lambda: m.loss_and_grads(X=T, T=X, W=W),             # swapped: shapes differ
             lambda: m.loss_and_grads(X=X[:40], T=T, W=W),        # sample counts differ
             lambda: m.loss_and_grads(X=X, T=T, W=W[:, :2]),      # a parameter's shape
             lambda: m.loss_and_grads(X=X.astype(complex), T=T, W=W)):
    try:
        call()
        errors.append(None)
    except (TypeError, ValueError) as e:
        errors.append(str(e))
loss, grads = m.loss_and_grads(T=T, W=W, X=X)  # any order
params, history = m.fit(X=X, T=T, init={"W": W}, steps=22, log_every=5)  # off the log grid
print(json.dumps({"errors": errors, "loss": loss, "params": params["W"].tolist(), "history": history}))
"""


def test_export_takes_keywords_and_checks_every_array(tmp_path):
    """The issue's reproducer: positional or swapped arrays returned 1e274 instead of an error."""
    X, T, W = gc.data("X", shape=(None, 3)), gc.data("T", shape=(None, 2)), gc.param("W", (2, 3))
    loss = gc.sum((X @ W.T - T) ** 2)
    rng = np.random.default_rng(0)
    Xs, Ts, Ws = rng.standard_normal((50, 3)), rng.standard_normal((50, 2)), rng.standard_normal((2, 3))
    res = gc.fit(loss, data={"X": Xs, "T": Ts}, init={"W": Ws}, optimizer=gc.SGD(lr=1e-3), steps=22,
                 log_every=5, batch_size=16, shuffle=True, seed=3)
    path = res.compiled.export(tmp_path / "batched.py")
    text = open(path).read()
    assert "def loss_and_grads(*, X, T, W):" in text and "batch_size=16, shuffle=True, seed=3" in text
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", SAFE_EXPORT, str(path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    positional, swapped, short, wrong_w, complex_ = got["errors"]
    assert "positional" in positional and "'X' has shape (50, 2)" in swapped
    assert "'T' has 50 samples but 'X' has 40" in short
    assert "'W' has shape (2, 2)" in wrong_w and "complex" in complex_
    assert got["loss"] == gc.compile(loss)(X=Xs, T=Ts, W=Ws).loss
    np.testing.assert_array_equal(got["params"], res.params["W"])  # the same mini-batches, the same bits
    assert [tuple(h) for h in got["history"]] == res.history
