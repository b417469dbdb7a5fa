"""Threads, processes and determinism.

A compiled function is called from several Python threads at once (parallel code on
Numba's workqueue layer would abort the process: graphc picks a threadsafe layer or
serializes); two processes compile the same graph into one cache at once; results are the
same bits run after run and for every thread count.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numba
import numpy as np
import pytest

import graphc as gc
from graphc.runtime import threads

from . import strategies  # noqa: F401 - private cache dir when run alone

N = 100_000  # several parallel blocks
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def model():
    x, y = gc.data("x"), gc.data("y")
    a, b, c = gc.params("a b c")
    return gc.sum((a + b * gc.sin(x) + c * x * x - y) ** 2)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    x = rng.uniform(-2, 2, N)
    return {"x": x, "y": np.cos(x), "a": 0.1, "b": -0.4, "c": 0.25}


@pytest.fixture(scope="module", params=["cpu", "parallel"])
def compiled(request):
    return gc.compile(model(), target=request.param)


def bits(r) -> tuple:
    return (r.loss.hex(),) + tuple(v.hex() for v in r.grads.values())


def hammer(fn, n_threads: int = 6, calls: int = 15) -> list:
    """Call ``fn(k)`` from ``n_threads`` threads at once; return every result (re-raising errors)."""
    results, errors = [], []
    start = threading.Barrier(n_threads)

    def work(k: int) -> None:
        try:
            start.wait()
            for _ in range(calls):
                results.append((k, fn(k)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_threads_get_correct_results(compiled, data):
    """Each thread binds its own parameters: every result must be its own, bit for bit."""
    expected = {k: bits(compiled({**data, "a": 0.1 * k})) for k in range(6)}
    for k, r in hammer(lambda k: compiled({**data, "a": 0.1 * k})):
        assert bits(r) == expected[k]


def test_fit_from_threads(data):
    loss = model()
    small = {"x": data["x"][:40_000], "y": data["y"][:40_000]}
    init = {"a": 0.0, "b": 0.0, "c": 0.0}
    kw = dict(optimizer=gc.SGD(lr=1e-6), steps=20, log_every=5, target="parallel")
    want = gc.fit(loss, small, init, **kw)
    for _, res in hammer(lambda k: gc.fit(loss, small, init, **kw), n_threads=4, calls=2):
        assert res.params == want.params and res.history == want.history


def test_compile_the_same_graph_from_threads(data):
    """Threads compile one new graph at once: none may get a half-imported module."""
    x, y = gc.data("x"), gc.data("y")
    a, b, c = gc.params("a b c")
    loss = gc.sum((a + b * gc.sin(x) + c * x**3 - y) ** 2)  # a source not imported yet
    xs, ys = data["x"][:1000], data["y"][:1000]
    want = np.sum((0.1 - 0.4 * np.sin(xs) + 0.25 * xs**3 - ys) ** 2)
    for _, r in hammer(lambda k: gc.compile(loss)(x=xs, y=ys, a=0.1, b=-0.4, c=0.25), n_threads=8, calls=1):
        assert r.loss == pytest.approx(want, rel=1e-12)


def test_a_threadsafe_layer_or_a_lock():
    layer = numba.threading_layer()  # parallel code has run in this module
    if layer == "workqueue":
        assert threads.needs_lock()
    else:
        assert layer in threads.SAFE_LAYERS and not threads.needs_lock()


WORKQUEUE = textwrap.dedent("""
    import threading, numpy as np, graphc as gc, numba
    x, a = gc.data("x"), gc.param("a")
    f = gc.compile(gc.sum((a * x - 1.0) ** 2), target="parallel")
    xs = np.linspace(0, 1, 100_000)
    want = f(x=xs, a=0.5).loss
    bad = []
    def work():
        for _ in range(40):
            if f(x=xs, a=0.5).loss != want:
                bad.append(1)
    pool = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in pool]; [t.join() for t in pool]
    print(numba.threading_layer(), len(bad))
""")


def test_workqueue_layer_is_serialized_not_aborted(tmp_path):
    """Forced onto workqueue, concurrent parallel calls would abort the process: the lock holds."""
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue", "GRAPHC_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", WORKQUEUE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["workqueue", "0"]


# ---- determinism -----------------------------------------------------------------------
def test_same_bits_run_after_run(compiled, data):
    first = bits(compiled(data))
    for _ in range(5):
        assert bits(compiled(data)) == first


def test_same_bits_for_every_thread_count(data):
    f = gc.compile(model(), target="parallel")
    cpu = gc.compile(model(), target="cpu")
    saved = numba.get_num_threads()
    try:
        seen = set()
        for k in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(k)
            seen.add(bits(f(data)))
            seen.add(("cpu",) + bits(cpu(data)))
    finally:
        numba.set_num_threads(saved)
    assert len(seen) == 2, seen  # one result for parallel, one for cpu, whatever the thread count
    par, ser = sorted(seen, key=len)[0], sorted(seen, key=len)[1][1:]
    assert float.fromhex(par[0]) == pytest.approx(float.fromhex(ser[0]), rel=1e-12)


COMPILE = textwrap.dedent("""
    import numpy as np, graphc as gc
    x, y = gc.data("x"), gc.data("y")
    a, b = gc.params("a b")
    f = gc.compile(gc.sum((a + b * gc.tanh(x) - y) ** 2))
    xs = np.linspace(-1, 1, 50_000)
    r = f(x=xs, y=xs ** 3, a=0.2, b=0.7)
    fns = (f.module.evaluate, f.module.sums_0)
    hits, misses = (sum(getattr(fn, k).total() for fn in fns) for k in ("_cache_hits", "_cache_misses"))
    print(f.timings["cache"], hits, misses, r.loss.hex(), r.grads["a"].hex(), r.grads["b"].hex())
