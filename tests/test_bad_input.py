"""Bad input, all of it: each case gives the right answer or a GraphcError naming the culprit."""

from __future__ import annotations

import glob
import math
import os
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.errors import BindingError, DTypeError, GraphcError, InvalidName, NonFiniteLoss, ShapeError

from . import strategies  # noqa: F401 - private cache dir when run alone

N = 50


def reference(x, y, xx, a, b, W):
    """loss = sum((a + b*x + xx @ W - y)**2) and its gradients, in plain numpy (float64)."""
    x, y, xx = (np.asarray(v, dtype=np.float64) for v in (x, y, xx))
    r = a + b * x + xx @ np.asarray(W, dtype=float) - y
    return float(np.sum(r * r)), {"a": np.sum(2 * r), "b": np.sum(2 * r * x), "W": 2 * r @ xx}


@pytest.fixture(scope="module")
def model():
    x, y, xx = gc.data("x"), gc.data("y"), gc.data("xx", shape=(None, 3))
    a, b, W = gc.param("a"), gc.param("b"), gc.param("W", shape=(3,))
    return gc.compile(gc.sum((a + b * x + xx @ W - y) ** 2))


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    return {"x": rng.uniform(-1, 1, N), "y": rng.uniform(-1, 1, N), "xx": rng.uniform(-1, 1, (N, 3)),
            "a": 0.3, "b": -0.7, "W": np.array([0.5, -0.25, 1.0])}


def assert_right_answer(f, bindings, rtol=1e-12):
    want_loss, want_grads = reference(**bindings)
    r = f(bindings)
    assert r.loss == pytest.approx(want_loss, rel=rtol)
    for k, g in want_grads.items():
        np.testing.assert_allclose(r.grads[k], g, rtol=rtol, atol=rtol * abs(want_loss))


def raises_naming(exc, culprit, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, GraphcError)
    assert culprit in str(info.value), f"{culprit!r} not named in: {info.value}"
    return info.value


# ---- shapes, ranks, missing and unknown inputs -------------------------------------------
def test_right_answer_baseline(model, inputs):
    assert_right_answer(model, inputs)


@pytest.mark.parametrize("name, value, culprit", [
    ("x", np.ones((N, 1)), "'x'"),            # rank 2 for a 1-D input
    ("x", 1.5, "'x'"),                        # a scalar for a per-sample input
    ("xx", np.ones((N, 4)), "'xx'"),          # wrong fixed dim
    ("xx", np.ones(N), "'xx'"),               # rank 1 for (N, 3)
    ("y", np.ones(N + 1), "'y'"),             # sample count differs
    ("W", np.ones(2), "'W'"),                 # param of the wrong shape
    ("a", np.ones(1), "'a'"),                 # scalar param given as shape (1,)
    ("W", np.ones((3, 1)), "'W'"),
])
def test_wrong_shapes_name_the_input(model, inputs, name, value, culprit):
    raises_naming(ShapeError, culprit, model, {**inputs, name: value})


def test_mismatched_sample_counts_name_both(model, inputs):
    err = raises_naming(ShapeError, "'y'", model, {**inputs, "y": inputs["y"][:10]})
    assert "'x'" in str(err) or "'xx'" in str(err)


def test_empty_data(model, inputs):
    empty = {**inputs, "x": np.empty(0), "y": np.empty(0), "xx": np.empty((0, 3))}
    raises_naming(ShapeError, "0 samples", model, empty)


@pytest.mark.parametrize("missing", ["x", "xx", "a", "W"])
def test_missing_input(model, inputs, missing):
    given = {k: v for k, v in inputs.items() if k != missing}
    raises_naming(BindingError, repr(missing), model, given)


def test_unknown_input_suggests_the_close_name(model, inputs):
    err = raises_naming(BindingError, "'xs'", model, {**inputs, "xs": inputs["x"]})
    assert "'x'" in str(err)


def test_input_given_twice(model, inputs):
    raises_naming(BindingError, "'a'", model, inputs, a=1.0)


def test_non_string_key(model, inputs):
    raises_naming(BindingError, "unknown input", model, {**inputs, 3: 1.0})


