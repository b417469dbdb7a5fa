"""The warm path (issue #18): a graph compiled in this process is not built, hashed or read
again, and a memo hit never hands back a function made for another graph, dtype, shape,
target, schedule, parameter set or optimizer structure. No timings are asserted here (the
benchmarks measure speed: benchmarks/bench_latency.py)."""

from __future__ import annotations

import dataclasses
import random
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.runtime import loader, binding as runtime
from graphc.training import optim
from graphc.planning import plancache
from graphc.planning.plancache import optimizer_key
from graphc.runtime.binding import Binder, bind_data, pack_params

from . import references as ref

INIT = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}
compile_module = sys.modules["graphc.compile"]  # graphc.compile is the function


@pytest.fixture
def refuse(monkeypatch):
    """After ``refuse()``, building a plan, reading a cache or making a Binder fails the test."""

    def arm():
        def fail(*args, **kwargs):
            raise AssertionError("the warm path built, hashed or read something again")

        monkeypatch.setattr(plancache, "get", fail)  # fingerprint, disk read, SymPy, codegen
        monkeypatch.setattr(loader, "load", fail)  # reading the generated module
        monkeypatch.setattr(runtime.Binder, "__init__", fail)  # the argument checks

    return arm


def cubic_loss():
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    return gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)


def test_a_second_compile_and_call_do_no_work(sine_data, refuse):
    x, y = sine_data
    loss = cubic_loss()
    first = gc.compile(loss)
    expected = first(x=x, y=y, **INIT)
    refuse()
    again = gc.compile(loss)
    assert again.timings["plan"] == "memo" and again.module is first.module and again.plan is first.plan
    r = again(x=x, y=y, **INIT)
    assert r.loss == expected.loss and r.grads == expected.grads
    loss_ref, grads_ref = ref.cubic({k: np.float64(v) for k, v in INIT.items()})
    assert r.loss == pytest.approx(loss_ref, rel=1e-12)
    assert r.grads == pytest.approx(grads_ref, rel=1e-12)


def test_a_new_learning_rate_does_not_recompile(sine_data, refuse):
    x, y = sine_data
    loss = cubic_loss()
    gc.fit(loss, data={"x": x, "y": y}, init=INIT, optimizer=gc.SGD(lr=1e-6), steps=5)
    refuse()
    res = gc.fit(loss, data={"x": x, "y": y}, init=INIT, optimizer=gc.SGD(lr=2e-6), steps=30, log_every=10)
    assert res.compiled.timings["plan"] == "memo" and res.optimizer == gc.SGD(lr=2e-6)
    _, expected = ref.sgd(ref.cubic, INIT, 2e-6, 30, log_every=10)
    np.testing.assert_allclose([v for _, v in res.history], [v for _, v in expected], rtol=1e-12)


def test_a_warm_fit_gives_the_bits_of_a_cold_one(sine_data):
    x, y = sine_data
    loss = cubic_loss()
    args = dict(data={"x": x, "y": y}, init=INIT, optimizer=gc.Adam(lr=1e-2), steps=50, log_every=7)
    cold = gc.fit(loss, **args)
    warm = gc.fit(loss, **args)
    assert warm.compiled.timings["plan"] == "memo"
    assert warm.params == cold.params and warm.history == cold.history
    assert all(np.array_equal(warm.state[k], cold.state[k]) for k in cold.state)


def test_another_optimizer_structure_is_another_loop(sine_data):
    x, y = sine_data
    loss = cubic_loss()
    data = {"x": x, "y": y}
    plain = gc.fit(loss, data=data, init=INIT, optimizer=gc.SGD(lr=1e-6), steps=20)
    momentum = gc.fit(loss, data=data, init=INIT, optimizer=gc.SGD(lr=1e-6, momentum=0.9), steps=20)
    nesterov = gc.fit(
        loss, data=data, init=INIT, optimizer=gc.SGD(lr=1e-6, momentum=0.9, nesterov=True), steps=20
    )
    assert len({plain.compiled.module, momentum.compiled.module, nesterov.compiled.module}) == 3
    assert momentum.compiled.timings["plan"] != "memo" and nesterov.compiled.timings["plan"] != "memo"
    assert momentum.params != plain.params and nesterov.params != momentum.params
    assert list(momentum.state) == ["count", "momentum_buffer"]


