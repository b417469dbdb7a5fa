"""Tensor programs: structural-op adjoints and gc.nn layers and losses, checked against
central differences along a random direction (float64). One compile per fixture: each
check switches one term of a weighted sum on with the data vector ``w``."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from tests.gradcheck import directional_check

N = 37


def weighted(terms: dict) -> tuple:
    w = gc.data("w", shape=(len(terms),))
    loss = None
    for k, term in enumerate(terms.values()):
        loss = w[k] * term if loss is None else loss + w[k] * term
    return loss, list(terms)


def only(names: list, name: str) -> np.ndarray:
    return np.array([1.0 if n == name else 0.0 for n in names])


# ---- structural ops ------------------------------------------------------------------
SCHEDULES = ["fused", "blocked"]  # every check runs on both schedules (independent printers)


@pytest.fixture(scope="module", params=SCHEDULES)
def structural(request):
    X = gc.data("X", shape=(None, 3))
    x = gc.data("x")
    W, M = gc.param("W", (4, 3)), gc.param("M", (3, 3))
    b, v, s = gc.param("b", (4,)), gc.param("v", (4,)), gc.param("s")
    c, r = gc.param("c", (1, 4)), gc.param("r", (3, 1))
    h = gc.tanh(X @ W.T + b)  # (N, 4)
    terms = {
        "matmul_bias": gc.sum(h * v),
        "vector_matmul": gc.sum(gc.sin(X @ (M @ W[0]))) + gc.sum(W @ v[:3] * b) + v @ b,
        "size1_dims": gc.sum(gc.tanh(X[:, None, :] * M) * r),  # (N,1,3) * (3,3) * (3,1)
        "scalar_vs_tensor": gc.sum(gc.sin(s * X + c[0, :3]) + s),
        "size1_param": gc.sum(gc.cos(h * c)),  # (N,4) * (1,4)
        "sum_axes": gc.sum(gc.sum(h, axis=1) ** 2) + gc.sum(gc.sum(h * v, axis=0) ** 2),
        "mean_axes": gc.mean(gc.mean(h, axis=1, keepdims=True) ** 2) + gc.sum(gc.mean(X @ M, axis=0) ** 3),
        "broadcast_to": gc.sum(gc.broadcast_to(b, (3, 4)) * gc.broadcast_to(r, (3, 4))),
        "index_slice": gc.sum(h[:, 1:4:2] ** 2) + gc.sum(M[::2, 1] * W[1:3, 0]) + gc.sum(h[:, 3] * x),
        "transpose": gc.sum(gc.transpose(M) @ M * gc.constant(np.arange(9.0).reshape(3, 3))),
        "reshape_flatten": gc.sum(gc.flatten(X @ W[:1].T) * x) + gc.sum(gc.reshape(W, (2, 6)) ** 2 * gc.reshape(M, (9,))[:6]),
        "stack": gc.sum(gc.stack([s * b, v, b * v], axis=0) ** 2 * gc.constant(np.arange(12.0).reshape(3, 4))),
        "stack_samples": gc.sum(gc.sin(gc.stack([x * s, x + b[0]], axis=-1) @ W[:2, :2])),
        "concatenate": gc.sum(gc.tanh(X @ gc.concatenate([W, M], axis=0).T)) + gc.sum(gc.concatenate([b, v, r[:, 0]]) ** 3),
        "einsum": gc.sum(gc.einsum("ni,ij,nj->n", X, M, X) * x) + gc.einsum("ij,ij->", W, W),
        "stop_gradient": gc.sum(gc.stop_gradient(h) * h),
    }
    loss, names = weighted(terms)
    f = gc.compile(loss, schedule=request.param)
    rng = np.random.default_rng(1)
    base = {"X": rng.standard_normal((N, 3)), "x": rng.standard_normal(N)}
    for node in (W, M, b, v, c, r):
        base[node.name] = rng.standard_normal(node.shape) * 0.7
    base["s"] = 0.3
    return f, names, base


STRUCTURAL = ["matmul_bias", "vector_matmul", "size1_dims", "scalar_vs_tensor", "size1_param", "sum_axes",
              "mean_axes", "broadcast_to", "index_slice", "transpose", "reshape_flatten", "stack",
              "stack_samples", "concatenate", "einsum"]


@pytest.mark.parametrize("term", STRUCTURAL)
def test_structural_adjoints(structural, term):
    f, names, base = structural
    wrt = [k for k in base if k not in ("X", "x")]
    directional_check(f, {**base, "w": only(names, term)}, wrt, rtol=1e-6)


def test_structural_forward_matches_numpy(structural):
    f, names, base = structural
    X, x, W, M, b, v = (base[k] for k in "X x W M b v".split())
    h = np.tanh(X @ W.T + b)
    expected = {
        "matmul_bias": np.sum(h * v),
        "concatenate": np.sum(np.tanh(X @ np.concatenate([W, M]).T)) + np.sum(np.concatenate([b, v, base["r"][:, 0]]) ** 3),
        "einsum": np.sum(np.einsum("ni,ij,nj->n", X, M, X) * x) + np.sum(W * W),
        "stop_gradient": np.sum(h * h),
    }
    for term, value in expected.items():
        assert f({**base, "w": only(names, term)}).loss == pytest.approx(value, rel=1e-12)


def test_stop_gradient_halves_the_gradient_of_a_square(structural):
    f, names, base = structural
    wrt = [k for k in base if k not in ("X", "x")]
    with pytest.raises(AssertionError) as info:  # d/dp sum(sg(h) h) is half of d/dp sum(h h)
        directional_check(f, {**base, "w": only(names, "stop_gradient")}, wrt)
    numeric, analytic = info.value.args[0]
    assert analytic == pytest.approx(numeric / 2, rel=1e-6)


def test_stop_gradient_has_no_gradient():
    a = gc.param("a")
    r = gc.compile(gc.stop_gradient(a * a) * a)(a=3.0)
    assert r.loss == 27.0 and r.grads["a"] == 9.0


def test_concatenate_errors():
    W = gc.param("W", (2, 3))
    with pytest.raises(gc.ShapeError, match="off axis"):
        gc.concatenate([W, gc.param("V", (2, 2))], axis=0)
    with pytest.raises(gc.UnsupportedError, match="sample dim"):
        gc.concatenate([gc.data("x"), gc.data("y")], axis=0)
    assert gc.concatenate([W, W], axis=1).shape == (2, 6)


# ---- layers and losses -------------------------------------------------------------
LOSSES = ["mse", "l1", "huber", "bce", "ce", "ce_labels"]


@pytest.fixture(scope="module", params=SCHEDULES)
def networks(request):
    X = gc.data("X", shape=(None, 3))
    y = gc.data("y")
    T = gc.data("T", shape=(None, 3))  # one-hot class targets
    labels = gc.data("labels")  # the same classes as indices (ints bound as data)
    model = nn.Sequential(nn.Linear(3, 5, name="l1"), nn.GELU(), nn.Linear(5, 4, bias=False, name="l2"),
                          nn.Softplus(), nn.Linear(4, 3, name="l3"))
    head = nn.Sequential(nn.Linear(3, 4, name="h1"), nn.Sigmoid(), nn.Linear(4, 4, name="h2"), nn.ReLU(),
                         nn.Linear(4, 1, name="h3"), nn.Tanh())
    z = model(X)  # (N, 3) logits
    pred = gc.flatten(head(X))
    terms = {}
    for red in ("sum", "mean"):
        terms[f"mse_{red}"] = nn.mse_loss(pred, y, reduction=red)
        terms[f"l1_{red}"] = nn.l1_loss(pred, y, reduction=red)
        terms[f"huber_{red}"] = nn.huber_loss(pred * 3, y, reduction=red, delta=0.5)
        terms[f"bce_{red}"] = nn.binary_cross_entropy_with_logits(z[:, 0] * 4, (y > 0) * 1.0, reduction=red)
        terms[f"ce_{red}"] = nn.cross_entropy(z * 3, T, reduction=red)
        terms[f"ce_labels_{red}"] = nn.cross_entropy(z * 3, labels, reduction=red)
    loss, names = weighted(terms)
    f = gc.compile(loss, schedule=request.param)
    rng = np.random.default_rng(2)
    Xs = rng.standard_normal((N, 3))
    y, classes = rng.standard_normal(N), rng.integers(0, 3, N)
    base = {"X": Xs, "y": y, "T": nn.one_hot(classes, 3), "labels": classes}
    base.update(model.init(seed=0))
    base.update(head.init(seed=1))
    return f, names, base, model, head


@pytest.mark.parametrize("term", [f"{k}_{r}" for k in LOSSES for r in ("sum", "mean")])
def test_layers_and_losses_gradients(networks, term):
    f, names, base, model, head = networks
    wrt = [p.name for p in model.parameters() + head.parameters()]
    directional_check(f, {**base, "w": only(names, term)}, wrt, rtol=1e-6)


def _numpy_forward(base):
    from math import erf

    gelu = np.vectorize(lambda u: 0.5 * u * (1 + erf(u / np.sqrt(2))))
    X = base["X"]
    a = gelu(X @ base["l1.weight"].T + base["l1.bias"])
    a = np.logaddexp(0, a @ base["l2.weight"].T)
    z = a @ base["l3.weight"].T + base["l3.bias"]
    g = 1 / (1 + np.exp(-(X @ base["h1.weight"].T + base["h1.bias"])))
    g = np.maximum(g @ base["h2.weight"].T + base["h2.bias"], 0)
    pred = np.tanh(g @ base["h3.weight"].T + base["h3.bias"])[:, 0]
    return z, pred


def test_losses_match_numpy(networks):
    f, names, base, _, _ = networks
    z, pred = _numpy_forward(base)
    y, T = base["y"], base["T"]
    d = pred * 3 - y
    logits, t = z[:, 0] * 4, (y > 0) * 1.0
    zz, labels = z * 3, base["labels"]
    lse = np.log(np.sum(np.exp(zz - zz.max(1, keepdims=True)), 1)) + zz.max(1)
    per = {
        "mse": (pred - y) ** 2, "l1": np.abs(pred - y),
        "huber": np.where(np.abs(d) < 0.5, 0.5 * d**2, 0.5 * (np.abs(d) - 0.25)),
        "bce": np.logaddexp(0, logits) - logits * t,
        "ce": lse - np.sum(T * zz, 1),
        "ce_labels": lse - zz[np.arange(N), labels],
    }
    for k, values in per.items():
        for red, fn in (("sum", np.sum), ("mean", np.mean)):
            got = f({**base, "w": only(names, f"{k}_{red}")}).loss
            assert got == pytest.approx(fn(values), rel=1e-10), (k, red)


def test_class_indices_equal_one_hot_rows(networks):
    """cross_entropy(z, labels) is cross_entropy(z, one_hot(labels)): loss and gradients."""
    f, names, base, _, _ = networks
    for red in ("sum", "mean"):
        by_index = f({**base, "w": only(names, f"ce_labels_{red}")})
        by_row = f({**base, "w": only(names, f"ce_{red}")})
        assert by_index.loss == pytest.approx(by_row.loss, rel=1e-13, abs=0)
        for k, g in by_row.grads.items():
            np.testing.assert_allclose(by_index.grads[k], g, rtol=1e-13, atol=1e-15 * np.max(np.abs(g)))


def test_cross_entropy_of_labels_is_nll_loss_of_log_softmax():
    Z, labels = gc.data("Z", shape=(None, 4)), gc.data("labels")
    for red in ("sum", "mean"):
        assert str(nn.cross_entropy(Z, labels, red)) == str(nn.nll_loss(nn.log_softmax(Z), labels, red))


def test_a_label_that_is_not_a_class_makes_the_loss_nan(networks):
    f, names, base, _, _ = networks
    for bad in (3, -1, 1.5, np.nan):
        labels = base["labels"].astype(float)
        labels[5] = bad
        r = f({**base, "labels": labels, "w": only(names, "ce_labels_mean")})
        assert np.isnan(r.loss), bad
        assert all(np.all(np.isfinite(g)) for g in r.grads.values())  # the other samples' gradients


def test_labels_errors_and_constant_labels():
    Z = gc.data("Z", shape=(None, 3))
    with pytest.raises(gc.GraphcError, match=r"has shape \(N, 3\).*class indices of shape \(N,\)"):
        nn.cross_entropy(Z, gc.data("y", shape=(None, 2)))
    with pytest.raises(gc.GraphcError, match="gc.data"):
        nn.cross_entropy(Z, np.array([0, 1, 2]))  # a fixed-length array against the sample dim
    W = gc.param("W", (4, 3))
    with pytest.raises(gc.GraphcError, match="not a class index 0 .. 2"):
        nn.nll_loss(W, np.array([0, 1, 3, 2]))
    with pytest.raises(gc.GraphcError, match="not a class index"):
        nn.nll_loss(W, np.array([0, 1, 0.5, 2]))
    assert nn.cross_entropy(W, np.array([0, 1, 2, 2])).shape == ()


def test_accuracy():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [1.0, np.nan, 0.0]])
    assert nn.accuracy(logits, [0, 1, 1, 0]) == 0.5  # the NaN row counts as wrong
    assert nn.accuracy(logits[:3], nn.one_hot([0, 1, 2], 3)) == 1.0
    assert nn.accuracy(np.array([0.9, 0.2, 0.6]), np.array([1, 0, 0]), threshold=0.5) == pytest.approx(2 / 3)
    assert nn.accuracy(np.array([2.0, -1.0]), [1, 0], threshold=0.0) == 1.0
    with pytest.raises(gc.GraphcError, match="threshold"):
        nn.accuracy(np.array([0.9, 0.2]), [1, 0])
    with pytest.raises(gc.GraphcError, match="labels have shape"):
        nn.accuracy(logits, [0, 1])


def test_stable_forms_do_not_overflow():
    z = gc.data("z")
    T = gc.data("T", shape=(None, 2))
    Z = gc.data("Z", shape=(None, 2))
    loss = nn.binary_cross_entropy_with_logits(z, z * 0, "sum") + nn.cross_entropy(Z, T, "sum")
    big = np.array([1000.0, -1000.0])
    r = gc.compile(loss)(z=big, Z=np.array([[1000.0, 0.0], [0.0, -1000.0]]), T=np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert r.loss == pytest.approx(1000.0 + 1000.0, rel=1e-12)


def test_sequential_parameters_and_init():
    model = nn.Sequential(nn.Linear(3, 4, name="a"), nn.Tanh(), nn.Linear(4, 1, bias=False, name="b"))
    assert [p.name for p in model.parameters()] == ["a.weight", "a.bias", "b.weight"]
    init = model.init(seed=5)
    assert set(init) == {"a.weight", "a.bias", "b.weight"}
    assert init["a.weight"].shape == (4, 3) and np.all(np.abs(init["a.weight"]) <= 3**-0.5)
    assert np.all(np.abs(init["b.weight"]) <= 0.5 + 1e-12)
    again = model.init(seed=5)
    assert all(np.array_equal(init[k], again[k]) for k in init)
    assert not np.array_equal(model.init(seed=6)["a.weight"], init["a.weight"])
    assert model(gc.data("X", shape=(None, 3))).shape == (gc.N, 1)
    assert len(model) == 3 and isinstance(model[1], nn.Tanh)


def test_loss_errors():
    p, y = gc.data("p"), gc.data("y")
    with pytest.raises(gc.GraphcError, match="reduction"):
        nn.l1_loss(p, y, reduction="none")
    with pytest.raises(gc.GraphcError, match="shape"):
        nn.cross_entropy(gc.data("Z", shape=(None, 3)), gc.data("Y", shape=(None, 4)))
    with pytest.raises(gc.GraphcError, match="delta"):
        nn.huber_loss(p, y, delta=0)
    with pytest.raises(gc.GraphcError, match="out of range"):
        nn.one_hot(np.array([0, 3]), 3)
    with pytest.raises(gc.GraphcError, match="not callable"):
        nn.Sequential(nn.Linear(2, 2), 3)


def test_ten_classes_print_a_linear_max_and_match_numpy():
    """Softmax cross-entropy subtracts the row max: a max of ten values printed as nested
    selects repeated each inner one (4**9 copies of the innermost, a 6.6 MB line); nested
    _maximum calls print each value once. Loss and gradient against numpy and differences."""
    k, rng = 10, np.random.default_rng(3)
    X, T = gc.data("X", shape=(None, 2)), gc.data("T", shape=(None, k))
    model = nn.Linear(2, k, name="lin")
    f = gc.compile(nn.cross_entropy(model(X), T))
    longest = max(len(line) for line in f.source.splitlines())
    assert longest < 300, longest
    assert "_maximum(" in f.source
    xs, labels = rng.normal(size=(50, 2)), rng.integers(0, k, 50)
    onehot = np.eye(k)[labels]
    w, b = rng.normal(size=(k, 2)), rng.normal(size=k)
    r = f(X=xs, T=onehot, **{"lin.weight": w, "lin.bias": b})
    logits = xs @ w.T + b
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert np.isclose(r.loss, -np.mean(logp[np.arange(50), labels]), rtol=1e-13)
    dlogits = (np.exp(logp) - onehot) / 50  # d(mean CE)/d(logits), the closed form
    np.testing.assert_allclose(r.grads["lin.weight"], dlogits.T @ xs, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(r.grads["lin.bias"], dlogits.sum(axis=0), rtol=1e-11, atol=1e-14)
    directional_check(lambda bnd: f(**bnd), {"X": xs, "T": onehot, "lin.weight": w, "lin.bias": b},
                      ["lin.weight", "lin.bias"])
