"""The blocked schedule (graphc/planning/blocked.py, codegen/blocked.py): wide layers as arrays.

Checked against an independent numpy forward/backward written by hand (not graphc), central
differences, and the fused schedule where both apply. The structural ops and every gc.nn
layer and loss also run blocked in tests/test_nn.py (its fixtures take both schedules).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc
from graphc.planning import blocked
from graphc import nn
from tests.gradcheck import directional_check


def mlp(widths, seed=0):
    X, y = gc.data("X", shape=(None, widths[0])), gc.data("y")
    layers = []
    for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b, name=f"l{k}"))
        if k < len(widths) - 2:
            layers.append(nn.Tanh())
    model = nn.Sequential(*layers)
    return nn.mse_loss(gc.flatten(model(X)), y, reduction="sum"), model.init(seed)


def numpy_mlp(p, X, y, layers):
    """Loss and gradients of the tanh MLP, backpropagated by hand."""
    acts = [X]
    for k in range(layers):
        z = acts[-1] @ p[f"l{k}.weight"].T + p[f"l{k}.bias"]
        acts.append(np.tanh(z) if k < layers - 1 else z)
    r = acts[-1][:, 0] - y
    g, grads = (2 * r)[:, None], {}
    for k in reversed(range(layers)):
        grads[f"l{k}.weight"], grads[f"l{k}.bias"] = g.T @ acts[k], g.sum(0)
        if k:
            g = (g @ p[f"l{k}.weight"]) * (1 - acts[k] ** 2)
    return float(np.sum(r * r)), grads


def data(n, d=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal(n)


@pytest.fixture(scope="module")
def wide():
    """3 -> 256 -> 256 -> 1: past what the fused schedule unrolls (it refuses)."""
    loss, init = mlp((3, 256, 256, 1))
    return loss, init, gc.compile(loss)


def test_auto_picks_blocked_for_wide_layers_and_fused_for_narrow(wide):
    assert wide[2].schedule == "blocked"
    narrow, _ = mlp((3, 1))  # the tutorial's Linear(3, 1)
    assert gc.compile(narrow).schedule == "fused"
    with pytest.raises(gc.UnsupportedError, match="schedule='blocked'"):
        gc.compile(wide[0], schedule="fused")


def test_wide_mlp_matches_hand_written_backprop(wide):
    loss, init, f = wide
    X, y = data(300)  # 300 samples: several blocks and a partial last one
    r = f(X=X, y=y, **init)
    ref_loss, ref = numpy_mlp(init, X, y, 3)
    assert r.loss == pytest.approx(ref_loss, rel=1e-12)
    for k, g in ref.items():
        np.testing.assert_allclose(r.grads[k], g, rtol=1e-9, atol=1e-12 * np.abs(g).max(), err_msg=k)


def test_wide_mlp_gradient_against_finite_differences(wide):
    loss, init, f = wide
    X, y = data(40)
    directional_check(f, {"X": X, "y": y, **init}, list(init), rtol=1e-6)


def test_generated_source_reads_as_blocks(wide):
    src = wide[2].source
    assert "for i0 in range(lo, hi, ROWS):" in src
    assert "_dot_into(" in src or not blocked.blas_available()  # np.dot, compiled once per installation
    assert "ROWS = " in src and "rows = min(hi - i0, ROWS)" in src
    assert len(src.splitlines()) < 400  # tensor level: does not grow with the width


@pytest.fixture(scope="module")
def small():
    loss, init = mlp((3, 8, 1))
    return loss, init


def test_blocked_equals_fused_on_a_narrow_model(small):
    loss, init = small
    X, y = data(1000)
    rf = gc.compile(loss, schedule="fused")(X=X, y=y, **init)
    rb = gc.compile(loss, schedule="blocked")(X=X, y=y, **init)
    assert rb.loss == pytest.approx(rf.loss, rel=1e-12)
    for k in init:
        np.testing.assert_allclose(rb.grads[k], rf.grads[k], rtol=1e-10, atol=1e-13)


def test_blocked_fit_with_minibatches_matches_fused(small):
    loss, init = small
    X, y = data(500)
    kw = dict(data={"X": X, "y": y}, init=init, optimizer=gc.Adam(lr=1e-2), steps=30, log_every=10,
              batch_size=64, shuffle=True, seed=3)
    a = gc.fit(loss, schedule="fused", **kw)
    b = gc.fit(loss, schedule="blocked", **kw)
    np.testing.assert_allclose([v for _, v in b.history], [v for _, v in a.history], rtol=1e-9)
    for k in init:
        np.testing.assert_allclose(b.params[k], a.params[k], rtol=1e-8, atol=1e-12)


def test_parallel_blocked_is_deterministic_and_equals_cpu(small):
    import numba

    loss, init = small
    X, y = data(40_003)  # three parallel blocks of 16384 samples, the last partial
    cpu = gc.compile(loss, schedule="blocked")(X=X, y=y, **init)
    par = gc.compile(loss, schedule="blocked", target="parallel")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = par(X=X, y=y, **init)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = par(X=X, y=y, **init)
    finally:
        numba.set_num_threads(before)
    assert one.loss == two.loss  # the same bits whatever the thread count
    for k in init:
        assert np.array_equal(one.grads[k], two.grads[k])
        np.testing.assert_allclose(one.grads[k], cpu.grads[k], rtol=1e-10, atol=1e-12)
    assert one.loss == pytest.approx(cpu.loss, rel=1e-12)


def test_float32_blocked_close_to_float64(small):
    loss, init = small
    X, y = data(700)
    r64 = gc.compile(loss, schedule="blocked")(X=X, y=y, **init)
    f32 = gc.compile(loss, schedule="blocked", dtype="float32")
    # float32 blocks add into float32 partial sums, each added into its float64 accumulator
    # after the block (the sum over all samples stays float64)
    assert "summed over a block" in f32.source and "add the block's sum" in f32.source
    assert "summed over a block" not in gc.compile(loss, schedule="blocked").source
    r32 = f32(X=X, y=y, **init)
    assert r32.loss == pytest.approx(r64.loss, rel=1e-5)
    for k in init:
        np.testing.assert_allclose(r32.grads[k], r64.grads[k], rtol=1e-3, atol=1e-4 * np.abs(r64.grads[k]).max())


def test_without_scipy_contractions_are_printed_loops(small, monkeypatch):
    loss, init = small
    monkeypatch.setattr(blocked, "blas_available", lambda: False)
    W = gc.param("W", (8, 3))  # a fresh graph: plans are memoised per graph
    X, y = gc.data("X", shape=(None, 3)), gc.data("y")
    g = gc.sum((gc.tanh(X @ W.T) @ gc.constant(np.arange(8.0)) - y) ** 2)
    f = gc.compile(g, schedule="blocked")
    assert "np.dot" not in f.source
    Xs, ys = data(200)
    Ws = np.random.default_rng(0).standard_normal((8, 3))
    r = f(X=Xs, y=ys, W=Ws)
    h = np.tanh(Xs @ Ws.T)
    res = h @ np.arange(8.0) - ys
    assert r.loss == pytest.approx(np.sum(res**2), rel=1e-12)
    expected = ((2 * res)[:, None] * np.arange(8.0) * (1 - h**2)).T @ Xs
    np.testing.assert_allclose(r.grads["W"], expected, rtol=1e-10)


def test_schedule_errors(small):
    loss, _ = small
    with pytest.raises(gc.GraphcError, match="unknown schedule 'tiled'"):
        gc.compile(loss, schedule="tiled")
    with pytest.raises(gc.GraphcError, match="scalar parameters"):  # either schedule: W is a matrix
        gc.fit(loss, data={"X": np.zeros((3, 3)), "y": np.zeros(3)}, init=mlp((3, 8, 1))[1],
               optimizer=gc.Newton(), steps=1, schedule="blocked")
    f = gc.compile(loss, schedule="blocked")
    assert list(f.gradients) == f.params  # inspection works on blocked plans (tests/test_inspect.py)


@pytest.fixture(scope="module")
def thin_input():
    """3 -> 40 -> 1: blocked (a 120-element weight), with a 3-feature input."""
    loss, init = mlp((3, 40, 1))
    return loss, init, gc.compile(loss)


def test_narrow_input_layer_is_a_sum_of_products_and_its_gradient_a_loop(thin_input):
    loss, init, f = thin_input
    assert f.schedule == "blocked"
    src = f.source
    # X @ W.T over 3 features: 3 products inside tanh's loop, W read from a transposed copy
    # (stride 1 along the loop), the sample's features read once per sample
    assert "X_i_0 = X[i0 + i, 0]" in src and "X_i_2 = X[i0 + i, 2]" in src
    tanh_line = next(line for line in src.splitlines() if "_tanh(X_i_0*" in line)
    assert re.search(r"X_i_2\*v\d+\[2, j0\]", tanh_line), tanh_line
    assert "_dot_into(X[" not in src and "_dot(X[" not in src  # no 3-long np.dot, forward or backward
    # the weight's gradient (3 x 40) accumulates in the loop over the hidden units, unrolled
    assert re.search(r"s\d+\[0, j0\] \+= X_i_0\*", src) and re.search(r"s\d+\[2, j0\] \+= X_i_2\*", src)
    # two samples per iteration: each accumulator element takes both samples' terms in one +=,
    # the layer's delta is a local per sample; an odd block's last sample has its own loop
    assert "for i in range(0, rows - 1, 2):" in src and "for i in range(rows - rows % 2, rows):" in src
    assert re.search(r"s\d+\[2, j0\] \+= X_i_2\*(v\d+)_i \+ X_i1_2\*\1_i1\n", src)
    X, y = data(1501)  # odd: the last sample takes the single-sample loop
    r = f(X=X, y=y, **init)
    want_loss, want = numpy_mlp(init, X, y, 2)
    assert r.loss == pytest.approx(want_loss, rel=1e-12)
    for k in init:
        np.testing.assert_allclose(r.grads[k], want[k], rtol=1e-10, atol=1e-12)


def test_thin_input_model_gradient_against_finite_differences(thin_input):
    loss, init, f = thin_input
    X, y = data(301)
    directional_check(f, {"X": X, "y": y, **init}, list(init), rtol=1e-6, seed=5)


def test_five_feature_input_keeps_np_dot():
    if not blocked.blas_available():
        pytest.skip("np.dot needs SciPy")
    loss, init = mlp((5, 40, 1))
    f = gc.compile(loss, schedule="blocked")
    assert "_dot_into(X[i0:i0 + rows]" in f.source  # five products: past SMALL, a real product
    X, y = data(700, d=5)
    r = f(X=X, y=y, **init)
    want_loss, want = numpy_mlp(init, X, y, 2)
    assert r.loss == pytest.approx(want_loss, rel=1e-12)
    for k in init:
        np.testing.assert_allclose(r.grads[k], want[k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("schedule", ["fused", "blocked"])
def test_the_exact_hessian_on_either_schedule(schedule):
    """gc.Newton's grad vector (the gradient, then the Hessian's upper triangle) from either
    schedule, against SymPy differentiating the same formula written on its own; then a
    Newton fit converges to the data's parameters."""
    import sympy as sp

    from graphc import codegen
    from graphc.compile import Compiled, Timings, make_plan

    x, y = gc.data("x"), gc.data("y")
    a, b, c = gc.params("a b c")
    loss = gc.sum((a * gc.exp(b * x) + c - y) ** 2)
    plan = make_plan(loss, [a, b, c], Timings(), schedule, hessian=True)
    assert plan.schedule == schedule and (plan.n_hessian, plan.n_grads) == (6, 9)
    f = Compiled(plan, codegen.emit(plan, "cpu", "float64"), "cpu", "float64", Timings())
    xs, ys = np.linspace(0.0, 2.0, 11), np.cos(np.linspace(0.0, 2.0, 11))
    grad, acc = np.zeros(plan.n_grads), np.zeros(plan.n_acc)
    got = f.module.evaluate(xs, ys, np.array([0.7, -0.3, 0.2]), grad, acc)
    A, B, C, X, Y = sp.symbols("A B C X Y")
    term, at = (A * sp.exp(B * X) + C - Y) ** 2, {A: 0.7, B: -0.3, C: 0.2}
    value = lambda e: sum(float(e.subs({**at, X: u, Y: v})) for u, v in zip(xs, ys))  # noqa: E731
    pairs = [(A, A), (A, B), (A, C), (B, B), (B, C), (C, C)]
    want = [value(sp.diff(term, P)) for P in (A, B, C)] + [value(sp.diff(term, P, Q)) for P, Q in pairs]
    assert got == pytest.approx(value(term), rel=1e-12)
    np.testing.assert_allclose(grad, want, rtol=1e-11, atol=1e-12)
    res = gc.fit(loss, {"x": xs, "y": 2.0 * np.exp(-1.3 * xs) + 0.5}, {"a": 1.5, "b": -1.0, "c": 0.4},
                 optimizer=gc.Newton(), steps=12, schedule=schedule)
    assert res.compiled.schedule == schedule
    assert [res.params[k] for k in "abc"] == pytest.approx([2.0, -1.3, 0.5], abs=1e-9)


