"""Latency (issue #18): what a user waits for around the compiled loop, in one run.

1. **First compile** of four models (benchmarks/latency_models.py: the tutorial cubic, a
   3-parameter Newton fit, the 3-32-1 MLP, a 2-64-64-3 relu classifier with mini-batches),
   each in a fresh process on an empty cache (``GRAPHC_CACHE_DIR`` a new temporary folder):
   the whole first ``gc.fit`` call (graph building included) beside the yardstick, Numba
   compiling (and running once) a hand-written loop of the same maths in the same process.
   Both come after Numba's own start-up (a trivial ``@njit`` function compiled first, timed
   apart); the two go first in alternate repeats. The pipeline stages (``res.compiled.timings``)
   are kept per repeat.
2. **Cold process**: ``import graphc`` + the first tutorial result (fit, N=2000, T=2000) in a
   fresh process on an empty cache, then in a second process on the same cache (plan, module
   and machine code on disk); the process's wall time from the parent too.
3. **Warm calls** in one process: ``gc.fit`` of the tutorial with steps=0 (the fixed cost of
   a call), the whole fit N=2000, T=2000 against the hand-written whole training loop and
   against the generated ``train`` called directly on bound arrays (the difference is the
   overhead around the loop), and ``f(**bindings)`` against the same loss-and-gradient loop
   written by hand (Numba, N=2000).
4. JAX ``jit`` and ``torch.compile`` on the 3-32-1 MLP (first call = compile; then the median
   call) where they are installed; skipped otherwise.

graphc's math helpers (``_exp``, ``_tanh``, ``_log``, ``solve``, ...) are compiled once per
installation (graphc/codegen/helpers/, Numba's cache beside it), not per model: the first compiles
measure a new model on a machine that has compiled one before; ``--fresh-helpers`` deletes that
machine code before each repeat (a machine's very first model).

``--baseline DIR`` runs every child a second time with another graphc (DIR holds its
``graphc`` package, e.g. ``git archive REV graphc | tar -x -C DIR``), each repeat right after
the same repeat of this one, so both see the same load. Medians of ``--repeats`` (first
compile, cold process) and of many calls (warm). Results: ``--out PREFIX`` writes PREFIX.json
(every figure, every repeat, the machine) and PREFIX.txt (the tables); ``--chart PNG``.

    python benchmarks/bench_latency.py [--repeats 3] [--baseline DIR] [--models tutorial,mlp32]
                                       [--out benchmarks/results/latency-STAMP] [--chart docs/img/latency.png]
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
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from latency_models import LABELS, MODELS  # noqa: E402

WARMUP = """
import numba, numpy as np

@numba.njit
def _numba_startup(x):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s
"""


# ---- children (each runs in a fresh process) --------------------------------------------------
def child_first(model: str, hand_first: bool) -> dict:
    """First compile of ``model``: the whole first gc.fit vs Numba compiling the hand-written loop."""
    t0 = time.perf_counter()
    import numpy as np

    import graphc as gc

    t1 = time.perf_counter()
    scope: dict = {}
    exec(WARMUP, scope)
    scope["_numba_startup"](np.ones(3))
    t2 = time.perf_counter()
    out = {"import": t1 - t0, "numba_startup": t2 - t1}

    def yardstick() -> None:
        start = time.perf_counter()
        MODELS[model]()[2]()
        out["yardstick"] = time.perf_counter() - start

    def graphc() -> None:
        start = time.perf_counter()
        loss, kwargs, _ = MODELS[model]()
        res = gc.fit(loss, **kwargs)
        out["graphc"] = time.perf_counter() - start
        out["stages"] = {k: v for k, v in res.compiled.timings.items()}
        out["loss"] = res.loss
        out["fit_seconds"] = res.seconds
        out["numba_passes"] = numba_passes(res.compiled.module, "batch_size" in kwargs)

    for step in (yardstick, graphc) if hand_first else (graphc, yardstick):
        step()
    out["hand_first"] = hand_first
    return out


def numba_passes(module, batches: bool) -> dict:
    """Where Numba spent the training loop's compile: its pipeline passes (type inference
    includes compiling the helpers the loop calls), and the time under LLVM's lock."""
    fn = module.train_batches if batches else module.train
    out: dict = {}
    for metadata in fn.get_metadata().values():
        for passes in metadata.get("pipeline_times", {}).values():
            for name, t in passes.items():
                key = name.split("_", 1)[1] if name.split("_", 1)[0].isdigit() else name
                out[key] = out.get(key, 0.0) + t.init + t.run + t.finalize
        out["llvm_lock"] = out.get("llvm_lock", 0.0) + metadata.get("timers", {}).get("llvm_lock", 0.0)
    return out


