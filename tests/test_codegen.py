"""Generated source: one fused loop, no temporaries, readable names and comments."""

import re

import numpy as np
import pytest

import graphc as gc


def body_of(source, name):
    start = source.index(f"def {name}(")
    end = source.find("\n@numba", start)
    return source[start:] if end < 0 else source[start:end]


def test_cubic_is_one_loop_with_scalar_accumulators(cubic_cpu):
    src = cubic_cpu.source
    loop = body_of(src, "sums_0")
    evaluate = body_of(src, "evaluate")  # the same lines, so that evaluate is one function
    assert loop.count("for i in range(") == 1 and evaluate.count("for i in range(") == 1
    assert "sums_0(" not in evaluate and "finish(" not in evaluate
    sums = [line.strip() for line in loop.splitlines() if "+=" in line]
    assert sums and sums == [line.strip() for line in evaluate.splitlines() if "+=" in line]
    assert "np.empty" not in loop and "np.zeros" not in loop  # no temporary arrays
    for name in ["loss", "grad_a", "grad_b", "grad_c", "grad_d"]:
        assert f"    {name} = 0.0" in loop and f"{name} += " in loop
    assert "x_i = x[i]" in loop and "y_i = y[i]" in loop
    code = "\n".join(line.split("#")[0] for line in loop.splitlines())
    assert "x_i*x_i*x_i" in code and "**" not in code  # powers as products
    assert "# loss = sum((a + b*x + c*x**2 + d*x**3 - y)**2)" in src
    assert re.search(r"source-sha256=[0-9a-f]{16}", src)
    assert 'fastmath={"reassoc", "contract"}' in src and 'error_model="numpy"' in src


def test_cse_shares_the_residual_between_loss_and_gradients(cubic_cpu):
    loop = body_of(cubic_cpu.source, "sums_0")
    residual = re.search(r"(t\d+) = a \+ b\*x_i \+ c\*t\d+ \+ d\*t\d+ - y_i", loop)
    assert residual, loop
    assert loop.count("a + b*x_i") == 1


def test_layer_parameters_are_spelled_as_identifiers():
    x, y = gc.data("x"), gc.data("y")
    lin = gc.nn.Linear(3, 1, name="lin")
    loss = gc.nn.mse_loss(gc.flatten(lin(x[:, None] ** np.array([1, 2, 3]))), y, reduction="sum")
    src = gc.compile(loss).source
    assert "lin_weight_0_2 = theta[2]" in src and "grad_lin_bias_0 +=" in src
    assert "#   lin.weight = theta[0:3] (shape (1, 3), row-major)" in src
    assert "d(loss)/d(lin.weight[0, 1])" in src


def test_parallel_uses_fixed_blocks_and_scalar_accumulators(cubic):
    src = gc.compile(cubic, target="parallel").source
    assert "numba.prange(nblocks)" in src and "BLOCK = 16384" in src
    assert "combine in block order" in src
    assert "prange" not in body_of(src, "sums_0")


def test_same_graph_same_source(cubic):
    assert gc.compile(cubic).source == gc.compile(cubic).source


def test_user_function_body_is_printed_from_sympy():
    z = gc.data("z")
    a = gc.param("a")
    P3 = gc.function("P3", lambda u: (5 * u**3 - 3 * u) / 2)
    src = gc.compile(gc.sum(P3(a * z))).source
    assert "math." not in body_of(src, "sums_0") and "z_i" in src


def test_2d_sample_data_is_read_through_a_flat_view_at_constant_strides():
    """X[i, j] hides the row length from LLVM, which then vectorizes only for X.shape[1] == 1."""
    X, y = gc.data("X", shape=(None, 2, 3)), gc.data("y")
    W = gc.param("W", shape=(2, 3))
    src = gc.compile(gc.sum((gc.sum(gc.sum(X * W, axis=2), axis=1) - y) ** 2)).source
    loop = body_of(src, "sums_0")
    assert "X_flat = X.ravel()" in loop and "X_i_1_2 = X_flat[6*i + 5]" in loop and "y_i = y[i]" in loop
    assert "X[i," not in loop
    src = gc.compile(gc.sum(X * W) + gc.param("X_flat")).source  # the user's X_flat is X_flat_
    assert "X_flat = X.ravel()" in src and "X_flat_ = theta[" in src


@pytest.mark.parametrize("name", ["x", "lr"])
def test_train_holds_its_step_inline_unless_that_reassigns_a_data_name(name):
    """train repeats the lines of sums_0, finish and update (one function for Numba to compile);
    a data array named like a local of those lines (lr: the update's learning rate) keeps the call."""
    xs, ys = gc.data(name), gc.data("y")
    a, b = gc.params("a b")
    loss = gc.sum((a + b * xs - ys) ** 2)
    x = np.linspace(-1.0, 1.0, 101)
    res = gc.fit(loss, data={name: x, "y": 2.0 * x + 0.5}, init={"a": 0.0, "b": 0.0},
                 optimizer=gc.Adam(lr=0.05), steps=300, log_every=100)
    train = body_of(res.compiled.source, "train")
    assert ("update(theta, grad, hyper, state, count)" in train) == (name == "lr")
    assert ("for i in range(n):" in train) and "sums_0(" not in train
    assert res.params["a"] == pytest.approx(0.5, abs=1e-3) and res.params["b"] == pytest.approx(2.0, abs=1e-3)


def test_no_temporary_only_copies_another():
    """An ``Opaque`` value (kept apart from SymPy's folding) that CSE names on its own would
    print as ``t7 = t0``: its readers use ``t0`` instead (schedule._without_copies). The
    double exponential's Jacobian columns make such values (lsq tangents)."""
    from graphc.lsq import build

    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    solver = build.solver(a * gc.exp(-b * x) + c * gc.exp(-d * x) - y, "linear", False, "cpu", "float64")
    copies = re.findall(r"^\s+(t\d+) = (t\d+)$", solver.source, flags=re.M)
    assert not copies and "grad_jtj_0 += t0*t0" in solver.source  # J^T J[a, a] = sum(exp(-b*x)**2)
