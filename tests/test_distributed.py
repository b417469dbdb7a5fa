"""Dask inputs: the same numbers as the single-machine fit, on any scheduler, through faults."""

import os
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import graphc as gc

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

INIT = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}
STEPS, LOG = 40, 10


def chunked(sine_data, chunks=250):
    x, y = sine_data
    return {"x": da.from_array(x, chunks=chunks), "y": da.from_array(y, chunks=chunks)}


@pytest.fixture(scope="module")
def local_fit(sine_data, cubic):
    x, y = sine_data
    return gc.fit(cubic, data={"x": x, "y": y}, init=INIT, optimizer=gc.SGD(lr=1e-6), steps=STEPS, log_every=LOG)


def assert_same_run(res, ref, rtol=1e-12):
    assert [t for t, _ in res.history] == [t for t, _ in ref.history]
    np.testing.assert_allclose([v for _, v in res.history], [v for _, v in ref.history], rtol=rtol)
    for k in INIT:
        assert res.params[k] == pytest.approx(ref.params[k], rel=rtol)


def test_evaluate_with_dask_inputs(sine_data, cubic_cpu):
    local = cubic_cpu(x=sine_data[0], y=sine_data[1], **INIT)
    remote = cubic_cpu(**chunked(sine_data), **INIT)
    assert remote.loss == pytest.approx(local.loss, rel=1e-13)
    for k in INIT:
        assert remote.grads[k] == pytest.approx(local.grads[k], rel=1e-12)


def test_fit_default_scheduler_matches_cpu(sine_data, cubic, local_fit):
    res = gc.fit(cubic, data=chunked(sine_data), init=INIT, optimizer=gc.SGD(lr=1e-6), steps=STEPS, log_every=LOG)
    assert_same_run(res, local_fit)
    again = gc.fit(cubic, data=chunked(sine_data), init=INIT, optimizer=gc.SGD(lr=1e-6), steps=STEPS, log_every=LOG)
    assert again.history == res.history and again.params == res.params  # same bits every run


def test_mean_uses_the_global_sample_count(sine_data):
    x, y = gc.data("x"), gc.data("y")
    w = gc.param("w")
    f = gc.compile(gc.mean((w * x - y) ** 2))
    local = f(x=sine_data[0], y=sine_data[1], w=0.7)
    remote = f(**chunked(sine_data, chunks=300), w=0.7)
    assert remote.loss == pytest.approx(local.loss, rel=1e-13)
    assert remote.grads["w"] == pytest.approx(local.grads["w"], rel=1e-12)


def test_mismatched_chunks_are_rechunked_with_a_warning(sine_data, cubic_cpu):
    x, y = sine_data
    with pytest.warns(UserWarning, match="rechunked"):
        r = cubic_cpu(x=da.from_array(x, chunks=250), y=da.from_array(y, chunks=500), **INIT)
    assert r.loss == pytest.approx(cubic_cpu(x=x, y=y, **INIT).loss, rel=1e-13)


def test_missing_dask_is_a_clear_error(sine_data, cubic_cpu, monkeypatch):
    data = chunked(sine_data)
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(gc.GraphcError, match="graphc\\[dask\\]"):
        cubic_cpu(**data, **INIT)


@pytest.fixture(scope="module")
def cluster():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=40)
        client = distributed.Client(cluster, set_as_default=False)
    yield cluster, client
    client.close()
    cluster.close()


@pytest.mark.slow
def test_fit_on_a_two_process_cluster_matches_cpu(sine_data, cubic, local_fit, cluster):
    _, client = cluster
    res = gc.fit(cubic, data=chunked(sine_data), init=INIT, optimizer=gc.SGD(lr=1e-6), steps=STEPS,
                 log_every=LOG, client=client)
    assert_same_run(res, local_fit)