def child_cold() -> dict:
    """import graphc + the first tutorial result (the numbers bench_startup.py measures)."""
    t0 = time.perf_counter()
    import graphc as gc

    t1 = time.perf_counter()
    loss, kwargs, _ = MODELS["tutorial"]()
    res = gc.fit(loss, **kwargs)
    t2 = time.perf_counter()
    return {
        "import": t1 - t0,
        "first": t2 - t1,
        "total": t2 - t0,
        "sympy_imported": "sympy" in sys.modules,
        "stages": {k: v for k, v in res.compiled.timings.items()},
        "loss": res.loss,
    }


def _median_time(fn, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def child_warm(rounds: int = 7) -> dict:
    """Warm calls in one process; each figure is the median over rounds of medians of many calls."""
    import latency_models as lm
    import numpy as np

    import graphc as gc

    loss, kwargs, _ = lm.tutorial()
    data, init, opt = kwargs["data"], kwargs["init"], kwargs["optimizer"]
    x, y = data["x"], data["y"]
    steps = kwargs["steps"]
    res = gc.fit(loss, **kwargs)
    train = res.compiled.module.train
    history = np.zeros(steps // 100)
    hyper, state, scratch = np.array([opt.lr]), np.zeros((0, 4)), (np.zeros(4), np.zeros(5))
    theta0 = np.array([init[k] for k in "abcd"])
    hand = lm.hand_poly()
    hand(x, y, 0.1, 0.2, 0.3, 0.4, 1e-6, 1)
    f = gc.compile(loss)
    f(x=x, y=y, **init)
    grad = lm.hand_poly_grad()
    grad(x, y, 0.1, 0.2, 0.3, 0.4)

    cases = {
        "fit_steps0": (
            lambda: gc.fit(loss, data=data, init=init, optimizer=opt, steps=0, log_every=100),
            400,
        ),
        "fit_whole": (
            lambda: gc.fit(loss, data=data, init=init, optimizer=opt, steps=steps, log_every=100),
            15,
        ),
        "train_direct": (
            lambda: train((x, y), theta0.copy(), hyper, state, 0, steps, 100, history, *scratch),
            15,
        ),
        "hand_whole": (lambda: hand(x, y, 0.1, 0.2, 0.3, 0.4, 1e-6, steps), 15),
        "call": (lambda: f(x=x, y=y, **init), 3000),
        "hand_call": (lambda: grad(x, y, 0.1, 0.2, 0.3, 0.4), 3000),
        "new_lr_fit_steps0": (
            lambda: gc.fit(loss, data=data, init=init, optimizer=gc.SGD(lr=2e-6), steps=0, log_every=100),
            400,
        ),
    }
    per_round: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):  # interleaved, so each figure sees the same load
        for name, (fn, n) in cases.items():
            per_round[name].append(_median_time(fn, n))
    out = {k: statistics.median(v) for k, v in per_round.items()}
    out["rounds"] = per_round
    return out


def child_peers() -> dict:
    """JAX jit and torch.compile on the 3-32-1 MLP loss and gradient: first call, then median call."""
    import importlib.util

    import numpy as np

    _, kwargs, _ = MODELS["mlp32"]()
    x, y = kwargs["data"]["x"], kwargs["data"]["y"]
    init = kwargs["init"]
    out: dict = {}
    if importlib.util.find_spec("jax") is not None:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)

        def jloss(p, x, y):
            xx = jnp.stack([x, x**2, x**3], axis=-1)
            h = jnp.tanh(xx @ p["l1.weight"].T + p["l1.bias"])
            return jnp.sum(((h @ p["l2.weight"].T + p["l2.bias"])[:, 0] - y) ** 2)

        fn = jax.jit(jax.value_and_grad(jloss))
        p = {k: jnp.asarray(v) for k, v in init.items()}
        start = time.perf_counter()
        jax.block_until_ready(fn(p, x, y))
        first = time.perf_counter() - start
        out["jax"] = {
            "first_call": first,
            "call": _median_time(lambda: jax.block_until_ready(fn(p, x, y)), 300),
            "version": jax.__version__,
        }
    else:
        out["jax"] = None
    if importlib.util.find_spec("torch") is not None:
        import torch

        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        params = {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in init.items()}

        def tloss(p):
            xx = torch.stack([xt, xt**2, xt**3], dim=-1)
            h = torch.tanh(xx @ p["l1.weight"].T + p["l1.bias"])
            return (((h @ p["l2.weight"].T + p["l2.bias"])[:, 0] - yt) ** 2).sum()

        compiled = torch.compile(tloss)

        def step():
            value = compiled(params)
            return value.item(), torch.autograd.grad(value, list(params.values()))

        start = time.perf_counter()
        step()
        first = time.perf_counter() - start
        out["torch_compile"] = {
            "first_call": first,
            "call": _median_time(step, 300),
            "version": torch.__version__,
        }
    else:
        out["torch_compile"] = None
    return out


