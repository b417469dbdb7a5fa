"""Mini-batches inside the compiled training loop: fit(batch_size=, shuffle=, seed=, epochs=)."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

import graphc as gc
from graphc import nn

N = 200


@pytest.fixture(scope="module")
def problem():
    X = gc.data("X", shape=(None, 2))
    y = gc.data("y")
    model = nn.Sequential(nn.Linear(2, 4, name="a"), nn.Tanh(), nn.Linear(4, 1, name="b"))
    loss = nn.mse_loss(gc.flatten(model(X)), y)
    rng = np.random.default_rng(0)
    xs = rng.uniform(-1, 1, (N, 2))
    data = {"X": xs, "y": np.sin(2 * xs[:, 0]) * xs[:, 1]}
    return loss, data, model.init(seed=0)


def run(problem, **kw):
    loss, data, init = problem
    kw.setdefault("steps", 30)
    return gc.fit(loss, data=data, init=init, optimizer=gc.SGD(lr=0.1), log_every=1, **kw)


def same(a, b, rtol=0.0):
    if rtol == 0.0:
        return a.history == b.history and all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    steps = [s for s, _ in a.history] == [s for s, _ in b.history]
    losses = np.allclose([v for _, v in a.history], [v for _, v in b.history], rtol=rtol, atol=0)
    return steps and losses and all(np.allclose(a.params[k], b.params[k], rtol=rtol, atol=0) for k in a.params)


def test_batch_size_n_equals_full_batch(problem):
    # train and train_batches are compiled apart: LLVM may order the sums differently in each
    assert same(run(problem), run(problem, batch_size=N), rtol=1e-15)
    assert same(run(problem), run(problem, batch_size=10 * N), rtol=1e-15)


def test_shuffled_full_batch_is_close_to_full_batch(problem):
    a, b = run(problem), run(problem, batch_size=N, shuffle=True, seed=3)
    assert np.allclose([v for _, v in a.history], [v for _, v in b.history], rtol=1e-10)


def test_same_seed_same_bits_other_seed_differs(problem):
    a = run(problem, batch_size=32, shuffle=True, seed=7)
    assert same(a, run(problem, batch_size=32, shuffle=True, seed=7))
    assert not same(a, run(problem, batch_size=32, shuffle=True, seed=8))


def test_batches_match_numpy_reference(problem):
    """Step t uses order[k*B:(k+1)*B], k = t % nb: replayed here with compile() per step."""
    loss, data, init = problem
    B, steps = 64, 9  # nb = 4: the 4th batch has 8 samples; steps cross two epochs
    res = run(problem, batch_size=B, steps=steps)
    f = gc.compile(loss)
    params = {k: np.array(v) for k, v in init.items()}
    for t in range(steps):
        lo = (t % 4) * B
        batch = {k: v[lo:lo + B] for k, v in data.items()}
        r = f(**batch, **params)
        assert res.history[t][1] == pytest.approx(r.loss, rel=1e-12)
        params = {k: params[k] - 0.1 * r.grads[k] for k in params}
    for k in params:
        assert np.allclose(res.params[k], params[k], rtol=1e-12, atol=1e-14)


def test_shuffled_batches_follow_the_documented_permutation(problem):
    """Epoch e's order is Numba's np.random.permutation(N) right after
    np.random.seed((seed * 1000003 + e) % 2**32) (docs/nn.md), replayed with a permutation
    drawn by a Numba function of this test's own and compile() per step."""
    import numba

    @numba.njit
    def permutation(n, seed):
        np.random.seed(seed)
        return np.random.permutation(n)

    loss, data, init = problem
    B, seed, steps = 64, 11, 9  # nb = 4: steps cross into a third epoch
    res = run(problem, batch_size=B, shuffle=True, seed=seed, steps=steps)
    f = gc.compile(loss)
    params = {k: np.array(v) for k, v in init.items()}
    for t in range(steps):
        order = permutation(N, (seed * 1000003 + t // 4) % 4294967296)
        take = order[(t % 4) * B:(t % 4) * B + B]
        r = f(**{k: v[take] for k, v in data.items()}, **params)
        assert res.history[t][1] == pytest.approx(r.loss, rel=1e-12)
        params = {k: params[k] - 0.1 * r.grads[k] for k in params}
    for k in params:
        assert np.allclose(res.params[k], params[k], rtol=1e-12, atol=1e-14)


def test_stepping_mode_gives_the_same_bits(problem):
    a = run(problem, batch_size=48, shuffle=True, seed=1, steps=25)
    seen = []
    b = run(problem, batch_size=48, shuffle=True, seed=1, steps=25, callback=lambda t, l, p: seen.append(t))
    assert same(a, b) and seen == list(range(25))


def test_resume_continues_the_epoch_schedule(problem):
    full = run(problem, batch_size=48, shuffle=True, seed=2, steps=20)
    loss, data, init = problem
    first = gc.fit(loss, data=data, init=init, optimizer=gc.SGD(lr=0.1), steps=7, log_every=1,
                   batch_size=48, shuffle=True, seed=2)
    rest = gc.fit(loss, data=data, init=first.params, optimizer=first.optimizer, state=first.state, steps=13,
                  log_every=1, batch_size=48, shuffle=True, seed=2)
    assert first.history + rest.history == full.history


def test_epochs(problem):
    res = run(problem, batch_size=64, shuffle=True, epochs=3, steps=None)
    assert res.steps == 3 * 4 and res.history[-1][0] == 11
    assert run(problem, epochs=5, steps=None).steps == 5


def test_parallel_target_agrees(problem):
    a = run(problem, batch_size=64, shuffle=True, seed=4, steps=10)
    b = run(problem, batch_size=64, shuffle=True, seed=4, steps=10, target="parallel")
    assert np.allclose([v for _, v in a.history], [v for _, v in b.history], rtol=1e-12)


def test_batch_errors(problem):
    with pytest.raises(gc.GraphcError, match="batch_size"):
        run(problem, batch_size=0)
    with pytest.raises(gc.GraphcError, match="needs batch_size"):
        run(problem, shuffle=True)
    with pytest.raises(gc.GraphcError, match="not both"):
        run(problem, batch_size=4, epochs=2, steps=5)
    with pytest.raises(gc.UnsupportedError, match="cpu and parallel"):
        run(problem, batch_size=4, target="cuda")


# ---- the examples, at small sizes ---------------------------------------------------
def example(name):
    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mlp_sine_example_fits():
    mlp_sine = example("mlp_sine")

    _, final = mlp_sine.main(n=2000, width=8, epochs=40, batch_size=100, lr=0.02, verbose=False)
    assert final < 3e-3  # mean squared error on all samples (sin's variance is 0.5)


def test_spirals_example_classifies():
    spirals = example("spirals")

    _, accuracy = spirals.main(n=600, width=16, epochs=150, batch_size=64, lr=0.03, verbose=False)
    assert accuracy > 0.85  # on the held-out fifth, through res.predict