@pytest.mark.slow
def test_killing_a_worker_does_not_change_the_result(sine_data, cubic, local_fit, cluster):
    _, client = cluster
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]

    def kill_soon():
        time.sleep(0.5)
        os.kill(victim, 9)

    killer = threading.Thread(target=kill_soon)
    killer.start()
    res = gc.fit(cubic, data=chunked(sine_data), init=INIT, optimizer=gc.SGD(lr=1e-6), steps=STEPS,
                 log_every=LOG, client=client)
    killer.join()
    assert victim not in client.run(os.getpid).values()  # the worker really died (and was replaced)
    assert_same_run(res, local_fit)


def test_mini_batches_are_seeded_groups_of_chunks(sine_data):
    """batch_size=500 on 250-sample chunks: 2 chunks a step, drawn per epoch from (seed, epoch)."""
    x, y = gc.data("x"), gc.data("y")
    a, b = gc.params("a b")
    loss = gc.mean((a + b * x - y) ** 2)
    xs, ys = sine_data
    kw = dict(init={"a": 0.0, "b": 0.0}, optimizer=gc.SGD(lr=0.1), steps=10, log_every=1,
              batch_size=500, shuffle=True, seed=3)
    res = gc.fit(loss, data=chunked(sine_data), **kw)
    again = gc.fit(loss, data=chunked(sine_data), **kw)
    assert again.history == res.history and again.params == res.params
    # the same steps in plain numpy: 8 chunks, 4 groups of 2 per epoch
    p, history = np.array([0.0, 0.0]), []
    for t in range(10):
        epoch, group = divmod(t, 4)
        order = np.random.default_rng([3, epoch]).permutation(8)
        idx = np.concatenate([np.arange(250 * j, 250 * j + 250) for j in order[2 * group: 2 * group + 2]])
        r = p[0] + p[1] * xs[idx] - ys[idx]
        history.append((t, np.mean(r**2)))
        p = p - 0.1 * np.array([np.mean(2 * r), np.mean(2 * r * xs[idx])])
    np.testing.assert_allclose([v for _, v in res.history], [v for _, v in history], rtol=1e-12)
    np.testing.assert_allclose([res.params["a"], res.params["b"]], p, rtol=1e-12)
    epochs = gc.fit(loss, data=chunked(sine_data), **{**kw, "steps": None, "epochs": 2})
    assert epochs.steps == 8


def test_a_blocked_plan_runs_its_chunks_on_one_blas_thread(monkeypatch):
    """Each chunk task of a blocked plan holds SciPy's BLAS to one thread (as the cpu target
    does) and the result equals the local one; a fused plan's tasks do not touch BLAS."""
    from graphc.runtime import threads

    if threads.blas_threads() is None:
        pytest.skip("SciPy's BLAS here is not OpenBLAS")
    X, y = gc.data("X", (None, 4)), gc.data("y")
    W, v = gc.param("W", (4, 24)), gc.param("v", (24,))
    f = gc.compile(gc.sum((gc.tanh(X @ W) @ v - y) ** 2), schedule="blocked")
    rng = np.random.default_rng(4)
    values = {"X": rng.standard_normal((1200, 4)), "y": rng.standard_normal(1200)}
    params = {"W": rng.standard_normal((4, 24)) * 0.3, "v": rng.standard_normal(24) * 0.3}
    seen = []
    enter = threads._BlasPin.enter

    def spy(self):
        enter(self)
        seen.append(threads.blas_threads())

    monkeypatch.setattr(threads._BlasPin, "enter", spy)
    local = f(**values, **params)
    seen.clear()
    remote = f(X=da.from_array(values["X"], chunks=(300, 4)), y=da.from_array(values["y"], chunks=300), **params)
    assert seen == [1] * 4  # one pinned call per chunk
    assert remote.loss == pytest.approx(local.loss, rel=1e-12)
    for k in params:
        np.testing.assert_allclose(remote.grads[k], local.grads[k], rtol=1e-11, atol=1e-12)
    fused = gc.compile(gc.sum((X @ W[:, 0] - y) ** 2), schedule="fused")
    seen.clear()
    fused(X=da.from_array(values["X"], chunks=(300, 4)), y=da.from_array(values["y"], chunks=300), W=params["W"])
    assert seen == []