def test_a_long_pass_is_compiled_on_its_own():
    """sums_k and finish are inlined into their caller only while short (CpuEmitter.
    MAX_INLINE_LINES): Numba's inlining copies and types a long body again. Printing only."""
    from graphc.codegen.cpu import CpuEmitter

    X, y = gc.data("X", shape=(None, 3)), gc.data("y")
    short = gc.compile(gc.sum((gc.flatten(gc.nn.Linear(3, 1, name="s")(X)) - y) ** 2), schedule="blocked")
    model = gc.nn.Sequential(gc.nn.Linear(3, 5, name="a"), gc.nn.GELU(), gc.nn.Linear(5, 4, name="b"),
                             gc.nn.Softplus(), gc.nn.Linear(4, 3, name="c"))
    long = gc.compile(gc.nn.cross_entropy(model(X), gc.data("T", shape=(None, 3))), schedule="blocked")
    for f, inlined in ((short, True), (long, False)):
        head, body = f.source.split("def sums_0(")[0].rsplit("\n", 2)[-2], f.source.split("def sums_0(")[1]
        lines = body.split("\n@numba")[0].count("\n")
        assert (lines <= CpuEmitter.MAX_INLINE_LINES) is inlined, lines
        assert ('inline="always"' in head) is inlined, head
