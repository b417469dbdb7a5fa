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
