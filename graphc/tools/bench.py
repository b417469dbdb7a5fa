"""`graphc bench`: graphc against eager numpy, a hand-written Numba loop, and (where installed)
torch eager, torch.compile, JAX and PyTensor, on the tutorial's workloads.

Every competitor trains the same model from the same start for the same steps. The suite
reports the median time per step over repeats, ratios taken in the same run, cold and warm
compile times, how far each competitor's final parameters are from eager numpy's, the
machine, and the memory bandwidth of a plain streaming sum measured in the same run.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

RTOL = 1e-6  # final parameters vs eager numpy (everything runs in float64)
POLY_INIT = {"a": -0.4, "b": 0.6, "c": 0.3, "d": -0.2}


# ---- workloads ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # "poly": y = a + b x + c x^2 + d x^3;  "mlp": Linear(3,H) -> tanh -> Linear(H,1)
    n: int
    steps: int
    lr: float
    width: int = 0

    @property
    def label(self) -> str:
        model = "cubic" if self.kind == "poly" else f"MLP 3-{self.width}-1"
        return f"{self.name}: {model}, N={self.n:,}, T={self.steps}"


def workloads(quick: bool) -> list[Workload]:
    """The suite. Cubic lr is 1e-6 * 2000 / N: the tutorial's step, at any N."""
    if quick:
        return [Workload("tutorial", "poly", 2000, 200, 1e-6),
                Workload("large", "poly", 10**6, 3, 2e-9),
                Workload("mlp", "mlp", 1000, 20, 1e-5, width=2)]
    return [Workload("tutorial", "poly", 2000, 2000, 1e-6),
            Workload("large-1e6", "poly", 10**6, 20, 2e-9),
            Workload("large-1e7", "poly", 10**7, 20, 2e-10),
            Workload("mlp", "mlp", 10_000, 100, 3e-6, width=32)]


def problem(w: Workload) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(data, init) of a workload: x on [-pi, pi], y = sin(x)."""
    x = np.linspace(-math.pi, math.pi, w.n)
    if w.kind == "poly":
        return {"x": x, "y": np.sin(x)}, dict(POLY_INIT)
    rng = np.random.default_rng(0)
    b1, b2 = 1 / math.sqrt(3), 1 / math.sqrt(w.width)  # torch's Linear initialisation
    init = {"l1.weight": rng.uniform(-b1, b1, (w.width, 3)), "l1.bias": rng.uniform(-b1, b1, w.width),
            "l2.weight": rng.uniform(-b2, b2, (1, w.width)), "l2.bias": rng.uniform(-b2, b2, 1)}
    return {"x": x, "y": np.sin(x)}, init


# ---- competitors: make(workload, data, init) -> run() -> final params ---------------------
Runner = Callable[[], dict]


def numpy_tutorial(w: Workload, data: dict, init: dict) -> Runner:
    """The tutorial's eager numpy loop as written (x ** 2, x ** 3 every step)."""
    x, y = data["x"], data["y"]
    if w.kind == "mlp":
        return lambda: _numpy_mlp(x, y, init, w.steps, w.lr)

    def run() -> dict:
        a, b, c, d = (init[k] for k in "abcd")
        for _ in range(w.steps):
            y_pred = a + b * x + c * x**2 + d * x**3
            np.square(y_pred - y).sum()
            grad_y_pred = 2.0 * (y_pred - y)
            grad_a, grad_b = grad_y_pred.sum(), (grad_y_pred * x).sum()
            grad_c, grad_d = (grad_y_pred * x**2).sum(), (grad_y_pred * x**3).sum()
            a, b, c, d = a - w.lr * grad_a, b - w.lr * grad_b, c - w.lr * grad_c, d - w.lr * grad_d
        return {"a": a, "b": b, "c": c, "d": d}

    return run


