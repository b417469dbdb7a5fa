"""What a newcomer hit (issue #19 item 7), one regression test each. One small model: its
evaluate and training loops compile once for the file (float32 once more)."""

import pathlib
import re
import subprocess

import numpy as np
import pytest

import graphc as gc

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def line():
    x, y = gc.data("x"), gc.data("y")
    a, b = gc.params("a b")
    loss = gc.sum((a + b * x - y) ** 2)
    xs = np.linspace(-1.0, 1.0, 50)
    return loss, {"x": xs, "y": 2 * xs + 1}, {"a": 0.0, "b": 0.0}


def test_an_optimizer_class_says_to_make_an_instance(line):
    loss, data, init = line
    for cls in (gc.Adam, gc.SGD):
        name = cls.__name__
        with pytest.raises(gc.GraphcError, match=rf"optimizer={name} is a class.*gc\.{name}\(lr=\.\.\.\)"):
            gc.fit(loss, data, init, optimizer=cls, steps=5)


def test_fewer_steps_than_log_every_still_log_the_last_step(line):
    loss, data, init = line
    res = gc.fit(loss, data, init, optimizer=gc.SGD(lr=1e-3), steps=10)  # log_every=100
    assert [t for t, _ in res.history] == [9] and res.loss == res.history[-1][1]
    every = gc.fit(loss, data, init, optimizer=gc.SGD(lr=1e-3), steps=10, log_every=1)
    assert res.history == every.history[-1:] and res.params == every.params
    off_grid = gc.fit(loss, data, init, optimizer=gc.SGD(lr=1e-3), steps=25, log_every=10)
    assert [t for t, _ in off_grid.history] == [9, 19, 24]
    seen = []
    stepped = gc.fit(loss, data, init, optimizer=gc.SGD(lr=1e-3), steps=25, log_every=10,
                     callback=lambda t, value, params: seen.append(t))
    assert stepped.history == off_grid.history and seen == [9, 19, 24]
    assert gc.fit(loss, data, init, optimizer=gc.SGD(lr=1e-3), steps=0).history == []


def test_a_non_finite_start_says_where_it_comes_from(line):
    loss, data, init = line
    y = data["y"].copy()
    y[7] = np.nan
    with pytest.raises(gc.NonFiniteLoss, match=r"step 0.*non-finite values: data 'y'"):
        gc.fit(loss, {**data, "y": y}, init, steps=5)
    with pytest.raises(gc.NonFiniteLoss, match=r"non-finite values: init 'b'"):
        gc.fit(loss, data, {"a": 0.0, "b": np.inf}, steps=5)
    with pytest.raises(gc.NonFiniteLoss, match=r"Data and initial values are finite.*overflow") as err:
        gc.fit(loss, {**data, "x": data["x"] * 1e200}, {"a": 0.0, "b": 1e200}, steps=5)
    assert err.value.result.params == {"a": 0.0, "b": 1e200}
    with pytest.raises(gc.NonFiniteLoss) as err:  # diverging later: no word about the start
        gc.fit(loss, data, init, optimizer=gc.SGD(lr=10.0), steps=500)
    assert "started" not in str(err.value) and "finite, so" not in str(err.value)


def test_a_numpy_array_of_the_samples_in_a_graph_suggests_gc_data():
    X, w, b = gc.data("X", shape=(None, 3)), gc.param("w", (3,)), gc.param("b")
    ys = np.ones(100)
    with pytest.raises(gc.ShapeError, match=r"cannot broadcast .*\(N,\) with .*\(100,\).*gc\.data\("):
        X @ w + b - ys
    with pytest.raises(gc.ShapeError) as err:  # no sample dim involved: no hint
        gc.param("W", (2, 3)) + np.ones(4)
    assert "gc.data" not in str(err.value)


def test_numpy_dtypes_are_accepted_where_dtype_strings_are(line):
    loss, data, init = line
    f = gc.compile(loss, dtype=np.float32)
    assert f.dtype == "float32" and f.source == gc.compile(loss, dtype="float32").source
    assert gc.compile(loss, dtype=np.dtype("float64")).dtype == "float64"
    res = gc.fit(loss, data, init, optimizer=gc.SGD(lr=1e-3), steps=10, dtype=np.float32)
    assert res.dtype == "float32"
    with pytest.raises(gc.TargetError, match="choose float64 or float32"):
        gc.compile(loss, dtype=np.int32)
    with pytest.raises(gc.TargetError, match="choose float64 or float32"):
        gc.fit(loss, data, init, steps=1, dtype=np.float16)


def test_readme_says_how_to_run_the_command_and_the_shadowing_trap():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert ".venv/bin/graphc" in readme and "python -m\ngraphc" in readme.replace("`", "")
    assert "namespace package" in readme and "no attribute" in readme


def test_examples_write_to_an_ignored_outputs_folder():
    for name in ("training", "optimizers"):
        text = (ROOT / "examples" / f"{name}.py").read_text(encoding="utf-8")
        assert re.search(r'else "outputs"\)', text), name
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["outputs/cubic_checkpoint.npz", "outputs/training_history.png", "bench-results/results.md"]
    out = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.split() == paths
