"""Logistic regression (binary cross-entropy) training: graphc against a hand-written Numba loop.

Workload: ``--n`` samples of two features x1, x2 ~ N(0, 1) and labels y drawn from a
logistic model (y = 1 with probability sigmoid(0.5 + 2 x1 - 3 x2)); the numerically stable
loss

    loss = sum(softplus(z) - z*y) = sum(max(z, 0) - z*y + log1p(exp(-|z|))),  z = w0 + w1 x1 + w2 x2

(graphc has no ``log1p`` op: ``gc.softplus`` is written max(z, 0) + log1p(exp(-|z|)), so
the generated loop calls log1p and exp as the formula does), full-batch SGD from w = 0,
``--steps`` steps. The same steps, run by:

- graphc: ``gc.fit(loss, ..., optimizer=gc.SGD(lr))``, cpu target, float64; timed by
  ``FitResult.seconds`` (the compiled training loop, as benchmarks/bench_mlp.py does);
  its generated loop calls graphc's own ``_exp`` and ``_log1p`` (graphc/codegen/mathlib.py),
  so LLVM vectorizes it;
- ``numba (math)``: the user's obvious loop, ``@numba.njit(fastmath={"reassoc",
  "contract"}, error_model="numpy")`` (error_model so a division is not a branch: the
  faster of the two models), one pass per step computing the loss and the three gradient
  sums with ``math.exp`` and ``math.log1p`` (libm calls: the loop does not vectorize), then
  the SGD update;
- ``numba (mathlib)``: the same loop calling graphc's ``_exp`` and ``_log1p`` instead, pasted
  from graphc.codegen.mathlib: what the hand-written loop gains from the helpers alone.

Both hand-written loops compute what graphc's does per sample: the loss term (one exp, one
log1p) and sigmoid(z) - y for the gradient (one exp). Every implementation runs once
first (compile excluded); then ``--repeats`` rounds time each in turn; reported: the median
in ns per sample per step, the ratio graphc / hand-written, and the final losses and
parameters (checked to agree: the script exits with an error otherwise). Every round's
figures go to benchmarks/results/bce_<UTC time>.json.

    python benchmarks/bench_bce.py [--n 100000] [--steps 100] [--repeats 7] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numba
import numpy as np

import graphc as gc
from graphc.runtime import loader
from graphc.codegen import mathlib

LOOP = '''
@numba.njit(**OPTS)
def train_{name}(x1, x2, y, w, lr, steps):
    """Full-batch SGD on sum(max(z, 0) - z*y + log1p(exp(-|z|))), z = w0 + w1 x1 + w2 x2; w in
    place; returns the loss before the last update."""
{bind}    n = x1.shape[0]
    loss = 0.0
    for step in range(steps):
        w0, w1, w2 = w[0], w[1], w[2]
        loss = 0.0
        g0 = 0.0
        g1 = 0.0
        g2 = 0.0
        for i in range(n):
            z = w0 + w1 * x1[i] + w2 * x2[i]
            loss += (z if z > 0.0 else 0.0) - z * y[i] + {log1p_exp_abs}
            s = 1.0 / (1.0 + {exp_neg}) - y[i]
            g0 += s
            g1 += s * x1[i]
            g2 += s * x2[i]
        w[0] = w0 - lr * g0
        w[1] = w1 - lr * g1
        w[2] = w2 - lr * g2
    return loss
'''


def hand_written():
    """train_math and train_mathlib, in one module laid out as graphc's: the options line
    (``fastmath={"reassoc", "contract"}, error_model="numpy"``), the helpers, the loops."""
    def lines(helpers: set) -> str:  # the constants' copies, as graphc's functions make them
        return "".join(line + "\n" for line in mathlib.bindings(helpers, "    "))

    call = mathlib.call
    text = "\n".join([
        "import math", "", "import numba", "import numpy as np", "", mathlib.MODULE_OPTIONS, "",
        mathlib.source({"_exp", "_log1p"}), "",
        LOOP.format(name="math", bind="", log1p_exp_abs="math.log1p(math.exp(-abs(z)))", exp_neg="math.exp(-z)"),
        LOOP.format(name="mathlib", bind=lines({"_exp", "_log1p"}),
                    log1p_exp_abs=call("_log1p", call("_exp", "-abs(z)")), exp_neg=call("_exp", "-z")),
    ])
    return loader.load(text, stem="bench_bce")[0]


def problem(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(0.5 + 2 * x1 - 3 * x2)))).astype(np.float64)
    return x1, x2, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="samples")
    ap.add_argument("--steps", type=int, default=100, help="SGD steps per run")
    ap.add_argument("--repeats", type=int, default=7, help="rounds (the median is reported)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"),
                    help="folder for the JSON ('' for none)")
    args = ap.parse_args()
    n, steps = args.n, args.steps
    lr = 1.0 / n  # a unit step on the mean gradient
    x1, x2, y = problem(n)

    X1, X2, Y = gc.data("x1"), gc.data("x2"), gc.data("y")
    w0, w1, w2 = gc.params("w0 w1 w2")
    z = w0 + w1 * X1 + w2 * X2
    loss = gc.sum(gc.softplus(z) - z * Y)
    data, init = {"x1": x1, "x2": x2, "y": y}, {"w0": 0.0, "w1": 0.0, "w2": 0.0}

    def run_graphc():
        res = gc.fit(loss, data=data, init=init, optimizer=gc.SGD(lr=lr), steps=steps, log_every=steps)
        return res.seconds, res.loss, [res.params[k] for k in ("w0", "w1", "w2")]

    mod = hand_written()

    def runner(fn):
        def run():
            w = np.zeros(3)
            t0 = time.perf_counter()
            last = fn(x1, x2, y, w, lr, steps)
            return time.perf_counter() - t0, last, list(w)
        return run

    cases = {"graphc": run_graphc, "numba (math)": runner(mod.train_math),
             "numba (mathlib)": runner(mod.train_mathlib)}
    source = gc.fit(loss, data=data, init=init, optimizer=gc.SGD(lr=lr), steps=1).source
    assert "_log1p(" in source and "math.log1p" not in source, "graphc's loop does not call _log1p"
    first = {name: run() for name, run in cases.items()}  # compile, warm the caches
    for name, (_, last, w) in first.items():
        ref_loss, ref_w = first["numba (math)"][1:]
        if not (np.isclose(last, ref_loss, rtol=1e-9) and np.allclose(w, ref_w, rtol=1e-7, atol=1e-12)):
            raise SystemExit(f"bench_bce: {name} disagrees: loss {last!r}, w {w} "
                             f"(numba (math): {ref_loss!r}, {ref_w})")
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, run in cases.items():
            seconds[name].append(run()[0])
    ns = {name: statistics.median(ts) / (n * steps) * 1e9 for name, ts in seconds.items()}

    print(f"logistic regression, {n} samples x 2 features, {steps} SGD steps, float64, median of "
          f"{args.repeats} rounds; {platform.processor() or platform.machine()}, numba {numba.__version__}, "
          f"numpy {np.__version__}, graphc {gc.__version__}")
    print("| implementation | ns / sample / step | graphc time / this time | final loss |")
    print("|---|---|---|---|")
    for name in cases:
        print(f"| {name} | {ns[name]:.2f} | {ns['graphc'] / ns[name]:.2f} | {first[name][1]:.10g} |")
    print(f"graphc / numba (math): {ns['graphc'] / ns['numba (math)']:.2f}x the time; "
          f"graphc / numba (mathlib): {ns['graphc'] / ns['numba (mathlib)']:.2f}x")
    if args.out:
        path = Path(args.out) / f"bce_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "n": n, "steps": steps, "repeats": args.repeats, "lr": lr, "dtype": "float64",
            "numba": numba.__version__, "numpy": np.__version__, "graphc": gc.__version__,
            "machine": platform.machine(), "processor": platform.processor(),
            "ns_per_sample_step": ns, "seconds": seconds,
            "ratio_graphc_to_numba_math": ns["graphc"] / ns["numba (math)"],
            "ratio_graphc_to_numba_mathlib": ns["graphc"] / ns["numba (mathlib)"],
            "final_loss": {name: r[1] for name, r in first.items()},
            "final_params": {name: r[2] for name, r in first.items()},
        }, indent=1))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
