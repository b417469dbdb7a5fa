"""gc.least_squares on the dense path (issue #20 item 4): many parameters, J's rows per block of
samples from one reverse pass (graphc/lsq/tangents.per_sample_jacobian), J^T J by np.dot.

Against: np.linalg.lstsq (a Fourier basis, 301 parameters), scipy.optimize.least_squares with
the exact Jacobian written by hand in numpy (lm; trf for robust losses and bounds), a numpy
Jacobian by central differences, the textbook covariance s^2 (J^T J)^-1, and the fused path
on a model both take. Each residual graph compiles once per (loss, sigma, target, dtype):
module-scope fixtures."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize as so

import graphc as gc
from graphc.lsq import build

TIGHT = dict(xtol=1e-15, ftol=1e-15, gtol=1e-15)
AT_START = dict(gtol=1e300)  # stops at the start: res.jtj, res.grad, res.cost are at init


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# ---- a Fourier basis: y = c + sum_k a_k cos(k x) + b_k sin(k x), 301 parameters ------------------
K = 150


@pytest.fixture(scope="module")
def fourier():
    rng = np.random.default_rng(4)
    n = 1500
    x = np.sort(rng.uniform(0, 2 * np.pi, n))
    k = np.arange(1, K + 1)
    design = np.concatenate([np.ones((n, 1)), np.cos(np.outer(x, k)), np.sin(np.outer(x, k))], 1)
    truth = rng.standard_normal(2 * K + 1) / (1 + np.r_[0, k, k]) ** 0.5
    y = design @ truth + 0.05 * rng.standard_normal(n)
    X, Y = gc.data("x"), gc.data("y")
    c, a, b = gc.param("c"), gc.param("a", (K,)), gc.param("b", (K,))
    phase = X[:, None] * gc.constant(k.astype(float))[None, :]
    r = Y - (c + gc.cos(phase) @ a + gc.sin(phase) @ b)
    init = {"c": 0.0, "a": np.zeros(K), "b": np.zeros(K)}
    res = gc.least_squares(r, {"x": x, "y": y}, init, **TIGHT)
    return dict(r=r, x=x, y=y, design=design, init=init, res=res)


def test_fourier_basis_against_lstsq_and_scipy(fourier):
    res, design, y = fourier["res"], fourier["design"], fourier["y"]
    assert res.success and len(res.x) == 2 * K + 1 > build.FUSED_PARAMS
    assert build.solver(fourier["r"], "linear", False, "cpu", "float64").dense
    ref = np.linalg.lstsq(design, y, rcond=None)[0]
    assert rel(res.x, ref) < 1e-8
    assert res.params["a"].shape == (K,) and rel(res.params["a"], ref[1:K + 1]) < 1e-8
    sp = so.least_squares(lambda p: y - design @ p, np.zeros(2 * K + 1), jac=lambda p: -design, method="lm")
    assert rel(res.x, sp.x) < 1e-8
    assert abs(res.cost / sp.cost - 1) < 1e-10
    assert abs(res.cost - 0.5 * np.sum((y - design @ ref) ** 2)) < 1e-10 * res.cost


def test_fourier_covariance_is_the_textbook_formula(fourier):
    res, design = fourier["res"], fourier["design"]
    m, p = design.shape
    s2 = 2 * res.cost / (m - p)
    cov = s2 * np.linalg.inv(design.T @ design)
    assert rel(res.jtj, design.T @ design) < 1e-12
    assert rel(res.covariance, cov) < 1e-8
    assert rel(res.stderr["b"], np.sqrt(np.diag(cov))[K + 1:]) < 1e-8
    assert res.dof == m - p


def test_fourier_generated_code_does_not_grow_with_p(fourier):
    """301 parameters: J^T J is one np.dot per block and loops, not 45,451 unrolled sums."""
    source = fourier["res"].source
    assert source.count("_dot_into(") >= 2 and len(source.splitlines()) < 300  # np.dot's helper
    assert "J^T J[" not in source


def test_blocked_cholesky_against_numpy():
    """levmar's factorization by panels (used from levmar.BLOCKED_FROM parameters on): numpy's
    Cholesky factor, with a shift; False for a matrix that is not positive definite."""
    from graphc.lsq import levmar

    rng = np.random.default_rng(9)
    n = levmar.BLOCKED_FROM + 37  # panels of 64 and a ragged last one
    j = rng.standard_normal((n + 20, n))
    a = j.T @ j
    lower = np.full((n, n), np.nan)
    assert levmar.factor(a, 0.5, lower)
    assert rel(lower, np.linalg.cholesky(a + 0.5 * np.eye(n))) < 1e-12
    assert np.all(np.triu(lower, 1) == 0)
    a[n // 2, n // 2] = -1.0
    assert not levmar.factor(a, 0.0, lower)
    a[n // 2, n // 2] = np.nan
    assert not levmar.factor(a, 0.0, lower)


def test_fourier_float32(fourier):
    """float32 data and block arrays (the sums are float64): the float64 solution to 1e-4."""
    data = {"x": fourier["x"].astype(np.float32), "y": fourier["y"].astype(np.float32)}
    res = gc.least_squares(fourier["r"], data, fourier["init"], dtype="float32")
    assert res.success
    assert rel(res.x, fourier["res"].x) < 1e-4


# ---- a GLM: y = exp(X @ w + b), 80 parameters ------------------------------------------------
P_GLM = 79


@pytest.fixture(scope="module")
def glm():
    """20,000 samples: more than the parallel target's block (16,384), so its sums split."""
    rng = np.random.default_rng(5)
    n = 20000
    design = rng.standard_normal((n, P_GLM)) / np.sqrt(P_GLM)
    w_true = rng.standard_normal(P_GLM)
    y = np.exp(design @ w_true + 0.3) + 0.05 * rng.standard_normal(n)
    X, Y = gc.data("X", (None, P_GLM)), gc.data("y")
    w, b = gc.param("w", (P_GLM,)), gc.param("b")
    r = Y - gc.exp(X @ w + b)

    def f(p):
        return y - np.exp(design @ p[:-1] + p[-1])

    def jac(p):
        e = np.exp(design @ p[:-1] + p[-1])
        return -np.concatenate([design * e[:, None], e[:, None]], 1)

    init = {"w": np.zeros(P_GLM), "b": 0.0}
    res = gc.least_squares(r, {"X": design, "y": y}, init, **TIGHT)
    return dict(r=r, X=design, y=y, f=f, jac=jac, init=init, res=res, w_true=w_true)


