"""cpu vs parallel: same math, block-ordered sums, same bits for any thread count."""

import numba
import numpy as np
import pytest

import graphc as gc


@pytest.fixture(scope="module")
def big():
    rng = np.random.default_rng(3)
    x = rng.uniform(-np.pi, np.pi, 2_000_003)
    return x, np.sin(x) + 0.01 * rng.standard_normal(x.size)


@pytest.fixture(scope="module")
def cubic_parallel(cubic):
    return gc.compile(cubic, target="parallel")


P = dict(a=0.1, b=0.8, c=-0.02, d=-0.09)


def test_parallel_equals_cpu(big, cubic_cpu, cubic_parallel):
    x, y = big
    r_cpu = cubic_cpu(x=x, y=y, **P)
    r_par = cubic_parallel(x=x, y=y, **P)
    assert r_par.loss == pytest.approx(r_cpu.loss, rel=1e-10)
    for k in P:
        assert r_par.grads[k] == pytest.approx(r_cpu.grads[k], rel=1e-10)
    # and both agree with numpy
    pred = P["a"] + P["b"] * x + P["c"] * x**2 + P["d"] * x**3
    assert r_cpu.loss == pytest.approx(np.sum((pred - y) ** 2), rel=1e-10)


def test_parallel_bits_do_not_depend_on_thread_count(big, cubic_parallel):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    x, y = big
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = cubic_parallel(x=x, y=y, **P)
        numba.set_num_threads(2)
        two = cubic_parallel(x=x, y=y, **P)
    finally:
        numba.set_num_threads(before)
    assert one.loss == two.loss and one.grads == two.grads


def test_repeated_calls_give_identical_bits(big, cubic_cpu):
    x, y = big[0][:10_000], big[1][:10_000]
    assert cubic_cpu(x=x, y=y, **P) == cubic_cpu(x=x, y=y, **P)


def test_parallel_small_input_uses_the_serial_loop(sine_data, cubic_cpu, cubic_parallel):
    x, y = sine_data
    assert cubic_parallel(x=x, y=y, **P) == cubic_cpu(x=x, y=y, **P)


def test_float32_data_accumulates_in_float64(cubic):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, 1_000_000).astype(np.float32)
    y = rng.uniform(-1, 1, 1_000_000).astype(np.float32)
    r = gc.compile(cubic, dtype="float32")(x=x, y=y, **P)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    pred = P["a"] + P["b"] * x64 + P["c"] * x64**2 + P["d"] * x64**3
    # float32 parameters round P; float64 accumulation keeps the sum itself accurate
    assert r.loss == pytest.approx(np.sum((pred - y64) ** 2), rel=1e-6)


def test_unknown_target_and_dtype(cubic):
    with pytest.raises(gc.TargetError, match="gpu"):
        gc.compile(cubic, target="gpu")
    with pytest.raises(gc.TargetError, match="float16"):
        gc.compile(cubic, dtype="float16")


# ---- the target registry (graphc/targets.py) --------------------------------------------------
def test_every_target_prints_every_schedule_it_lists():
    from graphc import targets
    from graphc.codegen.cpu import CpuEmitter

    for target in targets.TARGETS.values():
        assert "fused" in target.schedules
        for schedule in target.schedules:
            assert issubclass(target.emitter(schedule), CpuEmitter)
    with pytest.raises(gc.TargetError, match="runs fused"):
        targets.get("cuda").emitter("blocked")
    with pytest.raises(gc.TargetError, match="choose one of cpu, parallel, cuda"):
        targets.get("gpu")


def test_no_code_outside_the_registry_compares_target_names():
    """Callers ask the registry for a capability; ``target == "cuda"`` would bypass it."""
    import ast
    import pathlib

    import graphc

    found = []
    for path in pathlib.Path(graphc.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                named = any(isinstance(s, ast.Name) and s.id == "target" or isinstance(s, ast.Attribute)
                            and s.attr == "target" for s in sides)
                literal = any(isinstance(s, ast.Constant) and s.value in ("cpu", "parallel", "cuda") or
                              isinstance(s, ast.Tuple) for s in sides)
                if named and literal:
                    found.append(f"{path.name}:{node.lineno}")
    assert not found, found
