"""The models of benchmarks/bench_latency.py (issue #18), each twice: as a graphc graph and as
the same maths written by hand as one Numba loop (the yardstick a first compile is measured
against: Numba compiling that loop, in the same process).

- ``tutorial``: the cubic a + b x + c x^2 + d x^3 fitted to sin(x), N=2000, SGD(lr=1e-6);
- ``newton3``: y = b1 (1 - exp(-b2 x)) + b3, a 3-parameter nonlinear model, damped Newton with
  the exact Hessian, N=200;
- ``mlp32``: the 3-32-1 tanh MLP of ``graphc bench`` on (x, x^2, x^3), N=2000, SGD;
- ``relu64``: a 2-64-64-3 relu classifier, softmax cross-entropy on one-hot targets, Adam,
  mini-batches of 128 (shuffled), N=1024.

Each ``MODELS[name]()`` returns ``(loss, fit_kwargs, hand)``: ``hand()`` compiles and runs the
hand-written loop once (its first call is the compile) and returns the trained parameters.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np


def _data_tutorial(n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(-math.pi, math.pi, n)
    return x, np.sin(x)


def tutorial(steps: int = 2000) -> tuple[Any, dict, Callable[[], Any]]:
    import graphc as gc

    x, y = _data_tutorial()
    xs, ys = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    loss = gc.sum((a + b * xs + c * xs**2 + d * xs**3 - ys) ** 2)
    kwargs = dict(
        data={"x": x, "y": y},
        init={"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4},
        optimizer=gc.SGD(lr=1e-6),
        steps=steps,
        log_every=100,
    )
    return loss, kwargs, lambda: hand_poly()(x, y, 0.1, 0.2, 0.3, 0.4, 1e-6, steps)


def _kernels() -> dict:
    """graphc.tools.bench's hand-written loops (graphc.bench's in a tree from before the layout
    by stage, as bench_latency.py --baseline may measure)."""
    import importlib

    try:
        bench = importlib.import_module("graphc.tools.bench")
    except ImportError:  # the old place, named as a string (not rewritten with the new layout)
        bench = importlib.import_module("graphc.bench")
    return bench._njit_kernels()


def hand_poly() -> Any:
    """The tutorial's hand-written training loop (graphc.tools.bench's, which graphc bench times too)."""
    return _kernels()["poly"]


def hand_poly_grad() -> Any:
    """The tutorial's loss and four gradients at one point (what ``f(**bindings)`` computes)."""
    import numba

    @numba.njit(fastmath=True)
    def poly_grad(x, y, a, b, c, d):
        ga = gb = gc = gd = loss = 0.0
        for i in range(x.shape[0]):
            xi = x[i]
            x2 = xi * xi
            x3 = x2 * xi
            r = a + b * xi + c * x2 + d * x3 - y[i]
            loss += r * r
            g = 2.0 * r
            ga += g
            gb += g * xi
            gc += g * x2
            gd += g * x3
        return loss, ga, gb, gc, gd

    return poly_grad


def newton3(steps: int = 20) -> tuple[Any, dict, Callable[[], Any]]:
    import graphc as gc

    x = np.linspace(0.0, 5.0, 200)
    y = 2.5 * (1 - np.exp(-1.3 * x)) + 0.4 + 0.01 * np.sin(7 * x)
    xs, ys = gc.data("x"), gc.data("y")
    b1, b2, b3 = gc.params("b1 b2 b3")
    loss = gc.sum((b1 * (1 - gc.exp(-b2 * xs)) + b3 - ys) ** 2)
    kwargs = dict(
        data={"x": x, "y": y},
        init={"b1": 2.0, "b2": 1.5, "b3": 0.0},
        optimizer=gc.Newton(damping=1e-3),
        steps=steps,
        log_every=1,
    )
    return loss, kwargs, lambda: hand_newton()(x, y, 2.0, 1.5, 0.0, 1e-3, steps)