def numpy_tuned(w: Workload, data: dict, init: dict) -> Runner:
    """Eager numpy, tuned: x*x instead of x**2, the residual reused, dot products for the sums."""
    x, y = data["x"], data["y"]

    def run() -> dict:
        a, b, c, d = (init[k] for k in "abcd")
        for _ in range(w.steps):
            x2 = x * x
            x3 = x2 * x
            r = a + b * x + c * x2 + d * x3 - y
            r @ r  # the loss
            g = 2.0 * r
            a, b, c, d = a - w.lr * g.sum(), b - w.lr * (g @ x), c - w.lr * (g @ x2), d - w.lr * (g @ x3)
        return {"a": a, "b": b, "c": c, "d": d}

    return run


def _numpy_mlp(x: np.ndarray, y: np.ndarray, init: dict, steps: int, lr: float) -> dict:
    xx = np.stack([x, x * x, x * x * x], axis=-1)
    W1, b1, W2, b2 = (np.array(init[k]) for k in ("l1.weight", "l1.bias", "l2.weight", "l2.bias"))
    for _ in range(steps):
        h = np.tanh(xx @ W1.T + b1)
        r = (h @ W2.T + b2)[:, 0] - y
        g = 2.0 * r
        gpre = (g[:, None] * W2) * (1.0 - h * h)
        W1, b1 = W1 - lr * (gpre.T @ xx), b1 - lr * gpre.sum(0)
        W2, b2 = W2 - lr * (g @ h)[None, :], b2 - lr * g.sum()
    return {"l1.weight": W1, "l1.bias": b1, "l2.weight": W2, "l2.bias": b2}


@functools.lru_cache(maxsize=None)
def _njit_kernels() -> dict:
    """Hand-written whole training loops: the practical limit of one core (fastmath sums)."""
    import numba

    @numba.njit(fastmath=True)
    def poly(x, y, a, b, c, d, lr, steps):
        for _ in range(steps):
            ga = gb = gc = gd = loss = 0.0
            for i in range(x.shape[0]):
                xi = x[i]
                x2 = xi * xi
                x3 = x2 * xi
                r = a + b * xi + c * x2 + d * x3 - y[i]
                loss += r * r
                g = 2.0 * r
                ga += g
                gb += g * xi
                gc += g * x2
                gd += g * x3
            a, b, c, d = a - lr * ga, b - lr * gb, c - lr * gc, d - lr * gd
        return a, b, c, d

    @numba.njit(fastmath=True)
    def mlp(x, y, W1, b1, W2, b2, lr, steps):
        H = b1.shape[0]
        h = np.empty(H)
        gW1, gb1, gW2 = np.empty((H, 3)), np.empty(H), np.empty(H)
        for _ in range(steps):
            gW1[:] = 0.0
            gb1[:] = 0.0
            gW2[:] = 0.0
            gb2 = 0.0
            for i in range(x.shape[0]):
                f0 = x[i]
                f1 = f0 * f0
                f2 = f1 * f0
                pred = b2[0]
                for j in range(H):
                    h[j] = math.tanh(W1[j, 0] * f0 + W1[j, 1] * f1 + W1[j, 2] * f2 + b1[j])
                    pred += W2[0, j] * h[j]
                g = 2.0 * (pred - y[i])
                gb2 += g
                for j in range(H):
                    gW2[j] += g * h[j]
                    gp = g * W2[0, j] * (1.0 - h[j] * h[j])
                    gb1[j] += gp
                    gW1[j, 0] += gp * f0
                    gW1[j, 1] += gp * f1
                    gW1[j, 2] += gp * f2
            W1 -= lr * gW1
            b1 -= lr * gb1
            W2[0, :] -= lr * gW2
            b2[0] -= lr * gb2
        return W1, b1, W2, b2

    @numba.njit(parallel=True, fastmath=True)
    def stream(x, y):
        s = 0.0
        for i in numba.prange(x.shape[0]):
            s += x[i] + y[i]
        return s

    return {"poly": poly, "mlp": mlp, "stream": stream}


