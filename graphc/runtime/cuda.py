"""CUDA run time: device arrays in, kernels launched, fit's training loop kept on the GPU.

``numba.cuda`` is imported only here and only when target "cuda" is used, so the cpu and
parallel targets never touch it. Either implementation works: NVIDIA's maintained
``numba-cuda`` package (``pip install 'graphc[cuda]'``; it takes over the ``numba.cuda``
name) or the deprecated copy built into Numba. ``NUMBA_ENABLE_CUDASIM=1`` (set before
Numba is imported) runs the same kernels in Numba's CUDA simulator, without a GPU.

Data stays on the device: numba device arrays and any object with
``__cuda_array_interface__`` (CuPy, torch CUDA tensors) are used without a copy; host
arrays are copied once. ``fit`` keeps parameters, optimizer state, the sums and the loss
history on the device and copies back only the history and the final parameters.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import DTypeError, ShapeError, TargetError
from ..ir.graph import N, format_shape
from .binding import Result, as_float_array, check_names, pack_params, unpack

NO_GPU = (
    "target 'cuda' needs an NVIDIA GPU that numba.cuda can use, and none was found "
    "(numba.cuda.is_available() is False: no GPU, no driver, or no CUDA toolkit). "
    "Use target='parallel' to run on all CPU cores, or set NUMBA_ENABLE_CUDASIM=1 before "
    "numba is imported to run the CUDA kernels in Numba's (slow) simulator."
)


@dataclass
class Options:
    """Launch settings (environment: GRAPHC_CUDA_THREADS, GRAPHC_CUDA_BLOCKS, GRAPHC_CUDA_ONE_BLOCK_N)."""

    threads: int = 128  # threads per block, a power of two; baked into the generated source
    max_blocks: int | None = None  # grid size cap; None: 8 blocks per multiprocessor
    one_block_n: int = 32768  # fit runs ALL steps in one single-block launch up to this many samples


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else default


options = Options(_env_int("GRAPHC_CUDA_THREADS", 128), _env_int("GRAPHC_CUDA_BLOCKS", None),
                  _env_int("GRAPHC_CUDA_ONE_BLOCK_N", 32768))


def require() -> Any:
    """The ``numba.cuda`` module, or a TargetError saying why the cuda target cannot run."""
    try:
        from numba import cuda
    except ImportError as err:  # numba-cuda without its CUDA bindings, for one
        raise TargetError(f"target 'cuda': numba.cuda cannot be imported ({err}); "
                          "pip install 'graphc[cuda]', or use target='parallel'") from err
    if not cuda.is_available():
        raise TargetError(NO_GPU)
    return cuda


def simulated() -> bool:
    """True when numba.cuda is Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1 at import)."""
    from numba import config

    return bool(getattr(config, "ENABLE_CUDASIM", False)) or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


# ---- binding ------------------------------------------------------------------------------
def device_view(cuda: Any, value: Any) -> Any | None:
    """``value`` as a numba device array without a copy, or None if it lives on the host."""
    if cuda.devicearray.is_cuda_ndarray(value):
        return value
    if hasattr(value, "__cuda_array_interface__") and hasattr(cuda, "as_cuda_array"):  # not in the simulator
        return cuda.as_cuda_array(value)
    return None


def bind_device_data(cuda: Any, plan: Any, given: Mapping[str, Any], dtype: str) -> tuple[list[Any], int]:
    """Data arrays on the device in plan order (device inputs as they are) and the sample count."""
    arrays, n, n_from = [], None, None
    for node in plan.data:
        value = given[node.name]
        view = device_view(cuda, value)
        if view is not None and np.dtype(view.dtype) != np.dtype(dtype):
            raise DTypeError(f"input {node.name!r} is a device array of {np.dtype(view.dtype)}; target 'cuda' "
                             f"with dtype={dtype!r} needs {dtype} (convert it on the device, or pass dtype=)")
        arr = view if view is not None else as_float_array(node.name, value, dtype)
        shape = tuple(arr.shape)
        if len(shape) != node.ndim:
            raise ShapeError(f"input {node.name!r} has {len(shape)} dim(s) (shape {shape}); "
                             f"expected {node.ndim}: {format_shape(node.shape)}")
        for want, got in zip(node.shape, shape):
            if want is N and n is not None and got != n:
                raise ShapeError(f"input {node.name!r} has {got} samples but {n_from!r} has {n}; "
                                 "the sample dim must agree")
            if want is N:
                n, n_from = got, node.name
            elif want != got:
                raise ShapeError(f"input {node.name!r} has shape {shape}; expected {format_shape(node.shape)}")
        arrays.append(view if view is not None else cuda.to_device(arr))  # host data: copied once
    if n == 0:
        raise ShapeError(f"input {n_from!r} has 0 samples; graphc needs at least one")
    return arrays, n


def host_values(cuda: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter values on the host (they are small); device ones are copied back."""
    out = {}
    for name, value in given.items():
        view = device_view(cuda, value)
        out[name] = view.copy_to_host() if view is not None else value
    return out


