"""Whole-graph gradients: structural ops and composite expressions against central
differences in a random direction, and forward values against numpy."""

import numpy as np
import pytest

import graphc as gc

from .gradcheck import directional_check

N = 50
rng = np.random.default_rng(7)
DATA = {"x": rng.uniform(-1, 1, N), "y": rng.uniform(-1, 1, N), "xx": rng.uniform(-1, 1, (N, 3))}
PARAMS = {"a": 0.3, "b": -0.7, "s": 0.4, "W": rng.normal(size=(2, 3)), "V": rng.normal(size=(1, 3)),
          "c": rng.normal(size=(2,)), "u": rng.normal(size=(2,)), "v": rng.normal(size=(3,))}
f2 = gc.function("f2", lambda p, q: p * gc.exp(-q * q))


def graph_leaves():
    x, y, xx = gc.data("x"), gc.data("y"), gc.data("xx", shape=(None, 3))
    a, b, s = gc.params("a b s")
    W, V = gc.param("W", (2, 3)), gc.param("V", (1, 3))
    c, u, v = gc.param("c", (2,)), gc.param("u", (2,)), gc.param("v", (3,))
    return dict(x=x, y=y, xx=xx, a=a, b=b, s=s, W=W, V=V, c=c, u=u, v=v)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


CASES = {
    "matmul_bias_tanh": (
        lambda g: gc.sum(gc.tanh(g["xx"] @ g["W"].T + g["c"]) ** 2),
        lambda d, p: np.sum(np.tanh(d["xx"] @ p["W"].T + p["c"]) ** 2),
    ),
    "index_slice_transpose": (
        lambda g: gc.sum(g["xx"][:, 1] * g["W"][0, 2] + gc.sum(g["xx"][:, ::2] @ g["W"][:, ::2].T, axis=1)),
        lambda d, p: np.sum(d["xx"][:, 1] * p["W"][0, 2] + np.sum(d["xx"][:, ::2] @ p["W"][:, ::2].T, axis=1)),
    ),
    "fixed_axis_reductions": (
        lambda g: gc.sum(gc.mean(g["xx"] * g["W"][1], axis=1) ** 2) + gc.sum(g["W"], axis=0) @ g["v"],
        lambda d, p: np.sum(np.mean(d["xx"] * p["W"][1], axis=1) ** 2) + np.sum(p["W"], axis=0) @ p["v"],
    ),
    "stack_flatten": (
        lambda g: gc.sum(gc.sin(gc.flatten(gc.stack([g["x"] * g["a"], g["x"] * g["x"] * g["b"]], axis=-1) @ g["u"][:, None]))),
        lambda d, p: np.sum(np.sin((np.stack([d["x"] * p["a"], d["x"] ** 2 * p["b"]], -1) @ p["u"][:, None])[:, 0])),
    ),
    "size_one_and_scalar_broadcasting": (
        lambda g: gc.sum(gc.exp(g["s"] * g["xx"] * g["V"])) + g["s"] * gc.sum(g["V"]),
        lambda d, p: np.sum(np.exp(p["s"] * d["xx"] * p["V"])) + p["s"] * np.sum(p["V"]),
    ),
    "two_passes_log_sum_exp": (
        lambda g: gc.log(gc.sum(gc.exp(g["a"] * g["x"]))) + gc.mean((g["b"] * g["x"] - g["y"]) ** 2),
        lambda d, p: np.log(np.sum(np.exp(p["a"] * d["x"]))) + np.mean((p["b"] * d["x"] - d["y"]) ** 2),
    ),
    "einsum_and_sample_contraction": (
        lambda g: gc.sum(gc.einsum("ij,kj->ik", g["xx"], g["W"]) ** 2) + gc.sum((g["xx"].T @ (g["xx"] * g["V"])) ** 2) / 100,
        lambda d, p: np.sum((d["xx"] @ p["W"].T) ** 2) + np.sum((d["xx"].T @ (d["xx"] * p["V"])) ** 2) / 100,
    ),
    "where_maximum_sigmoid": (
        lambda g: gc.sum(gc.where(g["x"] > 0, g["a"] * g["x"], g["b"] * g["x"] ** 2) + gc.maximum(g["a"] * g["x"], g["b"]) + gc.sigmoid(g["s"] * g["y"])),
        lambda d, p: np.sum(np.where(d["x"] > 0, p["a"] * d["x"], p["b"] * d["x"] ** 2) + np.maximum(p["a"] * d["x"], p["b"]) + sigmoid(p["s"] * d["y"])),
    ),
    "user_function_two_args": (
        lambda g: gc.sum(f2(g["a"] * g["x"], g["b"] + g["y"])),
        lambda d, p: np.sum(p["a"] * d["x"] * np.exp(-((p["b"] + d["y"]) ** 2))),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_gradients_and_values(case):
    build, reference = CASES[case]
    loss = build(graph_leaves())
    f = gc.compile(loss)
    bindings = {k: v for k, v in {**DATA, **PARAMS}.items() if k in f.inputs + f.params}
    r = f(bindings)
    assert r.loss == pytest.approx(reference(DATA, PARAMS), rel=1e-12)
    directional_check(f, bindings, f.params, rtol=1e-6)
    for name in f.params:
        assert np.shape(r.grads[name]) == np.shape(PARAMS[name])


def test_gradient_graph_is_tensor_level():
    """A (64, 64) weight is one node in the gradient graph, not 4096 scalars."""
    from graphc import autodiff

    xx = gc.data("xx", shape=(None, 64))
    W = gc.param("W", (64, 64))
    loss = gc.sum(gc.tanh(xx @ W.T))
    grads = autodiff.gradients(loss, [W])
    assert grads[W].shape == (64, 64)
    assert len(gc.Graph.from_outputs(grads[W]).nodes) < 20


def test_hessian_is_the_closed_form_second_derivative():
    """autodiff.hessian against SymPy differentiating the same formula written on its own."""
    import sympy as sp

    from graphc import autodiff
    from graphc.compile import Timings, make_plan

    x = gc.data("x")
    a, b = gc.params("a b")
    loss = gc.sum((a * gc.exp(b * x) - gc.sin(x)) ** 2)
    grads = autodiff.gradients(loss, [a, b])
    hess = autodiff.hessian(grads, [a, b])
    assert list(hess) == [(a, a), (a, b), (b, b)]  # the upper triangle, row by row
    A, B, X = sp.symbols("A B X")
    term = (A * sp.exp(B * X) - sp.sin(X)) ** 2
    xs, at = np.linspace(-1, 1, 7), {A: 0.7, B: -0.3}
    plan = make_plan(loss, [a, b], Timings(), hessian=True)
    assert plan.n_hessian == 3 and plan.n_grads == 5
    for (p, q), P, Q in zip(hess, (A, A, B), (A, B, B)):
        want = sum(float(sp.diff(term, P, Q).subs({**at, X: v})) for v in xs)
        got = gc.compile(hess[(p, q)])(x=xs, a=0.7, b=-0.3).loss  # a scalar: the entry itself
        assert got == pytest.approx(want, rel=1e-12)


def test_newton_takes_parameters_named_like_its_hessian_entries():
    """The Hessian's stand-in parameters are named apart from the user's (no name is reserved)."""
    x = gc.data("x")
    a, hess_a_a = gc.param("a"), gc.param("hess_a_a")
    loss = gc.sum((a * x + hess_a_a - 2.0 * x - 1.0) ** 2)
    xs = np.linspace(-1, 1, 9)
    res = gc.fit(loss, data={"x": xs}, init={"a": 0.0, "hess_a_a": 0.0}, optimizer=gc.Newton(), steps=3)
    assert res.params["a"] == pytest.approx(2.0, abs=1e-10) and res.params["hess_a_a"] == pytest.approx(1.0, abs=1e-10)