""")


def test_two_processes_compile_at_once_leave_a_valid_cache(tmp_path):
    """Both racing processes get the result; a third loads Numba's machine code from the cache
    (no compile) and gets the same bits, as does this process."""
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-c", COMPILE]
    racers = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in racers]
    for p, (out, err) in zip(racers, outs):
        assert p.returncode == 0, err[-2000:]
    third = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-2000:]
    results = [out.split() for out, _ in outs] + [third.stdout.split()]
    assert results[2][0] == "hit" and int(results[2][1]) >= 1 and results[2][2] == "0", results  # no compile
    x, y = gc.data("x"), gc.data("y")
    a, b = gc.params("a b")
    xs = np.linspace(-1, 1, 50_000)
    here = gc.compile(gc.sum((a + b * gc.tanh(x) - y) ** 2))(x=xs, y=xs**3, a=0.2, b=0.7)
    assert {tuple(r[3:]) for r in results} == {bits(here)}, results
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.rglob("*.tmp*"))


# ---- BLAS threads: a blocked plan's np.dot runs on one thread, on every target -------------------
class _Spy:
    """A generated function that records SciPy's BLAS thread count when it is called."""

    def __init__(self, fn):
        self.fn, self.overloads, self.seen = fn, fn.overloads, []

    def __call__(self, *args):
        self.seen.append(threads.blas_threads())
        return self.fn(*args)


@pytest.fixture
def blas_at_three():
    """SciPy's OpenBLAS set to 3 threads for the test (as a user's setting), then put back."""
    if threads.blas_threads() is None:
        pytest.skip("SciPy's BLAS here is not OpenBLAS: graphc leaves its threads alone")
    get, set_ = threads._blas()
    before = get()
    set_(3)
    yield 3
    set_(before)


def _wide():
    X, y = gc.data("X", (None, 4)), gc.data("y")
    W, v = gc.param("W", (4, 24)), gc.param("v", (24,))
    loss = gc.sum((gc.tanh(X @ W) @ v - y) ** 2)
    rng = np.random.default_rng(9)
    values = {"X": rng.standard_normal((3000, 4)), "y": rng.standard_normal(3000),
              "W": rng.standard_normal((4, 24)) * 0.3, "v": rng.standard_normal(24) * 0.3}
    return loss, values


def _numpy_wide(values):
    h = np.tanh(values["X"] @ values["W"])
    r = h @ values["v"] - values["y"]
    return float(r @ r)


@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_a_blocked_plan_calls_blas_on_one_thread_and_puts_the_count_back(target, blas_at_three, monkeypatch):
    loss, values = _wide()
    f = gc.compile(loss, target=target, schedule="blocked")
    spy = _Spy(f.module.evaluate)
    monkeypatch.setattr(f.module, "evaluate", spy)
    result = f(**values)
    assert spy.seen == [1]
    assert threads.blas_threads() == blas_at_three
    assert result.loss == pytest.approx(_numpy_wide(values), rel=1e-12)


def test_a_fused_plan_leaves_blas_alone(blas_at_three, monkeypatch):
    loss, values = _wide()
    f = gc.compile(loss, schedule="fused")
    spy = _Spy(f.module.evaluate)
    monkeypatch.setattr(f.module, "evaluate", spy)
    f(**values)
    assert spy.seen == [blas_at_three]


def test_concurrent_blocked_calls_put_the_blas_count_back_once(blas_at_three):
    loss, values = _wide()
    f = gc.compile(loss, target="cpu", schedule="blocked")
    expected = _numpy_wide(values)
    losses = [loss for _, loss in hammer(lambda k: f(**values).loss, n_threads=4, calls=10)]
    assert threads.blas_threads() == blas_at_three
    assert losses == pytest.approx([expected] * len(losses), rel=1e-12)


def test_least_squares_dense_path_pins_blas_and_puts_it_back(blas_at_three):
    X, y, w = gc.data("X", (None, 30)), gc.data("y"), gc.param("w", (30,))
    rng = np.random.default_rng(3)
    Xv = rng.standard_normal((2000, 30))
    yv = Xv @ rng.standard_normal(30)
    seen = []
    enter = threads._BlasPin.enter

    def spy(self):
        enter(self)
        seen.append(threads.blas_threads())

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(threads._BlasPin, "enter", spy)
        res = gc.least_squares(y - X @ w, {"X": Xv, "y": yv}, {"w": np.zeros(30)}, path="dense")
    assert seen and set(seen) == {1}
    assert threads.blas_threads() == blas_at_three
    np.testing.assert_allclose(res.params["w"], np.linalg.lstsq(Xv, yv, rcond=None)[0], rtol=1e-8, atol=1e-10)


def test_a_blocked_forward_function_pins_blas_too(blas_at_three, monkeypatch):
    X, W = gc.data("X", (None, 4)), gc.param("W", (4, 24))
    out = gc.tanh(X @ W)
    f = gc.compile(out)
    if f.plan.schedule != "blocked":
        pytest.skip("this forward function is fused here")
    spy = _Spy(f.module.forward)
    monkeypatch.setattr(f.module, "forward", spy)
    rng = np.random.default_rng(2)
    Xv, Wv = rng.standard_normal((500, 4)), rng.standard_normal((4, 24))
    np.testing.assert_allclose(f(X=Xv, W=Wv).value, np.tanh(Xv @ Wv), rtol=1e-13, atol=1e-15)
    assert spy.seen == [1] and threads.blas_threads() == blas_at_three
