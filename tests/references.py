"""Plain-numpy versions of the tutorial's training loops: the independent oracle."""

import math

import numpy as np

X = np.linspace(-math.pi, math.pi, 2000)
Y = np.sin(X)


def sgd(grad_fn, params: dict, lr: float, steps: int, log_every: int = 100):
    """p -= lr * grad, logging the loss before update t when t % log_every == log_every - 1,
    and before the last update (as gc.fit does)."""
    p = {k: np.array(v, dtype=float) for k, v in params.items()}
    history = []
    for t in range(steps):
        loss, grads = grad_fn(p)
        if t % log_every == log_every - 1 or t == steps - 1:
            history.append((t, float(loss)))
        for k in p:
            p[k] = p[k] - lr * grads[k]
    return p, history


def cubic(p):
    """The tutorial's manual backward pass."""
    y_pred = p["a"] + p["b"] * X + p["c"] * X**2 + p["d"] * X**3
    g = 2.0 * (y_pred - Y)
    return np.square(y_pred - Y).sum(), {"a": g.sum(), "b": (g * X).sum(), "c": (g * X**2).sum(), "d": (g * X**3).sum()}


def legendre(p):
    """y = a + b P3(c + d x) with P3'(z) = 1.5 (5 z^2 - 1), as the tutorial's backward."""
    z = p["c"] + p["d"] * X
    p3 = 0.5 * (5 * z**3 - 3 * z)
    y_pred = p["a"] + p["b"] * p3
    g = 2.0 * (y_pred - Y)
    gz = g * p["b"] * 1.5 * (5 * z**2 - 1)
    return np.square(y_pred - Y).sum(), {"a": g.sum(), "b": (g * p3).sum(), "c": gz.sum(), "d": (gz * X).sum()}


def linear(p):
    """nn.Linear(3, 1) on (x, x^2, x^3), MSELoss(reduction='sum')."""
    xx = X[:, None] ** np.array([1, 2, 3])
    y_pred = (xx @ p["lin.weight"].T + p["lin.bias"])[:, 0]
    g = 2.0 * (y_pred - Y)
    return np.square(y_pred - Y).sum(), {"lin.weight": (g @ xx)[None, :], "lin.bias": np.array([g.sum()])}