# ---- dtypes -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool", "float16", "float32", ">f8", "<f4"])
def test_numeric_dtypes_convert(model, inputs, dtype):
    arr = (np.arange(N) % 3 - 1).astype(dtype)
    given = {**inputs, "x": arr, "xx": inputs["xx"].astype(dtype) if dtype != "bool" else inputs["xx"] > 0}
    before = [given["x"].copy(), given["xx"].copy()]
    assert_right_answer(model, given, rtol=1e-12)
    np.testing.assert_array_equal(given["x"], before[0])  # never mutated
    np.testing.assert_array_equal(given["xx"], before[1])


def test_python_lists_and_scalars(model, inputs):
    given = {**inputs, "x": inputs["x"].tolist(), "xx": inputs["xx"].tolist(), "W": [0.5, -0.25, 1.0],
             "a": np.float32(0.25), "b": 2}
    assert_right_answer(model, given)


@pytest.mark.parametrize("value, what", [
    (np.ones(N, dtype=complex), "complex"),
    (np.array(["a"] * N), "dtype"),
    (np.array([object()] * N), "dtype"),
    (None, "NoneType"),
    ("1.0", "str"),
    ({"a": 1}, "dict"),
    ([[1.0, 2.0], [3.0]], "regular array"),
    (np.array(["2020-01-01"] * N, dtype="datetime64[D]"), "dtype"),
])
def test_non_real_inputs(model, inputs, value, what):
    err = raises_naming(DTypeError, "'x'", model, {**inputs, "x": value})
    assert what in str(err)


# ---- memory layouts -------------------------------------------------------------------------
def test_non_contiguous_read_only_stride_zero_and_fortran(model, inputs):
    rng = np.random.default_rng(1)
    big = rng.uniform(-1, 1, 3 * N)
    ro = inputs["y"].copy()
    ro.setflags(write=False)
    given = {**inputs,
             "x": big[::3],                                              # strided view
             "y": ro,                                                    # read-only
             "xx": np.asfortranarray(inputs["xx"])}                      # column-major
    assert_right_answer(model, given)
    given = {**inputs, "x": np.broadcast_to(0.5, (N,)),                   # stride 0, read-only
             "xx": np.broadcast_to(np.array([1.0, 2.0, 3.0]), (N, 3))}   # stride 0 on the sample axis
    assert_right_answer(model, given)


def test_aliased_inputs(model, inputs):
    """x and y the same array, xx's columns views of one buffer: right answer, nothing written."""
    x = inputs["x"].copy()
    buf = np.repeat(x[:, None], 3, axis=1)
    given = {**inputs, "x": x, "y": x, "xx": buf}
    assert_right_answer(model, given)
    np.testing.assert_array_equal(given["x"], inputs["x"])


def test_stride_zero_conversion_does_not_materialize(model):
    """An int stride-0 view of 2**40 samples binds in a few bytes (no 8 TB copy)."""
    huge = np.broadcast_to(np.int32(2), (2**40,))
    arrays, _ = model.bind(x=huge, y=huge, xx=np.broadcast_to(np.int8(1), (2**40, 3)), a=0.0, b=0.0, W=np.zeros(3))
    assert all(0 in arr.strides for arr in arrays)
    assert arrays[0].dtype == np.float64 and arrays[0][12345] == 2.0


# ---- NaN, Inf and domain errors --------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data_gives_non_finite_result(model, inputs, bad):
    x = inputs["x"].copy()
    x[7] = bad
    r = model({**inputs, "x": x})
    assert not math.isfinite(r.loss)
    assert not np.isfinite(r.grads["b"])


def test_nan_parameter(model, inputs):
    r = model({**inputs, "a": math.nan})
    assert math.isnan(r.loss) and math.isnan(r.grads["a"])


def test_out_of_domain_values_give_nan_not_an_exception():
    x, a = gc.data("x"), gc.param("a")
    f = gc.compile(gc.sum(gc.log(a * x) + gc.sqrt(a * x) + 1 / (a * x) + (a * x) ** 0.5))
    r = f(x=np.array([-1.0, 0.0, 2.0]), a=1.0)
    assert math.isnan(r.loss) and math.isnan(r.grads["a"])


