"""target='cuda' against target='cpu': the tutorial models, a small MLP, a two-pass loss.

Runs on a GPU or in Numba's CUDA simulator, in its own process (the variable must be set
before numba is imported):  NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda tests/test_cuda.py
The simulator runs one Python thread per GPU thread, so sizes are tiny: blocks of 32
threads, at most 4 blocks, a few hundred samples, a few steps; compiled objects are shared.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc.runtime import cuda as cuda_runtime

pytestmark = pytest.mark.cuda
N = 96  # 3 blocks of 32 threads
RTOL = 1e-9  # float64: cuda == cpu to this, relative to each quantity's scale


def _usable() -> bool:
    try:
        from numba import cuda

        return cuda.is_available()
    except Exception:  # numba-cuda without its bindings, a broken driver, ...
        return False


@pytest.fixture(scope="module", autouse=True)
def small_launches():
    """Skip without a GPU or the simulator; otherwise use tiny launches for the whole module."""
    if not _usable():
        pytest.skip("needs an NVIDIA GPU or NUMBA_ENABLE_CUDASIM=1 (set before numba is imported)")
    saved = (cuda_runtime.options.threads, cuda_runtime.options.max_blocks, cuda_runtime.options.one_block_n)
    cuda_runtime.options.threads, cuda_runtime.options.max_blocks = 32, 4
    yield
    cuda_runtime.options.threads, cuda_runtime.options.max_blocks, cuda_runtime.options.one_block_n = saved


@pytest.fixture
def many_blocks(monkeypatch):
    """fit launches one kernel per step over several blocks instead of the single-block loop."""
    monkeypatch.setattr(cuda_runtime.options, "one_block_n", 0)


# ---- the models -----------------------------------------------------------------------------
def _xy(n: int = N) -> dict:
    x = np.linspace(-math.pi, math.pi, n)
    return {"x": x, "y": np.sin(x)}


def cubic():
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    loss = gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)
    return loss, _xy(), {"a": 0.1, "b": 0.2, "c": -0.3, "d": 0.05}, 1e-4


def p3():
    P3 = gc.function("P3", lambda z: (5 * z**3 - 3 * z) / 2, derivative=lambda z: 1.5 * (5 * z**2 - 1))
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    loss = gc.sum((a + b * P3(c + d * x) - y) ** 2)
    return loss, _xy(), {"a": 0.0, "b": -1.0, "c": 0.0, "d": 0.3}, 1e-4


def linear():
    x, y = gc.data("x"), gc.data("y")
    lin = gc.nn.Linear(3, 1, name="lin")
    xx = x[:, None] ** np.array([1, 2, 3])
    loss = gc.nn.mse_loss(gc.flatten(lin(xx)), y, reduction="sum")
    return loss, _xy(), lin.init(0), 1e-4


def mlp():
    x, y = gc.data("x"), gc.data("y")
    l1, l2 = gc.nn.Linear(1, 8, name="l1"), gc.nn.Linear(8, 1, name="l2")
    loss = gc.nn.mse_loss(gc.flatten(l2(gc.tanh(l1(x[:, None])))), y, reduction="sum")
    return loss, _xy(), {**l1.init(1), **l2.init(2)}, 1e-3


def two_pass():
    """log(sum(..)): its gradient needs the whole sum first, so the plan has two passes."""
    x, y = gc.data("x"), gc.data("y")
    a, b = gc.params("a b")
    loss = gc.log(gc.sum(gc.exp(a * x))) + gc.sum((b * x - y) ** 2)
    return loss, _xy(), {"a": 0.3, "b": 0.5}, 1e-3


MODELS = {"cubic": cubic, "p3": p3, "linear": linear, "mlp": mlp, "two_pass": two_pass}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request):
    loss, data, init, lr = MODELS[request.param]()
    return request.param, loss, data, init, lr


@pytest.fixture(scope="module")
def compiled(model):
    _, loss, *_ = model
    return gc.compile(loss, target="cpu"), gc.compile(loss, target="cuda")


def assert_close(got, want, rtol=RTOL):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    scale = max(np.max(np.abs(want)), 1e-300)
    assert np.max(np.abs(got - want)) <= rtol * scale, (got, want)


def assert_same_grads(got: dict, want: dict, rtol=RTOL):
    """All values together, relative to the largest: a gradient that cancels to ~0 has no digits."""
    assert got.keys() == want.keys()
    flat = [np.concatenate([np.ravel(d[k]) for k in want]) for d in (got, want)]
    assert_close(*flat, rtol)


def assert_same_fit(got, want, rtol=RTOL):
    assert [t for t, _ in got.history] == [t for t, _ in want.history]
    assert_close([v for _, v in got.history], [v for _, v in want.history], rtol)
    assert_same_grads(got.params, want.params, rtol)
    assert got.steps == want.steps


# ---- evaluation ---------------------------------------------------------------------------------
def test_evaluate_matches_cpu(model, compiled):
    _, _, data, init, _ = model
    cpu, gpu = compiled
    want, got = cpu(**data, **init), gpu(**data, **init)
    assert_close(got.loss, want.loss)
    assert_same_grads(got.grads, want.grads)


def test_evaluate_is_deterministic(compiled, model):
    _, _, data, init, _ = model
    first, second = compiled[1](**data, **init), compiled[1](**data, **init)
    assert first.loss == second.loss
    for k in first.grads:
        assert np.array_equal(first.grads[k], second.grads[k])


# ---- training -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cubic", "p3", "linear", "mlp", "two_pass"])
def test_fit_one_block_matches_cpu(name):
    loss, data, init, lr = MODELS[name]()
    kw = dict(data=data, init=init, optimizer=gc.SGD(lr=lr), steps=4, log_every=1)
    assert_same_fit(gc.fit(loss, target="cuda", **kw), gc.fit(loss, **kw))


def test_fit_resumes_and_steps_like_cpu():
    """Resuming from res.state and stepping mode (callback) go through the same device loop."""
    loss, data, init, lr = MODELS["cubic"]()
    kw = dict(data=data, optimizer=gc.Adam(lr=1e-2), log_every=2, target="cuda")
    whole = gc.fit(loss, init=init, steps=6, **kw)
    half = gc.fit(loss, init=init, steps=3, **kw)
    rest = gc.fit(loss, init=half.params, state=half.state, steps=3, **kw)
    stepped = gc.fit(loss, init=init, steps=6, callback=lambda step, value, params: None, **kw)
    assert rest.params == whole.params and [t for t, _ in rest.history] == [3, 5]
    assert stepped.history == whole.history and stepped.params == whole.params
    cpu = gc.fit(loss, init=init, steps=6, **{**kw, "target": "cpu"})
    assert_same_fit(whole, cpu)


@pytest.mark.parametrize("name", ["cubic", "two_pass"])
def test_fit_many_blocks_matches_cpu(name, many_blocks):
    loss, data, init, lr = MODELS[name]()
    kw = dict(data=data, init=init, optimizer=gc.SGD(lr=lr, momentum=0.9), steps=3, log_every=1)
    got, want = gc.fit(loss, target="cuda", **kw), gc.fit(loss, **kw)
    assert_same_fit(got, want)
    assert_close(got.state["momentum_buffer"], want.state["momentum_buffer"])


def test_fit_is_deterministic(many_blocks):
    loss, data, init, lr = cubic()
    kw = dict(data=data, init=init, optimizer=gc.SGD(lr=lr), steps=2, log_every=1, target="cuda")
    first, second = gc.fit(loss, **kw), gc.fit(loss, **kw)
    assert first.history == second.history and first.params == second.params


def test_fit_adam_keeps_state_on_device():
    loss, data, init, _ = mlp()
    kw = dict(data=data, init=init, optimizer=gc.Adam(lr=1e-2), steps=5, log_every=2)
    got, want = gc.fit(loss, target="cuda", **kw), gc.fit(loss, **kw)
    assert_same_fit(got, want)
    for slot in ("exp_avg", "exp_avg_sq"):
        assert_close(got.state[slot], want.state[slot])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's numpy overflows on purpose
@pytest.mark.parametrize("blocks", ["one", "many"])
def test_nonfinite_loss_stops_where_cpu_does(blocks, monkeypatch):
    if blocks == "many":
        monkeypatch.setattr(cuda_runtime.options, "one_block_n", 0)
    loss, data, init, _ = cubic()
    kw = dict(data=data, init=init, optimizer=gc.SGD(lr=1e20), steps=20, log_every=1)
    with pytest.raises(gc.NonFiniteLoss) as want:
        gc.fit(loss, **kw)
    with pytest.raises(gc.NonFiniteLoss) as got:
        gc.fit(loss, target="cuda", **kw)
    got, want = got.value.result, want.value.result
    assert got.steps == want.steps < 20 and len(got.history) == len(want.history) == want.steps + 1
    assert not math.isfinite(got.history[-1][1])
    assert_close([v for _, v in got.history[:-1]], [v for _, v in want.history[:-1]])
    assert_same_grads(got.params, want.params)


# ---- float32 ---------------------------------------------------------------------------------
def test_float32_accumulates_in_float64():
    loss, data, init, lr = cubic()
    data = _xy(160)
    ref = gc.compile(loss)(**data, **init)
    got = gc.compile(loss, target="cuda", dtype="float32")(**data, **init)
    cpu32 = gc.compile(loss, dtype="float32")(**data, **init)
    assert_close(got.loss, cpu32.loss, 1e-6)
    assert_close(got.loss, ref.loss, 1e-5)
    assert_same_grads(got.grads, ref.grads, 1e-5)
    kw = dict(data=data, init=init, optimizer=gc.SGD(lr=lr), steps=3, log_every=1, dtype="float32")
    assert_same_fit(gc.fit(loss, target="cuda", **kw), gc.fit(loss, **kw), 1e-5)


# ---- device arrays in and out -----------------------------------------------------------------
def test_device_arrays_are_used_without_copy(monkeypatch):
    from numba import cuda

    loss, data, init, _ = cubic()
    on_device = {k: cuda.to_device(v) for k, v in data.items()}
    monkeypatch.setattr(cuda, "to_device", _refuse_data_copy(cuda.to_device, len(data["x"])))
    f = gc.compile(loss, target="cuda")
    assert_close(f(**on_device, **init).loss, gc.compile(loss)(**data, **init).loss)
    loss_dev, grad_dev = cuda_runtime.evaluate_device(f, {**on_device, **init})
    assert cuda.devicearray.is_cuda_ndarray(loss_dev) and cuda.devicearray.is_cuda_ndarray(grad_dev)
    res = gc.fit(loss, data=on_device, init=init, optimizer=gc.SGD(lr=1e-4), steps=2, log_every=1, target="cuda")
    assert res.steps == 2


def test_cuda_array_interface_objects_are_used_without_copy(monkeypatch):
    """CuPy arrays and torch CUDA tensors come in through __cuda_array_interface__ (GPU only)."""
    from numba import cuda

    if cuda_runtime.simulated():
        pytest.skip("the simulator has no __cuda_array_interface__")

    class Foreign:  # what CuPy or torch hands over: only the interface
        def __init__(self, array):
            self.__cuda_array_interface__ = array.__cuda_array_interface__

    loss, data, init, _ = cubic()
    on_device = {k: cuda.to_device(v) for k, v in data.items()}
    foreign = {k: Foreign(v) for k, v in on_device.items()}
    monkeypatch.setattr(cuda, "to_device", _refuse_data_copy(cuda.to_device, len(data["x"])))
    assert_close(gc.compile(loss, target="cuda")(**foreign, **init).loss, gc.compile(loss)(**data, **init).loss)


def _refuse_data_copy(to_device, n):
    def guarded(arr, *args, **kwargs):
        assert np.shape(arr) != (n,), "a data array was copied to the device again"
        return to_device(arr, *args, **kwargs)

    return guarded


def test_device_array_of_wrong_dtype_is_a_clear_error():
    from numba import cuda

    loss, data, init, _ = cubic()
    f = gc.compile(loss, target="cuda")
    with pytest.raises(gc.DTypeError, match="'x' is a device array of float32"):
        f(x=cuda.to_device(data["x"].astype(np.float32)), y=data["y"], **init)
    with pytest.raises(gc.ShapeError, match="'y' has 5 samples"):
        f(x=cuda.to_device(data["x"]), y=cuda.to_device(np.zeros(5)), **init)


# ---- generated source and errors ---------------------------------------------------------------
def test_source_is_readable():
    loss, *_ = mlp()
    src = gc.compile(loss, target="cuda").source
    assert "target=cuda" in src and "def sums_0(x, y, theta, acc, out):" in src
    assert "l1_weight_0_0 = theta[" in src and "# d(loss)/d(l2.bias[0])" in src
    for line in src.splitlines():
        assert line.count("cuda.shared.array") <= 1
    assert "cuda.atomic.add(nblocks" in src and "atomic.add(part" not in src  # no float atomics


def test_user_names_never_shadow_the_kernels():
    combine, block_sum = gc.data("combine"), gc.data("block_sum")
    THREADS = gc.param("THREADS")
    loss = gc.sum((THREADS * combine - block_sum) ** 2)
    data = {"combine": np.arange(40.0), "block_sum": np.ones(40)}
    f = gc.compile(loss, target="cuda")
    assert "def combine_(" in f.source and "THREADS_ = 32" in f.source
    assert_close(f(**data, THREADS=0.5).loss, gc.compile(loss)(**data, THREADS=0.5).loss)


def test_without_gpu_or_simulator_a_clear_error():
    code = textwrap.dedent("""
        import graphc as gc
        from numba import cuda
        if cuda.is_available():
            print("HAS-GPU")
            raise SystemExit
        x = gc.data("x"); a = gc.param("a")
        try:
            gc.compile(gc.sum((a * x) ** 2), target="cuda")
        except gc.TargetError as err:
            print("ERR", err)
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300).stdout
    if "HAS-GPU" in out:
        pytest.skip("a real GPU is present")
    assert out.startswith("ERR") and "target='parallel'" in out and "NUMBA_ENABLE_CUDASIM" in out, out


