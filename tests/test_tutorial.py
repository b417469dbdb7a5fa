"""The five tutorial programs in examples/, each against a plain-numpy run of the same math."""

import importlib.util
import pathlib

import numpy as np
import pytest

from . import references as ref

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_history_close(history, expected, rtol=1e-9):
    assert [t for t, _ in history] == [t for t, _ in expected]
    got, want = np.array([v for _, v in history]), np.array([v for _, v in expected])
    np.testing.assert_allclose(got, want, rtol=rtol)


def test_polynomial_manual_gradients():
    init, res = load("01_polynomial").main(verbose=False)
    params, history = ref.sgd(ref.cubic, init, 1e-6, 2000)
    assert_history_close(res.history, history)
    for k in "abcd":
        assert res.params[k] == pytest.approx(float(params[k]), rel=1e-9)
    assert history[-1][1] < 15  # it really fits: the tutorial ends near 9-10


@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_tensors_form_in_float64(target):
    init, res = load("02_tensors_float32").main(target=target, dtype="float64", verbose=False)
    _, history = ref.sgd(ref.cubic, init, 1e-6, 2000)
    assert_history_close(res.history, history)


def test_tensors_form_in_float32_stays_close():
    init, res = load("02_tensors_float32").main(verbose=False)
    _, history = ref.sgd(ref.cubic, init, 1e-6, 2000)
    assert_history_close(res.history, history, rtol=1e-4)


def test_autograd_form():
    init, params, history = load("03_autograd").main(verbose=False)
    expected_params, expected = ref.sgd(ref.cubic, init, 1e-6, 2000)
    assert_history_close(history, expected)


@pytest.mark.parametrize("derivative", ["sympy", "given"])
def test_custom_function_form(derivative):
    init, res = load("04_custom_function").main(derivative=derivative, verbose=False)
    _, history = ref.sgd(ref.legendre, init, 5e-6, 2000)
    assert_history_close(res.history, history)
    assert history[-1][1] < 15


def test_nn_linear_form():
    init, res = load("05_nn_linear").main(verbose=False)
    params, history = ref.sgd(ref.linear, init, 1e-6, 2000)
    assert_history_close(res.history, history)
    np.testing.assert_allclose(res.params["lin.weight"], params["lin.weight"], rtol=1e-9)
    assert res.params["lin.weight"].shape == (1, 3) and res.params["lin.bias"].shape == (1,)