def njit_loop(w: Workload, data: dict, init: dict) -> Runner:
    kernel = _njit_kernels()[w.kind]
    x, y = data["x"], data["y"]
    names = ("l1.weight", "l1.bias", "l2.weight", "l2.bias")
    start = [init[k] for k in "abcd"] if w.kind == "poly" else [np.array(init[k]) for k in names]
    kernel(x[:2], y[:2], *start, w.lr, 1)  # compile
    if w.kind == "poly":
        return lambda: dict(zip("abcd", kernel(x, y, *(init[k] for k in "abcd"), w.lr, w.steps)))
    return lambda: dict(zip(names, kernel(x, y, *(np.array(init[k]) for k in names), w.lr, w.steps)))


def graphc_model(w: Workload) -> Any:
    import graphc as gc

    x, y = gc.data("x"), gc.data("y")
    if w.kind == "poly":
        a, b, c, d = gc.params("a b c d")
        return gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)
    xx = gc.stack([x, x**2, x**3], axis=-1)
    l1, l2 = gc.nn.Linear(3, w.width, name="l1"), gc.nn.Linear(w.width, 1, name="l2")
    return gc.nn.mse_loss(gc.flatten(l2(gc.tanh(l1(xx)))), y, reduction="sum")


def graphc_runner(target: str) -> Callable[[Workload, dict, dict], Runner]:
    def make(w: Workload, data: dict, init: dict) -> Runner:
        import graphc as gc

        loss = graphc_model(w)

        def run(steps: int = w.steps) -> dict:
            res = gc.fit(loss, data=data, init=init, optimizer=gc.SGD(lr=w.lr), steps=steps,
                         log_every=max(steps, 1), target=target)
            run.seconds = res.seconds  # the compiled training loop alone
            return res.params

        run(1)  # compile (and cache)
        return run

    return make


def _torch_loss(torch: Any, w: Workload, x: Any, y: Any) -> Callable:
    if w.kind == "poly":
        return lambda p: ((p["a"] + p["b"] * x + p["c"] * x**2 + p["d"] * x**3 - y) ** 2).sum()
    xx = torch.stack([x, x**2, x**3], dim=-1)
    def loss(p: dict) -> Any:
        h = torch.tanh(xx @ p["l1.weight"].T + p["l1.bias"])
        return ((h @ p["l2.weight"].T + p["l2.bias"])[:, 0] - y).pow(2).sum()

    return loss


def torch_runner(compiled: bool) -> Callable[[Workload, dict, dict], Runner]:
    """The tutorial's autograd loop (backward, then the update under no_grad); with
    ``compiled`` the loss goes through torch.compile (AOTAutograd compiles its backward)."""

    def make(w: Workload, data: dict, init: dict) -> Runner:
        import torch

        x, y = (torch.tensor(data[k], dtype=torch.float64) for k in ("x", "y"))
        loss_fn = _torch_loss(torch, w, x, y)
        loss_fn = torch.compile(loss_fn) if compiled else loss_fn

        def run(steps: int = w.steps) -> dict:
            params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in init.items()}
            for _ in range(steps):
                loss_fn(params).backward()
                with torch.no_grad():
                    for p in params.values():
                        p -= w.lr * p.grad
                        p.grad = None
            return {k: v.detach().numpy().copy() if v.ndim else v.item() for k, v in params.items()}

        run(2)  # trace / compile
        return run

    return make


def jax_runner(w: Workload, data: dict, init: dict) -> Runner:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    x, y = jnp.asarray(data["x"]), jnp.asarray(data["y"])

    def loss(p, x, y):
        if w.kind == "poly":
            return jnp.sum((p["a"] + p["b"] * x + p["c"] * x**2 + p["d"] * x**3 - y) ** 2)
        h = jnp.tanh(jnp.stack([x, x**2, x**3], axis=-1) @ p["l1.weight"].T + p["l1.bias"])
        return jnp.sum(((h @ p["l2.weight"].T + p["l2.bias"])[:, 0] - y) ** 2)

    grad = jax.grad(loss)

    @jax.jit
    def train(p, x, y):
        body = lambda _, q: jax.tree_util.tree_map(lambda v, g: v - w.lr * g, q, grad(q, x, y))  # noqa: E731
        return jax.lax.fori_loop(0, w.steps, body, p)

    start = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in init.items()}
    jax.block_until_ready(train(start, x, y))  # compile

    def run() -> dict:
        out = jax.block_until_ready(train(start, x, y))
        return {k: float(v) if v.ndim == 0 else np.asarray(v) for k, v in out.items()}

    return run


