"""Nonlinear least squares: gc.least_squares against scipy.optimize.least_squares (issue #20).

Workloads (float64, cpu):

- ``big``: a 4-parameter logistic, y = a / (1 + exp(-b (x - c))) + d, on N = 1e3, 1e5 and 1e7
  samples (x evenly spaced in [-5, 5], noise 0.05), fitted from (1, 1, 0, 0);
- ``small``: 1,000 independent fits of 50 points each (one exponential decay
  y = A exp(-k t) + c per "pixel", A, k, c drawn per fit), each from (1, 1, 0): per-call
  overhead dominates.

Competitors, each on the same data from the same start with default tolerances:

- ``graphc``: ``gc.least_squares`` (target cpu; and parallel, on this machine's cores, for big),
  warm: the model is compiled before the clock starts; the time is the whole call (binding,
  the compiled fit, the result), ``res.seconds`` (the compiled fit alone) is recorded too;
- ``scipy lm (numpy jac)``: ``least_squares(method="lm")`` with a hand-written numpy residual
  and Jacobian (the same MINPACK steps graphc takes);
- ``scipy lm (2-point)``: the same with scipy's default finite differences;
- ``jax``: jaxopt.LevenbergMarquardt (tol 1e-8) or optimistix.LevenbergMarquardt (rtol = atol
  = 1e-10: at 1e-8 it stopped 3e-6 away from scipy's and graphc's small fits) if importable (recorded as "not installed" otherwise), float64, on JAX's CPU backend:
  the whole solve jitted once (its first call, which traces and compiles, is recorded apart);
  for the small fits both one call per fit and ``jax.vmap`` over all of them in one call.

Every competitor's solution is checked against graphc's (the largest difference of the
parameters relative to the fit's largest parameter, recorded; the script exits 1 if one
differs by more than 1e-6). Times are medians over ``--repeats`` rounds (scipy at 1e7: ``--big-repeats``); ratios are from the same run.

``large``: many parameters, the dense path (J's rows per block of samples, J^T J by np.dot):
a linear model y = X @ w and a GLM y = exp(X @ w + b) (X standard normal, the GLM's scaled by
1/sqrt(P); noise 0.1 and 0.05), from zeros, at P = 500 with N = 1e5 and P = 2000 with N = 2e4
(``--large``). Each case runs in a fresh process with an empty GRAPHC_CACHE_DIR and
``OPENBLAS_NUM_THREADS`` = ``--blas-threads`` (default 1: the cpu target is one core, and
scipy's and numpy's BLAS are held to one too): graphc's first fit (compile included: the
model's, not the LM kernel's, which Numba's cache holds after one fit per machine) and its
warm fit; then scipy's ``least_squares`` with the Jacobian written by hand in numpy,
``method="trf"`` (LAPACK's SVD per step) and ``method="lm"`` (MINPACK's unblocked QR: hours at
P = 2000, so only up to ``--lm-max-p``, default 500).

``compile``: in a fresh process each (empty GRAPHC_CACHE_DIR), the first fit of a 4-, a 7- and a
10-parameter model, timed after ``import graphc`` and after Numba's one-time start-up (a
trivial ``@njit`` call, as docs/benchmarks.md times compiles): the first call's total and its
stages (SymPy, codegen, Numba); with ``NUMBA_CACHE_DIR`` also empty, the one-time compile of
the Levenberg-Marquardt kernel (graphc/lsq/levmar.py, compiled once per machine and then
loaded from Numba's cache).

    python benchmarks/bench_lsq.py [--sizes 1e3,1e5,1e7] [--repeats 5] [--fits 1000]
                                   [--large linear:500:1e5,glm:500:1e5,linear:2000:2e4,glm:2000:2e4]
                                   [--sections big,small,large,compile] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.optimize as so

import graphc as gc

START_BIG = (1.0, 1.0, 0.0, 0.0)
TRUTH_BIG = (2.0, 1.5, 0.5, 0.3)


# ---- the models, in graphc and in numpy ---------------------------------------------------
def logistic_graph():
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    return y - (a / (1 + gc.exp(-b * (x - c))) + d)


def logistic_numpy(x, y):
    def f(p):
        return y - (p[0] / (1 + np.exp(-p[1] * (x - p[2]))) + p[3])

    def jac(p):
        e = np.exp(-p[1] * (x - p[2]))
        s = 1 / (1 + e)
        ds = s * s * e  # d s / d(b (x - c))
        return -np.stack([s, p[0] * ds * (x - p[2]), -p[0] * ds * p[1], np.ones_like(x)], axis=1)

    return f, jac


def decay_graph():
    t, y = gc.data("t"), gc.data("y")
    A, k, c = gc.params("A k c")
    return y - (A * gc.exp(-k * t) + c)


def decay_numpy(t, y):
    def f(p):
        return y - (p[0] * np.exp(-p[1] * t) + p[2])

    def jac(p):
        e = np.exp(-p[1] * t)
        return -np.stack([e, -p[0] * t * e, np.ones_like(t)], axis=1)

    return f, jac


def jax_fitter():
    """A JAX Levenberg-Marquardt, or None: (name, make), where ``make(residual)`` (residual(p,
    args) -> r, jnp) returns ``solve(x0, args) -> params``, jitted once: later calls with new
    data of the same shapes reuse the compiled solve (as graphc's fits reuse theirs)."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    try:
        import jaxopt

        def make_jaxopt(residual):
            solver = jaxopt.LevenbergMarquardt(residual_fun=residual, tol=1e-8)
            return jax.jit(lambda x0, args: solver.run(x0, args).params)

        return "jaxopt", make_jaxopt
    except ImportError:
        pass
    try:
        import optimistix as optx
    except ImportError:
        return None
    solver = optx.LevenbergMarquardt(rtol=1e-10, atol=1e-10)

    def make_optimistix(residual):
        return jax.jit(lambda x0, args: optx.least_squares(residual, solver, x0, args=args, max_steps=1000).value)

    return "optimistix", make_optimistix


def jax_version() -> str:
    import importlib.metadata as md
    import importlib.util

    return ", ".join(f"{pkg} {md.version(pkg)}" for pkg in ("jax", "jaxopt", "optimistix")
                     if importlib.util.find_spec(pkg) is not None)


# ---- timing -------------------------------------------------------------------------------
def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


def rel(a, b) -> float:
    """The largest difference between parameters relative to the fit's largest parameter
    (per fit, for a fits x params array): a near-zero offset is not counted by its own size."""
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    scale = np.maximum(np.max(np.abs(b), axis=1), 1e-300)
    return float(np.max(np.max(np.abs(a - b), axis=1) / scale))


def bench_big(n: int, repeats: int, big_repeats: int, rng) -> dict:
    x = np.linspace(-5, 5, n)
    a, b, c, d = TRUTH_BIG
    y = a / (1 + np.exp(-b * (x - c))) + d + 0.05 * rng.standard_normal(n)
    r = logistic_graph()
    init = dict(zip("abcd", START_BIG))
    rows = {}
    for target in ("cpu", "parallel"):
        gc.least_squares(r, {"x": x, "y": y}, init, target=target)  # compile (and warm) first
        med, times, res = timed(lambda: gc.least_squares(r, {"x": x, "y": y}, init, target=target), repeats)
        rows[f"graphc {target}"] = dict(median_s=med, times=times, nfev=res.nfev, x=list(res.x),
                                        compiled_fit_s=res.seconds)
    ref = np.array(rows["graphc cpu"]["x"])
    f, jac = logistic_numpy(x, y)
    reps = big_repeats if n >= 10**6 else repeats
    for name, kwargs in (("scipy lm (numpy jac)", dict(jac=jac)), ("scipy lm (2-point)", {})):
        med, times, sol = timed(lambda: so.least_squares(f, np.array(START_BIG), method="lm", **kwargs), reps)
        rows[name] = dict(median_s=med, times=times, nfev=int(sol.nfev), x=list(sol.x))
    jx = jax_fitter()
    if jx is None:
        rows["jax"] = "not installed"
    else:
        import jax
        import jax.numpy as jnp

        name, make = jx
        solve = make(lambda p, args: args[1] - (p[0] / (1 + jnp.exp(-p[1] * (args[0] - p[2]))) + p[3]))
        args = (jnp.asarray(x), jnp.asarray(y))
        run = lambda: np.asarray(jax.block_until_ready(solve(jnp.asarray(START_BIG), args)))  # noqa: E731
        start = time.perf_counter()
        run()  # traces and compiles
        first = time.perf_counter() - start
        med, times, sol = timed(run, reps)
        rows[f"jax ({name})"] = dict(median_s=med, times=times, x=list(sol), first_call_s=first)
    for row in rows.values():
        if isinstance(row, dict):
            row["rel_diff_vs_graphc"] = rel(row["x"], ref)
    return dict(n=n, rows=rows)


def bench_small(fits: int, points: int, repeats: int, rng) -> dict:
    t = np.linspace(0, 5, points)
    A, k = rng.uniform(0.5, 3, (fits, 1)), rng.uniform(0.3, 2, (fits, 1))
    c = rng.uniform(-0.5, 0.5, (fits, 1))
    ys = A * np.exp(-k * t) + c + 0.01 * rng.standard_normal((fits, points))
    r = decay_graph()
    init = {"A": 1.0, "k": 1.0, "c": 0.0}
    gc.least_squares(r, {"t": t, "y": ys[0]}, init)  # compile first

    def run_graphc():
        return [gc.least_squares(r, {"t": t, "y": y}, init) for y in ys]

    def run_scipy(jac: bool):
        out = []
        for y in ys:
            f, j = decay_numpy(t, y)
            kwargs = {"jac": j} if jac else {}
            out.append(so.least_squares(f, np.array([1.0, 1.0, 0.0]), method="lm", **kwargs))
        return out

    rows = {}
    med, times, results = timed(run_graphc, repeats)
    ref = np.array([res.x for res in results])
    rows["graphc cpu"] = dict(median_s=med, times=times, per_fit_us=med / fits * 1e6,
                              compiled_fit_us=statistics.median(res.seconds for res in results) * 1e6,
                              nfev_mean=float(np.mean([res.nfev for res in results])))
    for name, jac in (("scipy lm (numpy jac)", True), ("scipy lm (2-point)", False)):
        med, times, sols = timed(lambda: run_scipy(jac), max(1, repeats // 2))
        rows[name] = dict(median_s=med, times=times, per_fit_us=med / fits * 1e6,
                          rel_diff_vs_graphc=rel([s.x for s in sols], ref))
    jx = jax_fitter()
    if jx is None:
        rows["jax"] = "not installed"
    else:
        import jax
        import jax.numpy as jnp

        name, make = jx
        solve = make(lambda p, args: args[1] - (p[0] * jnp.exp(-p[1] * args[0]) + p[2]))
        tj, x0 = jnp.asarray(t), jnp.asarray([1.0, 1.0, 0.0])
        each = lambda: [np.asarray(jax.block_until_ready(solve(x0, (tj, jnp.asarray(y))))) for y in ys]  # noqa: E731
        each()  # compiles once
        med, times, sols = timed(each, max(1, repeats // 2))
        rows[f"jax ({name}), one call per fit"] = dict(median_s=med, times=times, per_fit_us=med / fits * 1e6,
                                                       rel_diff_vs_graphc=rel(sols, ref))
        batched = jax.jit(jax.vmap(solve, in_axes=(None, (None, 0))))  # all fits in one call
        yj = jnp.asarray(ys)
        run = lambda: np.asarray(jax.block_until_ready(batched(x0, (tj, yj))))  # noqa: E731
        run()
        med, times, sols = timed(run, repeats)
        rows[f"jax ({name}), vmap over the fits"] = dict(median_s=med, times=times, per_fit_us=med / fits * 1e6,
                                                         rel_diff_vs_graphc=rel(sols, ref))
    return dict(fits=fits, points=points, rows=rows)


# ---- large: many parameters (the dense path), fresh processes -------------------------------
LARGE_CHILD = textwrap.dedent("""
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
    rows["graphc cpu"] = dict(first_fit_s=first, warm_s=warm, compiled_fit_s=res.seconds, nfev=res.nfev,
                              cost=res.cost, status=res.status,
                              stages={k: v for k, v in res.timings.items() if isinstance(v, float)})
    ref = res.x
    for method in ("trf", "lm"):
        if method == "lm" and P > lm_max_p:
            rows[f"scipy {method} (numpy jac)"] = f"not run (P > --lm-max-p {lm_max_p})"
            continue
        t0 = time.perf_counter()
        sol = so.least_squares(f, np.zeros(P), jac=jac, method=method)
        rows[f"scipy {method} (numpy jac)"] = dict(
            warm_s=time.perf_counter() - t0, nfev=int(sol.nfev), cost=float(sol.cost), status=int(sol.status),
            rel_diff_vs_graphc=float(np.max(np.abs(sol.x - ref)) / np.max(np.abs(ref))),
            cost_rel_diff=float(abs(sol.cost - res.cost) / res.cost))
    print(json.dumps(dict(kind=kind, P=P, n=n, rows=rows)))
""")


def bench_large(cases: str, blas_threads: int, lm_max_p: int) -> list[dict]:
    out = []
    for case in cases.split(","):
        kind, p, n = case.split(":")
        env = dict(os.environ, GRAPHC_CACHE_DIR=tempfile.mkdtemp(prefix="lsq-bench-"),
                   OPENBLAS_NUM_THREADS=str(blas_threads), OMP_NUM_THREADS=str(blas_threads),
                   MKL_NUM_THREADS=str(blas_threads))
        done = subprocess.run([sys.executable, "-c", LARGE_CHILD, kind, p, n, str(lm_max_p)], env=env,
                              capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["blas_threads"] = blas_threads
        out.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return out


# ---- compile: fresh processes ---------------------------------------------------------------
CHILD = textwrap.dedent("""
    import json, sys, time
    t0 = time.perf_counter()
    import numpy as np
    import graphc as gc
    imported = time.perf_counter() - t0
    import numba
    t0 = time.perf_counter()
    numba.njit(lambda v: v + 1)(1.0)  # Numba's one-time start-up, which every Numba user pays
    numba_init = time.perf_counter() - t0
    P = int(sys.argv[1])
    x = np.linspace(0.1, 5, 200)
    X, Y = gc.data("x"), gc.data("y")
    if P == 4:
        a, b, c, d = gc.params("a b c d")
        r = Y - (a / (1 + gc.exp(-b * (X - c))) + d)
        init = dict(a=1.0, b=1.0, c=0.0, d=0.0)
    elif P == 7:
        b = gc.params("b1 b2 b3 b4 b5 b6 b7")
        r = Y - (b[0] + b[1] * X + b[2] * X**2 + b[3] * X**3) / (1 + b[4] * X + b[5] * X**2 + b[6] * X**3)
        init = dict(b1=1.0, b2=0.5, b3=0.1, b4=0.01, b5=0.1, b6=0.01, b7=0.001)
    else:
        p = gc.params("a1 m1 s1 a2 m2 s2 a3 m3 s3 c")
        g = lambda a, m, s: a * gc.exp(-((X - m) ** 2) / (2 * s * s))
        r = Y - (g(p[0], p[1], p[2]) + g(p[3], p[4], p[5]) + g(p[6], p[7], p[8]) + p[9])
        init = dict(a1=1.0, m1=1.0, s1=0.5, a2=1.0, m2=2.5, s2=0.5, a3=1.0, m3=4.0, s3=0.5, c=0.0)
    y = np.exp(-x)
    t1 = time.perf_counter()
    res = gc.least_squares(r, {"x": x, "y": y}, init)
    first = time.perf_counter() - t1
    print(json.dumps(dict(params=P, import_s=imported, numba_init_s=numba_init, first_fit_s=first,
                          stages={k: v for k, v in res.timings.items() if isinstance(v, float)})))
""")


def _child(params: int, env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(params)], env=env, capture_output=True, text=True,
                          check=True, cwd=tempfile.gettempdir())
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_compile(repeats: int) -> dict:
    """Rows: P params (an empty graphc cache); 4 params again on the same cache (warm: the
    generated module's machine code comes from Numba's cache); 4 params with Numba's cache
    empty too (the LM kernel compiles: once per machine)."""
    cases = [(p, f"{p} params", "fresh") for p in (4, 7, 10)]
    cases += [(4, "4 params, second process (warm cache)", "warm"),
              (4, "4 params, cold Numba cache (the LM kernel compiles, once per machine)", "kernel")]
    out = {}
    for p, key, kind in cases:
        runs = []
        for _ in range(repeats if kind != "kernel" else 1):
            env = dict(os.environ, GRAPHC_CACHE_DIR=tempfile.mkdtemp(prefix="lsq-bench-"))
            if kind == "kernel":
                env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="lsq-bench-numba-")
            if kind == "warm":
                _child(p, env)  # fills the cache
            runs.append(_child(p, env))
        out[key] = dict(first_fit_s=statistics.median(r["first_fit_s"] for r in runs),
                        import_s=statistics.median(r["import_s"] for r in runs),
                        numba_init_s=statistics.median(r["numba_init_s"] for r in runs),
                        stages={k: statistics.median(r["stages"].get(k, 0.0) for r in runs)
                                for k in runs[0]["stages"]}, runs=runs)
    return out


# ---- report ---------------------------------------------------------------------------------
def report(results: dict) -> str:
    lines = [f"# bench_lsq: {results['stamp']}", "", f"machine: {results['machine']}", ""]
    if "big" in results:
        lines += _report_big(results)
    if "small" in results:
        lines += _report_small(results)
    if "large" in results:
        lines += _report_large(results)
    if "compile" in results:
        lines += _report_compile(results)
    return "\n".join(lines) + "\n"


def _report_large(results: dict) -> list[str]:
    lines = ["", "## (d) many parameters (the dense path), fresh process each, BLAS threads "
             f"{results['large'][0]['blas_threads'] if results['large'] else ''}", "",
             "| model | P | N | competitor | first fit (compile incl.) | warm fit | nfev | ratio | rel. diff x | "
             "rel. diff cost |", "|---|---|---|---|---|---|---|---|---|---|"]
    for case in results["large"]:
        base = case["rows"]["graphc cpu"]["warm_s"]
        for name, row in case["rows"].items():
            head = f"| {case['kind']} | {case['P']} | {case['n']:.0e} | {name} |"
            if isinstance(row, str):
                lines.append(f"{head} {row} | | | | | |")
                continue
            first = f"{row['first_fit_s']:.2f} s" if "first_fit_s" in row else ""
            lines.append(f"{head} {first} | {row['warm_s']:.3g} s | {row['nfev']} | {row['warm_s'] / base:.1f}x | "
                         f"{row.get('rel_diff_vs_graphc', 0.0):.1e} | {row.get('cost_rel_diff', 0.0):.1e} |")
    return lines


def _report_big(results: dict) -> list[str]:
    lines = ["## (a) 4-parameter logistic, warm (median seconds per fit; ratio: competitor / graphc cpu)",
              "",
              "| N | competitor | median | nfev | ratio | rel. diff |", "|---|---|---|---|---|---|"]
    for big in results["big"]:
        base = big["rows"]["graphc cpu"]["median_s"]
        for name, row in big["rows"].items():
            if isinstance(row, str):
                lines.append(f"| {big['n']:.0e} | {name} | {row} | | | |")
                continue
            first = f" (first call {row['first_call_s']:.2f} s)" if "first_call_s" in row else ""
            lines.append(f"| {big['n']:.0e} | {name} | {row['median_s']:.4g} s{first} | {row.get('nfev', '')} | "
                         f"{row['median_s'] / base:.1f}x | {row['rel_diff_vs_graphc']:.1e} |")
    return lines


def _report_small(results: dict) -> list[str]:
    lines = []
    small = results["small"]
    lines += ["", f"## (b) {small['fits']} fits of {small['points']} points (per fit, warm)", "",
              "| competitor | per fit | ratio | rel. diff |", "|---|---|---|---|"]
    base = small["rows"]["graphc cpu"]["per_fit_us"]
    for name, row in small["rows"].items():
        if isinstance(row, str):
            lines.append(f"| {name} | {row} | | |")
            continue
        extra = f" (compiled fit {row['compiled_fit_us']:.1f} us)" if "compiled_fit_us" in row else ""
        lines.append(f"| {name} | {row['per_fit_us']:.1f} us{extra} | {row['per_fit_us'] / base:.1f}x | "
                     f"{row.get('rel_diff_vs_graphc', 0.0):.1e} |")
    return lines


def _report_compile(results: dict) -> list[str]:
    lines = ["", "## (c) first fit in a fresh process (empty graphc cache), after import graphc and Numba's "
              "start-up", "",
              "| model | first fit | SymPy (autodiff+schedule+cse) | codegen | Numba | import graphc "
              "| Numba start-up |",
              "|---|---|---|---|---|---|---|"]
    for name, row in results["compile"].items():
        st = row["stages"]
        sym = st.get("autodiff", 0) + st.get("schedule", 0) + st.get("cse", 0)
        lines.append(f"| {name} | {row['first_fit_s']:.2f} s | {sym:.2f} s | {st.get('codegen', 0):.3f} s | "
                     f"{st.get('numba', 0):.2f} s | {row['import_s']:.2f} s | {row['numba_init_s']:.2f} s |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1e3,1e5,1e7")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--big-repeats", type=int, default=3, help="repeats of scipy at N >= 1e6")
    ap.add_argument("--fits", type=int, default=1000)
    ap.add_argument("--points", type=int, default=50)
    ap.add_argument("--compile-repeats", type=int, default=3)
    ap.add_argument("--large", default="linear:500:1e5,glm:500:1e5,linear:2000:2e4,glm:2000:2e4",
                    help="kind:P:N cases of the dense path (kind: linear or glm)")
    ap.add_argument("--lm-max-p", type=int, default=500, help="scipy's lm only up to this many parameters")
    ap.add_argument("--blas-threads", type=int, default=1, help="OPENBLAS_NUM_THREADS of the large cases")
    ap.add_argument("--sections", default="big,small,large,compile")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    rng = np.random.default_rng(20)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results = dict(stamp=stamp, machine=dict(
        platform=platform.platform(), python=platform.python_version(), cpus=os.cpu_count(),
        numpy=np.__version__, scipy=scipy.__version__, numba=__import__("numba").__version__,
        jax=jax_version() if jax_fitter() is not None else None, load_avg=os.getloadavg()))
    sections = args.sections.split(",")
    sizes = [int(float(n)) for n in args.sizes.split(",")]
    if "big" in sections:
        results["big"] = [bench_big(n, args.repeats, args.big_repeats, rng) for n in sizes]
    if "small" in sections:
        results["small"] = bench_small(args.fits, args.points, args.repeats, rng)
    if "large" in sections:
        results["large"] = bench_large(args.large, args.blas_threads, args.lm_max_p)
    if "compile" in sections:
        results["compile"] = bench_compile(args.compile_repeats)
    results["machine"]["load_avg_after"] = os.getloadavg()
    text = report(results)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"lsq-{stamp}.json").write_text(json.dumps(results, indent=1))
    (out / f"lsq-{stamp}.md").write_text(text)
    bad = [(b["n"], k) for b in results.get("big", []) for k, r in b["rows"].items()
           if isinstance(r, dict) and r["rel_diff_vs_graphc"] > 1e-6]
    bad += [k for k, r in results.get("small", {"rows": {}})["rows"].items()
            if isinstance(r, dict) and r.get("rel_diff_vs_graphc", 0) > 1e-6]
    # the large cases stop at scipy's default tolerances (1e-8) on normal equations vs QR/SVD
    bad += [(c["kind"], c["P"], k) for c in results.get("large", []) for k, r in c["rows"].items()
            if isinstance(r, dict) and r.get("cost_rel_diff", 0) > 1e-6]
    if bad:
        print("solutions differ from graphc's:", bad, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