# ---- launching ----------------------------------------------------------------------------
def blocks_for(cuda: Any, n: int | None, threads: int) -> int:
    cap = options.max_blocks
    if cap is None:
        cap = 8 if simulated() else 8 * cuda.get_current_device().MULTIPROCESSOR_COUNT
    return max(1, min(math.ceil((n or 1) / threads), cap))


class Workspace:
    """The device buffers one launch sequence needs: sums, block partials, tickets, gradient."""

    def __init__(self, cuda: Any, plan: Any, blocks: int) -> None:
        width = max((len(loop.accumulators) for loop in plan.lowered.loops), default=1)
        self.acc = cuda.to_device(np.zeros(max(1, len(plan.accumulators))))
        self.part = cuda.to_device(np.zeros((blocks, width)))
        self.nblocks = cuda.to_device(np.zeros(max(1, len(plan.lowered.loops)), dtype=np.int32))
        self.stopped = cuda.to_device(np.array([-1], dtype=np.int64))
        self.grad = cuda.to_device(np.zeros(max(1, plan.n_grads)))


def configured(compiled: Any, name: str, grid: int, threads: int) -> Any:
    """``kernel[grid, threads]`` of the generated module. Small grids are deliberate here (one
    block for small data), so Numba's low-occupancy warning for them is not shown."""
    if simulated() and compiled.module.__dict__.get("math") is math:
        compiled.module.math = IEEE_MATH  # the simulator runs the kernels as Python
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*Grid size \d+ will likely result in GPU under-utilization")
        return getattr(compiled.module, name)[grid, threads]


class _IeeeMath:
    """``math`` for kernels run by the simulator: where Python's ``math`` raises (log(-1),
    exp(1000), sqrt(-1)), a GPU returns NaN or inf, as numpy's functions do; and results are
    numpy scalars of the argument's type, so ``1/math.exp(-inf)`` is inf, not ZeroDivisionError."""

    NUMPY = {"asin": "arcsin", "acos": "arccos", "atan": "arctan", "atan2": "arctan2", "asinh": "arcsinh",
             "acosh": "arccosh", "atanh": "arctanh", "pow": "power"}

    def __getattr__(self, name: str) -> Any:
        fn = getattr(math, name)
        if not callable(fn):
            return fn

        def ieee(*args: Any) -> Any:
            try:
                out = fn(*args)
            except (ValueError, OverflowError, ZeroDivisionError):
                with np.errstate(all="ignore"):
                    out = getattr(np, self.NUMPY.get(name, name))(*args)
            if isinstance(out, bool) or not isinstance(out, (float, np.floating)):
                return out  # isfinite, floor's int, ...
            kind = np.float32 if args and all(isinstance(a, np.float32) for a in args) else np.float64
            return kind(out)

        setattr(self, name, ieee)
        return ieee


IEEE_MATH = _IeeeMath()


def _launch(compiled: Any, name: str, grid: int, threads: int, *args: Any) -> None:
    """Launch a kernel of the generated module; the first launch per signature is timed as 'numba'."""
    kernel = configured(compiled, name, grid, threads)
    key = ("cuda", name, tuple(getattr(a, "dtype", type(a)) for a in args))
    if key in compiled._warm:
        kernel(*args)
        return
    with compiled.timings.stage("numba"):
        kernel(*args)
        cuda_sync()
    compiled._warm.add(key)


def cuda_sync() -> None:
    from numba import cuda

    cuda.synchronize()


def _emitter_names(compiled: Any) -> tuple[int, dict[str, str]]:
    """Threads per block and the kernel names of the generated module (they avoid user names):
    the module's own table, ``KERNELS``."""
    names = compiled.module.KERNELS
    return int(getattr(compiled.module, names["THREADS"])), names


# ---- evaluation ---------------------------------------------------------------------------
def _bind(compiled: Any, given: Mapping[str, Any]) -> tuple[Any, list[Any], int | None, Any, int, dict[str, str]]:
    """numba.cuda, the data and the parameters on the device, the sample count, and the
    module's threads per block and kernel names: what every launch sequence starts with."""
    cuda = require()
    plan = compiled.plan
    check_names(plan, given, compiled.inputs + compiled.params)
    arrays, n = bind_device_data(cuda, plan, given, compiled.dtype)
    theta = cuda.to_device(pack_params(plan, host_values(cuda, {k: given[k] for k in plan.layout}), compiled.dtype))
    threads, names = _emitter_names(compiled)
    return cuda, arrays, n, theta, threads, names


def _passes(compiled: Any, count: int, names: dict[str, str], blocks: int, threads: int, arrays: list[Any],
            theta: Any, ws: Workspace) -> None:
    """The first ``count`` pass kernels: their sums go to ws.acc."""
    for k in range(count):
        _launch(compiled, names[f"pass_{k}"], blocks, threads, *arrays, theta, ws.acc, ws.part, ws.nblocks, ws.stopped)