def test_another_graph_dtype_target_schedule_or_wrt_is_another_function(sine_data):
    x, y = sine_data
    loss = cubic_loss()
    base = gc.compile(loss)
    a = next(p for p in gc.Graph.from_outputs(loss).params if p.name == "a")
    variants = {
        "float32": gc.compile(loss, dtype="float32"),
        "parallel": gc.compile(loss, target="parallel"),
        "wrt": gc.compile(loss, wrt=[a]),
        "same maths, another graph": gc.compile(cubic_loss()),
    }
    assert all(v.timings["plan"] != "memo" for v in variants.values())
    assert variants["float32"].dtype == "float32" and variants["parallel"].target == "parallel"
    assert variants["float32"].module is not base.module and variants["parallel"].module is not base.module
    assert list(variants["wrt"](x=x, y=y, **INIT).grads) == ["a"]
    r64, r32 = base(x=x, y=y, **INIT), variants["float32"](x=x, y=y, **INIT)
    assert r32.loss == pytest.approx(r64.loss, rel=1e-5) and r32.loss != r64.loss
    assert variants["parallel"](x=x, y=y, **INIT).loss == pytest.approx(r64.loss, rel=1e-12)
    assert gc.compile(loss, dtype="float32").timings["plan"] == "memo"  # each variant is memoized too

    other = gc.sum((a - 2.0 * gc.data("x")) ** 2)  # a new graph with the same names
    assert gc.compile(other)(x=x, a=0.5).loss == pytest.approx(float(np.sum((0.5 - 2 * x) ** 2)), rel=1e-12)


def test_a_schedule_or_batches_change_the_loop():
    X, y = gc.data("X", shape=(None, 3)), gc.data("y")
    lin = gc.nn.Linear(3, 1, name="lat_lin")
    loss = gc.nn.mse_loss(gc.flatten(lin(X)), y, reduction="sum")
    fused, blocked = gc.compile(loss, schedule="fused"), gc.compile(loss, schedule="blocked")
    assert (fused.schedule, blocked.schedule) == ("fused", "blocked") and fused.module is not blocked.module
    rng = np.random.default_rng(0)
    data = {"X": rng.standard_normal((64, 3)), "y": rng.standard_normal(64)}
    init = {"lat_lin.weight": np.full((1, 3), 0.1), "lat_lin.bias": np.zeros(1)}
    assert fused(**data, **init).loss == pytest.approx(blocked(**data, **init).loss, rel=1e-12)
    whole = gc.fit(loss, data=data, init=init, optimizer=gc.SGD(lr=1e-3), steps=4)
    batched = gc.fit(loss, data=data, init=init, optimizer=gc.SGD(lr=1e-3), steps=4, batch_size=16)
    assert whole.compiled.module is not batched.compiled.module
    assert hasattr(batched.compiled.module, "train_batches")


