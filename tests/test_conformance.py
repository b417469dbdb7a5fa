"""Conformance: every elementwise op at the edges of floating point, on every target and dtype.

Values must be numpy's (NaN where numpy gives NaN, the same signed inf, finite values within a
few ulp); gradients must be the closed forms of ``conformance.REFS`` (torch's formulas) and,
when torch is installed (``make conformance``), torch autograd's. One compiled function per
(target, dtype) holds all unary ops, one all ops of two and three arguments, two the
reductions (over samples; along a row): see tests/conformance.py. Known differences are listed in ``conformance.KNOWN_BUGS``
and run on their own as strict xfails (``test_known_bug``), so they stay visible.

cuda items run under ``make test-cuda`` (Numba's simulator, one Python thread per GPU thread:
about 0.2 s a call, so they take a smaller grid there unless GRAPHC_CONFORMANCE_FULL=1).
"""

from __future__ import annotations

import math
import os
import time
import warnings

import numpy as np
import pytest
from hypothesis import example, given, note

from . import conformance as C
from .strategies import Case, cases, examples

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator runs numpy scalars

nan = math.nan
FULL = os.environ.get("GRAPHC_CONFORMANCE_FULL", "") not in ("", "0")


_simulated = C.simulated


def _cuda_usable() -> bool:
    try:
        from numba import cuda

        return cuda.is_available()
    except Exception:  # numba-cuda without its bindings, a broken driver, ...
        return False


def target_marks(target: str) -> list:
    return [pytest.mark.cuda] if target == "cuda" else []