def test_fit_reports_non_finite_loss():
    x, y, a = gc.data("x"), gc.data("y"), gc.param("a")
    loss = gc.sum((a * x - y) ** 2)
    xs = np.linspace(0, 1, 20)
    ys = xs.copy()
    ys[3] = np.nan
    with pytest.raises(NonFiniteLoss, match="step 0") as info:
        gc.fit(loss, data={"x": xs, "y": ys}, init={"a": 0.5}, optimizer=gc.SGD(lr=0.01), steps=10, log_every=1)
    assert info.value.result.params == {"a": 0.5}  # stopped before the update
    res = gc.fit(loss, data={"x": xs, "y": ys}, init={"a": 0.5}, optimizer=gc.SGD(lr=0.01), steps=10,
                 log_every=1, check_finite=False)
    assert res.steps == 0 and math.isnan(res.history[0][1])
    with pytest.raises(NonFiniteLoss):  # a diverging run too
        gc.fit(loss, data={"x": xs * 1e3, "y": xs}, init={"a": 0.5}, optimizer=gc.SGD(lr=10.0), steps=500)


# ---- parameters that do not reach the loss ---------------------------------------------------
def test_unused_parameter_warns_and_gets_zero_gradient():
    x, a, unused = gc.data("x"), gc.param("a"), gc.param("unused")
    with pytest.warns(UserWarning, match="'unused'"):
        f = gc.compile(gc.sum(a * x), wrt=[a, unused])
    r = f(x=np.arange(3.0), a=1.0, unused=5.0)
    assert r.grads == {"a": 3.0, "unused": 0.0}


def test_parameter_only_in_a_condition_warns():
    x, a, t = gc.data("x"), gc.param("a"), gc.param("t")
    with pytest.warns(UserWarning, match="'t'"):
        f = gc.compile(gc.sum(gc.where(x > t, a * x, 0.0)))
    r = f(x=np.array([-1.0, 1.0, 2.0]), a=2.0, t=0.0)
    assert r.loss == 6.0 and r.grads == {"a": 3.0, "t": 0.0}


# ---- names ------------------------------------------------------------------------------
CODE = "__import__('os').system('touch {marker}')"
BAD_NAMES = [
    "lambda", "class", "None", "True", "match", "case", "_",     # keywords, soft keywords included
    "x" * 10_000,                                                # 10,000 characters
    "a\nb", "a\n", "\na", "a\rb", "a\tb", "a b", "",             # whitespace, empty
    "a'b", 'a"b', "a\\b", "'", '"""',                            # quotes
    "1a", "a-b", "a+b", "a;b", "a()", "a[0]", "a#b", "a.", ".a", "a..b", "π", "ａ", "e\u0301",
]
# names the generated code uses or derives itself, and builtins: valid user names, spelled
# with a trailing _ in generated code (graph.spell)
CODEGEN_NAMES = [
    "print", "len", "sum", "exec", "np", "math", "numba", "theta", "grad", "loss",
    "i", "n", "step", "t0", "s1", "s3", "h0", "sums_0", "evaluate", "train", "OPTS", "BLOCK",
    "v8_i_0", "v12_i", "v3_i1_0", "x_i", "grad_b", "n_", "order", "total", "seed", "state",
]


def _culprit(name: str) -> str:
    return repr(name[:40])[:-1]  # the start of its repr: messages cut long names


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda s: repr(s[:12]))
def test_bad_names_are_rejected_everywhere(name):
    for make in (gc.data, gc.param, lambda n: gc.function(n, lambda z: z * z),
                 lambda n: gc.nn.Linear(2, 1, name=n)):
        err = raises_naming(InvalidName, _culprit(name), make, name)
        assert len(str(err)) < 300  # a 10,000-character name is cut in the message


@pytest.mark.parametrize("name", [3, None, b"x", ("x",)])
def test_non_string_names(name):
    raises_naming(InvalidName, type(name).__name__, gc.param, name)


def test_params_string_with_bad_part():
    raises_naming(InvalidName, "'b;'", gc.params, "a b; c")


def test_good_unusual_names_work():
    names = ["x_1", "_x", "X", "lin.weight", "a" * 64, "grad_norm", "sum_", "Lambda", "loss2"]
    x = gc.data("data_in")
    ps = [gc.param(n) for n in names]
    total = ps[0] * x
    for p in ps[1:]:
        total = total + p * x
    f = gc.compile(gc.sum(total))
    r = f({"data_in": np.array([1.0, 2.0]), **{n: 1.0 for n in names}})
    assert r.loss == 3.0 * len(names) and set(r.grads) == set(names)


