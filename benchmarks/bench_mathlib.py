"""Throughput of graphc's own exp, tanh, log and log1p (graphc/codegen/mathlib.py) against libm.

Each function runs in a loop of its own, ``out[i] = f(x[i])``, compiled in a module laid
out as a generated one (``mathlib.loops``: the module's options, the helpers' text, their
constants bound as in a training loop), over ``--n`` values: for exp and tanh drawn
uniformly from [-10, 10]; for log and log1p, exp of those (log-uniform over 4.5e-5 to
2.2e4: many binades, and for log1p both of its paths, 1 + x inside and outside
[sqrt(2)/2, sqrt(2))). Per data type:

- float64 data: ``_exp``, ``_tanh``, ``_log`` and ``_log1p`` (vectorized by LLVM) against
  ``math.exp`` ... ``math.log1p`` (a libm call per value, not vectorized: pip's llvmlite has
  no SVML);
- float32 data: a float32 module's helpers (computed in float32, eight values per AVX2
  instruction) against the float64 module's (computed in float64) and libm.

``np.exp`` ... ``np.log1p`` (numpy's own loops, writing into ``out``) are printed for
reference. Each loop's results are first checked against float64 ``np.exp`` ... ``np.log1p``
(relative error 1e-14 on float64 data, 1e-6 on float32; the script exits with an error
otherwise). Every loop is timed once per round, the rounds interleaved so all see the same
load; reported: the median over ``--repeats`` rounds, in ms per call and ns per value, and
the ratio to libm's loop measured in the same rounds.

    python benchmarks/bench_mathlib.py [--n 320000] [--repeats 21] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numba
import numpy as np

from graphc.runtime import loader
from graphc.codegen import mathlib

FUNCTIONS = ("exp", "tanh", "log", "log1p")
CALLS = [(fn, f"_{fn}") for fn in FUNCTIONS] + [(f"math_{fn}", f"math.{fn}") for fn in FUNCTIONS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=320_000, help="values per call")
    ap.add_argument("--repeats", type=int, default=21, help="rounds (the median is reported)")
    ap.add_argument("--json", help="write every round's figures here")
    args = ap.parse_args()

    f64 = loader.load(mathlib.loops(CALLS), stem="bench_mathlib")[0]
    f32 = loader.load(mathlib.loops(CALLS[:len(FUNCTIONS)], float32=True), stem="bench_mathlib_f32")[0]
    x = np.random.default_rng(0).uniform(-10, 10, args.n)
    cases = {}  # (data type, function, label): loop
    for fn in FUNCTIONS:
        helper, libm, npf = getattr(f64, f"loop_{fn}"), getattr(f64, f"loop_math_{fn}"), getattr(np, fn)
        cases.update({("float64", fn, f"_{fn}"): helper, ("float64", fn, f"math.{fn}"): libm,
                      ("float64", fn, f"np.{fn}"): npf})
        cases.update({("float32", fn, f"_{fn} (float32 module)"): getattr(f32, f"loop_{fn}"),
                      ("float32", fn, f"_{fn} (float64 module)"): helper, ("float32", fn, f"math.{fn}"): libm,
                      ("float32", fn, f"np.{fn}"): npf})
    positive = np.exp(x)  # log, log1p
    data = {(dt, fn): (positive if fn.startswith("log") else x).astype(dt)
            for dt in ("float64", "float32") for fn in FUNCTIONS}
    out = {dt: np.empty(args.n, dt) for dt in ("float64", "float32")}
    for (dt, fn, label), loop in cases.items():  # compile for both types, warm the caches, check
        loop(data[(dt, fn)], out[dt])
        want = getattr(np, fn)(data[(dt, fn)].astype(np.float64))
        if not np.allclose(out[dt], want, rtol=1e-6 if dt == "float32" else 1e-14, atol=0):
            raise SystemExit(f"bench_mathlib: {label} on {dt} data disagrees with np.{fn} in float64")
    times: dict[tuple[str, str, str], list[float]] = {key: [] for key in cases}
    for _ in range(args.repeats):
        for (dt, fn, label), loop in cases.items():
            t0 = time.perf_counter()
            loop(data[(dt, fn)], out[dt])
            times[(dt, fn, label)].append(time.perf_counter() - t0)

    med = {key: statistics.median(ts) for key, ts in times.items()}
    print(f"{args.n} values in [-10, 10] (log, log1p: exp of them), median of {args.repeats} rounds; "
          f"{platform.processor() or platform.machine()}, numba {numba.__version__}, numpy {np.__version__}")
    print("| data | function | ms / call | ns / value | libm time / this time |")
    print("|---|---|---|---|---|")
    for (dt, fn, label), t in sorted(med.items(), key=lambda kv: (kv[0][0] != "float64", kv[0][1])):
        libm = med[(dt, fn, f"math.{fn}")]
        print(f"| {dt} | {label} | {t * 1e3:.3f} | {t / args.n * 1e9:.2f} | {libm / t:.1f}x |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n": args.n, "repeats": args.repeats, "numba": numba.__version__, "numpy": np.__version__,
                       "machine": platform.machine(),
                       "seconds": {f"{dt} {label}": ts for (dt, _, label), ts in times.items()}}, fh, indent=1)


if __name__ == "__main__":
    main()
