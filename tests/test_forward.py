"""Forward functions (issue #19 items 1 and 2): gc.compile of an array or of several
expressions, and res.predict. Checked against numpy computing the same formulas directly."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import targets
from graphc.codegen.parallel import BLOCK

rng = np.random.default_rng(7)
X = gc.data("X", shape=(None, 3))
W, b = gc.param("W", (2, 3)), gc.param("b", (2,))
Z = gc.tanh(X @ W.T + b)
Xs, Ws, bs = rng.standard_normal((301, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)


def layer(x):
    return np.tanh(x @ Ws.T + bs)


@pytest.fixture(scope="module")
def several():
    """Per-sample outputs that read sums over the samples, a scalar and a fixed-shape output."""
    return gc.compile((Z - gc.mean(Z, axis=0), gc.sum(Z), gc.mean(Z, axis=0), W * 2.0))


def test_an_array_compiles_a_forward_function_of_its_shape():
    g = gc.compile(Z)
    v = g(X=Xs, W=Ws, b=bs).value
    assert isinstance(g, gc.Forward) and v.shape == (301, 2) and v.dtype == np.float64
    np.testing.assert_allclose(v, layer(Xs), rtol=1e-14, atol=1e-15)
    assert "def forward(X, theta, acc, result_0):" in g.source and "result_0[i, 1] = " in g.source
    assert gc.compile(Z) is g  # compiled once per process


def test_several_outputs_with_sums_over_the_samples(several):
    centred, total, mean, twice = several(X=Xs, W=Ws, b=bs).value
    z = layer(Xs)
    np.testing.assert_allclose(centred, z - z.mean(axis=0), rtol=1e-12, atol=1e-14)
    assert total == pytest.approx(z.sum(), rel=1e-13) and isinstance(total, float)
    np.testing.assert_allclose(mean, z.mean(axis=0), rtol=1e-13)
    np.testing.assert_array_equal(twice, 2.0 * Ws)
    assert "sums_0(" in several.source  # the sums are a pass before the stores


def test_outputs_without_data_and_a_new_sample_count(several):
    g = gc.compile(gc.sum(W, axis=1) + b)
    np.testing.assert_allclose(g(W=Ws, b=bs).value, Ws.sum(axis=1) + bs, rtol=1e-15)
    centred = several(X=Xs[:5], W=Ws, b=bs).value[0]
    assert centred.shape == (5, 2)


def test_float32_and_parallel_in_blocks():
    n = BLOCK + 1001  # past one block: the sums run in blocks over the cores
    x = rng.standard_normal((n, 3))
    z = layer(x)
    p = gc.compile((Z, gc.mean(Z)), target="parallel")
    v, m = p(X=x, W=Ws, b=bs).value
    np.testing.assert_allclose(v, z, rtol=1e-14, atol=1e-15)
    assert m == pytest.approx(z.mean(), rel=1e-12)
    f32 = gc.compile(Z, dtype="float32")(X=Xs, W=Ws, b=bs).value
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, layer(Xs), rtol=2e-6, atol=2e-6)


def test_nan_and_inf_pass_through_as_numpy_computes_them():
    x = gc.data("x")
    g = gc.compile(gc.maximum(x, 0.0) * 2.0)
    out = g(x=np.array([np.nan, -1.0, np.inf, 3.0])).value
    np.testing.assert_array_equal(out, np.maximum([np.nan, -1.0, np.inf, 3.0], 0.0) * 2.0)


def test_predict_binds_the_fitted_parameters():
    x, y = gc.data("x"), gc.data("y")
    a, c = gc.params("a c")
    pred = a * gc.exp(c * x)
    xs = np.linspace(0.0, 1.0, 40)
    res = gc.fit(gc.sum((pred - y) ** 2), data={"x": xs, "y": 2.0 * np.exp(-0.5 * xs)},
                 init={"a": 1.0, "c": 0.0}, optimizer=gc.Adam(lr=0.05), steps=400)
    new = np.array([-1.0, 0.25, 3.0])
    want = res.params["a"] * np.exp(res.params["c"] * new)
    np.testing.assert_allclose(res.predict(pred, {"x": new}), want, rtol=1e-14)
    np.testing.assert_allclose(res.predict(pred, x=new), want, rtol=1e-14)
    lo, hi = res.predict((pred - 0.1, pred + 0.1), x=new)
    np.testing.assert_allclose(hi - lo, 0.2, rtol=1e-12)


def test_a_scalar_loss_has_value_equal_to_loss():
    x = gc.data("x")
    a = gc.param("a")
    r = gc.compile(gc.sum((a * x) ** 2))(x=np.arange(4.0), a=2.0)
    assert r.value == r.loss == 56.0


def test_forward_errors():
    with pytest.raises(gc.GraphcError, match="no gradients"):
        gc.compile(Z, wrt=[W])
    with pytest.raises(gc.TargetError, match="forward functions"):  # wide layers: not on the GPU yet
        targets.get("cuda").emitter("blocked", forward=True)
    with pytest.raises(gc.GraphcError, match="graph expression"):
        gc.compile((Z, 3.0))
    with pytest.raises(gc.BindingError, match="missing"):
        gc.compile(Z)(X=Xs, W=Ws)


def test_wide_layers_run_blocked_like_their_loss():
    """A 3-64-64-2 net: the blocked schedule (as its loss would be), checked against numpy's
    forward pass; with softmax over the outputs (a per-sample sum) and a mean (a sum over
    the samples) in one call."""
    from graphc import nn

    model = nn.Sequential(nn.Linear(3, 64, name="l0"), nn.Tanh(), nn.Linear(64, 64, name="l1"), nn.ReLU(),
                          nn.Linear(64, 2, name="l2"))
    out = model(X)
    p = model.init(0)
    x = rng.standard_normal((1000, 3))
    h = np.maximum(np.tanh(x @ p["l0.weight"].T + p["l0.bias"]) @ p["l1.weight"].T + p["l1.bias"], 0.0)
    want = h @ p["l2.weight"].T + p["l2.bias"]
    g = gc.compile((gc.softmax(out, axis=1), gc.mean(out)))
    assert g.plan.schedule == "blocked" and g.plan.forward and "for i0 in range(0, n, ROWS):" in g.source
    probs, mean = g(X=x, **p).value
    e = np.exp(want - want.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), rtol=1e-13, atol=1e-15)
    assert mean == pytest.approx(want.mean(), rel=1e-12)
    np.testing.assert_allclose(gc.compile(out, target="parallel")(X=x, **p).value, want, rtol=1e-13, atol=1e-14)


EXPORTED = """
import importlib.util, json, sys
import numpy as np
spec = importlib.util.spec_from_file_location("m", sys.argv[1]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
rng = np.random.default_rng(7)
X, W, b = rng.standard_normal((9, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)
z, total = m.outputs(X=X, W=W, b=b)
try:
    m.outputs(X=X[:, :2], W=W, b=b)
    error = None
except ValueError as e:
    error = str(e)
print(json.dumps({"z": z.tolist(), "total": total, "error": error}))
"""


def test_a_forward_function_exports_and_runs_without_graphc(tmp_path):
    import json
    import os
    import subprocess
    import sys

    g = gc.compile((Z, gc.sum(Z)))
    path = g.export(tmp_path / "layer.py")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", EXPORTED, str(path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    r = np.random.default_rng(7)
    X0, W0, b0 = r.standard_normal((9, 3)), r.standard_normal((2, 3)), r.standard_normal(2)
    z, total = g(X=X0, W=W0, b=b0).value
    assert got["z"] == z.tolist() and got["total"] == total  # the same bits
    assert "'X' has shape (9, 2)" in got["error"]