def evaluate_device(compiled: Any, given: Mapping[str, Any]) -> tuple[Any, Any]:
    """Loss and gradient at the bound point, as device arrays ``(loss[1], grad[n_grads])``."""
    cuda, arrays, n, theta, threads, names = _bind(compiled, given)
    plan = compiled.plan
    blocks = blocks_for(cuda, n, threads) if plan.lowered.loops else 1
    ws = Workspace(cuda, plan, blocks)
    loss = cuda.to_device(np.zeros(1))
    _passes(compiled, len(plan.lowered.loops) - 1, names, blocks, threads, arrays, theta, ws)  # the last is in evaluate
    _launch(compiled, "evaluate", blocks, threads, *arrays, theta, ws.acc, ws.part, ws.nblocks, ws.stopped,
            ws.grad, loss)
    return loss, ws.grad


def evaluate(compiled: Any, given: Mapping[str, Any]) -> Result:
    """``Compiled.__call__`` for target 'cuda': the loss as a float, gradients as host values."""
    loss, grad = evaluate_device(compiled, given)
    host = grad.copy_to_host()[: compiled.plan.n_grads]
    return Result(float(loss.copy_to_host()[0]), unpack(compiled.plan, host, [p.name for p in compiled.plan.wrt]))


def forward(g: Any, given: Mapping[str, Any], shape_of: Callable[[Any, int | None], tuple]) -> list[np.ndarray]:
    """A forward function's outputs (``forward.Forward`` on target 'cuda'): every pass kernel,
    then the ``forward`` kernel; ``shape_of(node, n)`` is each output array's shape."""
    cuda, arrays, n, theta, threads, names = _bind(g, given)
    plan = g.plan
    blocks = blocks_for(cuda, n, threads)  # the store kernel visits the samples even without sums
    ws = Workspace(cuda, plan, blocks)
    results = [cuda.to_device(np.zeros(shape_of(node, n), dtype=g.dtype)) for node in plan.results]
    _passes(g, len(plan.lowered.loops), names, blocks, threads, arrays, theta, ws)
    _launch(g, "forward", blocks, threads, *arrays, theta, ws.acc, *results)
    return [r.copy_to_host() for r in results]


# ---- training ----------------------------------------------------------------------------
def trainer(compiled: Any, data: Mapping[str, Any]) -> tuple[Callable[..., int], int]:
    """A drop-in for the compiled cpu ``train`` (same arguments, same semantics) that runs on
    the GPU: the data is copied to the device once (device inputs not at all); each call
    copies theta and the optimizer state in and, with the logged losses, out again."""
    cuda = require()
    plan = compiled.plan
    arrays, n = bind_device_data(cuda, plan, data, compiled.dtype)
    threads, names = _emitter_names(compiled)
    one_block = not plan.lowered.loops or n <= options.one_block_n
    blocks = 1 if one_block else blocks_for(cuda, n, threads)
    ws = Workspace(cuda, plan, blocks)

    def train(theta: np.ndarray, hyper: np.ndarray, state: np.ndarray, count: int, steps: int,
              log_every: int, history: np.ndarray) -> int:
        slots, width = state.shape
        padded = np.zeros((max(1, slots), max(1, width)))  # no zero-size device arrays
        padded[:slots, :width] = state
        d_theta, d_state = cuda.to_device(theta), cuda.to_device(padded)
        d_hyper = cuda.to_device(hyper if hyper.size else np.zeros(1))
        d_history = cuda.to_device(np.zeros(max(1, history.size)))
        ws.stopped.copy_to_device(np.array([-1], dtype=np.int64))
        if steps and one_block:
            _launch(compiled, "train", 1, threads, *arrays, d_theta, ws.acc, ws.stopped, ws.grad, d_hyper, d_state,
                    count, steps, log_every, d_history)
        elif steps:
            _run_steps(compiled, names, blocks, threads, arrays, d_theta, ws, d_hyper, d_state, count, steps,
                       log_every, d_history)
        stopped = int(ws.stopped.copy_to_host()[0])  # waits for the last kernel
        theta[:] = d_theta.copy_to_host()
        state[:] = d_state.copy_to_host()[:slots, :width]
        history[:] = d_history.copy_to_host()[: history.size]
        return steps if stopped < 0 else stopped

    return train, n


def _run_steps(compiled: Any, names: dict, blocks: int, threads: int, arrays: list, theta: Any, ws: Workspace,
               hyper: Any, state: Any, count: int, steps: int, log_every: int, history: Any) -> None:
    """One launch per pass per step, queued without waiting: the host never reads the device."""
    passes = len(compiled.plan.lowered.loops)
    common = (*arrays, theta, ws.acc, ws.part, ws.nblocks, ws.stopped)
    _passes(compiled, passes - 1, names, blocks, threads, arrays, theta, ws)  # the first step compiles ('numba')
    _launch(compiled, names["train_step"], blocks, threads, *common, ws.grad, hyper, state, 0, count, log_every,
            history)
    kernels = [configured(compiled, names[f"pass_{k}"], blocks, threads) for k in range(passes - 1)]
    step_kernel = configured(compiled, names["train_step"], blocks, threads)
    for step in range(1, steps):
        for kernel in kernels:
            kernel(*common)
        step_kernel(*common, ws.grad, hyper, state, step, count, log_every, history)