def test_glm_against_scipy_lm(glm):
    res = glm["res"]
    assert res.success and len(res.x) == P_GLM + 1
    ref = so.least_squares(glm["f"], np.zeros(P_GLM + 1), jac=glm["jac"], method="lm", **TIGHT)
    assert rel(res.x, ref.x) < 1e-8
    assert abs(res.cost / ref.cost - 1) < 1e-10
    assert rel(res.x[:-1], glm["w_true"]) < 0.05  # and it is the model the data came from
    j = glm["jac"](res.x)
    assert rel(res.jtj, j.T @ j) < 1e-10
    assert rel(res.covariance, 2 * res.cost / (len(glm["y"]) - P_GLM - 1) * np.linalg.inv(j.T @ j)) < 1e-8


SUB = slice(0, 1000)  # scipy's trf on 1,000 samples (its SVD per step is slow on 20,000)
TRF = dict(xtol=1e-12, ftol=1e-12, gtol=1e-12)  # trf's steps cost an SVD each: fewer of them


def test_glm_bounds_against_scipy_trf(glm):
    """A bound the free optimum violates (b = 0.30): the fit ends on it, as trf's does."""
    X, y = glm["X"][SUB], glm["y"][SUB]

    def f(p):
        return y - np.exp(X @ p[:-1] + p[-1])

    def jac(p):
        e = np.exp(X @ p[:-1] + p[-1])
        return -np.concatenate([X * e[:, None], e[:, None]], 1)

    res = gc.least_squares(glm["r"], {"X": X, "y": y}, glm["init"], bounds={"b": (None, 0.25)}, **TIGHT)
    lo, hi = np.full(P_GLM + 1, -np.inf), np.full(P_GLM + 1, np.inf)
    hi[-1] = 0.25
    ref = so.least_squares(f, np.zeros(P_GLM + 1), jac=jac, bounds=(lo, hi), method="trf", **TRF)
    assert res.params["b"] <= 0.25 and abs(res.params["b"] - 0.25) < 1e-6
    assert rel(res.x, ref.x) < 1e-6
    assert abs(res.cost / ref.cost - 1) < 1e-9


