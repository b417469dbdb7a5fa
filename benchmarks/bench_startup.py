"""Start-up time: the README's sine fit in a fresh process, cold and warm (issue #2).

Workload: the cubic a + b x + c x^2 + d x^3 fitted to sin(x) on 2000 points,
``gc.fit(..., optimizer=gc.SGD(lr=1e-6), steps=2000, log_every=100)`` (``--steps`` changes
the step count; the 2000 steps themselves take a few milliseconds).

Each repeat runs two new processes on one new, empty cache directory (GRAPHC_CACHE_DIR):

- **cold**: the first process; it pays for SymPy (autodiff, schedule, codegen) and for
  Numba compiling the generated training loop;
- **warm**: a second process on the same directory, which finds the plan, the generated
  module and Numba's machine code there.

Reported per kind, as median, min and max over the repeats: ``import`` (``import graphc``),
``first result`` (from the end of the import to ``fit`` returning: building the graph,
compiling or loading, the fit itself), ``total`` (the two together), the process's wall
time (interpreter start-up and exit included) and its CPU time (user + system; less
sensitive than wall time to other work on the machine). ``--breakdown`` adds the medians
of the pipeline stages (``res.compiled.timings``).

Run it in a venv that holds only graphc's own dependencies: torch, JAX or SciPy, when
installed, slow Numba's start-up (it probes for them), and the script warns if they are
importable. The interpreter, its prefix and the versions are printed with the results.

    python benchmarks/bench_startup.py [--repeats 7] [--steps 2000] [--python PATH]
                                       [--baseline DIR] [--breakdown] [--json out.json]

``--baseline DIR`` measures a second graphc (DIR holds its ``graphc`` package, e.g. an
older commit unpacked with ``git archive REV graphc | tar -x -C DIR``) in the same run,
each of its repeats right after the same repeat of this one, so both see the same load.

Child processes run without PYTHONDONTWRITEBYTECODE (a first, untimed import writes
graphc's .pyc files, as an installed package has them); ``--no-bytecode`` keeps the
variable as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import graphc as gc
t1 = time.perf_counter()
import math
import numpy as np

x = np.linspace(-math.pi, math.pi, 2000)
xs, ys = gc.data("x"), gc.data("y")
a, b, c, d = gc.params("a b c d")
loss = gc.sum((a + b * xs + c * xs**2 + d * xs**3 - ys) ** 2)
res = gc.fit(loss, data={"x": x, "y": np.sin(x)}, init={"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4},
             optimizer=gc.SGD(lr=1e-6), steps=STEPS, log_every=LOG_EVERY)
t2 = time.perf_counter()
timings = {k: v for k, v in res.compiled.timings.items()}
print(json.dumps({"import": t1 - t0, "first": t2 - t1, "total": t2 - t0, "timings": timings,
                  "loss": res.loss, "params": res.params}))
"""

PROBE = r"""
import importlib.util, json, sys
import graphc, numba, numpy, sympy
heavy = [m for m in ("torch", "jax", "scipy", "tensorflow") if importlib.util.find_spec(m) is not None]
print(json.dumps({"executable": sys.executable, "prefix": sys.prefix, "python": sys.version.split()[0],
                  "graphc": graphc.__version__, "graphc_file": graphc.__file__, "numba": numba.__version__,
                  "numpy": numpy.__version__, "sympy": sympy.__version__, "heavy": heavy}))
"""

COLUMNS = ("import", "first", "total", "wall", "cpu")
LABELS = {"import": "import graphc", "first": "first result (after import)", "total": "import + first result",
          "wall": "process wall", "cpu": "process cpu (user+sys)"}
TARGETS = {"cold": ("total", 2.0), "warm": ("first", 0.4)}


