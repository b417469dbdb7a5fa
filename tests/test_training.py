"""fit(): stepping mode == compiled mode, resuming, checkpoints, progress, callbacks,
non-finite losses and plots."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import graphc as gc

X = np.linspace(-math.pi, math.pi, 2000)
Y = np.sin(X)
INIT = {"a": 0.3, "b": -0.2, "c": 0.1, "d": 0.05}
DATA = {"x": X, "y": Y}
ADAM = gc.Adam(lr=1e-3, schedule=gc.StepLR(step_size=700, gamma=0.5))
SGD = gc.SGD(lr=1e-6, momentum=0.5)


@pytest.fixture(scope="module")
def loss(cubic):
    return cubic  # conftest's tutorial cubic


@pytest.fixture(scope="module")
def full(loss):
    """2000 uninterrupted Adam steps, compiled mode."""
    return gc.fit(loss, DATA, INIT, optimizer=ADAM, steps=2000, log_every=100)


def test_history_semantics(full):
    assert [t for t, _ in full.history] == list(range(99, 2000, 100))
    assert full.steps == 2000 and full.state["count"] == 2000 and full.stopped is None
    assert all(isinstance(v, float) for v in full.params.values())


def test_stepping_equals_compiled(loss, full):
    seen = []
    res = gc.fit(loss, DATA, INIT, optimizer=ADAM, steps=2000, log_every=100,
                 callback=lambda t, l, p: seen.append((t, l)))
    np.testing.assert_allclose([v for _, v in res.history], [v for _, v in full.history], rtol=1e-12)
    assert res.history == full.history  # in fact bit for bit
    assert seen == res.history
    assert res.params == full.params


@pytest.mark.parametrize("first", [1000, 950, 1])
def test_resume_equals_uninterrupted(loss, full, first):
    one = gc.fit(loss, DATA, INIT, optimizer=ADAM, steps=first, log_every=100)
    two = gc.fit(loss, DATA, one.params, optimizer=ADAM, steps=2000 - first, log_every=100, state=one.state)
    on_grid = [(t, v) for t, v in one.history if t % 100 == 99]  # one also logs its last step
    every = gc.fit(loss, DATA, INIT, optimizer=ADAM, steps=first, log_every=1)
    assert one.history[-1] == every.history[-1] and one.history[-1][0] == first - 1
    assert on_grid + two.history == full.history
    assert two.params == full.params
    assert two.state["count"] == 2000
    np.testing.assert_array_equal(two.state["exp_avg_sq"], full.state["exp_avg_sq"])


def test_checkpoint_roundtrip(loss, full, tmp_path):
    one = gc.fit(loss, DATA, INIT, optimizer=ADAM, steps=1200, log_every=100)
    path = one.save(tmp_path / "run")
    assert path.endswith(".npz")
    ck = gc.load(path)
    assert ck.params == one.params and ck.history == one.history and ck.optimizer == ADAM
    assert ck.state["count"] == 1200
    two = gc.fit(loss, DATA, ck.params, optimizer=ck.optimizer, steps=800, log_every=100, state=ck.state)
    assert two.params == full.params
    assert ck.history + two.history == full.history


def test_checkpoint_tensor_params_and_errors(tmp_path):
    xx, y = gc.data("xx", shape=(None, 3)), gc.data("y")
    lin = gc.nn.Linear(3, 1, name="lin")
    loss = gc.nn.mse_loss(gc.flatten(lin(xx)), y, reduction="sum")  # "mean" hits a core codegen bug (n undefined in sums_0)
    rng = np.random.default_rng(0)
    data = {"xx": rng.normal(size=(50, 3)), "y": rng.normal(size=50)}
    init = {"lin.weight": np.zeros((1, 3)), "lin.bias": np.zeros(1)}
    res = gc.fit(loss, data, init, optimizer=gc.SGD(lr=0.1, momentum=0.9, nesterov=True), steps=20, log_every=5)
    ck = gc.load(res.save(tmp_path / "lin.npz"))
    np.testing.assert_array_equal(ck.params["lin.weight"], res.params["lin.weight"])
    assert ck.params["lin.weight"].shape == (1, 3)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(gc.GraphcError, match="bad.npz"):
        gc.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "future.npz", format=np.array("graphc-checkpoint"), version=np.array(99))
    with pytest.raises(gc.GraphcError, match="version 99"):
        gc.load(tmp_path / "future.npz")


def test_bad_state(loss):
    with pytest.raises(gc.GraphcError, match="momentum_buffer"):
        gc.fit(loss, DATA, INIT, optimizer=ADAM, steps=1, state={"count": 3, "momentum_buffer": np.zeros(4)})
    with pytest.raises(gc.GraphcError, match="exp_avg_sq"):
        gc.fit(loss, DATA, INIT, optimizer=ADAM, steps=1, state={"count": 3, "exp_avg": np.zeros(4)})


def test_callback_stops(loss):
    calls = []

    def callback(step, loss_value, params):
        calls.append(step)
        assert set(params) == {"a", "b", "c", "d"}
        return step < 499

    res = gc.fit(loss, DATA, INIT, optimizer=SGD, steps=2000, log_every=100, callback=callback)
    assert calls == [99, 199, 299, 399, 499]
    assert res.steps == 500 and res.stopped == "callback" and res.history[-1][0] == 499


def test_tol_stops(loss):
    res = gc.fit(loss, DATA, INIT, optimizer=SGD, steps=2000, log_every=10, tol=50.0)
    assert res.stopped == "tol" and res.loss <= 50.0
    assert all(v > 50.0 for _, v in res.history[:-1])
    assert res.steps == res.history[-1][0] + 1


def test_progress_bar(loss, capsys):
    gc.fit(loss, DATA, INIT, optimizer=SGD, steps=300, log_every=100, progress=True)
    err = capsys.readouterr().err
    assert "graphc fit" in err and "300/300" in err
    gc.fit(loss, DATA, INIT, optimizer=SGD, steps=300, log_every=100)  # not a TTY: no bar
    assert capsys.readouterr().err == ""


def test_progress_automatic_in_a_terminal(loss, capsys, monkeypatch):
    monkeypatch.setattr(gc.training.train, "LONG_RUN", 1e5)  # 2000 samples * 300 steps counts as long
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    res = gc.fit(loss, DATA, INIT, optimizer=SGD, steps=300, log_every=100)
    assert "300/300" in capsys.readouterr().err
    quiet = gc.fit(loss, DATA, INIT, optimizer=SGD, steps=300, log_every=100, progress=False)
    assert capsys.readouterr().err == "" and quiet.history == res.history


def test_progress_needs_tqdm(loss, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(gc.GraphcError, match="tqdm"):
        gc.fit(loss, DATA, INIT, optimizer=SGD, steps=10, progress=True)


def test_nonfinite_stops(loss):
    with pytest.raises(gc.NonFiniteLoss, match=r"step \d+") as info:
        gc.fit(loss, DATA, INIT, optimizer=gc.SGD(lr=1e-3), steps=2000, log_every=1)
    res = info.value.result
    assert res.stopped == "nonfinite" and res.steps < 2000
    assert all(math.isfinite(v) for v in res.params.values())
    assert math.isfinite(res.history[-2][1])
    partial = gc.fit(loss, DATA, INIT, optimizer=gc.SGD(lr=1e-3), steps=2000, log_every=1, check_finite=False)
    assert partial.stopped == "nonfinite" and partial.steps == res.steps


def test_bad_arguments(loss):
    with pytest.raises(gc.GraphcError, match="callback"):
        gc.fit(loss, DATA, INIT, optimizer=SGD, steps=1, callback=3)
    with pytest.raises(gc.GraphcError, match="optimizer"):
        gc.fit(loss, DATA, INIT, optimizer="adam", steps=1)


# ---- plots ----------------------------------------------------------------------------------
PNG = b"\x89PNG\r\n\x1a\n"


def test_plots(full, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    path = tmp_path / "history.png"
    full.plot_history(path)
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000
    p = full.params
    path = tmp_path / "fit.png"
    gc.plot_fit(X, Y, lambda x, a, b, c, d: a + b * x + c * x**2 + d * x**3, p, path=path)
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000


def test_plots_need_matplotlib(full, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(gc.GraphcError, match="matplotlib"):
        full.plot_history()
    with pytest.raises(gc.GraphcError, match="1-D"):
        gc.plot_fit(np.ones((2, 2)), np.ones(2), np.ones(2))