def pytensor_runner(w: Workload, data: dict, init: dict) -> Runner:
    import pytensor
    import pytensor.tensor as pt

    x, y = pt.constant(data["x"]), pt.constant(data["y"])
    shared = {k: pytensor.shared(np.array(v, dtype=np.float64), name=k.replace(".", "_"))
              for k, v in init.items()}
    p = shared
    if w.kind == "poly":
        loss = pt.sum((p["a"] + p["b"] * x + p["c"] * x**2 + p["d"] * x**3 - y) ** 2)
    else:
        xx = pt.stack([x, x**2, x**3], axis=-1)
        h = pt.tanh(pt.dot(xx, p["l1.weight"].T) + p["l1.bias"])
        loss = pt.sum(((pt.dot(h, p["l2.weight"].T) + p["l2.bias"])[:, 0] - y) ** 2)
    grads = pytensor.grad(loss, list(shared.values()))
    step = pytensor.function([], loss, updates=[(v, v - w.lr * g) for v, g in zip(shared.values(), grads)],
                             mode="NUMBA")

    def run() -> dict:
        for k, v in init.items():
            shared[k].set_value(np.array(v, dtype=np.float64))
        for _ in range(w.steps):
            step()
        values = {k: v.get_value() for k, v in shared.items()}
        return {k: float(v) if np.ndim(v) == 0 else v for k, v in values.items()}

    step()  # compile
    return run


@dataclass(frozen=True)
class Competitor:
    name: str
    make: Callable[[Workload, dict, dict], Runner]
    module: str | None = None  # optional dependency; skipped when it is not installed
    kinds: tuple[str, ...] = ("poly", "mlp")
    compiles: bool = True


COMPETITORS = [
    Competitor("numpy (tutorial)", numpy_tutorial, compiles=False),
    Competitor("numpy (tuned)", numpy_tuned, kinds=("poly",), compiles=False),
    Competitor("njit (hand-written)", njit_loop),
    Competitor("graphc cpu", graphc_runner("cpu")),
    Competitor("graphc parallel", graphc_runner("parallel")),
    Competitor("torch eager", torch_runner(False), "torch"),
    Competitor("torch.compile", torch_runner(True), "torch"),
    Competitor("jax jit", jax_runner, "jax"),
    Competitor("pytensor numba", pytensor_runner, "pytensor"),
]
REFERENCE = "numpy (tutorial)"


def installed(module: str | None) -> bool:
    if module is None:
        return True
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ---- measuring --------------------------------------------------------------------------
@dataclass
class Row:
    workload: str
    competitor: str
    step_s: float = float("nan")  # median seconds per step
    repeats_s: list[float] = field(default_factory=list)
    compile_s: float | None = None  # setup + first (compiling) call, in this process
    warm_s: float | None = None  # the same in a new process with the cache populated (graphc)
    max_rel_err: float | None = None  # final parameters vs eager numpy
    ok: bool = True
    note: str = ""


def rel_err(params: dict, ref: dict) -> float:
    worst = 0.0
    for k, want in ref.items():
        got, want = np.asarray(params[k], dtype=float), np.asarray(want, dtype=float)
        scale = max(float(np.max(np.abs(want))), 1e-300)
        worst = max(worst, float(np.max(np.abs(got - want))) / scale)
    return worst


def measure(w: Workload, comp: Competitor, data: dict, init: dict, repeats: int) -> tuple[Row, dict]:
    row = Row(w.name, comp.name)
    start = time.perf_counter()
    run = comp.make(w, data, init)
    row.compile_s = time.perf_counter() - start if comp.compiles else None
    params: dict = {}
    for _ in range(repeats):
        start = time.perf_counter()
        params = run()
        wall = time.perf_counter() - start
        row.repeats_s.append(getattr(run, "seconds", wall) / w.steps)
    row.step_s = statistics.median(row.repeats_s)
    return row, params