def test_a_new_shape_is_checked_on_the_warm_path():
    X, y = gc.data("X", shape=(None, 3)), gc.data("y")
    w = gc.param("w_shape", shape=(3,))
    loss = gc.sum((X @ w - y) ** 2)
    f = gc.compile(loss)
    rng = np.random.default_rng(1)
    Xs, ys, ws = rng.standard_normal((50, 3)), rng.standard_normal(50), np.array([0.5, -1.0, 2.0])
    assert f(X=Xs, y=ys, w_shape=ws).loss == pytest.approx(float(np.sum((Xs @ ws - ys) ** 2)), rel=1e-12)
    warm = gc.compile(loss)
    assert warm.timings["plan"] == "memo"
    cases = [
        dict(X=rng.standard_normal((50, 4)), y=ys, w_shape=ws),  # a fixed dim
        dict(X=Xs[:, 0].copy(), y=ys, w_shape=ws),  # ndim
        dict(X=Xs, y=ys[:40], w_shape=ws),  # the sample dims disagree
        dict(X=Xs[:0], y=ys[:0], w_shape=ws),  # no samples
        dict(X=Xs, y=ys, w_shape=np.ones(4)),  # a parameter's shape
    ]
    for given in cases:
        with pytest.raises(gc.ShapeError) as warm_error:
            warm(**given)
        with pytest.raises(gc.ShapeError) as general:  # the general checks, as before the fast path
            bind_data(f.plan, given, "float64")
            pack_params(f.plan, given, "float64")
        assert str(warm_error.value) == str(general.value)
    wrong_names = [({"X": Xs, "y": ys}, "missing"), ({"X": Xs, "y": ys, "w_shape": ws, "z": 1.0}, "unknown")]
    for given, match in wrong_names:
        with pytest.raises(gc.BindingError, match=match):
            warm(**given)
    # what the fast path does not take goes through the conversions: the same values
    odd = dict(X=np.asfortranarray(Xs), y=ys.astype(np.float32), w_shape=[0.5, -1.0, 2.0])
    assert warm(**odd).loss == pytest.approx(
        f(X=Xs, y=ys.astype(np.float32).astype(float), w_shape=ws).loss, rel=1e-12
    )


BINDINGS = {
    "C float64": lambda x: x,
    "float32": lambda x: x.astype(np.float32),
    "int": lambda x: np.arange(len(x)),
    "list": lambda x: list(x),
    "strided": lambda x: np.repeat(x, 2)[::2],
    "read-only": lambda x: np.frombuffer(x.tobytes()),
    "broadcast": lambda x: np.broadcast_to(np.float64(0.5), x.shape),
}


@pytest.mark.parametrize("kind", list(BINDINGS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_binder_returns_what_the_general_checks_return(sine_data, kind, dtype):
    x, y = sine_data
    f = gc.compile(cubic_loss(), dtype=dtype)
    binder = Binder(f.plan, dtype)
    data = {"x": BINDINGS[kind](x), "y": y}
    arrays, n = binder.data(data)
    expected, m = bind_data(f.plan, data, dtype)
    assert n == m and all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(arrays, expected))
    assert [a is data["x"] for a in arrays[:1]] == [b is data["x"] for b in expected[:1]]
    for init in (INIT, {k: np.float64(v) for k, v in INIT.items()}, {**INIT, "a": 1, "b": True}):
        theta = binder.theta(init)
        assert theta.dtype == np.dtype(dtype) and np.array_equal(theta, pack_params(f.plan, init, dtype))
    assert f(**data, **INIT) == f._call({**data, **INIT})  # the general path, which checks everything


def test_a_new_numba_signature_on_the_warm_path_is_timed_as_numba(sine_data):
    x, y = sine_data
    p = gc.param("p_read_only")  # a module of its own: no other test called it read-only
    loss = gc.sum((p * gc.data("x") - gc.data("y")) ** 2)
    gc.compile(loss)(x=x, y=y, p_read_only=0.5)
    warm = gc.compile(loss)
    frozen = x.copy()
    frozen.setflags(write=False)  # a read-only array is another Numba signature
    assert warm(x=frozen, y=y, p_read_only=0.5).loss == gc.compile(loss)(x=x, y=y, p_read_only=0.5).loss
    assert "numba" in warm.timings


def test_clearing_the_cache_or_losing_the_module_ends_the_memo(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    loss = cubic_loss()
    first = gc.compile(loss)
    assert gc.compile(loss).timings["plan"] == "memo"
    loader.clear_cache()
    assert gc.compile(loss).timings["plan"] == "miss"  # rebuilt and stored again
    sys.modules.pop(first.module.__name__)  # as test_cache.py's "new process"
    assert gc.compile(loss).timings["plan"] == "hit"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "other"))
    assert gc.compile(loss).timings["plan"] == "miss"
    compile_module.forget()
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    assert gc.compile(loss).timings["plan"] == "hit"