CHILDREN = {
    "first": lambda a: child_first(a[0], a[1] == "hand"),
    "cold": lambda a: child_cold(),
    "warm": lambda a: child_warm(),
    "peers": lambda a: child_peers(),
}


# ---- parent -----------------------------------------------------------------------------------
def spawn(kind: str, args: list[str], package: Path, cache: str, timeout: int = 900) -> dict:
    """Run one child in a fresh process with ``package`` (a folder holding ``graphc``) first on
    the path and GRAPHC_CACHE_DIR=cache; its JSON, plus the process's wall time."""
    env = dict(
        os.environ,
        GRAPHC_CACHE_DIR=cache,
        PYTHONPATH=os.pathsep.join([str(package), str(HERE), os.environ.get("PYTHONPATH", "")]),
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # graphc's .pyc files exist, as in an installed package
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", kind, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} {args} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall"] = wall
    return out


def byte_compile(package: Path) -> None:
    """Write graphc's .pyc files once (untimed), as an installed package has them."""
    env = dict(os.environ, PYTHONPATH=str(package))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", "import graphc"], env=env, check=True, capture_output=True)


def drop_helpers(package: Path) -> int:
    """Delete the machine code of graphc's compiled math helpers (graphc/codegen/helpers/,
    compiled once per installation) where ``package`` has them; returns how many files went."""
    if not (package / "graphc" / "codegen" / "helpers").is_dir():
        return 0
    env = dict(os.environ, PYTHONPATH=str(package))
    code = "from graphc.codegen import mathlib; print(mathlib.drop_compiled())"
    proc = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return int(proc.stdout.strip().splitlines()[-1])


