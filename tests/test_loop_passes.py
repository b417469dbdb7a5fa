"""The loop IR (graphc/codegen/loops.py) and each of its passes (graphc/codegen/passes.py) on
small hand-built inputs, compared with the code they must print (golden texts written here
by hand) and, for the rewrites that change how a loop runs, executed against the input.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import sympy as sp

from graphc.codegen import passes
from graphc.codegen.loops import Alloc, Assign, Code, Comment, Element, Ix, Loop, Terms, local, print_body
from graphc.codegen.printer import printer

E = Element
i, j0 = Ix.of("i"), Ix.of("j0")
ROW = Ix.of("i0") + "i"


def text(body) -> str:
    return "\n".join(print_body(body, printer(vector_math=False).doprint))


def golden(s: str) -> str:
    return textwrap.dedent(s).strip("\n")


def run(body, arrays: dict, scalars: dict | None = None) -> dict:
    """Execute the printed ``body`` with numpy arrays (copies) and return them."""
    env = {"np": np, "math": __import__("math"), "theta": np.zeros(1), **{k: v.copy() for k, v in arrays.items()}, **(scalars or {})}
    exec(text(body), env)
    return {k: env[k] for k in arrays}


# ---- the IR ----
def test_index_arithmetic_keeps_written_order():
    assert str(ROW) == "i0 + i"
    assert str(ROW.shifted("i", 1)) == "i0 + i + 1"
    assert str(Ix.of(1) + j0 * 40 + "j1") == "1 + 40*j0 + j1"
    assert str(Ix.of(4) + j0 * -1) == "4 - j0"
    assert (j0 + 3).shifted("i", 1) == j0 + 3  # no i: unchanged
    assert Ix.of(2).constant == 2 and j0.constant is None and ROW.vars == {"i", "i0"}


def test_elements_are_symbols_with_structure():
    x = E("X", (ROW, 0))
    assert str(x) == "X[i0 + i, 0]" and x.array == "X" and x.vars == {"i", "i0"}
    assert x is E("X", (ROW, 0))  # interned like any symbol
    assert str(x.shifted("i", 1)) == "X[i0 + i + 1, 0]"
    e = sp.tanh(x * E("w", (j0,)))
    assert e.xreplace({x: local("X_i_0")}) == sp.tanh(local("X_i_0") * E("w", (j0,)))


def test_printing():
    body = [Alloc("v0", ("ROWS", 3)), Comment("hello"), Assign(local("s"), sp.S.Zero),
            Loop("i", ("rows",), [Assign(E("v0", (i, j0)), 2 * E("X", (ROW, j0)))], note="twice X", tail="per sample"),
            Code("return s")]
    assert text(body) == golden("""
        v0 = np.empty((ROWS, 3), theta.dtype)
        # hello
        s = 0.0
        # twice X
        for i in range(rows):  # per sample
            v0[i, j0] = 2*X[i0 + i, j0]
        return s
    """)


# ---- inline_single_use ----
def test_inline_single_use_replaces_an_array_read_once_at_the_element_written():
    x, v1, v2 = E("x", (i,)), E("v1", (i,)), E("v2", (i,))
    body = [Alloc("v1", ("ROWS",)), Alloc("v2", ("ROWS",)),
            Loop("i", ("rows",), [Assign(v1, sp.exp(x))]),
            Loop("i", ("rows",), [Assign(v2, v1 + 1)]),
            Loop("i", ("rows",), [Assign(local("s"), v2 * v2, "+=")])]
    out = passes.inline_single_use(body)
    # v1 is read once: gone; v2 is read twice (v2*v2): kept
    assert text(out) == golden("""
        v2 = np.empty(ROWS, theta.dtype)
        for i in range(rows):
            v2[i] = math.exp(x[i]) + 1
        for i in range(rows):
            s += v2[i]*v2[i]
    """)


def test_inline_single_use_keeps_arrays_read_elsewhere_or_whole():
    v = E("v", (i,))
    keep_code = [Alloc("v", ("ROWS",)), Loop("i", ("rows",), [Assign(v, E("x", (i,)))]),
                 Code("np.dot(v[:rows], w, out)", frozenset({"v", "w"}), frozenset({"out"}))]
    assert passes.inline_single_use(keep_code) == keep_code
    shifted = [Alloc("v", ("ROWS",)), Loop("i", ("rows",), [Assign(v, E("x", (i,)))]),
               Loop("i", ("rows",), [Assign(E("y", (i,)), v.shifted("i", 1))])]  # another element
    assert passes.inline_single_use(shifted) == shifted


# ---- fuse_loops ----
def test_fuse_loops_joins_nests_reading_only_the_element_written():
    a, b, c = E("a", (i, j0)), E("b", (i, j0)), E("c", (i, j0))
    body = [Loop("i", ("rows",), [Loop("j0", (8,), [Assign(a, E("x", (ROW, j0)) + 1)])], note="a"),
            Loop("i", ("rows",), [Loop("j0", (8,), [Assign(b, 2 * a)])], note="b"),
            Loop("i", ("rows",), [Loop("j0", (8,), [Assign(c, a.shifted("i", 1))])], note="c")]
    assert text(passes.fuse_loops(body)) == golden("""
        # a
        for i in range(rows):
            for j0 in range(8):
                a[i, j0] = x[i0 + i, j0] + 1
                # b
                b[i, j0] = 2*a[i, j0]
        # c
        for i in range(rows):
            for j0 in range(8):
                c[i, j0] = a[i + 1, j0]
    """)


def test_fuse_loops_keeps_different_ranges_and_writes_to_what_the_first_reads():
    s = E("s", (j0,))
    body = [Loop("j0", (8,), [Assign(s, E("x", (j0,)), "+=")]),
            Loop("j0", (8,), [Assign(E("y", (j0,)), s)])]  # reads an accumulated array
    assert passes.fuse_loops(body) == body
    body = [Loop("j0", (8,), [Assign(E("y", (j0,)), E("x", (j0 + 1,)))]),
            Loop("j0", (8,), [Assign(E("x", (j0,)), sp.S.Zero)])]  # writes what the first reads
    assert passes.fuse_loops(body) == body
    body = [Loop("j0", (8,), [Assign(E("y", (j0,)), sp.S.One)]), Loop("j0", (9,), [Assign(E("z", (j0,)), sp.S.One)])]
    assert passes.fuse_loops(body) == body


def test_fused_loops_compute_what_the_separate_ones_do():
    a, b = E("a", (j0,)), E("b", (j0,))
    body = [Loop("j0", (8,), [Assign(a, E("x", (j0,)) ** 2)]), Loop("j0", (8,), [Assign(b, a + E("x", (j0,)))])]
    fused = passes.fuse_loops(body)
    assert len(fused) == 1
    arrays = {"x": np.arange(8.0), "a": np.zeros(8), "b": np.zeros(8)}
    want, got = run(body, arrays), run(fused, arrays)
    np.testing.assert_array_equal(got["b"], want["b"])


# ---- hoist_sample_reads ----
def test_hoist_sample_reads_makes_one_local_per_sample_element():
    body = [Loop("i", ("rows",), [Loop("j0", (40,), [
        Assign(E("v", (i, j0)), E("X", (ROW, 0)) * E("w", (0, j0)) + E("X", (ROW, 1)) * E("w", (1, j0))),
        Assign(E("g", (j0,)), E("d", (i, 0)) * E("v", (i, j0)), "+="),
    ])])]
    assert text(passes.hoist_sample_reads(body)) == golden("""
        for i in range(rows):
            X_i_0 = X[i0 + i, 0]
            X_i_1 = X[i0 + i, 1]
            d_i_0 = d[i, 0]
            for j0 in range(40):
                v[i, j0] = X_i_0*w[0, j0] + X_i_1*w[1, j0]
                g[j0] += d_i_0*v[i, j0]
    """)


def test_hoist_leaves_loops_without_inner_loops_and_arrays_the_loop_writes():
    flat = [Loop("i", ("rows",), [Assign(E("y", (i,)), E("X", (ROW, 0)))])]
    assert passes.hoist_sample_reads(flat) == flat
    writes = [Loop("i", ("rows",), [Assign(E("d", (i, 0)), sp.S.One),
                                    Loop("j0", (4,), [Assign(E("g", (j0,)), E("d", (i, 0)), "+=")])])]
    assert passes.hoist_sample_reads(writes) == writes


# ---- pair_samples ----
def paired_input():
    d = E("v9", (i, 0))
    delta = E("v10", (i, j0))
    return [
        Alloc("v10", ("ROWS", 40)),
        Loop("i", ("rows",), [
            Assign(local("X_i_0"), E("X", (ROW, 0))),
            Assign(local("v9_i_0"), d),
            Loop("j0", (40,), [
                Assign(delta, E("w", (0, j0)) * local("v9_i_0") * (1 - E("h", (i, j0)) ** 2)),
                Assign(E("gb", (j0,)), delta, "+="),
                Assign(E("s1", (0, j0)), local("X_i_0") * delta, "+="),
            ]),
        ], note="the layer's delta"),
    ]


def test_pair_samples_golden():
    assert text(passes.pair_samples(paired_input())) == golden("""
        # the layer's delta
        for i in range(0, rows - 1, 2):  # two samples per iteration (accumulators stored once)
            X_i_0 = X[i0 + i, 0]
            v9_i_0 = v9[i, 0]
            X_i1_0 = X[i0 + i + 1, 0]
            v9_i1_0 = v9[i + 1, 0]
            for j0 in range(40):
                v10_i = v9_i_0*w[0, j0]*(1 - (h[i, j0]*h[i, j0]))
                v10_i1 = v9_i1_0*w[0, j0]*(1 - (h[i + 1, j0]*h[i + 1, j0]))
                gb[j0] += v10_i + v10_i1
                s1[0, j0] += X_i_0*v10_i + X_i1_0*v10_i1
        for i in range(rows - rows % 2, rows):  # an odd block's last sample
            X_i_0 = X[i0 + i, 0]
            v9_i_0 = v9[i, 0]
            for j0 in range(40):
                v10_i = v9_i_0*w[0, j0]*(1 - (h[i, j0]*h[i, j0]))
                gb[j0] += v10_i
                s1[0, j0] += X_i_0*v10_i
    """)


@pytest.mark.parametrize("rows", [1, 6, 7])
def test_paired_loop_sums_what_the_single_loop_sums(rows):
    rng = np.random.default_rng(rows)
    arrays = {"X": rng.standard_normal((20, 1)), "v9": rng.standard_normal((rows, 1)), "h": rng.standard_normal((rows, 40)),
              "w": rng.standard_normal((1, 40)), "gb": np.zeros(40), "s1": np.zeros((1, 40)),
              "v10": np.zeros((rows, 40))}
    scalars = {"rows": rows, "i0": 3, "ROWS": rows}
    want = run(paired_input(), arrays, scalars)
    got = run(passes.pair_samples(paired_input()), arrays, scalars)
    for k in ("gb", "s1"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-14)


def test_pair_samples_needs_an_accumulator_and_a_plain_nest():
    no_sum = [Loop("i", ("rows",), [Loop("j0", (4,), [Assign(E("y", (i, j0)), E("x", (i, j0)))])])]
    assert passes.pair_samples(no_sum) == no_sum
    reads_sum = [Loop("i", ("rows",), [Loop("j0", (4,), [Assign(E("g", (j0,)), E("g", (j0,)) * E("x", (i, j0)), "+=")])])]
    assert passes.pair_samples(reads_sum) == reads_sum


# ---- common_subexpressions ----
def test_common_subexpressions_per_assignment():
    x = E("x", (j0,))
    body = [Loop("j0", (4,), [Assign(E("y", (j0,)), sp.exp(x) * (1 + sp.exp(x)))])]
    assert text(passes.common_subexpressions(body)) == golden("""
        for j0 in range(4):
            t0 = math.exp(x[j0])
            y[j0] = t0*(t0 + 1)
    """)


def test_terms_print_in_written_order():
    p = printer()
    assert p.doprint(Terms(local("b") * 2, local("a"))) == "2*b + a"


def test_pass_order():
    assert [p.__name__ for p in passes.PASSES] == [
        "inline_single_use", "fuse_loops", "hoist_sample_reads", "pair_samples", "common_subexpressions"]
