"""Graph IR: build-time shape and name checks (no Numba needed)."""

import keyword

import numpy as np
import pytest

import graphc as gc
from graphc.ir.graph import N


def test_shapes_broadcast_like_numpy():
    x = gc.data("x")
    xx = gc.data("xx", shape=(None, 3))
    W = gc.param("W", shape=(1, 3))
    assert (x[:, None] * W).shape == (N, 3)
    assert (xx @ W.T).shape == (N, 1)
    assert gc.flatten(xx @ W.T).shape == (N,)
    assert gc.sum(xx, axis=1).shape == (N,)
    assert gc.mean(xx, axis=0).shape == (3,)
    assert gc.stack([x, x * x], axis=-1).shape == (N, 2)
    assert (x[:, None] ** np.array([1, 2, 3])).shape == (N, 3)
    assert W.T.shape == (3, 1) and W[0].shape == (3,) and W[:, 1:].shape == (1, 2)


@pytest.mark.parametrize(
    "build, culprit",
    [
        (lambda x, xx, W: xx + W.T, "W"),
        (lambda x, xx, W: xx @ W, "W"),
        (lambda x, xx, W: gc.sum(xx, axis=2), "xx"),
        (lambda x, xx, W: gc.flatten(xx), "xx"),
        (lambda x, xx, W: W[0, 5], "W"),
        (lambda x, xx, W: x[3], "x"),
        (lambda x, xx, W: gc.stack([x, W]), "W"),
    ],
)
def test_bad_shapes_fail_at_build_time_naming_the_node(build, culprit):
    x, xx, W = gc.data("x"), gc.data("xx", shape=(None, 3)), gc.param("W", shape=(1, 3))
    with pytest.raises(gc.GraphcError, match=culprit):
        build(x, xx, W)


@pytest.mark.parametrize(
    "name",
    ["1x", "a-b", "a b", "x\ny", "é", "", "lambda", "class", "for", "a..b", ".a", "x" * 10_000, "__import__('os').system('touch /tmp/pwned')", "a;b", "a'b"],
)
def test_invalid_names_raise(name):
    with pytest.raises(gc.InvalidName) as err:
        gc.data(name)
    assert len(str(err.value)) < 300  # long names are shortened in the message


def test_valid_names():
    for name in ["x", "X_2", "_hidden", "lin.weight", "layer1.bias"]:
        assert gc.param(name).name == name
    assert [p.name for p in gc.params("a b, c")] == ["a", "b", "c"]


def test_keywords_are_all_rejected():
    for kw in keyword.kwlist:
        with pytest.raises(gc.InvalidName, match="keyword"):
            gc.param(kw)


def test_names_must_be_unique_in_a_graph():
    a1, a2 = gc.param("a"), gc.param("a")
    with pytest.raises(gc.InvalidName, match="'a'"):
        gc.compile(a1 * a2)
    with pytest.raises(gc.InvalidName, match="lin_weight"):
        gc.compile(gc.param("lin.weight") + gc.param("lin_weight"))


def test_bad_shapes_and_values():
    with pytest.raises(gc.ShapeError, match="xx"):
        gc.data("xx", shape=(None, None))
    with pytest.raises(gc.ShapeError):
        gc.param("W", shape=(0, 3))
    with pytest.raises(gc.GraphcError, match="str"):
        gc.data("x") + "1"
    with pytest.raises(gc.GraphcError, match="truth value"):
        bool(gc.data("x") > 0)


def test_printing_reads_like_the_math():
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    loss = gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)
    assert str(loss) == "sum((a + b*x + c*x**2 + d*x**3 - y)**2)"
    assert str(gc.sin(-a) / (b - c)) == "sin(-a)/(b - c)"
    assert str(gc.mean(gc.data("xx", shape=(None, 3)), axis=1)) == "mean(xx, axis=1)"
    listing = str(gc.Graph.from_outputs(loss))
    assert listing.startswith("{ lambda") and "pow" in listing and "sum" in listing


def test_loss_must_be_scalar():
    """A training loss must be a scalar; gc.compile of an array is a forward function instead."""
    e = gc.data("x") * gc.param("a")
    with pytest.raises(gc.GraphcError, match="scalar"):
        gc.fit(e, data={"x": np.ones(3)}, init={"a": 1.0}, steps=1)
    with pytest.raises(gc.GraphcError, match="no gradients"):
        gc.compile(e, wrt=[e.inputs[1]])
    assert isinstance(gc.compile(e), gc.Forward)


def test_user_inputs_are_not_mutated_by_constants():
    arr = np.array([1.0, 2.0, 3.0])
    e = gc.data("x")[:, None] * arr
    arr[0] = 100.0
    assert e.inputs[1].attr("value")[0] == 1.0


def test_derived_names_are_the_pattern_codegen_uses():
    """graph._derived (what spell gives a trailing _) against the pattern it was written from,
    on every name built from the pieces that matter."""
    import itertools
    import re

    from graphc.ir.graph import _derived

    pattern = re.compile(r"(t|s|h|sums_|v|j|const|batch_)\d+|.*_(i|i1|v|flat)(_\d+)*|.*_\d+|grad_.*")
    pieces = ["", "t", "s", "h", "v", "j", "x", "sums", "const", "batch", "grad", "i", "i1", "flat", "0", "12", "_", "a",
              "_i", "_i1", "_v", "_flat", "_0", "_12", "sums_", "batch_", "grad_"]
    names = {"".join(p) for k in (1, 2, 3) for p in itertools.product(pieces, repeat=k)}
    names = {n for n in names if n.isidentifier()}
    assert len(names) > 3000
    for name in names:
        assert _derived(name) == bool(pattern.fullmatch(name)), name
