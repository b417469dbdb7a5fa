"""Property tests: random expression graphs against an independent SymPy reference.

Each example compiles a new kernel (about a second of Numba), so CI runs a small,
derandomized set; ``GRAPHC_FUZZ=1`` (``make fuzz``) runs many more random ones.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import sympy as sp
from hypothesis import example, given, note

import graphc as gc
from graphc.ir.ops import ELEMENTWISE

from .strategies import Case, assert_close, cases, directional_check, examples, n_samples

N = 64
N_PARALLEL = 40_000  # more than codegen.parallel.BLOCK, so the block-parallel path runs


def compiled(case: Case, **kwargs) -> gc.Compiled:
    with warnings.catch_warnings():  # a param used only in a where-condition has zero gradient
        warnings.simplefilter("ignore", UserWarning)
        return gc.compile(case.graph(), **kwargs)


def check_against_reference(f: gc.Compiled, case: Case, bindings: dict) -> None:
    """Forward value and gradients vs SymPy (1e-9 of the magnitudes summed), then central differences."""
    ref = case.reference(bindings)
    r = f(bindings)
    atol = 1e-13 * n_samples(bindings)
    assert_close(r.loss, ref.loss, ref.loss_scale, 1e-9, "loss vs sympy.lambdify", atol)
    for p in case.params:
        assert_close(r.grads[p], ref.grads[p], ref.grad_scales[p], 1e-9, f"d(loss)/d({p}) vs sympy.diff", atol)
    directional_check(f, bindings, case.params, ref.loss_scale)


FOUND = [  # cases the fuzz profile found, kept as regression tests
    Case("sum", (("mul", ("x",), ("sin", ("sub", ("const", -2.0), ("w0",)))),), seed=1),  # RecursionError
    Case("mean", (("sub", ("sin", ("dot",)), ("sin", ("dot",))),), seed=3),  # harness: SymPy cancels to 0
    Case("sumsq", (("mul", ("div1sq", ("const", 0.0), ("z",)), ("a",)),), seed=8),  # d/da was nan
    Case("sum", (("where", ("where", ("x",), ("b",), ("z",)), ("x",), ("sin", ("x",))),), seed=2),  # harness
    Case("center", (("x",), ("maximum", ("z",), ("where", ("x",), ("x",), ("a",)))), seed=0),  # wrong d/da
]


@examples(ci=8, fuzz=300)
@given(cases())
@example(FOUND[0])
@example(FOUND[1])
@example(FOUND[2])
@example(FOUND[3])
@example(FOUND[4])
def test_random_graph_matches_sympy_and_finite_differences(case):
    note(repr(case))
    bindings = case.bindings(N)
    check_against_reference(compiled(case), case, bindings)


@examples(ci=2, fuzz=60)
@given(cases(max_leaves=5))
@example(Case("center", (("where", ("const", 0.0), ("x",), ("const", 0.0)), ("c",)), seed=3400))  # warned
def test_random_graph_agrees_across_targets_and_dtypes(case):
    """cpu == parallel to rounding (block sums); float32 within 2e-3 of float64."""
    note(repr(case))
    bindings = case.bindings(N_PARALLEL)
    ref = case.reference(bindings)
    r64 = compiled(case)(bindings)
    rpar = compiled(case, target="parallel")(bindings)
    r32 = compiled(case, dtype="float32")(bindings)
    n = N_PARALLEL
    assert_close(rpar.loss, r64.loss, ref.loss_scale, 1e-12, "parallel vs cpu loss", 1e-13 * n)
    assert_close(r32.loss, r64.loss, ref.loss_scale, 2e-3, "float32 vs float64 loss", 1e-6 * n)
    for p in case.params:
        assert_close(rpar.grads[p], r64.grads[p], ref.grad_scales[p], 1e-12, f"parallel vs cpu d/d{p}", 1e-13 * n)
        assert_close(r32.grads[p], r64.grads[p], ref.grad_scales[p], 2e-3, f"float32 vs float64 d/d{p}", 1e-6 * n)


# ---- the harness can fail ----------------------------------------------------------------
BROKEN = Case("sumsq", (("mul", ("a",), ("tanh", ("add", ("x",), ("b",)))),), seed=7)


def test_harness_catches_a_wrong_user_derivative():
    """gc.function with a derivative off by 0.1%: both gradient checks must fail."""
    bad_tanh = gc.function("bad_tanh", lambda z: gc.tanh(z), derivative=lambda z: 1.001 * (1 - gc.tanh(z) ** 2))
    x, a, b = gc.data("x"), gc.param("a"), gc.param("b")
    f = gc.compile(gc.sum((a * bad_tanh(x + b)) ** 2))
    bindings = BROKEN.bindings(N)
    ref = BROKEN.reference(bindings)
    assert f(bindings).loss == pytest.approx(ref.loss, rel=1e-12)  # the forward pass is right
    with pytest.raises(AssertionError, match="sympy.diff"):
        check_against_reference(f, BROKEN, bindings)
    with pytest.raises(AssertionError, match="directional derivative"):
        directional_check(f, bindings, ["a", "b"], ref.loss_scale)


def test_harness_catches_a_wrong_registry_derivative(monkeypatch):
    """The registry's tanh swapped for one whose derivative is wrong (cos): the checks fail."""
    bad = dataclasses.replace(ELEMENTWISE["tanh"], derivative=sp.cos)
    monkeypatch.setitem(ELEMENTWISE, "tanh", bad)
    monkeypatch.setattr(gc, "tanh", bad)
    bindings = BROKEN.bindings(N)
    with pytest.raises(AssertionError):
        check_against_reference(compiled(BROKEN), BROKEN, bindings)


def test_reference_agrees_with_itself_on_a_known_case():
    """The SymPy reference against hand-written numpy for the cubic fit."""
    case = Case("sumsq", (("sub", ("add", ("a",), ("mul", ("b",), ("cube", ("x",)))), ("z",)),), seed=3)
    bindings = case.bindings(N)
    x, z, a, b = (bindings[k] for k in "xzab")
    ref = case.reference(bindings)
    r = a + b * x**3 - z
    assert ref.loss == pytest.approx(np.sum(r**2), rel=1e-14)
    assert ref.grads["a"] == pytest.approx(np.sum(2 * r), rel=1e-12)
    assert ref.grads["b"] == pytest.approx(np.sum(2 * r * x**3), rel=1e-12)
