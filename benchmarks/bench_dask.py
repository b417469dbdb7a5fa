"""Time per training step with Dask data against the local `parallel` target, in one run.

    python benchmarks/bench_dask.py                 # N = 10^7 and 10^8 (about 3 GB of RAM)
    python benchmarks/bench_dask.py --sizes 1e6     # quicker

The tutorial cubic, SGD. Local `parallel` gets numpy arrays; Dask gets arrays generated ON
THE WORKERS (`da.random`, never on the client) in chunks of --chunk samples, on a
LocalCluster of 1 and of 2 single-threaded worker processes. The per-step overhead Dask adds
is measured on tiny data (8 chunks of 1000 samples), where the compute is negligible.
Prints a Markdown table and writes benchmarks/results/dask.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

import graphc as gc

INIT = {"a": 0.1, "b": 0.8, "c": 0.0, "d": -0.09}


def model():
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    return gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)


def per_step(loss, data, steps, repeats, **kw):
    """Median seconds per step over `repeats` fits of `steps` steps (after one warm-up fit)."""
    opt = gc.SGD(lr=1e-12)
    gc.fit(loss, data=data, init=INIT, optimizer=opt, steps=1, log_every=1, **kw)
    times = [gc.fit(loss, data=data, init=INIT, optimizer=opt, steps=steps, log_every=1, **kw).seconds / steps
             for _ in range(repeats)]
    return statistics.median(times)


def dask_data(da, n, chunk):
    x = da.random.RandomState(0).uniform(-math.pi, math.pi, size=n, chunks=chunk)
    return {"x": x, "y": da.sin(x)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e7, 1e8])
    parser.add_argument("--chunk", type=int, default=5_000_000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "dask.json"))
    args = parser.parse_args()
    import dask.array as da
    import distributed

    loss = model()
    rows, overhead = [], {}
    for size in args.sizes:
        n = int(size)
        x = np.random.default_rng(0).uniform(-math.pi, math.pi, n)
        local = per_step(loss, {"x": x, "y": np.sin(x)}, args.steps, args.repeats, target="parallel")
        del x
        rows.append({"n": n, "runner": "local parallel", "workers": os.cpu_count(), "seconds": local})
        print(f"N={n:.0e} local parallel: {local * 1e3:.1f} ms/step", flush=True)
    for workers in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                               dashboard_address=None, silence_logs=40)
            client = distributed.Client(cluster, set_as_default=False)
        try:
            tiny = dask_data(da, 8000, 1000)
            overhead[workers] = per_step(loss, tiny, 20, args.repeats, client=client)
            print(f"dask {workers} worker(s): overhead {overhead[workers] * 1e3:.1f} ms/step (8 tiny chunks)", flush=True)
            for size in args.sizes:
                n = int(size)
                t = per_step(loss, dask_data(da, n, args.chunk), args.steps, args.repeats, client=client)
                rows.append({"n": n, "runner": "dask", "workers": workers, "seconds": t})
                print(f"N={n:.0e} dask {workers} worker(s): {t * 1e3:.1f} ms/step", flush=True)
        finally:
            client.close()
            cluster.close()

    lines = ["| N | local `parallel` | Dask, 1 worker | Dask, 2 workers |", "|---|---|---|---|"]
    for size in args.sizes:
        n = int(size)
        cell = {(r["runner"], r["workers"]): r["seconds"] for r in rows if r["n"] == n}
        local = next(v for (runner, _), v in cell.items() if runner == "local parallel")
        lines.append(f"| {n:.0e} | {local * 1e3:.1f} ms | {cell[('dask', 1)] * 1e3:.1f} ms | {cell[('dask', 2)] * 1e3:.1f} ms |")
    lines.append(f"| Dask overhead per step (8 chunks) | | {overhead[1] * 1e3:.1f} ms | {overhead[2] * 1e3:.1f} ms |")
    print("\n".join(lines))
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "python": platform.python_version(), "numpy": np.__version__, "chunk": args.chunk}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "overhead": overhead, "machine": machine,
                                          "table": lines, "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1))


if __name__ == "__main__":
    main()