PTX_CHECK = """
import sys, importlib.util, types
from numba import cuda
try:  # the compile needs NVVM and NVRTC (numba-cuda[cu12] brings them), not a GPU
    import numba.cuda.dispatcher as dispatcher
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
    cuda.compile_ptx(lambda a: None, "void(float64[::1])", cc=(9, 0))
except Exception as err:
    print("NO-TOOLKIT", type(err).__name__, str(err)[:200])
    raise SystemExit
import graphc as gc
from graphc import codegen
from graphc.compile import Timings, make_plan

def kernels(loss, dtype, opt):
    plan = make_plan(loss, None, Timings())
    path = f"{sys.argv[1]}/ptx_{abs(hash((id(loss), dtype)))}.py"
    with open(path, "w") as f:
        f.write(codegen.emit(plan, "cuda", dtype, opt))
    spec = importlib.util.spec_from_file_location("ptx_" + str(abs(hash(path))), path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    data = [dtype + "[" + ", ".join([":"] * (d.ndim - 1) + ["::1"]) + "]" for d in plan.data]
    f1, f2, th = "float64[::1]", "float64[:, ::1]", dtype + "[::1]"
    common = data + [th, f1, f2, "int32[::1]", "int64[::1]"]
    sigs = {"evaluate": common + [f1, f1], "train_step": common + [f1, f1, f2, "int64", "int64", "int64", f1],
            "train": data + [th, f1, "int64[::1]", f1, f1, f2, "int64", "int64", "int64", f1]}
    sigs.update({f"pass_{k}": common for k in range(len(plan.lowered.loops) - 1)})
    for name, args in sigs.items():
        ptx, _ = cuda.compile_ptx(getattr(module, name).py_func, "void(" + ", ".join(args) + ")", cc=(9, 0))
        assert ".atom.global.add.f" not in ptx and "atom.global.add.f" not in ptx, "float atomics"
        print("ok", dtype, name)

x, y = gc.data("x"), gc.data("y")
a, b, c, d = gc.params("a b c d")
kernels(gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2), "float32", gc.Adam(lr=1e-3))
kernels(gc.log(gc.sum(gc.exp(a * x))) + gc.sum((b * x - y) ** 2), "float64", gc.SGD(lr=1e-3, momentum=0.9))
l1, l2 = gc.nn.Linear(1, 8, name="l1"), gc.nn.Linear(8, 1, name="l2")
kernels(gc.nn.mse_loss(gc.flatten(l2(gc.tanh(l1(x[:, None])))), y, reduction="sum"), "float64", gc.SGD(lr=1e-3))
print("PTX-OK")
"""