def run(repeats: int, models: list[str], packages: dict[str, Path], cold_repeats: int, peers: bool,
        fresh_helpers: bool = False) -> dict:
    for package in packages.values():
        byte_compile(package)
    report: dict = {
        "machine": machine(),
        "fresh_helpers": fresh_helpers,
        "repeats": repeats,
        "models": models,
        "packages": {k: str(v) for k, v in packages.items()},
        "first": {},
        "cold": {},
        "warm": {},
    }
    for model in models:
        for name in packages:
            report["first"].setdefault(model, {})[name] = []
        for r in range(repeats):
            for name, package in packages.items():
                with tempfile.TemporaryDirectory(prefix="graphc-latency-") as cache:
                    order = "hand" if r % 2 == 0 else "graphc"
                    if fresh_helpers:
                        drop_helpers(package)
                    out = spawn("first", [model, order], package, cache)
                report["first"][model][name].append(out)
                print(
                    f"  first {model:9s} {name:8s} repeat {r + 1}: graphc {out['graphc']:.3f} s, "
                    f"yardstick {out['yardstick']:.3f} s ({order} first)",
                    file=sys.stderr,
                )
    for name, package in packages.items():
        report["cold"][name] = {"empty": [], "warm_cache": []}
    for r in range(cold_repeats):
        for name, package in packages.items():
            with tempfile.TemporaryDirectory(prefix="graphc-latency-") as cache:
                report["cold"][name]["empty"].append(spawn("cold", [], package, cache))
                report["cold"][name]["warm_cache"].append(spawn("cold", [], package, cache))
            e, w = report["cold"][name]["empty"][-1], report["cold"][name]["warm_cache"][-1]
            print(
                f"  cold {name:8s} repeat {r + 1}: empty cache {e['total']:.3f} s, warm cache {w['total']:.3f} s",
                file=sys.stderr,
            )
    for name, package in packages.items():
        with tempfile.TemporaryDirectory(prefix="graphc-latency-") as cache:
            report["warm"][name] = spawn("warm", [], package, cache)
        print(
            f"  warm {name:8s}: fit(steps=0) {report['warm'][name]['fit_steps0'] * 1e6:.1f} us",
            file=sys.stderr,
        )
    if peers:
        with tempfile.TemporaryDirectory(prefix="graphc-latency-") as cache:
            report["peers"] = spawn("peers", [], packages["graphc"], cache)
    report["summary"] = summary(report)
    return report