def test_names_the_generated_code_uses_are_valid_user_names():
    """Codegen picks its own names: a user's n, t0, x_i or sum is spelled n_, t0_, x_i_, sum_."""
    x = gc.data("x")
    ps = [gc.param(name) for name in CODEGEN_NAMES]
    total = sum((k + 1) * p * x for k, p in enumerate(ps))
    f = gc.compile(gc.sum(total * total))
    xs, values = np.array([1.0, -2.0]), {name: 0.01 * (k + 1) for k, name in enumerate(CODEGEN_NAMES)}
    r = f({"x": xs, **values})
    c = sum((k + 1) * values[name] for k, name in enumerate(CODEGEN_NAMES))
    assert r.loss == pytest.approx(np.sum((c * xs) ** 2), rel=1e-12)
    for k, name in enumerate(CODEGEN_NAMES):
        assert r.grads[name] == pytest.approx(2 * c * (k + 1) * np.sum(xs * xs), rel=1e-12)
    assert "    n_ = theta[" in f.source and "    t0_ = theta[" in f.source and "x_i_ = theta[" in f.source
    data = {name: gc.data(name) for name in ("n", "i", "lo", "hi", "x_i", "theta", "acc", "out")}
    a = gc.param("a")
    g = gc.compile(gc.sum(a * sum(data.values())))
    arrays = {name: np.full(3, k + 1.0) for k, name in enumerate(data)}
    assert g(a=2.0, **arrays).loss == 2.0 * 3 * sum(range(1, len(data) + 1))


# leaves that would spell a value alike in generated code if codegen took user names as they are
USED_TO_COLLIDE = {
    "param x_i, data x": (lambda: gc.sum(gc.param("x_i") * gc.data("x")), {"x_i": 2.0, "x": [1.0, 3.0]}, 8.0),
    "data grad_a, param a": (lambda: gc.sum(gc.param("a") * gc.data("grad_a")), {"a": 2.0, "grad_a": [1.0, 3.0]}, 8.0),
    "param W_0, param W (2,)": (lambda: gc.param("W_0") * gc.sum(gc.param("W", shape=2)),
                                {"W_0": 2.0, "W": [1.0, 3.0]}, 8.0),
    "data xx_i_0, data xx (N, 2)": (lambda: gc.sum(gc.data("xx_i_0") * gc.data("xx", (None, 2))[:, 0]),
                                    {"xx_i_0": [2.0, 3.0], "xx": [[1.0, 5.0], [2.0, 5.0]]}, 8.0),
    "data xx_i1_0, data xx (N, 2)": (lambda: gc.sum(gc.data("xx_i1_0") * gc.data("xx", (None, 2))[:, 0]),
                                     {"xx_i1_0": [2.0, 3.0], "xx": [[1.0, 5.0], [2.0, 5.0]]}, 8.0),
    "param x_i1, data x": (lambda: gc.sum(gc.param("x_i1") * gc.data("x")), {"x_i1": 2.0, "x": [1.0, 3.0]}, 8.0),
}


@pytest.mark.parametrize("case", USED_TO_COLLIDE.values(), ids=USED_TO_COLLIDE.keys())
def test_names_that_looked_alike_in_generated_code_work(case):
    """These used to alias silently (param x_i read the data), then were refused."""
    build, values, loss = case
    assert gc.compile(build())(**{k: np.asarray(v, dtype=float) for k, v in values.items()}).loss == loss


def test_names_that_spell_alike_are_refused():
    with pytest.raises(InvalidName, match="rename one"):
        gc.compile(gc.param("lin_w") * gc.param("lin.w"))


def test_code_in_a_name_never_runs_and_never_reaches_source(tmp_path, model, inputs):
    marker = tmp_path / "pwned"
    code = CODE.format(marker=marker)
    attempts = [
        lambda: gc.data(code), lambda: gc.param(code), lambda: gc.params(code),
        lambda: gc.function(code, lambda z: z), lambda: gc.nn.Linear(1, 1, name=code),
        lambda: gc.data("x\n" + code), lambda: gc.param("a # " + code),
        lambda: model({**inputs, code: 1.0}),                        # an unknown input
        lambda: model({**inputs, "x": code}),                        # code as a value
        lambda: gc.compile(gc.sum(gc.data("x")), wrt=[code]),
    ]
    for attempt in attempts:
        with pytest.raises(GraphcError):
            attempt()
    assert not marker.exists()
    for path in glob.glob(os.path.join(os.environ["GRAPHC_CACHE_DIR"], "*.py")):
        with open(path, encoding="utf-8") as f:
            assert "__import__" not in f.read(), path


def test_all_bad_input_errors_are_value_errors():
    assert issubclass(GraphcError, ValueError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError):
            gc.data("lambda")