def test_glm_robust_loss_and_sigma_against_scipy_trf(glm):
    """soft_l1 with f_scale and per-sample sigma on one compile: scipy's trf on f / sigma."""
    rng = np.random.default_rng(6)
    X, y = glm["X"][SUB], glm["y"][SUB].copy()
    y[::37] += 3.0  # outliers
    sigma = 0.05 * (1 + rng.uniform(0, 1, y.size))
    res = gc.least_squares(glm["r"], {"X": X, "y": y}, glm["init"], sigma=sigma, loss="soft_l1",
                           f_scale=2.0, **TIGHT)

    def f(p):
        return (y - np.exp(X @ p[:-1] + p[-1])) / sigma

    def jac(p):
        e = np.exp(X @ p[:-1] + p[-1])
        return -np.concatenate([X * e[:, None], e[:, None]], 1) / sigma[:, None]

    ref = so.least_squares(f, np.zeros(P_GLM + 1), jac=jac, loss="soft_l1", f_scale=2.0, method="trf", **TRF)
    assert res.success and ref.success
    assert rel(res.x, ref.x) < 1e-8
    assert abs(res.cost / ref.cost - 1) < 1e-10
    assert rel(res.x[:-1], glm["w_true"]) < 0.1


def test_glm_parallel_matches_cpu_and_is_deterministic(glm):
    data = {"X": glm["X"], "y": glm["y"]}
    one = gc.least_squares(glm["r"], data, glm["init"], target="parallel", **TIGHT)
    two = gc.least_squares(glm["r"], data, glm["init"], target="parallel", **TIGHT)
    assert np.array_equal(one.x, two.x) and one.cost == two.cost and one.nfev == two.nfev
    assert rel(one.x, glm["res"].x) < 1e-10


