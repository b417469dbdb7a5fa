"""`graphc demo` (what `make demo` runs): the tutorial's sine fit, eager numpy vs graphc."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

STEPS, N_SAMPLES, LR = 2000, 2000, 1e-6
INIT = {"a": -0.4, "b": 0.6, "c": 0.3, "d": -0.2}

# Run in a fresh process against a cache that already holds the compiled loop.
_WARM = """
import time, math, numpy as np
t0 = time.perf_counter()
import graphc as gc
t1 = time.perf_counter()
x, y = gc.data("x"), gc.data("y")
a, b, c, d = gc.params("a b c d")
loss = gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)
xs = np.linspace(-math.pi, math.pi, 2000)
gc.fit(loss, data={"x": xs, "y": np.sin(xs)}, init=dict(a=0.0, b=0.0, c=0.0, d=0.0),
       optimizer=gc.SGD(lr=1e-6), steps=1, log_every=1, target=TARGET)
print(time.perf_counter() - t1, t1 - t0)
"""


def tutorial_numpy(x: np.ndarray, y: np.ndarray, init: dict, steps: int, lr: float) -> tuple[dict, list]:
    """The tutorial's eager numpy loop, as written."""
    a, b, c, d = (init[k] for k in "abcd")
    history = []
    for t in range(steps):
        y_pred = a + b * x + c * x**2 + d * x**3
        loss = np.square(y_pred - y).sum()
        if t % 100 == 99:
            history.append((t, loss))
        grad_y_pred = 2.0 * (y_pred - y)
        grad_a = grad_y_pred.sum()
        grad_b = (grad_y_pred * x).sum()
        grad_c = (grad_y_pred * x**2).sum()
        grad_d = (grad_y_pred * x**3).sum()
        a -= lr * grad_a
        b -= lr * grad_b
        c -= lr * grad_c
        d -= lr * grad_d
    return dict(a=a, b=b, c=c, d=d), history


def _warm_start(cache: str, target: str) -> tuple[float, float]:
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", _WARM.replace("TARGET", repr(target))], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    import graphc as gc

    x = np.linspace(-math.pi, math.pi, N_SAMPLES)
    y = np.sin(x)
    print(f"graphc demo: fit y = a + b x + c x^2 + d x^3 to sin(x), {N_SAMPLES} samples, {STEPS} SGD steps\n")

    start = time.perf_counter()
    ref, ref_hist = tutorial_numpy(x, y, INIT, STEPS, LR)
    numpy_step = (time.perf_counter() - start) / STEPS
    print(f"eager numpy (the tutorial's loop): {numpy_step * 1e6:9.1f} us/step   final loss {ref_hist[-1][1]:.6f}")

    xd, yd = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    loss = gc.sum((a + b * xd + c * xd**2 + d * xd**3 - yd) ** 2)
    rows = []
    with tempfile.TemporaryDirectory(prefix="graphc-demo-") as cache:
        os.environ["GRAPHC_CACHE_DIR"] = cache
        for target in ("cpu", "parallel"):
            start = time.perf_counter()
            gc.fit(loss, data={"x": x, "y": y}, init=INIT, optimizer=gc.SGD(lr=LR), steps=1, log_every=1, target=target)
            cold = time.perf_counter() - start
            res = min((gc.fit(loss, data={"x": x, "y": y}, init=INIT, optimizer=gc.SGD(lr=LR), steps=STEPS,
                              log_every=100, target=target) for _ in range(5)), key=lambda r: r.seconds)
            warm, _ = _warm_start(cache, target)
            step = res.seconds / STEPS
            worst = max(abs(h - r) / abs(r) for (_, h), (_, r) in zip(res.history, ref_hist))
            rows.append((target, step, cold, warm, res, worst))
        del os.environ["GRAPHC_CACHE_DIR"]

    for target, step, cold, warm, res, worst in rows:
        print(f"graphc {target:<8}                : {step * 1e6:9.2f} us/step   {numpy_step / step:6.0f}x faster"
              f"   compile: cold {cold:.2f} s, warm (new process) {warm:.2f} s   max rel diff vs numpy {worst:.1e}")
    res = rows[0][4]
    print("\nloss every 100 steps (graphc cpu):")
    for t, value in res.history:
        print(t, value)
    p = res.params
    print(f"Result: y = {p['a']} + {p['b']} x + {p['c']} x^2 + {p['d']} x^3")
    f = res.compiled
    print("\nthe gradients SymPy derived, for one sample (f.gradients):")
    for name, expr in f.gradients.items():
        print(f"  d(loss)/d({name}) = {expr}")
    print("\nwork per sample in the fused loop (f.stats):")
    print("  " + str(f.stats).replace("\n", "\n  "))
    print("\n---- generated code (target=cpu): print(res.source) ----\n")
    print(res.source)


if __name__ == "__main__":
    main()
