"""MLP training step: graphc against eager numpy (manual backprop), torch eager and JAX jit.

Workload (issue #3): x = (x, x^2, x^3) of 10,000 samples, Linear(3, 32) -> tanh ->
Linear(32, 1), sum-squared loss, SGD, 200 steps, float32 and float64. Reported: seconds
per step (compile excluded: every implementation runs once before it is timed; the median
of ``--repeats`` rounds that time each implementation in turn), the final loss (the
implementations must agree), the ratios, and graphc's schedule and cold compile time. The
wide case (3 -> 256 -> 256 -> 1, 100,000 samples, float32) runs too (blocked schedule).
Every library runs on one thread (BLAS, torch, XLA), as graphc's cpu target does.

    python benchmarks/bench_mlp.py [--steps 200] [--n 10000] [--repeats 5] [--out benchmarks/results]
"""

from __future__ import annotations

import os

# one thread for every library (graphc's cpu target is one core): set before numpy loads BLAS
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import argparse
import atexit
import json
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import graphc as gc
from graphc import nn

LR = 1e-7  # sum over 10,000 samples of x^3 up to 31: larger steps diverge


def problem(n: int, widths: tuple, dtype: str, seed: int = 0):
    x = np.linspace(-math.pi, math.pi, n)
    feats = np.stack([x, x**2, x**3], axis=1).astype(dtype)
    y = np.sin(x).astype(dtype)
    layers = []
    for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b, name=f"l{k}"))
        if k < len(widths) - 2:
            layers.append(nn.Tanh())
    model = nn.Sequential(*layers)
    init = model.init(seed)
    return feats, y, model, init


def bench_graphc(feats, y, model, init, steps, dtype, target="cpu", schedule="auto"):
    """A runner (seconds per step and final loss of one timed fit), the cold compile seconds
    (an empty cache; a 1-step fit on the first 1,000 samples, so the step itself costs next to
    nothing) and the schedule. The runner's fits find the compiled loop in the cache."""
    X, Y = gc.data("X", shape=(None, feats.shape[1])), gc.data("y")
    loss = nn.mse_loss(gc.flatten(model(X)), Y, reduction="sum")
    kw = dict(init=init, optimizer=gc.SGD(lr=LR), dtype=dtype, target=target, schedule=schedule)
    cache = tempfile.mkdtemp(prefix="graphc-bench-mlp-")  # empty: the first fit compiles cold
    atexit.register(shutil.rmtree, cache, ignore_errors=True)

    def fit(**more):
        before = os.environ.get("GRAPHC_CACHE_DIR")
        os.environ["GRAPHC_CACHE_DIR"] = cache
        try:
            return gc.fit(loss, **kw, **more)
        finally:
            os.environ.pop("GRAPHC_CACHE_DIR") if before is None else os.environ.update(GRAPHC_CACHE_DIR=before)

    start = time.perf_counter()
    first = fit(data={"X": feats[:1000], "y": y[:1000]}, steps=1)
    compile_s = time.perf_counter() - start
    fit(data={"X": feats, "y": y}, steps=1)  # any first-call work, untimed

    def runner():
        res = fit(data={"X": feats, "y": y}, steps=steps, log_every=steps)
        return res.seconds / steps, res.loss

    return runner, compile_s, first.compiled.schedule


def bench_numpy(feats, y, init, steps, dtype, layers):
    p = {k: v.astype(dtype) for k, v in init.items()}
    lr = np.asarray(LR, dtype=dtype)
    start, loss = time.perf_counter(), None
    for _ in range(steps):
        acts = [feats]
        for k in range(layers):
            z = acts[-1] @ p[f"l{k}.weight"].T + p[f"l{k}.bias"]
            acts.append(np.tanh(z) if k < layers - 1 else z)
        r = acts[-1][:, 0] - y
        loss = float(np.sum(r * r))
        g = (2 * r)[:, None]
        for k in reversed(range(layers)):
            gw, gb = g.T @ acts[k], g.sum(0)
            if k:
                g = (g @ p[f"l{k}.weight"]) * (1 - acts[k] ** 2)
            p[f"l{k}.weight"] -= lr * gw
            p[f"l{k}.bias"] -= lr * gb
    return (time.perf_counter() - start) / steps, loss