def stream_bandwidth(n: int, repeats: int) -> float:
    """Bytes per second of a parallel sum over two float64 arrays of n elements."""
    kernel = _njit_kernels()["stream"]
    x, y = np.ones(n), np.ones(n)
    kernel(x[:10], y[:10])
    times = []
    for _ in range(max(repeats, 3)):
        start = time.perf_counter()
        kernel(x, y)
        times.append(time.perf_counter() - start)
    return 16 * n / statistics.median(times)


_WARM = """
import json, time
import numba
import graphc
from graphc.tools import bench
numba.njit(lambda v: v + 1)(1)  # Numba's one-time start-up is not any one graph's cost
out = {}
for name, target in TARGETS:
    for w in bench.workloads(QUICK):
        if w.name in ONLY:
            data, init = bench.problem(w)
            start = time.perf_counter()
            bench.graphc_runner(target)(w, data, init)
            out[w.name + "|" + name] = time.perf_counter() - start
print(json.dumps(out))
"""


WARM_TIMEOUT = 900  # seconds for the warm-compile process


def warm_compile_times(cache: str, quick: bool, only: list[str],
                       names: list[str]) -> tuple[dict[str, float], str]:
    """Compile times in a fresh process whose cache already holds the generated code, and
    why there are none ("" when measured): the report says it instead of an empty column."""
    targets = [(name, name.split()[1]) for name in names if name.startswith("graphc ")]
    if not targets:
        return {}, ""
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache)
    code = _WARM.replace("QUICK", repr(quick)).replace("ONLY", repr(only)).replace("TARGETS", repr(targets))
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             timeout=WARM_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {}, f"the warm-compile process did not finish in {WARM_TIMEOUT} s"
    if out.returncode != 0:
        return {}, f"the warm-compile process failed (exit {out.returncode}): {_last_line(out.stderr)}"
    try:
        return json.loads(out.stdout.strip().splitlines()[-1]), ""
    except (IndexError, ValueError):
        return {}, f"the warm-compile process printed no timings: {_last_line(out.stdout + out.stderr)}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def machine() -> dict[str, Any]:
    import numba
    import sympy

    from .. import __version__

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
                "sympy": sympy.__version__, "graphc": __version__}
    for mod in ("torch", "jax", "pytensor"):
        if installed(mod):
            versions[mod] = __import__(mod).__version__
    return {"cpu": cpu, "cores": os.cpu_count(), "numba_threads": numba.config.NUMBA_NUM_THREADS,
            "platform": platform.platform(), "versions": versions}