def test_the_memo_lives_as_long_as_the_graph(sine_data):
    """A model built anew per data set (one fit each) must not keep every old graph alive."""
    import copy
    import gc as collector
    import weakref

    x, y = sine_data
    loss = cubic_loss()
    gc.fit(loss, data={"x": x, "y": y}, init=INIT, optimizer=gc.SGD(lr=1e-6), steps=2)
    assert gc.compile(loss)(x=x, y=y, **INIT).loss > 0
    assert copy.deepcopy(loss).__dict__.get("_graphc_memo") == {}  # never copied with it
    ref = weakref.ref(loss)
    del loss
    collector.collect()
    assert ref() is None


def _numbers(cls, seed: int) -> dict:
    """Values for every number of ``cls``: random, non-zero, valid."""
    rnd = random.Random(seed)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in ("step_size", "T_max"):
            out[f.name] = rnd.randint(1, 50)
        elif f.name == "betas":
            out[f.name] = (rnd.uniform(0.01, 0.99), rnd.uniform(0.01, 0.99))
        elif f.type in ("float", float):
            out[f.name] = rnd.uniform(0.01, 0.99)
    return out


OPTIMIZER_CASES = [
    (name, extra)
    for name in optim.OPTIMIZERS
    for extra in (
        {},
        {"momentum": 0.0},
        {"weight_decay": 0.0},
        {"nesterov": True},
        {"centered": True},
        {"lr_decay": 0.0},
        {"schedule": "StepLR"},
        {"schedule": "CosineAnnealingLR"},
        {"schedule": "ExponentialLR"},
    )
    if all(k in {f.name for f in dataclasses.fields(optim.OPTIMIZERS[name])} for k in extra)
]


@pytest.mark.parametrize("name, extra", OPTIMIZER_CASES)
def test_the_optimizer_key_stands_for_its_structure(name, extra):
    """optimizer_key puts optimizers with the same zeros and flags in one loop: their update
    expressions (what the plan cache keys on) are indeed the same; a zero turned on is not."""
    cls = optim.OPTIMIZERS[name]

    def make(seed: int, zeros: dict) -> optim.Optimizer:
        kwargs = {**_numbers(cls, seed), **extra, **zeros}
        if kwargs.get("nesterov"):
            kwargs["dampening"] = 0.0
        if isinstance(kwargs.get("schedule"), str):
            sched = optim.SCHEDULES[kwargs["schedule"]]
            kwargs["schedule"] = sched(**_numbers(sched, seed))
        return cls(**kwargs)

    one, two = make(1, {}), make(2, {})
    assert one != two and optimizer_key(one) == optimizer_key(two)
    assert one.structure() == two.structure()
    for field in [f for f in _numbers(cls, 0) if f not in ("lr", "betas", "eps")]:
        try:
            zero = make(3, {field: 0.0})
        except gc.GraphcError:  # nesterov without momentum
            continue
        if zero.structure() != one.structure():
            assert optimizer_key(zero) != optimizer_key(one)


def test_any_other_optimizer_is_its_own_key():
    class Mine(optim.SGD):
        pass

    assert optimizer_key(Mine(lr=0.1)) != optimizer_key(Mine(lr=0.2))
    assert optimizer_key(Mine(lr=0.1)) == optimizer_key(Mine(lr=0.1))
    assert optimizer_key(Mine(lr=0.1)) != optimizer_key(gc.SGD(lr=0.1))


def test_plans_live_as_long_as_their_graph():
    """make_plan's memo (gradients and plans per loss) is kept on the loss node: a graph built
    anew per data set is freed with its plans, as the Compiled memo is."""
    import gc as pygc
    import weakref

    from graphc.compile import Timings, make_plan

    def build():
        x = gc.data("x")
        a = gc.param("a")
        return gc.sum((a * x - 1.0) ** 2)

    loss = build()
    make_plan(loss, None, Timings())
    gc.compile(loss * loss.inputs[0])  # a forward function of it too
    ref = weakref.ref(loss)
    del loss
    pygc.collect()
    assert ref() is None