def hand_newton() -> Any:
    import numba

    @numba.njit(fastmath=True)
    def newton(x, y, b1, b2, b3, damping, steps):
        H = np.empty((3, 3))
        g = np.empty(3)
        for _ in range(steps):
            H[:] = 0.0
            g[:] = 0.0
            for i in range(x.shape[0]):
                e = math.exp(-b2 * x[i])
                r = b1 * (1.0 - e) + b3 - y[i]
                j0, j1, j2 = 1.0 - e, b1 * x[i] * e, 1.0
                g[0] += 2 * r * j0
                g[1] += 2 * r * j1
                g[2] += 2 * r * j2
                H[0, 0] += 2 * j0 * j0
                H[0, 1] += 2 * (j0 * j1 + r * x[i] * e)
                H[0, 2] += 2 * j0 * j2
                H[1, 1] += 2 * (j1 * j1 - r * b1 * x[i] * x[i] * e)
                H[1, 2] += 2 * j1 * j2
                H[2, 2] += 2 * j2 * j2
            for k in range(3):
                H[k, k] += damping
                for m in range(k):
                    H[k, m] = H[m, k]
            for k in range(3):  # Gaussian elimination, no pivoting (H + damping I is positive definite here)
                for m in range(k + 1, 3):
                    f = H[m, k] / H[k, k]
                    for q in range(k, 3):
                        H[m, q] -= f * H[k, q]
                    g[m] -= f * g[k]
            for k in range(2, -1, -1):
                s = g[k]
                for q in range(k + 1, 3):
                    s -= H[k, q] * g[q]
                g[k] = s / H[k, k]
            b1, b2, b3 = b1 - g[0], b2 - g[1], b3 - g[2]
        return b1, b2, b3

    return newton


def mlp32(steps: int = 100, width: int = 32) -> tuple[Any, dict, Callable[[], Any]]:
    import graphc as gc

    x, y = _data_tutorial()
    xs, ys = gc.data("x"), gc.data("y")
    xx = gc.stack([xs, xs**2, xs**3], axis=-1)
    l1, l2 = gc.nn.Linear(3, width, name="l1"), gc.nn.Linear(width, 1, name="l2")
    loss = gc.nn.mse_loss(gc.flatten(l2(gc.tanh(l1(xx)))), ys, reduction="sum")
    rng = np.random.default_rng(0)
    s1, s2 = 1 / math.sqrt(3), 1 / math.sqrt(width)
    init = {
        "l1.weight": rng.uniform(-s1, s1, (width, 3)),
        "l1.bias": rng.uniform(-s1, s1, width),
        "l2.weight": rng.uniform(-s2, s2, (1, width)),
        "l2.bias": rng.uniform(-s2, s2, 1),
    }
    kwargs = dict(data={"x": x, "y": y}, init=init, optimizer=gc.SGD(lr=1e-5), steps=steps, log_every=10)
    names = ("l1.weight", "l1.bias", "l2.weight", "l2.bias")
    return loss, kwargs, lambda: hand_mlp()(x, y, *(init[k].copy() for k in names), 1e-5, steps)


def hand_mlp() -> Any:
    """The 3-W-1 tanh MLP's hand-written training loop (graphc.tools.bench's)."""
    return _kernels()["mlp"]


def _classes(n: int = 1024, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of ``k`` interleaved spirals in 2-D and their one-hot labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    t = np.sqrt(rng.uniform(0.0, 1.0, n)) * 2 * math.pi
    angle = t + labels * 2 * math.pi / k
    xs = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1) / (2 * math.pi)
    return xs + rng.normal(0.0, 0.02, xs.shape), np.eye(k)[labels]


def relu64(steps: int = 100, width: int = 64, batch: int = 128) -> tuple[Any, dict, Callable[[], Any]]:
    import graphc as gc
    from graphc import nn

    xs, onehot = _classes()
    X, T = gc.data("X", shape=(None, 2)), gc.data("T", shape=(None, 3))
    model = nn.Sequential(
        nn.Linear(2, width, name="l1"),
        nn.ReLU(),
        nn.Linear(width, width, name="l2"),
        nn.ReLU(),
        nn.Linear(width, 3, name="l3"),
    )
    loss = nn.cross_entropy(model(X), T)
    init = model.init(0)
    kwargs = dict(
        data={"X": xs, "T": onehot},
        init=init,
        optimizer=gc.Adam(lr=1e-2),
        steps=steps,
        log_every=10,
        batch_size=batch,
        shuffle=True,
        seed=0,
    )
    names = [f"l{k}.{w}" for k in (1, 2, 3) for w in ("weight", "bias")]
    start = [np.array(init[k]) for k in names]
    return loss, kwargs, lambda: hand_relu()(xs, onehot, *(a.copy() for a in start), 1e-2, steps, batch)


