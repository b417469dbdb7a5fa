"""Validation during fit (issue #19 item 3): res.val_history is the loss on the held-out data
at the parameters of each logged step, checked by compiling the loss on that data and
evaluating it at parameters replayed to those steps; early stopping and restore_best."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

x, y = gc.data("x"), gc.data("y")
a, b = gc.params("a b")
LOSS = gc.mean((a * gc.exp(b * x) - y) ** 2)
rng = np.random.default_rng(3)
XT = np.linspace(0.0, 1.0, 60)
YT = 2.0 * np.exp(-1.5 * XT) + 0.05 * rng.standard_normal(60)
XV = np.linspace(0.05, 0.95, 25)
YV = 2.0 * np.exp(-1.5 * XV) + 0.05 * rng.standard_normal(25)
INIT = {"a": 1.0, "b": 0.0}


def test_val_history_is_the_loss_on_held_out_data_at_each_logged_step():
    opt = gc.Adam(lr=0.05)
    res = gc.fit(LOSS, data={"x": XT, "y": YT}, init=INIT, optimizer=opt, steps=53, log_every=10,
                 val_data={"x": XV, "y": YV})
    assert [t for t, _ in res.val_history] == [t for t, _ in res.history] == [9, 19, 29, 39, 49, 52]
    f = gc.compile(LOSS)
    for t, v in res.val_history:  # the parameters of step t: t updates from the start
        at = gc.fit(LOSS, data={"x": XT, "y": YT}, init=INIT, optimizer=opt, steps=t, log_every=10).params if t else INIT
        assert v == pytest.approx(f(x=XV, y=YV, **at).loss, rel=1e-12)
    plain = gc.fit(LOSS, data={"x": XT, "y": YT}, init=INIT, optimizer=opt, steps=53, log_every=10)
    assert plain.history == res.history and plain.params == res.params  # validating changes nothing


def test_patience_stops_and_restore_best_returns_the_best_parameters():
    over = gc.SGD(lr=0.8)  # overshoots: the validation loss rises after a while
    res = gc.fit(LOSS, data={"x": XT, "y": YT}, init=INIT, optimizer=over, steps=400, log_every=5,
                 val_data={"x": XV, "y": YV}, patience=3, restore_best=True, check_finite=False)
    losses = [v for _, v in res.val_history]
    best = int(np.nanargmin(losses))
    assert res.stopped == "patience" and res.steps < 400
    assert len(losses) - 1 - best == 3  # three logged steps without a better one
    f = gc.compile(LOSS)
    assert f(x=XV, y=YV, **res.params).loss == pytest.approx(losses[best], rel=1e-12)


def test_val_data_errors():
    with pytest.raises(gc.GraphcError, match="val_data lacks 'y'"):
        gc.fit(LOSS, data={"x": XT, "y": YT}, init=INIT, steps=2, val_data={"x": XV})
    with pytest.raises(gc.GraphcError, match="patience"):
        gc.fit(LOSS, data={"x": XT, "y": YT}, init=INIT, steps=2, val_data={"x": XV, "y": YV}, patience=0)


def test_validation_on_the_parallel_target_matches_cpu():
    kw = dict(data={"x": XT, "y": YT}, init=INIT, optimizer=gc.Adam(lr=0.05), steps=30, log_every=10,
              val_data={"x": XV, "y": YV})
    cpu, par = gc.fit(LOSS, **kw), gc.fit(LOSS, target="parallel", **kw)
    assert [t for t, _ in par.val_history] == [t for t, _ in cpu.val_history]
    np.testing.assert_allclose([v for _, v in par.val_history], [v for _, v in cpu.val_history], rtol=1e-12)


# ---- validation inside the compiled loop (cpu, parallel): checked against numpy ----------
def sgd_path(lr, steps, X, Y, batch=None):
    """The parameters (a, b) before each update t of SGD on LOSS, by numpy (path[t]; path[steps]
    after the last); ``batch``: step t on samples (t % nb)*batch .. +batch, as fit(batch_size=)."""
    a_, b_, path = INIT["a"], INIT["b"], []
    nb = -(-len(X) // batch) if batch else 1
    for t in range(steps):
        path.append((a_, b_))
        lo = (t % nb) * batch if batch else 0
        xs, ys = (X[lo:lo + batch], Y[lo:lo + batch]) if batch else (X, Y)
        e = np.exp(b_ * xs)
        r = a_ * e - ys
        a_, b_ = a_ - lr * np.mean(2 * r * e), b_ - lr * np.mean(2 * r * a_ * e * xs)
    return path + [(a_, b_)]


def np_loss(p, X, Y):
    return float(np.mean((p[0] * np.exp(p[1] * X) - Y) ** 2))


def patience_rule(values, patience):
    """The index of the logged step at which ``patience`` runs out (None: never): a new best is a
    lower value, or any value while the best is NaN; also the index of the best then."""
    best, at, waited = None, None, 0
    for k, v in enumerate(values):
        if best is None or v < best or np.isnan(best):
            best, at, waited = v, k, 0
        else:
            waited += 1
        if waited >= patience:
            return k, at
    return None, at


def test_val_loss_at_each_logged_step_equals_numpy_at_that_steps_parameters():
    res = gc.fit(LOSS, data={"x": XT, "y": YT}, init=INIT, optimizer=gc.SGD(lr=0.5), steps=47, log_every=5,
                 val_data={"x": XV, "y": YV})
    path = sgd_path(0.5, 47, XT, YT)
    assert [t for t, _ in res.val_history] == [t for t, _ in res.history] == [4, 9, 14, 19, 24, 29, 34, 39, 44, 46]
    for (t, v), (_, loss) in zip(res.val_history, res.history):
        assert v == pytest.approx(np_loss(path[t], XV, YV), rel=1e-10)
        assert loss == pytest.approx(np_loss(path[t], XT, YT), rel=1e-10)
    assert "def train_val(" in res.source and "val_loss = evaluate(*val, theta, grad, acc)" in res.source


def test_early_stopping_inside_the_loop_stops_where_patience_runs_out():
    over = dict(data={"x": XT, "y": YT}, init=INIT, optimizer=gc.SGD(lr=0.8), steps=300, log_every=5,
                val_data={"x": XV, "y": YV}, check_finite=False)
    full = gc.fit(LOSS, **over)
    values = [v for _, v in full.val_history]
    k, best = patience_rule(values, 3)
    assert k is not None  # the validation loss does rise
    t = full.val_history[k][0]
    res = gc.fit(LOSS, patience=3, **over)
    assert res.stopped == "patience" and res.steps == t + 1  # the step that ran out of patience ran
    assert res.val_history == full.val_history[:k + 1] and res.history == full.history[:k + 1]
    path = sgd_path(0.8, t + 1, XT, YT)
    np.testing.assert_allclose([res.params["a"], res.params["b"]], path[t + 1], rtol=1e-10)
    kept = gc.fit(LOSS, patience=3, restore_best=True, **over)
    assert kept.steps == res.steps and kept.val_history == res.val_history
    np.testing.assert_allclose([kept.params["a"], kept.params["b"]], path[full.val_history[best][0]], rtol=1e-10)


def test_validation_inside_mini_batch_loop_equals_numpy():
    kw = dict(data={"x": XT, "y": YT}, init=INIT, optimizer=gc.SGD(lr=0.5), steps=23, log_every=2,
              batch_size=16, val_data={"x": XV, "y": YV})
    res = gc.fit(LOSS, **kw)
    assert "def train_batches_val(" in res.source
    path = sgd_path(0.5, 23, XT, YT, batch=16)
    assert [t for t, _ in res.val_history] == [t for t, _ in res.history]
    for t, v in res.val_history:  # over all of the validation data, not a batch of it
        assert v == pytest.approx(np_loss(path[t], XV, YV), rel=1e-10)
    values = [v for _, v in res.val_history]
    k, best = patience_rule(values, 1)
    assert k is not None
    stopped = gc.fit(LOSS, patience=1, restore_best=True, **kw)
    assert stopped.stopped == "patience" and stopped.steps == res.val_history[k][0] + 1
    assert stopped.val_history == res.val_history[:k + 1]
    np.testing.assert_allclose([stopped.params["a"], stopped.params["b"]], path[res.val_history[best][0]], rtol=1e-10)


def test_a_nan_validation_loss_is_a_best_only_until_the_next_one():
    yv = YV.copy()
    yv[3] = np.nan  # every validation loss is NaN
    res = gc.fit(LOSS, data={"x": XT, "y": YT}, init=INIT, optimizer=gc.SGD(lr=0.5), steps=20, log_every=5,
                 val_data={"x": XV, "y": yv}, patience=1, restore_best=True)
    assert res.stopped is None and len(res.val_history) == 4 and all(np.isnan(v) for _, v in res.val_history)
    np.testing.assert_allclose([res.params["a"], res.params["b"]], sgd_path(0.5, 20, XT, YT)[19], rtol=1e-10)


def test_validation_in_the_loop_is_one_compiled_call(monkeypatch):
    from graphc import forward
    from graphc.training import train

    calls = []
    real = train._validated
    monkeypatch.setattr(train, "_validated", lambda *a: calls.append(a[8]) or real(*a))  # a[8]: steps
    monkeypatch.setattr(forward, "compile_forward", lambda *a, **k: pytest.fail("validated from Python"))
    res = gc.fit(LOSS, data={"x": XT, "y": YT}, init=INIT, optimizer=gc.Adam(lr=0.05), steps=40, log_every=10,
                 val_data={"x": XV, "y": YV})
    assert [s for s in calls if s] == [40] and len(res.val_history) == 4
    plain = gc.fit(LOSS, data={"x": XT, "y": YT}, init=INIT, optimizer=gc.Adam(lr=0.05), steps=2)
    assert "train_val" not in plain.source and "val_history" not in plain.source


def test_float32_validation_in_the_loop():
    kw = dict(data={"x": XT, "y": YT}, init=INIT, optimizer=gc.Adam(lr=0.05), steps=30, log_every=10,
              val_data={"x": XV, "y": YV}, restore_best=True)
    f32, f64 = gc.fit(LOSS, dtype="float32", **kw), gc.fit(LOSS, **kw)
    np.testing.assert_allclose([v for _, v in f32.val_history], [v for _, v in f64.val_history], rtol=1e-4)
    assert isinstance(f32.params["a"], float)


def test_patience_and_restore_best_on_the_parallel_target_match_cpu():
    xv, yv = np.repeat(XV, 800), np.repeat(YV, 800)  # more than a parallel block: evaluate's prange loop
    kw = dict(data={"x": XT, "y": YT}, init=INIT, optimizer=gc.SGD(lr=0.8), steps=300, log_every=5,
              val_data={"x": xv, "y": yv}, patience=3, restore_best=True, check_finite=False)
    cpu, par = gc.fit(LOSS, **kw), gc.fit(LOSS, target="parallel", **kw)
    assert par.stopped == cpu.stopped == "patience" and par.steps == cpu.steps
    np.testing.assert_allclose([v for _, v in par.val_history], [v for _, v in cpu.val_history], rtol=1e-12)
    np.testing.assert_allclose([par.params["a"], par.params["b"]], [cpu.params["a"], cpu.params["b"]], rtol=1e-12)
    k = int(np.argmin([v for _, v in cpu.val_history]))
    path = sgd_path(0.8, cpu.steps, XT, YT)
    np.testing.assert_allclose([cpu.params["a"], cpu.params["b"]], path[cpu.val_history[k][0]], rtol=1e-10)


def test_validation_in_the_blocked_loop_equals_numpy():
    from graphc import nn

    X = gc.data("X", shape=(None, 3))
    model = nn.Sequential(nn.Linear(3, 64, name="l0"), nn.Tanh(), nn.Linear(64, 1, name="l1"))
    loss = nn.mse_loss(gc.flatten(model(X)), y)
    r = np.random.default_rng(7)
    XS, YS, XW, YW = r.standard_normal((50, 3)), r.standard_normal(50), r.standard_normal((30, 3)), r.standard_normal(30)
    init = model.init(0)

    def forward(p, X):
        h = np.tanh(X @ p["l0.weight"].T + p["l0.bias"])
        return h, (h @ p["l1.weight"].T + p["l1.bias"])[:, 0]

    path, p = [], {k: v.copy() for k, v in init.items()}
    for _ in range(8):  # numpy SGD, backpropagated by hand
        path.append({k: v.copy() for k, v in p.items()})
        h, out = forward(p, XS)
        g = (2 * (out - YS) / len(YS))[:, None]
        gh = (g @ p["l1.weight"]) * (1 - h**2)
        grads = {"l1.weight": g.T @ h, "l1.bias": g.sum(0), "l0.weight": gh.T @ XS, "l0.bias": gh.sum(0)}
        p = {k: v - 0.5 * grads[k] for k, v in p.items()}
    res = gc.fit(loss, data={"X": XS, "y": YS}, init=init, optimizer=gc.SGD(lr=0.5), steps=8, log_every=2,
                 schedule="blocked", val_data={"X": XW, "y": YW}, restore_best=True)
    assert "def train_val(" in res.source and "ROWS = " in res.source  # the blocked schedule
    values = [np.mean((forward(path[t], XW)[1] - YW) ** 2) for t, _ in res.val_history]
    np.testing.assert_allclose([v for _, v in res.val_history], values, rtol=1e-10)
    best = path[res.val_history[int(np.argmin(values))][0]]
    for k in init:
        np.testing.assert_allclose(res.params[k], best[k], rtol=1e-10, atol=1e-14)


def test_validation_from_python_with_dask_data_equals_the_compiled_loops():
    """Dask data (like cuda) still validates from Python between chunks: the same steps, losses
    and best parameters as the compiled loop's validation."""
    da = pytest.importorskip("dask.array")
    kw = dict(init=INIT, optimizer=gc.SGD(lr=0.8), steps=300, log_every=5, val_data={"x": XV, "y": YV}, patience=3,
              restore_best=True, check_finite=False)
    loop = gc.fit(LOSS, data={"x": XT, "y": YT}, **kw)
    host = gc.fit(LOSS, data={"x": da.from_array(XT, chunks=20), "y": da.from_array(YT, chunks=20)}, **kw)
    assert host.stopped == loop.stopped == "patience" and host.steps == loop.steps
    assert [t for t, _ in host.val_history] == [t for t, _ in loop.val_history]
    np.testing.assert_allclose([v for _, v in host.val_history], [v for _, v in loop.val_history], rtol=1e-12)
    np.testing.assert_allclose([host.params["a"], host.params["b"]], [loop.params["a"], loop.params["b"]], rtol=1e-12)