# ---- a 1-16-16-1 tanh network (321 parameters) and a 2-8-1 one (33) ---------------------------
def _network(sizes: tuple[int, ...], seed: int):
    X, Y = gc.data("X", (None, sizes[0])), gc.data("y")
    layers = [gc.nn.Linear(a, b, name=f"l{k}") for k, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    h = X
    for layer in layers[:-1]:
        h = gc.tanh(layer(h))
    r = Y - gc.flatten(layers[-1](h))
    init = {}
    for k, layer in enumerate(layers):
        init.update(layer.init(seed + k))
    return r, init


def _network_numpy(sizes: tuple[int, ...], X: np.ndarray, y: np.ndarray):
    """The residuals and their Jacobian by hand (backpropagation per sample), theta in graphc's
    order: weight (out, in) then bias, layer by layer."""
    shapes = [s for a, b in zip(sizes, sizes[1:]) for s in ((b, a), (b,))]

    def unpack(p):
        out, k = [], 0
        for s in shapes:
            size = int(np.prod(s))
            out.append(p[k:k + size].reshape(s))
            k += size
        return out[0::2], out[1::2]

    def forward(p):
        ws, bs = unpack(p)
        hs = [X]
        for w, b in zip(ws[:-1], bs[:-1]):
            hs.append(np.tanh(hs[-1] @ w.T + b))
        return ws, hs, (hs[-1] @ ws[-1].T + bs[-1])[:, 0]

    def f(p):
        return y - forward(p)[2]

    def jac(p):
        ws, hs, _ = forward(p)
        delta = -np.ones((len(y), 1))  # d r / d (the last layer's output)
        cols = []
        for k in range(len(ws) - 1, -1, -1):
            cols = [(delta[:, :, None] * hs[k][:, None, :]).reshape(len(y), -1), delta] + cols
            if k:
                delta = (delta @ ws[k]) * (1 - hs[k] ** 2)
        return np.concatenate(cols, 1)

    return f, jac


@pytest.fixture(scope="module")
def deep():
    rng = np.random.default_rng(7)
    sizes = (1, 16, 16, 1)
    X = rng.uniform(-2, 2, (800, 1))
    y = np.sin(2 * X[:, 0]) + 0.05 * rng.standard_normal(800)
    r, init = _network(sizes, 1)
    f, jac = _network_numpy(sizes, X, y)
    return dict(r=r, init=init, X=X, y=y, f=f, jac=jac, theta=np.concatenate([v.ravel() for v in init.values()]))


def test_network_jtj_against_numpy_and_finite_differences(deep):
    """J^T J and J^T f at a fixed theta: the hand-written Jacobian's to 1e-12, a central
    difference Jacobian's to 1e-6."""
    res = gc.least_squares(deep["r"], {"X": deep["X"], "y": deep["y"]}, deep["init"], **AT_START)
    theta, f = deep["theta"], deep["f"]
    assert res.nfev == 1 and len(res.x) == 321 and np.array_equal(res.x, theta)
    j = deep["jac"](theta)
    assert rel(res.jtj, j.T @ j) < 1e-12
    assert rel(res.grad, j.T @ f(theta)) < 1e-12
    assert abs(res.cost - 0.5 * np.sum(f(theta) ** 2)) < 1e-12 * res.cost
    h = 1e-6
    fd = np.stack([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(theta.size)], 1)
    assert rel(j, fd) < 1e-6  # the hand-written Jacobian is right
    assert rel(res.jtj, fd.T @ fd) < 1e-6


def test_network_fit_lowers_the_cost_to_a_consistent_point(deep):
    """321 parameters, 60 evaluations (far from converged, as scipy's lm is after as many):
    the cost falls, the gradient and J^T J reported are numpy's at the point returned."""
    res = gc.least_squares(deep["r"], {"X": deep["X"], "y": deep["y"]}, deep["init"], max_steps=60)
    start = gc.least_squares(deep["r"], {"X": deep["X"], "y": deep["y"]}, deep["init"], **AT_START)
    assert res.nfev == 60 and res.status == 0 and res.cost < 0.05 * start.cost
    j = deep["jac"](res.x)
    assert rel(res.grad, j.T @ deep["f"](res.x)) < 1e-10
    assert rel(res.jtj, j.T @ j) < 1e-10


def test_small_network_fit_against_scipy_lm():
    """2-8-1 (33 parameters) from near a teacher network: both converge, to the same cost and
    (the model is ill-conditioned) the same point to 1e-4, with the gradient there ~ 0."""
    rng = np.random.default_rng(2)
    sizes = (2, 8, 1)
    X = rng.uniform(-2, 2, (1000, 2))
    r, teacher = _network(sizes, 1)
    t = np.concatenate([v.ravel() for v in teacher.values()])
    f0, _ = _network_numpy(sizes, X, np.zeros(len(X)))
    y = -f0(t) + 0.01 * rng.standard_normal(len(X))
    f, jac = _network_numpy(sizes, X, y)
    x0 = t + 0.05 * rng.standard_normal(t.size)
    init, k = {}, 0
    for name, v in teacher.items():
        init[name] = x0[k:k + v.size].reshape(v.shape)
        k += v.size
    res = gc.least_squares(r, {"X": X, "y": y}, init, max_steps=2000)
    ref = so.least_squares(f, x0, jac=jac, method="lm", max_nfev=2000)
    assert res.success and ref.success
    assert abs(res.cost / ref.cost - 1) < 1e-9
    assert rel(res.x, ref.x) < 1e-4
    g = jac(res.x).T @ f(res.x)
    assert np.max(np.abs(g)) < 1e-5 * np.max(np.abs(jac(res.x)).sum(0)) and rel(res.grad, g) < 1e-8


# ---- the two paths on one model; residuals of shape (N, 2) -----------------------------------
@pytest.fixture(scope="module")
def two_columns():
    rng = np.random.default_rng(8)
    x = np.linspace(0.1, 4, 300)
    y1 = 2.0 * np.exp(-0.7 * x) + 0.01 * rng.standard_normal(x.size)
    y2 = 0.5 * np.sin(1.3 * x) + 0.01 * rng.standard_normal(x.size)
    X, Y1, Y2 = gc.data("x"), gc.data("y1"), gc.data("y2")
    a, k, c, w = gc.params("a k c w")
    r = gc.stack([Y1 - a * gc.exp(-k * X), Y2 - c * gc.sin(w * X)], axis=1)
    return dict(r=r, data={"x": x, "y1": y1, "y2": y2}, init={"a": 1.0, "k": 1.0, "c": 1.0, "w": 1.2})


def test_dense_and_fused_paths_agree(two_columns):
    r, data, init = two_columns["r"], two_columns["data"], two_columns["init"]
    fused = gc.least_squares(r, data, init, path="fused", **AT_START)
    dense = gc.least_squares(r, data, init, path="dense", **AT_START)
    assert rel(dense.jtj, fused.jtj) < 1e-13 and rel(dense.grad, fused.grad) < 1e-13
    assert abs(dense.cost - fused.cost) < 1e-14 * fused.cost
    fused = gc.least_squares(r, data, init, path="fused", **TIGHT)
    dense = gc.least_squares(r, data, init, path="dense", **TIGHT)
    assert dense.success and rel(dense.x, fused.x) < 1e-10 and dense.m == 600
    assert rel(dense.covariance, fused.covariance) < 1e-8
    assert "einsum('nk,nl->kl'" in dense.source and "einsum" not in fused.source


# ---- errors -----------------------------------------------------------------------------------
def test_too_many_parameters():
    x, y = gc.data("x"), gc.data("y")
    w = gc.param("w", (build.MAX_PARAMS + 1,))
    with pytest.raises(gc.GraphcError, match=f"{build.MAX_PARAMS + 1} scalar parameters; at most "
                                            f"{build.MAX_PARAMS} are supported"):
        gc.least_squares(y - gc.sum(w) * x, {"x": np.ones(3), "y": np.ones(3)},
                         {"w": np.zeros(build.MAX_PARAMS + 1)})
    v = gc.param("v", (build.MAX_FUSED + 1,))
    with pytest.raises(gc.GraphcError, match="path='fused' takes at most 32"):
        gc.least_squares(y - gc.sum(v) * x, {"x": np.ones(3), "y": np.ones(3)},
                         {"v": np.zeros(build.MAX_FUSED + 1)}, path="fused")
    with pytest.raises(gc.GraphcError, match="unknown path 'qr'"):
        gc.least_squares(y - gc.sum(v) * x, {"x": np.ones(3), "y": np.ones(3)},
                         {"v": np.zeros(build.MAX_FUSED + 1)}, path="qr")


def test_residuals_that_mix_samples_are_refused_on_the_dense_path():
    x, y = gc.data("x"), gc.data("y")
    a, b = gc.params("a b")
    r = y - a * x / gc.mean(b * x)
    with pytest.raises(gc.GraphcError, match=r"mean\(b\*x\).*sums over the samples.*only through sample i"):
        gc.least_squares(r, {"x": np.ones(3), "y": np.ones(3)}, {"a": 1.0, "b": 1.0}, path="dense")