def _progress(total: int, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is None or not enabled:
        class Quiet:
            def update(self, k: int = 1) -> None: ...
            def set_description(self, s: str) -> None: ...
            def close(self) -> None: ...
        return Quiet()
    return tqdm(total=total, file=sys.stderr, unit="run", dynamic_ncols=True)


def run_suite(quick: bool = False, only: list[str] | None = None, competitors: list[str] | None = None,
              repeats: int | None = None, warm: bool = True, progress: bool = True) -> dict[str, Any]:
    """Run the suite; returns the report as a dict (what the JSON file holds)."""
    suite = [w for w in workloads(quick) if not only or w.name in only]
    comps = [c for c in COMPETITORS if (not competitors or c.name in competitors or c.name == REFERENCE)]
    skipped = [c.name for c in comps if not installed(c.module)]
    comps = [c for c in comps if installed(c.module)]
    repeats = repeats or (2 if quick else 5)
    import graphc  # noqa: F401 - import time is not compile time
    tasks = [(w, c) for w in suite for c in _entries(w, comps, suite, quick)]
    rows: list[Row] = []
    bar = _progress(len(tasks) + 1, progress)
    with tempfile.TemporaryDirectory(prefix="graphc-bench-") as cache:
        old = os.environ.get("GRAPHC_CACHE_DIR")
        os.environ["GRAPHC_CACHE_DIR"] = cache  # cold: graphc starts from an empty cache
        try:
            for w in suite:
                data, init = problem(w)
                ref = None
                for c in _entries(w, comps, suite, quick):
                    bar.set_description(f"{w.name}: {c.name}")
                    try:
                        row, params = measure(w, c, data, init, repeats)
                        ref = params if c.name == REFERENCE else ref
                        row.max_rel_err = rel_err(params, ref)
                        row.ok = row.max_rel_err <= RTOL
                    except Exception as exc:  # a broken competitor is reported, not fatal
                        row = Row(w.name, c.name, ok=False, note=f"{type(exc).__name__}: {exc}"[:200])
                    rows.append(row)
                    bar.update()
            bar.set_description("warm compile (new process)")
            names = [c.name for c in comps]
            times, warm_note = (warm_compile_times(cache, quick, [w.name for w in suite], names)
                                if warm else ({}, "skipped (--no-warm)"))
            bar.update()
        finally:
            if old is None:
                del os.environ["GRAPHC_CACHE_DIR"]
            else:
                os.environ["GRAPHC_CACHE_DIR"] = old
    bar.close()
    for row in rows:
        row.warm_s = times.get(f"{row.workload}|{row.competitor}")
    report = {"machine": machine(), "quick": quick, "repeats": repeats, "rtol": RTOL,
              "workloads": [asdict(w) | {"label": w.label} for w in suite],
              "skipped": skipped, "results": [asdict(r) for r in rows], "warm_note": warm_note}
    report["summary"] = summary(report, suite, repeats)
    return report


def _entries(w: Workload, comps: list[Competitor], suite: list[Workload], quick: bool) -> list[Competitor]:
    """Who runs on ``w``. With --quick the optional competitors run on the first workload
    only: their compile times (torch.compile: tens of seconds) would blow the CI budget."""
    return [c for c in comps if w.kind in c.kinds and not (quick and c.module and w is not suite[0])]


def _row(report: dict, workload: str, competitor: str) -> dict | None:
    for r in report["results"]:
        if r["workload"] == workload and r["competitor"] == competitor and r["ok"]:
            return r
    return None


def summary(report: dict, suite: list[Workload], repeats: int) -> dict[str, Any]:
    """The two headline checks: graphc cpu vs njit on the tutorial; parallel vs stream bandwidth."""
    out: dict[str, Any] = {}
    cpu, njit = _row(report, suite[0].name, "graphc cpu"), _row(report, suite[0].name, "njit (hand-written)")
    if cpu and njit:
        ratio = cpu["step_s"] / njit["step_s"]
        out["cpu_vs_njit"] = {"workload": suite[0].name, "ratio": ratio, "target": 1.3}
    big = max((w for w in suite if w.kind == "poly"), key=lambda w: w.n, default=None)
    par = _row(report, big.name, "graphc parallel") if big else None
    if par:
        bandwidth = stream_bandwidth(big.n, repeats)
        import graphc as gc

        per_sample = gc.compile(graphc_model(big)).stats.bytes_per_sample
        achieved = per_sample * big.n / par["step_s"]
        out["parallel_vs_stream"] = {"workload": big.name, "n": big.n, "stream_GBps": bandwidth / 1e9,
                                     "parallel_GBps": achieved / 1e9, "percent": 100 * achieved / bandwidth,
                                     "bytes_per_sample": per_sample}
    return out


# ---- reporting --------------------------------------------------------------------------
def _time(s: float | None) -> str:
    if s is None or s != s:
        return "-"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def markdown(report: dict) -> str:
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores (numba threads {m['numba_threads']}); {versions}.",
             f"Median of {report['repeats']} repeats{' (--quick)' if report['quick'] else ''}; "
             "ratios from the same run; final parameters checked against eager numpy "
             f"(rtol {report['rtol']:g}).",
             ""]
    for w in report["workloads"]:
        rows = [r for r in report["results"] if r["workload"] == w["name"]]
        ref = _row(report, w["name"], REFERENCE)
        njit = _row(report, w["name"], "njit (hand-written)")
        lines += [f"### {w['label']}", "",
                  "| competitor | time / step | speedup vs numpy | time / njit time | compile (cold) "
                  "| compile (warm) | max rel err |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if not r["ok"] and r["max_rel_err"] is None:
                lines.append(f"| {r['competitor']} | failed: {r['note']} | | | | | |")
                continue
            speed = f"{ref['step_s'] / r['step_s']:.1f}x" if ref else "-"
            vs_njit = f"{r['step_s'] / njit['step_s']:.2f}" if njit else "-"
            err = f"{r['max_rel_err']:.1e}" + ("" if r["ok"] else " DISAGREES")
            lines.append(f"| {r['competitor']} | {_time(r['step_s'])} | {speed} | {vs_njit} | "
                         f"{_time(r['compile_s'])} | {_time(r['warm_s'])} | {err} |")
        lines.append("")
    s = report["summary"]
    if "cpu_vs_njit" in s:
        c = s["cpu_vs_njit"]
        verdict = "within" if c["ratio"] <= c["target"] else "NOT within"
        lines.append(f"- graphc cpu / hand-written njit on {c['workload']}: {c['ratio']:.2f}x "
                     f"({verdict} the {c['target']}x target)")
    if "parallel_vs_stream" in s:
        p = s["parallel_vs_stream"]
        lines.append(f"- graphc parallel at N={p['n']:,}: {p['parallel_GBps']:.1f} GB/s "
                     f"({p['bytes_per_sample']} B/sample) = {p['percent']:.0f}% of a two-array streaming sum "
                     f"measured in the same run ({p['stream_GBps']:.1f} GB/s)")
    if report["skipped"]:
        lines.append(f"- not installed, skipped: {', '.join(report['skipped'])}")
    if report.get("warm_note"):
        lines.append(f"- compile (warm) not measured: {report['warm_note']}")
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> Path | None:
    """Grouped bars, log-scale seconds per step, one group per workload."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = [w["name"] for w in report["workloads"]]
    comps = list(dict.fromkeys(r["competitor"] for r in report["results"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(names) + 3), 4.5))
    width = 0.8 / max(len(comps), 1)
    for k, comp in enumerate(comps):
        xs, ys = [], []
        for j, name in enumerate(names):
            r = _row(report, name, comp)
            if r:
                xs.append(j + (k - (len(comps) - 1) / 2) * width)
                ys.append(r["step_s"])
        ax.bar(xs, ys, width, label=comp)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), [w["label"].split(":")[0] + "\n" + w["label"].split(": ")[1]
                                      for w in report["workloads"]], fontsize=8)
    ax.set_ylabel("seconds per training step (log)")
    ax.set_title(f"graphc bench: {report['machine']['cpu']}", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- command line -----------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="small sizes and 2 repeats: a CI check in about a minute")
    p.add_argument("--out", default="bench-results", metavar="DIR",
                   help="where results.md, results.json and the chart go (default: bench-results)")
    p.add_argument("--chart", default=None, metavar="PNG", help="chart path (default: DIR/benchmarks.png)")
    p.add_argument("--only", action="append", metavar="WORKLOAD",
                   help="run only this workload (repeatable): tutorial, large..., mlp")
    p.add_argument("--competitor", action="append", metavar="NAME",
                   help="run only this competitor (repeatable; eager numpy always runs as the reference)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per entry (default 5, quick 2)")
    p.add_argument("--no-warm", action="store_true",
                   help="skip the warm-compile measurement in a new process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_cli(args: argparse.Namespace) -> int:
    report = run_suite(args.quick, args.only, args.competitor, args.repeats, not args.no_warm,
                       not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    (out / "results.md").write_text(text, encoding="utf-8")
    (out / "results.json").write_text(json.dumps(report, indent=1, default=float), encoding="utf-8")
    png = chart(report, Path(args.chart) if args.chart else out / "benchmarks.png")
    print(text)
    if report.get("warm_note"):
        print(f"graphc bench: compile (warm) not measured: {report['warm_note']}", file=sys.stderr)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}" + (f", {png}" if png else ""))
    bad = [f"{r['workload']}: {r['competitor']}" for r in report["results"] if not r["ok"]]
    if bad:
        print("competitors that failed or disagree with numpy: " + "; ".join(bad), file=sys.stderr)
        return 1
    return 0
