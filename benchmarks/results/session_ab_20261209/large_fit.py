"""Least squares' dense path: graphc's first and warm fit of bench_lsq's large models
(argv: linear|glm P N 0), in this process's BLAS environment (OPENBLAS_NUM_THREADS unset)."""
import json, sys, time
import numpy as np
import scipy.optimize as so
import graphc as gc
import numba
numba.njit(lambda v: v + 1)(1.0)  # Numba's one-time start-up, which every Numba user pays
kind, P, n, lm_max_p = sys.argv[1], int(sys.argv[2]), int(float(sys.argv[3])), int(sys.argv[4])
rng = np.random.default_rng(P)
if kind == "linear":
    X = rng.standard_normal((n, P))
    y = X @ rng.standard_normal(P) + 0.1 * rng.standard_normal(n)
    Xg, Yg, w = gc.data("X", (None, P)), gc.data("y"), gc.param("w", (P,))
    r = Yg - Xg @ w
    init = {"w": np.zeros(P)}
    f = lambda p: y - X @ p
    jac = lambda p: -X
else:
    X = rng.standard_normal((n, P - 1)) / np.sqrt(P - 1)
    y = np.exp(X @ rng.standard_normal(P - 1) + 0.3) + 0.05 * rng.standard_normal(n)
    Xg, Yg = gc.data("X", (None, P - 1)), gc.data("y")
    w, b = gc.param("w", (P - 1,)), gc.param("b")
    r = Yg - gc.exp(Xg @ w + b)
    init = {"w": np.zeros(P - 1), "b": 0.0}
    f = lambda p: y - np.exp(X @ p[:-1] + p[-1])

    def jac(p):
        e = np.exp(X @ p[:-1] + p[-1])
        out = np.empty((n, P))
        np.multiply(X, -e[:, None], out=out[:, :-1])
        out[:, -1] = -e
        return out
data = {"X": X, "y": y}
rows = {}
t0 = time.perf_counter()
res = gc.least_squares(r, data, init)
first = time.perf_counter() - t0
t0 = time.perf_counter()
res = gc.least_squares(r, data, init)
warm = time.perf_counter() - t0
print(P, n, "first %.2f warm %.3f" % (first, warm))