def bench_torch(feats, y, init, steps, dtype, layers):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    tdt = getattr(torch, dtype)
    X, Y = torch.from_numpy(feats), torch.from_numpy(y)
    ps = {k: torch.tensor(v, dtype=tdt, requires_grad=True) for k, v in init.items()}
    opt = torch.optim.SGD(list(ps.values()), lr=LR)

    def step():
        h = X
        for k in range(layers):
            h = h @ ps[f"l{k}.weight"].T + ps[f"l{k}.bias"]
            h = torch.tanh(h) if k < layers - 1 else h
        loss = ((h[:, 0] - Y) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    def runner():  # each run starts again from init
        with torch.no_grad():
            for k, v in init.items():
                ps[k].copy_(torch.from_numpy(np.asarray(v, dtype=dtype)))
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        return (time.perf_counter() - start) / steps, float(loss.detach())

    step()  # warm-up
    return runner


def bench_jax(feats, y, init, steps, dtype, layers):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", dtype == "float64")
    p0 = {k: jnp.asarray(v, dtype=dtype) for k, v in init.items()}
    X, Y = jnp.asarray(feats), jnp.asarray(y)

    def loss_fn(p):
        h = X
        for k in range(layers):
            h = h @ p[f"l{k}.weight"].T + p[f"l{k}.bias"]
            h = jnp.tanh(h) if k < layers - 1 else h
        return jnp.sum((h[:, 0] - Y) ** 2)

    @jax.jit
    def train(p):
        def body(_, carry):
            p, _ = carry
            value, g = jax.value_and_grad(loss_fn)(p)
            return {k: p[k] - LR * g[k] for k in p}, value
        return jax.lax.fori_loop(0, steps, body, (p, jnp.zeros((), dtype)))

    jax.block_until_ready(train(p0))  # compiles

    def runner():
        start = time.perf_counter()
        _, loss = jax.block_until_ready(train(p0))
        return (time.perf_counter() - start) / steps, float(loss)

    return runner


def run(n: int, widths: tuple, steps: int, dtypes: tuple, repeats: int) -> list[dict]:
    """Per dtype: set every implementation up (compiles included), then time them in turn,
    ``repeats`` rounds, so all see the same load; medians are reported, every time is kept."""
    rows = []
    for dtype in dtypes:
        feats, y, model, init = problem(n, widths, dtype)
        row = {"widths": widths, "n": n, "steps": steps, "dtype": dtype, "repeats": repeats}
        runners = {}
        try:
            runners["graphc"], row["graphc_compile_s"], row["schedule"] = bench_graphc(
                feats, y, model, init, steps, dtype)
        except gc.UnsupportedError as exc:
            row["graphc"], row["graphc_error"] = None, str(exc)[:160]
        runners["numpy"] = lambda: bench_numpy(feats, y, init, steps, dtype, len(widths) - 1)
        for name, fn in (("torch", bench_torch), ("jax", bench_jax)):
            out = fn(feats, y, init, steps, dtype, len(widths) - 1)
            if out is not None:
                runners[name] = out
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(repeats):
            for name, runner in runners.items():
                seconds, row[f"{name}_loss"] = runner()
                times[name].append(seconds)
        for name, ts in times.items():
            row[name], row[f"{name}_all"] = statistics.median(ts), ts
        rows.append(row)
        print(table_row(row), flush=True)
    return rows


def table_row(row: dict) -> str:
    ms = lambda v: f"{v * 1e3:8.3f}" if v else "     n/a"  # noqa: E731
    g = row.get("graphc")
    ratio = lambda k: f"{row[k] / g:6.1f}x" if g and row.get(k) else "   n/a"  # noqa: E731
    text = (f"{'-'.join(map(str, row['widths'])):>14} {row['n']:>7} {row['dtype']:>8} | ms/step graphc {ms(g)} "
            f"numpy {ms(row.get('numpy'))} torch {ms(row.get('torch'))} jax {ms(row.get('jax'))} | "
            f"graphc faster than numpy {ratio('numpy')} torch {ratio('torch')} jax {ratio('jax')}")
    if row.get("graphc_compile_s"):
        text += f" | {row.get('schedule')}, cold compile {row['graphc_compile_s']:.1f} s"
    if row.get("graphc_error"):
        text += f"\n{'':>14} graphc: {row['graphc_error']}"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--wide-n", type=int, default=100_000)
    ap.add_argument("--no-wide", action="store_true")
    ap.add_argument("--wide-only", action="store_true")
    ap.add_argument("--wide-steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds (medians reported)")
    ap.add_argument("--wide-repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="folder for a JSON of the rows")
    args = ap.parse_args()
    rows = [] if args.wide_only else run(args.n, (3, 32, 1), args.steps, ("float32", "float64"), args.repeats)
    if not args.no_wide:
        rows += run(args.wide_n, (3, 256, 256, 1), args.wide_steps, ("float32",), args.wide_repeats)
    if args.out:
        path = Path(args.out) / f"bench_mlp_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, indent=1, default=str))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
