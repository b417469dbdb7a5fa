"""Adam on the tutorial workload (cubic fit to sin(x), 2000 samples): graphc's compiled
training loop against the same loop in eager numpy and, where installed, torch eager with
torch.optim.Adam (float64, one thread). Prints microseconds per step (median of repeats)
and the ratios.

    python benchmarks/bench_optim.py [--steps 2000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

import graphc as gc

X = np.linspace(-math.pi, math.pi, 2000)
Y = np.sin(X)
INIT = {"a": 0.3, "b": -0.2, "c": 0.1, "d": 0.05}
LR, BETAS, EPS = 1e-3, (0.9, 0.999), 1e-8


def numpy_adam(steps: int) -> float:
    """The tutorial's numpy loop with torch.optim.Adam's update; returns the last loss."""
    p = np.array([INIT[k] for k in "abcd"])
    m, v = np.zeros(4), np.zeros(4)
    b1, b2 = BETAS
    loss = 0.0
    for t in range(1, steps + 1):
        a, b, c, d = p
        y_pred = a + b * X + c * X**2 + d * X**3
        loss = np.square(y_pred - Y).sum()
        g = 2.0 * (y_pred - Y)
        grad = np.array([g.sum(), (g * X).sum(), (g * X**2).sum(), (g * X**3).sum()])
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad**2
        p = p - LR / (1 - b1**t) * m / (np.sqrt(v) / math.sqrt(1 - b2**t) + EPS)
    return float(loss)


def torch_adam(steps: int) -> float:
    """The tutorial's autograd loop with torch.optim.Adam."""
    import torch

    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    p = torch.tensor([INIT[k] for k in "abcd"], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=LR, betas=BETAS, eps=EPS)
    loss = torch.zeros(())
    for _ in range(steps):
        loss = (p[0] + p[1] * x + p[2] * x**2 + p[3] * x**3 - y).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def graphc_adam(loss: gc.Node, steps: int) -> float:
    res = gc.fit(loss, {"x": X, "y": Y}, INIT, optimizer=gc.Adam(LR, BETAS, EPS), steps=steps, log_every=steps)
    return res.loss


def median_us_per_step(run, steps: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(steps)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / steps * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    loss = gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)
    last_gc = graphc_adam(loss, args.steps)  # compile (or load from the cache) first
    last_np = numpy_adam(args.steps)
    print(f"Adam, {len(X)} samples, {args.steps} steps, median of {args.repeats} (final loss graphc "
          f"{last_gc:.10g}, numpy {last_np:.10g})")
    t_np = median_us_per_step(numpy_adam, args.steps, args.repeats)
    t_gc = median_us_per_step(lambda s: graphc_adam(loss, s), args.steps, args.repeats)
    print(f"numpy eager    : {t_np:9.2f} us/step")
    print(f"graphc compiled: {t_gc:9.2f} us/step   {t_np / t_gc:7.1f}x faster than numpy")
    try:
        import torch
    except ImportError:
        print("torch eager    : not installed, skipped")
        return
    torch.set_num_threads(1)
    last_torch = torch_adam(args.steps)
    t_torch = median_us_per_step(torch_adam, args.steps, args.repeats)
    print(f"torch eager    : {t_torch:9.2f} us/step   graphc is {t_torch / t_gc:.1f}x faster "
          f"(final loss {last_torch:.10g})")


if __name__ == "__main__":
    main()
