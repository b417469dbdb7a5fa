"""fit(): history semantics, which parameters train, and what goes wrong loudly."""

import numpy as np
import pytest

import graphc as gc

from . import references as ref

INIT = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}


def test_history_holds_loss_before_update_at_log_steps(sine_data, cubic):
    x, y = sine_data
    res = gc.fit(cubic, data={"x": x, "y": y}, init=INIT, optimizer=gc.SGD(lr=1e-6), steps=25, log_every=7)
    _, expected = ref.sgd(ref.cubic, INIT, 1e-6, 25, log_every=7)
    assert [t for t, _ in res.history] == [6, 13, 20, 24]  # and the last step, off the grid
    np.testing.assert_allclose([v for _, v in res.history], [v for _, v in expected], rtol=1e-12)
    assert res.steps == 25 and isinstance(res.params["a"], float)


def test_wrt_trains_only_the_named_parameters(sine_data, cubic):
    x, y = sine_data
    b = next(n for n in gc.Graph.from_outputs(cubic).params if n.name == "b")
    res = gc.fit(cubic, data={"x": x, "y": y}, init=INIT, optimizer=gc.SGD(lr=1e-6), steps=50, wrt=[b])
    assert res.params["a"] == INIT["a"] and res.params["c"] == INIT["c"] and res.params["d"] == INIT["d"]
    assert res.params["b"] != INIT["b"]


def test_non_finite_loss_stops_and_reports(sine_data, cubic):
    x, y = sine_data
    with pytest.raises(gc.NonFiniteLoss, match="step") as err:
        gc.fit(cubic, data={"x": x, "y": y}, init=INIT, optimizer=gc.SGD(lr=1.0), steps=200, log_every=1)
    result = err.value.result
    assert result.steps < 200 and np.isfinite(result.history[-2][1]) and not np.isfinite(result.history[-1][1])
    quiet = gc.fit(cubic, data={"x": x, "y": y}, init=INIT, optimizer=gc.SGD(lr=1.0), steps=200, log_every=1,
                   check_finite=False)
    assert quiet.steps == result.steps


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(init={"a": 0.1}), "missing value"),
        (dict(data={"x": 1.0}), "'x'|missing"),
        (dict(steps=-1), "steps"),
        (dict(log_every=0), "log_every"),
        (dict(optimizer="sgd"), "optimizer"),
        (dict(init={**INIT, "x": 1.0}), "'x' is a data input"),
    ],
)
def test_fit_errors(sine_data, cubic, kwargs, match):
    x, y = sine_data
    args = dict(data={"x": x, "y": y}, init=INIT, optimizer=gc.SGD(lr=1e-6), steps=5)
    args.update(kwargs)
    with pytest.raises(gc.GraphcError, match=match):
        gc.fit(cubic, **args)


def test_adam_matches_torch_formulas(sine_data, cubic):
    x, y = sine_data
    opt = gc.Adam(lr=1e-2)
    res = gc.fit(cubic, data={"x": x, "y": y}, init=INIT, optimizer=opt, steps=300, log_every=50)
    p = {k: float(v) for k, v in INIT.items()}
    m = {k: 0.0 for k in p}
    v = {k: 0.0 for k in p}
    history = []
    for t in range(1, 301):
        loss, g = ref.cubic(p)
        if t % 50 == 0:
            history.append(loss)
        for k in p:
            m[k] = 0.9 * m[k] + 0.1 * g[k]
            v[k] = 0.999 * v[k] + 0.001 * g[k] ** 2
            p[k] -= 1e-2 / (1 - 0.9**t) * m[k] / (np.sqrt(v[k]) / np.sqrt(1 - 0.999**t) + 1e-8)
    np.testing.assert_allclose([h for _, h in res.history], history, rtol=1e-9)


def test_new_learning_rate_reuses_the_compiled_loop(sine_data, cubic):
    x, y = sine_data
    r1 = gc.fit(cubic, data={"x": x, "y": y}, init=INIT, optimizer=gc.SGD(lr=1e-6), steps=3)
    r2 = gc.fit(cubic, data={"x": x, "y": y}, init=INIT, optimizer=gc.SGD(lr=2e-6), steps=3)
    assert r1.compiled.path == r2.compiled.path


@pytest.mark.parametrize("batch_size", [None, 500])
def test_seconds_start_after_numba_compiled_the_loop(sine_data, cubic, monkeypatch, batch_size):
    """res.seconds times the training loop only: Numba compiles it (a 0-step call) before the clock starts."""
    from graphc.training import train

    x, y = sine_data
    seen = []
    clock = train.time.perf_counter

    def spy():
        frame = __import__("sys")._getframe(1)
        loop = frame.f_locals.get("loop")
        if frame.f_code.co_name == "fit" and loop is not None and not seen:
            module = loop.compiled.module  # the generated functions Numba has compiled by now
            fns = {name: getattr(module, name, None) for name in ("train", "train_batches")}
            seen.append({name for name, fn in fns.items() if fn is not None and fn.overloads})
        return clock()

    monkeypatch.setattr(train.time, "perf_counter", spy)
    res = gc.fit(cubic, data={"x": x, "y": y}, init={"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4},
                 optimizer=gc.SGD(lr=1e-6), steps=20, log_every=10, batch_size=batch_size)
    assert seen and ("train_batches" if batch_size else "train") in seen[0]
    assert res.steps == 20 and len(res.history) == 2