def machine() -> dict:
    import numba
    import numpy
    import sympy

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": load,
        "numba": numba.__version__,
        "numpy": numpy.__version__,
        "sympy": sympy.__version__,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _med(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def summary(report: dict) -> dict:
    out: dict = {"first": {}, "cold": {}, "warm": {}}
    for model, by_package in report["first"].items():
        for name, rows in by_package.items():
            stages: dict[str, float] = {}
            for key in {k for r in rows for k, v in r["stages"].items() if isinstance(v, float)}:
                stages[key] = statistics.median(r["stages"].get(key, 0.0) for r in rows)
            passes = {
                key: statistics.median(r.get("numba_passes", {}).get(key, 0.0) for r in rows)
                for key in {k for r in rows for k in r.get("numba_passes", {})}
            }
            g, y = _med(rows, "graphc"), _med(rows, "yardstick")
            out["first"].setdefault(model, {})[name] = {
                "graphc": g,
                "yardstick": y,
                "ratio": statistics.median(r["graphc"] / r["yardstick"] for r in rows),
                "numba_startup": _med(rows, "numba_startup"),
                "stages": stages,
                "numba_passes": dict(sorted(passes.items(), key=lambda kv: -kv[1])[:6]),
            }
    for name, kinds in report["cold"].items():
        out["cold"][name] = {
            kind: {k: _med(rows, k) for k in ("import", "first", "total", "process_wall")}
            | {"sympy_imported": all(r["sympy_imported"] for r in rows)}
            for kind, rows in kinds.items()
            if rows
        }
    for name, w in report["warm"].items():
        out["warm"][name] = {
            "fit_steps0_us": w["fit_steps0"] * 1e6,
            "new_lr_fit_steps0_us": w["new_lr_fit_steps0"] * 1e6,
            "fit_overhead_us": (w["fit_whole"] - w["train_direct"]) * 1e6,
            "fit_whole_ms": w["fit_whole"] * 1e3,
            "hand_whole_ms": w["hand_whole"] * 1e3,
            "fit_vs_hand": w["fit_whole"] / w["hand_whole"],
            "call_us": w["call"] * 1e6,
            "hand_call_us": w["hand_call"] * 1e6,
            "call_overhead_us": (w["call"] - w["hand_call"]) * 1e6,
        }
    if "peers" in report:
        out["peers"] = report["peers"]
    return out


def _label(report: dict, name: str) -> str:
    return report.get("labels", {}).get(name, name)


def text(report: dict) -> str:
    s, m = report["summary"], report["machine"]
    names = list(report["packages"])
    lab = {n: _label(report, n) for n in names}
    lines = [
        f"bench_latency: {m['when']}, python {m['python']}, numba {m['numba']}, numpy {m['numpy']}, "
        f"sympy {m['sympy']}; {m['cpus']} cpus, load average at start {m['loadavg_at_start']}",
        "NOTE: a shared machine (2 cores, other processes compiling concurrently): compare columns of "
        "one run, not runs.",
        f"packages: {report['packages']}",
        "",
        f"First compile (fresh process, empty cache, after Numba's start-up), median of "
        f"{report['repeats']} repeats, seconds; graphc's math helpers (graphc/codegen/helpers/, compiled "
        f"once per installation) "
        + ("compiled anew in each repeat (--fresh-helpers):" if report.get("fresh_helpers")
           else "already compiled, as after a machine's first model:"),
        "",
    ]
    head = (
        "| model | "
        + " | ".join(f"{lab[n]}: first fit | {lab[n]}: / yardstick" for n in names)
        + " | yardstick |"
    )
    lines += [head, "|" + "---|" * (2 * len(names) + 2)]
    for model, by in s["first"].items():
        cells = " | ".join(f"{by[n]['graphc']:.3f} | {by[n]['ratio']:.2f}x" for n in names)
        lines.append(f"| {LABELS[model]} | {cells} | {by[names[0]]['yardstick']:.3f} |")
    lines += ["", "Stages of the first fit (median seconds; numba = Numba compiling the training loop):", ""]
    for model, by in s["first"].items():
        for n in names:
            st = by[n]["stages"]
            lines.append(
                f"- {LABELS[model]}, {lab[n]}: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(st.items()))
            )
            top = by[n]["numba_passes"]
            if top:
                lines.append("  - Numba's passes: " + ", ".join(f"{k} {v:.3f}" for k, v in top.items()))
    lines += [
        "",
        "Cold process, tutorial (import graphc + first result; median seconds):",
        "",
        "| | " + " | ".join(f"{lab[n]}: empty cache | {lab[n]}: warm cache" for n in names) + " |",
        "|" + "---|" * (2 * len(names) + 1),
    ]
    cold = all(s["cold"].get(n) for n in names)  # --cold-repeats 0: none
    for key, label in (
        ("import", "import graphc"),
        ("first", "first result"),
        ("total", "import + first result"),
        ("process_wall", "process wall"),
    ) if cold else ():
        cells = " | ".join(
            f"{s['cold'][n]['empty'][key]:.3f} | {s['cold'][n]['warm_cache'][key]:.3f}" for n in names
        )
        lines.append(f"| {label} | {cells} |")
    cells = " | ".join(
        f"{s['cold'][n]['empty']['sympy_imported']} | {s['cold'][n]['warm_cache']['sympy_imported']}"
        for n in names
    ) if cold else ""
    lines.append(f"| sympy imported | {cells} |" if cold else "| (not measured: --cold-repeats 0) |")
    lines += [
        "",
        "Warm calls, tutorial N=2000 (one process; medians):",
        "",
        "| | " + " | ".join(lab[n] for n in names) + " |",
        "|" + "---|" * (len(names) + 1),
    ]
    rows = [
        ("gc.fit(steps=0), us", "fit_steps0_us", "{:.1f}"),
        ("gc.fit(steps=0) with a new SGD(lr=...), us", "new_lr_fit_steps0_us", "{:.1f}"),
        ("gc.fit(T=2000) - generated train called directly, us", "fit_overhead_us", "{:.1f}"),
        ("gc.fit(T=2000), ms", "fit_whole_ms", "{:.3f}"),
        ("hand-written whole loop, ms", "hand_whole_ms", "{:.3f}"),
        ("gc.fit / hand-written", "fit_vs_hand", "{:.2f}x"),
        ("f(**bindings), us", "call_us", "{:.2f}"),
        ("hand-written loss+grad loop, us", "hand_call_us", "{:.2f}"),
        ("f(**bindings) - hand-written, us", "call_overhead_us", "{:.2f}"),
    ]
    for label, key, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt.format(s["warm"][n][key]) for n in names) + " |")
    peers = s.get("peers")
    if peers is not None:
        lines += ["", "Peers on the 3-32-1 MLP (first call = compile, then median call):"]
        for key in ("jax", "torch_compile"):
            p = peers.get(key)
            lines.append(
                f"- {key}: "
                + (
                    "not installed: skipped"
                    if p is None
                    else f"first call {p['first_call']:.3f} s, call {p['call'] * 1e6:.1f} us ({p['version']})"
                )
            )
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart", file=sys.stderr)
        return None
    s = report["summary"]
    names = list(report["packages"])
    models = list(s["first"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / (len(names) + 1)
    for k, n in enumerate(names + ["yardstick"]):
        values = [
            s["first"][m][names[0]]["yardstick"] if n == "yardstick" else s["first"][m][n]["graphc"]
            for m in models
        ]
        ax1.bar(
            [i + k * width for i in range(len(models))],
            values,
            width,
            label="Numba, hand-written loop"
            if n == "yardstick"
            else f"graphc first fit, {_label(report, n)}",
        )
    ax1.set_xticks(
        [i + width * len(names) / 2 for i in range(len(models))],
        [LABELS[m] for m in models],
        fontsize=8,
        rotation=10,
    )
    ax1.set_ylabel("seconds (fresh process, empty cache)")
    ax1.set_yscale("log")
    ax1.set_title("First compile, after Numba's start-up")
    ax1.legend(fontsize=8)
    keys = [("fit_steps0_us", "gc.fit fixed cost"), ("call_overhead_us", "f(**b) beyond hand loop")]
    for k, n in enumerate(names):
        ax2.bar(
            [i + k * 0.4 for i in range(len(keys))],
            [max(s["warm"][n][key], 0.1) for key, _ in keys],
            0.4,
            label=_label(report, n),
        )
    ax2.set_xticks(
        [i + 0.2 * (len(names) - 1) for i in range(len(keys))], [label for _, label in keys], fontsize=8
    )
    ax2.set_yscale("log")
    ax2.set_ylabel("microseconds per call (warm)")
    ax2.set_title("Warm calls, tutorial N=2000")
    ax2.legend(fontsize=8)
    fig.text(
        0.01,
        0.01,
        "2 shared cores, other processes compiling concurrently; medians of one run",
        fontsize=7,
        color="gray",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--repeats", type=int, default=3, help="fresh processes per model and package (first compile)"
    )
    p.add_argument("--cold-repeats", type=int, default=5, help="cold/warm-cache process pairs per package")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--baseline", type=Path, help="a folder holding another graphc package, measured alike")
    p.add_argument(
        "--baseline-label", default="baseline", help="its name in the tables (e.g. 'before (abc1234)')"
    )
    p.add_argument("--from-json", type=Path, help="print the tables (and --chart) of an earlier run's JSON")
    p.add_argument("--no-peers", action="store_true", help="skip JAX and torch.compile")
    p.add_argument(
        "--fresh-helpers",
        action="store_true",
        help="first compile: delete the machine code of graphc's math helpers (compiled once per "
        "installation) before each repeat, as on a machine's very first model",
    )
    p.add_argument("--out", type=Path, help="write PREFIX.json and PREFIX.txt")
    p.add_argument("--chart", type=Path, help="write the chart (PNG)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](args.child[1:])))
        return 0
    if args.from_json is not None:
        report = json.loads(args.from_json.read_text())
        report.setdefault("labels", {"graphc": "graphc", "baseline": args.baseline_label})
    else:
        packages = {"graphc": REPO}
        if args.baseline is not None:
            packages["baseline"] = args.baseline.resolve()
        report = run(args.repeats, args.models.split(","), packages, args.cold_repeats, not args.no_peers,
                     args.fresh_helpers)
        report["labels"] = {
            "graphc": "this tree" if args.baseline is not None else "graphc",
            "baseline": args.baseline_label,
        }
    out = text(report)
    print(out)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
        args.out.with_suffix(".txt").write_text(out)
    if args.chart is not None:
        chart(report, args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