def test_kernels_lower_to_ptx_for_a_real_gpu(tmp_path):
    """The simulator runs the kernels as Python; this compiles them with NVVM for sm_90, which
    catches CUDA typing and lowering errors without a GPU (skipped without NVVM and NVRTC)."""
    if not cuda_runtime.simulated():
        pytest.skip("on a GPU the other tests compile and run the kernels")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["GRAPHC_CACHE_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", PTX_CHECK, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    if proc.stdout.startswith("NO-TOOLKIT"):
        pytest.skip("no NVVM/NVRTC to compile with: " + proc.stdout.strip())
    assert "PTX-OK" in proc.stdout, proc.stdout + proc.stderr


def test_forward_function_on_the_gpu_matches_numpy():
    """gc.compile of arrays on target='cuda' (issue #19): a pass kernel for the sums, then the
    forward kernel stores each sample's outputs; checked against numpy's formulas."""
    X = gc.data("X", shape=(None, 3))
    W, b = gc.param("W", (2, 3)), gc.param("b", (2,))
    z = gc.tanh(X @ W.T + b)
    rng = np.random.default_rng(0)
    Xs, Ws, bs = rng.standard_normal((N, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)
    centred, total, twice = gc.compile((z - gc.mean(z, axis=0), gc.sum(z), W * 2.0), target="cuda")(
        X=Xs, W=Ws, b=bs).value
    want = np.tanh(Xs @ Ws.T + bs)
    np.testing.assert_allclose(centred, want - want.mean(axis=0), rtol=RTOL, atol=1e-14)
    assert total == pytest.approx(want.sum(), rel=RTOL)
    np.testing.assert_array_equal(twice, 2.0 * Ws)
    x = gc.data("x")
    out = gc.compile(gc.maximum(x, 0.0) * 2.0, target="cuda")(x=np.array([np.nan, -1.0, np.inf, 3.0])).value
    np.testing.assert_array_equal(out, [np.nan, 0.0, np.inf, 6.0])