def hand_relu() -> Any:
    """The 2-64-64-3 relu classifier: mini-batches (a fresh permutation per epoch), mean softmax
    cross-entropy, Adam (torch's formulas), every product written as a loop."""
    import numba

    @numba.njit(fastmath=True)
    def adam(p, g, m, v, lr, step):
        for e in range(p.shape[0]):
            m[e] = 0.9 * m[e] + 0.1 * g[e]
            v[e] = 0.999 * v[e] + 0.001 * g[e] * g[e]
            denom = math.sqrt(v[e]) / math.sqrt(1 - 0.999**step) + 1e-8
            p[e] -= lr / (1 - 0.9**step) * m[e] / denom

    @numba.njit(fastmath=True)
    def relu(X, T, W1, b1, W2, b2, W3, b3, lr, steps, batch):
        n, H, C = X.shape[0], b1.shape[0], b3.shape[0]
        flat = [W1.reshape(W1.size), b1, W2.reshape(W2.size), b2, W3.reshape(W3.size), b3]
        grads = [np.zeros(f.size) for f in flat]
        m = [np.zeros(f.size) for f in flat]
        v = [np.zeros(f.size) for f in flat]
        gW1, gb1 = grads[0].reshape(W1.shape), grads[1]
        gW2, gb2 = grads[2].reshape(W2.shape), grads[3]
        gW3, gb3 = grads[4].reshape(W3.shape), grads[5]
        h1, h2, z, p = np.empty(H), np.empty(H), np.empty(C), np.empty(C)
        d2, d1 = np.empty(H), np.empty(H)
        per_epoch = (n + batch - 1) // batch
        order = np.arange(n)
        for t in range(steps):
            if t % per_epoch == 0:
                order = np.random.permutation(n)
            lo = (t % per_epoch) * batch
            hi = min(lo + batch, n)
            for g in grads:
                g[:] = 0.0
            for s in range(lo, hi):
                i = order[s]
                for j in range(H):
                    a = b1[j] + W1[j, 0] * X[i, 0] + W1[j, 1] * X[i, 1]
                    h1[j] = a if a > 0 else 0.0
                for j in range(H):
                    a = b2[j]
                    for k in range(H):
                        a += W2[j, k] * h1[k]
                    h2[j] = a if a > 0 else 0.0
                top = -np.inf
                for c in range(C):
                    a = b3[c]
                    for k in range(H):
                        a += W3[c, k] * h2[k]
                    z[c] = a
                    top = max(top, a)
                total = 0.0
                for c in range(C):
                    p[c] = math.exp(z[c] - top)
                    total += p[c]
                scale = 1.0 / (hi - lo)
                for c in range(C):
                    p[c] = (p[c] / total - T[i, c]) * scale  # d(loss)/d(z[c])
                    gb3[c] += p[c]
                    for k in range(H):
                        gW3[c, k] += p[c] * h2[k]
                for k in range(H):
                    a = 0.0
                    for c in range(C):
                        a += W3[c, k] * p[c]
                    d2[k] = a if h2[k] > 0 else 0.0
                    gb2[k] += d2[k]
                    for q in range(H):
                        gW2[k, q] += d2[k] * h1[q]
                for k in range(H):
                    a = 0.0
                    for q in range(H):
                        a += W2[q, k] * d2[q]
                    d1[k] = a if h1[k] > 0 else 0.0
                    gb1[k] += d1[k]
                    gW1[k, 0] += d1[k] * X[i, 0]
                    gW1[k, 1] += d1[k] * X[i, 1]
            for q in range(6):
                adam(flat[q], grads[q], m[q], v[q], lr, t + 1)
        return W1, b1, W2, b2, W3, b3

    return relu


MODELS: dict[str, Callable[[], tuple[Any, dict, Callable[[], Any]]]] = {
    "tutorial": tutorial,
    "newton3": newton3,
    "mlp32": mlp32,
    "relu64": relu64,
}
LABELS = {
    "tutorial": "tutorial cubic (SGD)",
    "newton3": "3-param Newton fit",
    "mlp32": "MLP 3-32-1 (SGD)",
    "relu64": "2-64-64-3 relu, batches (Adam)",
}
