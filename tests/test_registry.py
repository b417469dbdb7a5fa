"""The op registry: every op (ops.OPS) has a rule in every stage's table, and the tables
name no op that does not exist (like JAX's per-primitive rule tables)."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import autodiff
from graphc.tools import explain
from graphc.ir import indexing, ops
from graphc.planning import schedule
from graphc.codegen import blocked
from graphc.lsq import tangents
from graphc.ir.graph import toposort

NON_LEAVES = set(ops.OPS) - set(ops.LEAVES)


@pytest.mark.parametrize("table, covers", [
    (autodiff.ADJOINTS, NON_LEAVES),
    (schedule.RULES, set(ops.OPS)),
    (explain.INDEX_RULES, set(ops.OPS)),
    (indexing.VIEWS, set(ops.VIEWS)),
    (blocked.ARRAY_RULES, NON_LEAVES),
    (tangents.TANGENTS, NON_LEAVES),
], ids=["autodiff.ADJOINTS", "schedule.RULES", "explain.INDEX_RULES", "indexing.VIEWS", "blocked.ARRAY_RULES",
        "lsq.tangents.TANGENTS"])
def test_every_op_has_a_rule_in_every_table(table, covers):
    assert set(table) == covers


def test_the_blocked_printer_reads_leaves_and_views_inline():
    inline = set(blocked.ELEMENT_RULES)
    assert set(ops.LEAVES) - {"param"} <= inline and set(ops.VIEWS) <= inline  # params are loaded arrays
    assert inline <= set(ops.OPS) and inline | set(blocked.ARRAY_RULES) >= set(ops.OPS) - {"param"}


def test_graphs_hold_only_registered_ops():
    """One graph using every structural op, and its gradient graph (which adds unindex and
    count): every node's op is in the registry."""
    X, W = gc.data("X", shape=(None, 3)), gc.param("W", (2, 3))
    h = gc.tanh(X @ W.T)                                           # einsum, transpose, elementwise
    parts = gc.concatenate([h, gc.stack([h[:, 0], h[:, 1]], axis=1)], axis=1)  # index, stack, concatenate
    z = gc.reshape(parts, (None, 2, 2)) + gc.param("b", (2,))      # reshape, broadcasting
    loss = gc.mean(gc.sum(z, axis=(1, 2)) ** 2) + gc.stop_gradient(gc.sum(h))
    grads = autodiff.gradients(loss, [W])
    seen = {n.op for n in toposort([loss, *[g for g in grads.values() if g is not None]])}
    assert seen <= set(ops.OPS)
    assert {"einsum", "transpose", "index", "stack", "concatenate", "reshape", "unindex", "count",
            "sum", "mean", "stop_gradient", "elementwise", "broadcast_to"} <= seen
    X0 = np.random.default_rng(0).standard_normal((5, 3))
    at = dict(X=X0, W=np.full((2, 3), 0.1), b=np.array([0.5, -0.25]))
    blocked_, fused = (gc.compile(loss, schedule=s)(**at) for s in ("blocked", "fused"))  # every table used
    assert blocked_.loss == pytest.approx(fused.loss, rel=1e-13)
    np.testing.assert_allclose(blocked_.grads["W"], fused.grads["W"], rtol=1e-12)