def child_env(cache: str, keep_bytecode_setting: bool) -> dict:
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache)
    if not keep_bytecode_setting:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_child(python: str, code: str, env: dict) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # run outside the repository: `python -c` puts the working directory first on sys.path,
    # which would shadow the --baseline package (on PYTHONPATH) with ./graphc
    cwd = os.path.dirname(env["GRAPHC_CACHE_DIR"])
    out = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"child process failed with status {out.returncode}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["wall"] = wall
    row["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return row


def summary(rows: list[dict], key: str) -> tuple[float, float, float]:
    values = [r[key] for r in rows]
    return statistics.median(values), min(values), max(values)


def stage_medians(rows: list[dict]) -> dict[str, float | str]:
    keys = sorted({k for r in rows for k in r["timings"]})
    out: dict[str, float | str] = {}
    for k in keys:
        values = [r["timings"].get(k) for r in rows]
        if all(isinstance(v, (int, float)) for v in values):
            out[k] = statistics.median(values)
        else:
            out[k] = "/".join(sorted({str(v) for v in values}))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="cold/warm pairs (at least 5 for a median)")
    ap.add_argument("--steps", type=int, default=2000, help="fit steps (the tutorial's 2000 by default)")
    ap.add_argument("--python", default=sys.executable, help="the interpreter to measure (default: this one)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also measure the graphc package under DIR (put first on PYTHONPATH), each repeat "
                         "right after this one, so both see the same load")
    ap.add_argument("--breakdown", action="store_true", help="also print the median pipeline stages")
    ap.add_argument("--no-bytecode", action="store_true",
                    help="keep PYTHONDONTWRITEBYTECODE as it is (graphc's modules compile at each import)")
    ap.add_argument("--json", help="write every repeat and the summary here")
    args = ap.parse_args(argv)

    variants = {"graphc": None}
    if args.baseline:
        variants = {"baseline": os.path.abspath(args.baseline), "graphc": None}
    code = CHILD.replace("STEPS", str(args.steps)).replace("LOG_EVERY", str(min(100, max(args.steps, 1))))
    result: dict = {"steps": args.steps, "repeats": args.repeats, "variants": {}}
    with tempfile.TemporaryDirectory(prefix="graphc-startup-") as root:

        def env_for(name: str, cache: str) -> dict:
            env = child_env(os.path.join(root, cache), args.no_bytecode)
            if variants[name]:
                env["PYTHONPATH"] = variants[name] + os.pathsep + env.get("PYTHONPATH", "")
            return env

        for name in variants:
            probe = run_child(args.python, PROBE, env_for(name, f"probe-{name}"))
            result["variants"][name] = {"probe": probe, "rows": {"cold": [], "warm": []}}
            print(f"{name:8}  python {probe['python']} at {probe['executable']} (prefix {probe['prefix']})")
            print(f"{'':8}  graphc {probe['graphc']} from {os.path.dirname(probe['graphc_file'])}; "
                  f"numba {probe['numba']}, numpy {probe['numpy']}, sympy {probe['sympy']}")
            if probe["heavy"]:
                print(f"WARNING: {', '.join(probe['heavy'])} importable in this environment: Numba's "
                      "start-up is slower than in a venv with graphc's dependencies only; the figures are "
                      "not representative")
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            print("note: PYTHONDONTWRITEBYTECODE is set here; " + (
                "kept (--no-bytecode)" if args.no_bytecode else "removed for the child processes"))
        print(f"workload: sine fit, 2000 points, steps={args.steps}; {args.repeats} cold/warm pairs; "
              f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at start\n")

        for k in range(args.repeats):
            for name in variants:
                env = env_for(name, f"cache-{name}-{k}")
                rows = result["variants"][name]["rows"]
                rows["cold"].append(run_child(args.python, code, env))
                rows["warm"].append(run_child(args.python, code, env))
                cold, warm = rows["cold"][-1], rows["warm"][-1]
                print(f"  repeat {k + 1} {name:8}: cold {cold['import']:.3f} + {cold['first']:.3f} s, warm "
                      f"{warm['import']:.3f} + {warm['first']:.3f} s (import + first result)", flush=True)
                if cold["params"] != warm["params"] or cold["loss"] != warm["loss"]:
                    raise SystemExit("cold and warm processes disagree on the fitted parameters")
        result["load_end"] = os.getloadavg()[0]

    for name, variant in result["variants"].items():
        variant["summary"] = report(name, variant["rows"], args, result["load_end"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


def report(name: str, rows: dict[str, list[dict]], args: argparse.Namespace, load_end: float) -> dict:
    print(f"\n{name}: seconds, median [min - max] over {args.repeats} repeats "
          f"(load average {load_end:.2f} at the end)\n")
    print(f"| {'':28} | {'cold':>22} | {'warm':>22} |")
    print(f"|{'-' * 30}|{'-' * 24}|{'-' * 24}|")
    out: dict = {}
    for key in COLUMNS:
        cells = []
        for kind in ("cold", "warm"):
            med, lo, hi = summary(rows[kind], key)
            out.setdefault(kind, {})[key] = {"median": med, "min": lo, "max": hi}
            cells.append(f"{med:.3f} [{lo:.3f} - {hi:.3f}]")
        print(f"| {LABELS[key]:28} | {cells[0]:>22} | {cells[1]:>22} |")
    print()
    for kind, (key, limit) in TARGETS.items():
        med = out[kind][key]["median"]
        print(f"target {kind}: {LABELS[key]} < {limit} s: {'met' if med < limit else 'NOT met'} "
              f"(median {med:.3f} s)")
    if args.breakdown:
        print("\nmedian pipeline stages (s; res.compiled.timings):")
        for kind in ("cold", "warm"):
            stages = stage_medians(rows[kind])
            print(f"  {kind}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                           for k, v in stages.items()))
    return out


if __name__ == "__main__":
    main()