# ---- grids: the full edge grids, or a smaller one in the CUDA simulator ---------------------
def grids(target: str, dtype: str) -> dict[int, np.ndarray]:
    full = {1: C.unary_points(dtype), 2: C.binary_points(dtype), 3: C.ternary_points(dtype)}
    if target != "cuda" or FULL or not _simulated():
        return full
    fi = np.finfo(dtype)
    one = {0.0, 0.5, 1.0, 2.5, math.inf, float(fi.smallest_subnormal), float(fi.max)}
    two = {0.0, 1.0, 2.5, math.inf}
    pairs = {C.key(np.array(p, dtype=dtype)) for p in [(0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (nan, 1.0), (0.0, nan)]}

    def small(values, p):
        return all(math.isnan(v) or abs(v) in values for v in map(float, p))

    keep1 = [small(one, p) for p in full[1]]
    keep2 = [small(two, p) and -1.0 not in p for p in full[2]]
    keep3 = [small(two, p[:1]) and float(p[0]) not in (-1.0, -2.5) and C.key(p[1:]) in pairs for p in full[3]]
    return {1: full[1][keep1], 2: full[2][keep2], 3: full[3][keep3]}


# ---- compiled groups, built once per session -----------------------------------------------
class Runs:
    """Lazily compiled groups: ("unary" | "multi" | "reduce-samples" | "reduce-row", target, dtype)."""

    def __init__(self) -> None:
        self.cache: dict = {}
        self.timings: dict = {}

    def get(self, group: str, target: str, dtype: str):
        k = (group, target, dtype)
        if k not in self.cache:
            if target == "cuda" and not _cuda_usable():
                pytest.skip("needs an NVIDIA GPU or NUMBA_ENABLE_CUDASIM=1 (set before numba is imported)")
            start = time.perf_counter()
            if group.startswith("reduce-"):
                self.cache[k] = C.run_reductions(target, dtype, group[len("reduce-"):],
                                                 long=not (target == "cuda" and _simulated()),
                                                 row_ops=target != "parallel" or FULL)
            else:
                arities = (1,) if group == "unary" else (2, 3)
                self.cache[k] = C.run_group(C.available(arities), grids(target, dtype), target, dtype)
            self.timings[k] = time.perf_counter() - start
        return self.cache[k]


@pytest.fixture(scope="session")
def runs():
    r = Runs()
    yield r
    if r.timings:  # seen with -s or in the terminal summary of a failure
        print("\nconformance groups (compile + calls, s):",
              ", ".join(f"{'/'.join(k)} {t:.1f}" for k, t in sorted(r.timings.items())))


def _outcome(runs: Runs, op: str, target: str, dtype: str) -> C.Outcome:
    ref = C.REFS[op]
    run = runs.get("unary" if ref.nargs == 1 else "multi", target, dtype)
    if op in run.broken:
        pytest.fail(f"{op}: could not build it as {ref.nargs}-argument op: {run.broken[op]}")
    return run.outcomes[op]


ELEMENTWISE_CASES = [
    pytest.param(ref.name, target, dtype, id=f"{ref.name}-{target}-{dtype}", marks=target_marks(target))
    for ref in C.available((1, 2, 3)) for target in C.TARGETS for dtype in C.DTYPES
]


def _check(op: str, check: str, target: str, dtype: str, o: C.Outcome, got: np.ndarray, want: np.ndarray,
           tol: np.ndarray, valid: np.ndarray | None = None) -> None:
    bad = C.mismatches(got, want, tol)
    if valid is not None:
        bad &= valid
    bad = (bad | o.raised_mask()) & ~C.known_mask(op, check, target, dtype, o.points)
    raised = [f"  {op}{tuple(map(float, o.points[i]))}: the call raised {o.raised[i]} (an op of its group)"
              for i in sorted(o.raised) if bad[i]]
    assert not bad.any(), "\n".join([C.describe(op, f"{check} ({target}, {dtype})", o.points, got, want, bad)]
                                     + raised)


# ---- values: numpy's ----------------------------------------------------------------------------
@pytest.mark.parametrize("op, target, dtype", ELEMENTWISE_CASES)
def test_value_is_numpys(runs, op, target, dtype):
    o = _outcome(runs, op, target, dtype)
    ref = C.REFS[op]
    args = [o.points[:, k] for k in range(ref.nargs)]
    want = ref.ref_value(*args)
    _check(op, "value", target, dtype, o, o.value, want, C.value_tolerance(ref, args, want, dtype))


# ---- gradients: the closed forms, and torch ------------------------------------------------------
@pytest.mark.parametrize("op, target, dtype", ELEMENTWISE_CASES)
def test_gradient_is_the_closed_form(runs, op, target, dtype):
    ref = C.REFS[op]
    if ref.grads is None:
        pytest.skip(f"{op} has no gradient")
    o = _outcome(runs, op, target, dtype)
    args = [o.points[:, k] for k in range(ref.nargs)]
    for k, want in enumerate(ref.partials(*args)):
        if want is not None:
            _check(op, f"grad{k}", target, dtype, o, o.grads[k], want, C.grad_tolerance(ref, args, want, dtype))


@pytest.mark.parametrize("op, target, dtype", ELEMENTWISE_CASES)
def test_gradient_is_torchs(runs, op, target, dtype):
    ref = C.REFS[op]
    if C.torch is None:
        pytest.skip("torch is not installed (make conformance installs it)")
    if ref.grads is None or ref.torch is None:
        pytest.skip(f"{op}: no gradient, or no torch counterpart")
    o = _outcome(runs, op, target, dtype)
    args = [o.points[:, k] for k in range(ref.nargs)]
    tvalue, tgrads = C.torch_reference(ref, o.points, dtype)
    applies = C.torch_applies(ref, o.points, tvalue, dtype)
    for k, want in enumerate(tgrads):
        if want is not None:
            _check(op, f"torch{k}", target, dtype, o, o.grads[k], want,
                   C.grad_tolerance(ref, args, want, dtype), applies)


# ---- the conventions, spelled out (cpu, float64; the grids cover every target and dtype) ----
CONVENTIONS = [  # (op, args, partial k, expected d(op)/d(arg k))
    ("relu", (0.0,), 0, 0.0), ("relu", (nan,), 0, 1.0), ("relu", (-0.0,), 0, 0.0),
    ("maximum", (1.0, 1.0), 0, 0.5), ("maximum", (1.0, 1.0), 1, 0.5),
    ("maximum", (math.inf, math.inf), 0, 0.5), ("maximum", (-math.inf, -math.inf), 1, 0.5),
    ("maximum", (nan, 1.0), 0, 1.0), ("maximum", (nan, 1.0), 1, 1.0), ("maximum", (1.0, nan), 0, 1.0),
    ("minimum", (2.0, 2.0), 0, 0.5), ("minimum", (math.inf, math.inf), 1, 0.5),
    ("minimum", (1.0, nan), 0, 1.0), ("minimum", (1.0, nan), 1, 1.0),
    ("abs", (0.0,), 0, 0.0), ("abs", (-0.0,), 0, 0.0), ("abs", (nan,), 0, 0.0), ("abs", (-2.5,), 0, -1.0),
    ("pow", (0.0, 0.0), 0, 0.0), ("pow", (2.0, 0.0), 0, 0.0), ("pow", (nan, 0.0), 0, 0.0),
    ("pow", (0.0, 0.0), 1, 0.0), ("pow", (0.0, 2.0), 1, 0.0), ("pow", (0.0, -1.0), 1, -math.inf),
    ("pow", (-1.0, 0.5), 1, nan),
    ("div", (1e-300, 1e-300), 1, -1 / 1e-300), ("div", (0.0, 1e-310), 1, 0.0), ("div", (1.0, 0.0), 0, math.inf),
    ("sqrt", (0.0,), 0, math.inf), ("log", (0.0,), 0, math.inf), ("sqrt", (math.inf,), 0, 0.0),
    ("log", (math.inf,), 0, 0.0), ("floor", (2.5,), 0, 0.0), ("ceil", (nan,), 0, 0.0),
    ("round", (0.5,), 0, 0.0), ("sign", (0.0,), 0, 0.0),
    ("clip", (0.0, 0.0, 1.0), 0, 0.5), ("clip", (1.0, 0.0, 1.0), 0, 0.5), ("clip", (1.0, 0.0, 1.0), 2, 0.5),
    ("clip", (nan, 0.0, 1.0), 0, 1.0),
    ("hypot", (0.0, 0.0), 0, nan), ("hypot", (0.0, 0.0), 1, nan),
    ("arctan2", (0.0, 0.0), 0, 0.0), ("arctan2", (0.0, 0.0), 1, 0.0),
    ("logaddexp", (math.inf, math.inf), 0, nan), ("logaddexp", (math.inf, math.inf), 1, nan),
    ("sigmoid", (-1e300,), 0, 0.0), ("tanh", (math.inf,), 0, 0.0), ("exp", (math.inf,), 0, math.inf),
]


def _conv_id(c) -> str:
    return f"{c[0]}{c[1]}-d{c[2]}".replace(" ", "")


@pytest.mark.parametrize("op, args, k, expected", CONVENTIONS, ids=[_conv_id(c) for c in CONVENTIONS])
def test_reference_table_follows_the_conventions(op, args, k, expected):
    """The closed forms themselves (no graphc): torch's conventions at the points that define them."""
    ref = C.REFS[op]
    got = ref.partials(*[np.array([a]) for a in args])[k][0]
    assert (math.isnan(got) and math.isnan(expected)) or got == expected, (op, args, k, got)


@pytest.mark.parametrize("op, args, k, expected", CONVENTIONS, ids=[_conv_id(c) for c in CONVENTIONS])
def test_graphc_follows_the_conventions(runs, op, args, k, expected):
    if not C.present(op):
        pytest.skip(f"graphc has no {op} yet")
    ref = C.REFS[op]
    o = _outcome(runs, op, "cpu", "float64")
    rows = [i for i, p in enumerate(o.points) if C.key(p) == C.key(np.array(args))]
    if not rows:  # every convention point must be on the grid
        pytest.fail(f"{op}{args} is not on the {ref.nargs}-argument grid")
    got = o.grads[k][rows[0]]
    if any(b.matches(op, f"grad{k}", "cpu", "float64") and b.point_key("float64") == C.key(np.array(args))
           for b in C.KNOWN_BUGS):
        pytest.xfail("known bug (see test_known_bug)")
    assert (math.isnan(got) and math.isnan(expected)) or got == expected, f"d{op}{args}/d(arg {k}) = {got}"


# ---- reductions and softmax-like ops along a fixed axis -----------------------------------------
REDUCTION_NAMES = ["sum", "mean", "mean_axis0", "sum_axis1", "mean_axis1", *C.ROW_OPS]
REDUCTION_CASES = [
    pytest.param(name, target, dtype, id=f"{name}-{target}-{dtype}", marks=target_marks(target))
    for name in REDUCTION_NAMES for target in C.TARGETS for dtype in C.DTYPES
]


@pytest.mark.parametrize("name, target, dtype", REDUCTION_CASES)
def test_reduction_matches_numpy(runs, name, target, dtype):
    """sum/mean over samples and over a fixed axis, logsumexp/softmax/log_softmax along a fixed axis,
    with inf and NaN inside: values against numpy / scipy.special, gradients against closed forms."""
    if name in C.ROW_OPS and C._lookup(name) is None:
        pytest.skip(f"graphc has no {name} yet (gc.{name} or gc.nn.{name})")
    if name in C.ROW_OPS and target == "parallel" and not FULL:
        pytest.skip("parallel: the per-sample row ops take ~7 s each to compile; GRAPHC_CONFORMANCE_FULL=1")
    red = next(r for r in C._reductions() if r.name == name)
    run = runs.get(f"reduce-{red.over}", target, dtype)
    if name in run.broken:
        pytest.fail(f"{name}: could not build it: {run.broken[name]}")
    errors = [f"  {name} on {pattern!r} raised {msg}" for (rname, pattern), msg in run.raised.items()
              if rname == name and not any(b.matches(name, "raises", target, dtype) and b.args == (pattern,)
                                           for b in C.KNOWN_BUGS)]
    for (rname, pattern), (value, grad) in run.outcomes.items():
        if rname != name:
            continue
        xs, xx = run.inputs[(name, pattern)]
        want_v, want_g = C.reduction_reference(red, xs, xx)
        for what, got, want in (("value", value, want_v), ("grad", grad, want_g)):
            if any(b.matches(name, what, target, dtype) and b.args == (pattern,) for b in C.KNOWN_BUGS):
                continue
            bad = C.mismatches(got, want, C.reduction_tolerance(xs, xx, want, dtype))
            if bad.any():
                errors.append(f"  {name} {what} on {pattern!r}: graphc {got.tolist()}, reference {want.tolist()}")
    assert not errors, f"{name} ({target}, {dtype}):\n" + "\n".join(errors)


# ---- what is missing, what has no reference --------------------------------------------------
def test_reference_ops_missing_from_graphc():
    """The ops of the reference table that graphc does not have yet (their tests are not generated)."""
    absent = C.missing() + [n for n in C.ROW_OPS if C._lookup(n) is None]
    if absent:
        pytest.skip(f"not in graphc yet ({len(absent)}): {', '.join(absent)}")


def test_every_registry_op_has_a_reference():
    assert not C.unreferenced(), f"add these ops to tests/conformance.py REFS: {C.unreferenced()}"


# ---- the known bugs, one strict xfail each ---------------------------------------------------------
def _bug_params():
    out = []
    for b in C.KNOWN_BUGS:
        for target in b.targets:
            for dtype in b.dtypes:
                xfail = pytest.mark.xfail(condition=not b.simulator_only or _simulated(), strict=True,
                                          reason=f"bug: {b.reason}")
                marks = [xfail] + target_marks(target)
                args = ",".join(str(a) for a in b.args)
                out.append(pytest.param(b, target, dtype, id=f"{b.op}({args})-{b.check}-{target}-{dtype}",
                                        marks=marks))
    return out


@pytest.mark.parametrize("bug, target, dtype", _bug_params())
def test_known_bug(runs, bug, target, dtype):
    """graphc against the reference at exactly the point of the bug (passes once it is fixed)."""
    if bug.op in REDUCTION_NAMES:
        if bug.op in C.ROW_OPS and target == "parallel" and not FULL:
            pytest.skip("parallel row ops run under GRAPHC_CONFORMANCE_FULL=1")
        red = next(r for r in C._reductions() if r.name == bug.op)
        run = runs.get(f"reduce-{red.over}", target, dtype)
        assert (bug.op, bug.args[0]) not in run.raised, run.raised.get((bug.op, bug.args[0]))
        if bug.check == "raises":
            return
        value, grad = run.outcomes[(bug.op, bug.args[0])]
        xs, xx = run.inputs[(bug.op, bug.args[0])]
        want_v, want_g = C.reduction_reference(red, xs, xx)
        got, want = (value, want_v) if bug.check == "value" else (grad, want_g)
        assert not C.mismatches(got, want, C.reduction_tolerance(xs, xx, want, dtype)).any(), (got, want)
        return
    if not C.present(bug.op):
        pytest.skip(f"graphc has no {bug.op}")
    ref = C.REFS[bug.op]
    o = _outcome(runs, bug.op, target, dtype)
    rows = [i for i, p in enumerate(o.points) if C.key(p) == bug.point_key(dtype)]
    assert rows, f"{bug.op}{bug.args} is not on the {target} grid"
    args = [o.points[rows, k] for k in range(ref.nargs)]
    if bug.check == "value":
        got, want = o.value[rows], ref.ref_value(*args)
        tol = C.value_tolerance(ref, args, want, dtype)
    else:
        k = int(bug.check[-1])
        got = o.grads[k][rows]
        if bug.check.startswith("torch"):
            if C.torch is None:
                pytest.skip("torch is not installed")
            want = C.torch_reference(ref, o.points[rows], dtype)[1][k]
        else:
            want = ref.partials(*args)[k]
        tol = C.grad_tolerance(ref, args, want, dtype)
    assert not C.mismatches(got, want, tol).any(), f"{bug.op}{bug.args}: graphc {got}, reference {want}"


# ---- the harness can fail --------------------------------------------------------------------
def test_mismatches_catches_nan_inf_and_ulps():
    want = np.array([1.0, math.inf, -math.inf, math.nan, 0.0, 1e-310])
    tol = C.tolerance(want, "float64", 4)
    assert not C.mismatches(want, want, tol).any()
    got = np.array([1.0 + 8 * 2.2e-16, -math.inf, math.inf, 0.0, math.nan, 1e-310 * (1 + 1e-9)])
    assert C.mismatches(got, want, tol).tolist() == [True] * 6
    assert not C.mismatches(np.array([np.nextafter(1.0, 2.0)]), np.array([1.0]), C.tolerance(np.ones(1), "float64", 4)).any()


def test_a_wrong_derivative_is_caught(runs):
    """sin's gradient made off by 1e-10 relative, or NaN at one point: the check reports both."""
    o = _outcome(runs, "sin", "cpu", "float64")
    ref = C.REFS["sin"]
    args = [o.points[:, 0]]
    want = ref.partials(*args)[0]
    tol = C.grad_tolerance(ref, args, want, "float64")
    assert not C.mismatches(o.grads[0], want, tol).any()
    assert C.mismatches(o.grads[0] * (1 + 1e-10), want, tol)[np.abs(want) > 1e-3].all()
    broken = o.grads[0].copy()
    broken[0] = math.nan
    assert C.mismatches(broken, want, tol)[0]


# ---- random expression trees against numpy (values) and torch / finite differences (gradients) ----
TREE_N = 16


def _tree_compile(case: Case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return C.compile_quiet(case.graph())


@examples(ci=4, fuzz=300)
@given(cases())
@example(Case("sum", (("sub", ("x",), ("x",)),), seed=1))  # x - x at x = inf is NaN, not 0
@example(Case("sumsq", (("mul", ("div1sq", ("const", 0.0), ("z",)), ("a",)),), seed=8))
def test_random_tree_matches_numpy_and_torch(case):
    """Value: numpy evaluating the tree as written (at ordinary points, and at edge data: the same
    NaN / inf / finite class); gradient: torch autograd, else central differences in float64."""
    note(repr(case))
    bindings = case.bindings(TREE_N)
    f = _tree_compile(case)
    r = f(bindings)
    ref = case.reference(bindings)  # SymPy: used only for the rounding scales of the checks below
    want = C.tree_loss(case, bindings)
    assert abs(r.loss - want) <= 1e-9 * (ref.loss_scale + abs(want)) + 1e-13 * TREE_N, (r.loss, want)
    grads = C.tree_grads_torch(case, bindings) if C.torch is not None else C.tree_grads_fd(case, bindings)
    rtol = 1e-9 if C.torch is not None else 1e-5
    for p in case.params:
        g, w = np.asarray(r.grads[p]), np.asarray(grads[p])
        bound = rtol * (np.asarray(ref.grad_scales[p]) + np.abs(w)) + (1e-13 * TREE_N if C.torch else 1e-7)
        assert np.all(np.abs(g - w) <= bound), f"d/d{p}: graphc {g}, reference {w}"
    # edge data, one sample per call: the loss is NaN / +-inf / finite exactly where numpy's is
    bad = []
    for point in C.tree_edge_points(case, bindings):
        got, want = f(point).loss, C.tree_loss(case, point)
        if C.value_class(got) != C.value_class(want):
            bad.append(f"x={point.get('x')}, z={point.get('z')}: graphc {got}, numpy {want}")
    assert not bad, f"{len(bad)} edge point(s) differ from numpy:\n" + "\n".join(bad[:20])
