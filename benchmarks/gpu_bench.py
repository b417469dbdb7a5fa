"""GPU benchmark of target='cuda' (benchmarks/gpu_check.sh runs it on a machine with a GPU).

One run measures:
1. the tutorial fit, N = 2000 samples, T = 2000 SGD steps: the single-block persistent kernel
   (all steps in one launch) and the one-launch-per-step path, against target='cpu';
2. one training step at N = 10^8 float32 (loss, 4 gradients and the SGD update): its effective
   read bandwidth against the device-to-device copy bandwidth of the same GPU (target >= 70%),
   over a small sweep of launch shapes;
3. torch CUDA eager doing the same math, if torch with CUDA is importable (skipped otherwise).

    python benchmarks/gpu_bench.py [--out results.json]
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu_bench.py --sim      # tiny sizes, proves the script
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time

import numpy as np

import graphc as gc
from graphc.runtime import cuda as cuda_runtime

LR, INIT = 1e-6, {"a": -0.4, "b": 0.6, "c": 0.3, "d": -0.2}


def cubic_loss():
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    return gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)


def fit(loss, data, steps, target, dtype="float64", log_every=100):
    return gc.fit(loss, data=data, init=INIT, optimizer=gc.SGD(lr=LR), steps=steps,
                  log_every=min(log_every, steps), target=target, dtype=dtype)


def best_of(fn, repeat):
    return min(fn() for _ in range(repeat))


# ---- 1. the tutorial fit -----------------------------------------------------------------------
def tutorial(n: int, steps: int, repeat: int) -> dict:
    loss = cubic_loss()
    x = np.linspace(-math.pi, math.pi, n)
    data = {"x": x, "y": np.sin(x)}
    out = {"n": n, "steps": steps}
    cpu = fit(loss, data, steps, "cpu")
    fit(loss, data, steps, "cpu")
    out["cpu_us_per_step"] = best_of(lambda: fit(loss, data, steps, "cpu").seconds, repeat) / steps * 1e6
    for name, one_block_n in (("cuda_one_block", 1 << 62), ("cuda_per_step", 0)):
        cuda_runtime.options.one_block_n = one_block_n
        start = time.perf_counter()
        res = fit(loss, data, 1, "cuda")  # compiles (or loads the cache)
        out[f"{name}_first_call_s"] = time.perf_counter() - start
        res = fit(loss, data, steps, "cuda")
        worst = max(abs(g - c) / abs(c) for (_, g), (_, c) in zip(res.history, cpu.history))
        out[f"{name}_max_rel_diff_vs_cpu"] = worst
        out[f"{name}_us_per_step"] = best_of(lambda: fit(loss, data, steps, "cuda").seconds, repeat) / steps * 1e6
    cuda_runtime.options.one_block_n = 32768
    return out


# ---- 2. one step at large N ------------------------------------------------------------------------
def copy_bandwidth(cuda, nbytes: int, repeat: int) -> float:
    """Bytes moved per second (read + write) by a device-to-device copy of nbytes."""
    src = cuda.device_array(nbytes // 4, dtype=np.float32)
    dst = cuda.device_array_like(src)
    dst.copy_to_device(src)
    cuda.synchronize()

    def once():
        start = time.perf_counter()
        for _ in range(5):
            dst.copy_to_device(src)
        cuda.synchronize()
        return (time.perf_counter() - start) / 5

    return 2 * nbytes / best_of(once, repeat)


def big_step(cuda, n: int, steps: int, repeat: int, shapes: list[tuple[int, int]]) -> dict:
    loss = cubic_loss()
    x = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    data = {"x": cuda.to_device(x), "y": cuda.to_device(np.sin(x))}  # copied once, then zero-copy
    read = 2 * n * 4  # x and y, float32: the bytes one step must read
    out = {"n": n, "dtype": "float32", "bytes_read_per_step": read,
           "copy_bandwidth_GBps": copy_bandwidth(cuda, read, repeat) / 1e9, "shapes": []}
    cuda_runtime.options.one_block_n = 0
    for threads, per_sm in shapes:
        cuda_runtime.options.threads = threads
        cuda_runtime.options.max_blocks = per_sm * _sms(cuda) if per_sm else 4
        fit(loss, data, 1, "cuda", "float32")  # compile
        seconds = best_of(lambda: fit(loss, data, steps, "cuda", "float32").seconds, repeat) / steps
        bw = read / seconds / 1e9
        out["shapes"].append({"threads": threads, "blocks": cuda_runtime.options.max_blocks,
                              "ms_per_step": seconds * 1e3, "read_GBps": bw,
                              "fraction_of_copy": bw / out["copy_bandwidth_GBps"]})
    best = max(out["shapes"], key=lambda s: s["fraction_of_copy"])
    out["best"], out["default"] = best, out["shapes"][0]
    out["meets_70_percent"] = best["fraction_of_copy"] >= 0.70
    cuda_runtime.options.threads, cuda_runtime.options.max_blocks, cuda_runtime.options.one_block_n = 128, None, 32768
    return out


def _sms(cuda) -> int:
    try:
        return cuda.get_current_device().MULTIPROCESSOR_COUNT
    except AttributeError:  # the simulator
        return 1


# ---- 3. torch eager ------------------------------------------------------------------------------
def torch_eager(n_big: int, n_small: int, steps_small: int, repeat: int) -> dict:
    try:
        import torch
    except ImportError:
        return {"skipped": "torch is not installed"}
    if not torch.cuda.is_available():
        return {"skipped": "torch has no CUDA device"}
    out = {"torch": torch.__version__}

    def run(n, steps, dtype):
        x = torch.linspace(-1.0, 1.0, n, device="cuda", dtype=dtype)
        y = torch.sin(x)
        p = [torch.tensor(v, device="cuda", dtype=dtype) for v in INIT.values()]
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(steps):  # the tutorial's manual-gradient loop, in torch
                x2, x3 = x * x, x * x * x
                r = p[0] + p[1] * x + p[2] * x2 + p[3] * x3 - y
                loss = (r * r).sum()
                g = 2.0 * r
                grads = (g.sum(), (g * x).sum(), (g * x2).sum(), (g * x3).sum())
                for q, dq in zip(p, grads):
                    q -= LR * dq
        loss.item()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / steps

    run(n_small, 3, torch.float64)
    out["tutorial_us_per_step"] = best_of(lambda: run(n_small, steps_small, torch.float64), repeat) * 1e6
    run(n_big, 2, torch.float32)
    out["big_ms_per_step"] = best_of(lambda: run(n_big, 5, torch.float32), repeat) * 1e3
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", "--quick", dest="quick", action="store_true", help="tiny sizes (simulator)")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    cuda = cuda_runtime.require()
    if args.quick:
        sizes = dict(tut_n=200, tut_steps=4, big_n=256, big_steps=2, repeat=1, shapes=[(32, 0)])
    else:
        sizes = dict(tut_n=2000, tut_steps=2000, big_n=10**8, big_steps=20, repeat=3,
                     shapes=[(128, 8), (256, 8), (128, 16), (256, 16), (512, 4)])
    if args.quick:
        cuda_runtime.options.threads, cuda_runtime.options.max_blocks = 32, 4
    import numba

    results = {"python": platform.python_version(), "numba": numba.__version__,
               "numba_cuda": getattr(cuda, "implementation", "?"), "simulator": cuda_runtime.simulated(),
               "device": _device_name(cuda), "quick": args.quick}
    t0 = time.perf_counter()
    sections = {
        "tutorial": lambda: tutorial(sizes["tut_n"], sizes["tut_steps"], sizes["repeat"]),
        "big_step": lambda: big_step(cuda, sizes["big_n"], sizes["big_steps"], sizes["repeat"], sizes["shapes"]),
        "torch": lambda: {"skipped": "simulator"} if cuda_runtime.simulated() else
        torch_eager(sizes["big_n"], sizes["tut_n"], sizes["tut_steps"], sizes["repeat"]),
    }
    failed = False
    for name, run in sections.items():
        try:  # one failing section still leaves the others' figures
            results[name] = run()
        except Exception as err:  # noqa: BLE001
            failed, results[name] = True, {"error": f"{type(err).__name__}: {err}"}
        _report(name, results[name])
        results["seconds"] = time.perf_counter() - t0
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=2)
    return 1 if failed else 0


def _device_name(cuda) -> str:
    try:
        name = cuda.get_current_device().name
        return name.decode() if isinstance(name, bytes) else str(name)
    except AttributeError:
        return "simulator"


def _report(title: str, values: dict) -> None:
    print(f"== {title}")
    for k, v in values.items():
        print(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
