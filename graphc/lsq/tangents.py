"""Forward-mode differentiation on the graph: the per-sample Jacobian of the residuals.

``autodiff`` runs reverse mode, which sums a parameter's gradient over the samples. A
least-squares fit needs the Jacobian itself, ``dr[i]/dp`` for every sample ``i``, to form
``J^T J = sum_i grad(r_i) grad(r_i)^T`` without storing ``J``. Forward mode gives it as one
node of the residuals' shape per scalar parameter: seed the parameter's tangent with 1 (a
one-hot constant for an element of a tensor parameter) and push tangents through the graph.
Elementwise ops use the same local derivatives as reverse mode (``ops.derivative_node``: SymPy's,
or a ``gc.function``'s own ``derivative=``); every structural op is linear, so its tangent
is the op applied to its inputs' tangents. One rule per op in ``TANGENTS`` (the ops of
``autodiff.ADJOINTS``, a test checks both tables list the same ops).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from ..ir import ops
from ..ir.graph import Node, toposort

Tangent = Node | None  # None: the node does not depend on the seeded parameter element
Rule = Callable[[Node, list[Tangent]], Tangent]


def jacobian(residuals: Node, params: Sequence[Node]) -> list[tuple[str, Tangent]]:
    """``(label, d(residuals)/d(element))`` for every scalar element of every parameter, in
    theta's row-major order; each derivative has the residuals' shape (None: identically 0)."""
    order = toposort([residuals])
    columns = []
    for p in params:
        for idx in np.ndindex(*p.shape):
            label = p.name + (f"[{', '.join(map(str, idx))}]" if idx else "")
            columns.append((label, tangent(order, p, _seed(p, idx))))
    return columns


def _seed(p: Node, idx: tuple) -> Node:
    if not idx:
        return ops.constant(1.0)
    onehot = np.zeros(p.shape)
    onehot[idx] = 1.0
    return ops.constant(onehot)


def tangent(order: list[Node], p: Node, seed: Node) -> Tangent:
    """Push ``seed`` (the tangent of parameter ``p``) through ``order`` (topological, output last)."""
    tangents: dict[int, Tangent] = {id(p): seed}
    for node in order:
        if id(node) in tangents:
            continue
        ins = [tangents.get(id(i)) for i in node.inputs]
        t = None if node.is_leaf or all(x is None for x in ins) else TANGENTS[node.op](node, ins)
        tangents[id(node)] = _fit(t, node) if t is not None else None
    return tangents[id(order[-1])]


def _fit(t: Node, node: Node) -> Node:
    """``t`` broadcast to ``node``'s shape (an elementwise op's tangent can be smaller)."""
    return t if t.shape == node.shape else ops.broadcast_to(t, node.shape)


def _zeros_like(node: Node) -> Node:
    return ops.broadcast_to(ops.constant(0.0), node.shape)


def _times(d: Node | None, t: Node) -> Node | None:
    if d is None:
        return None
    if d.op == "const" and d.attr("value").ndim == 0:
        v = float(d.attr("value"))
        return t if v == 1.0 else -t if v == -1.0 else None if v == 0.0 else t * v
    return d * t


# ---- tangent rules: one per op ---------------------------------------------------------
def _elementwise(node: Node, ins: list[Tangent]) -> Tangent:
    terms = [_times(ops.derivative_node(node, k), t) for k, t in enumerate(ins) if t is not None]
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def _linear(node: Node, ins: list[Tangent]) -> Tangent:
    """An op linear in all its inputs together (index, reshape, sum, stack, ...): the same op
    on the tangents, a zero standing in for an input that does not depend on the parameter."""
    new = tuple(t if t is not None else _zeros_like(i) for t, i in zip(ins, node.inputs))
    return dataclasses.replace(node, inputs=new)


def _multilinear(node: Node, ins: list[Tangent]) -> Tangent:
    """einsum is linear in each operand: the sum over operands of the op with that operand
    replaced by its tangent (product rule)."""
    terms = [dataclasses.replace(node, inputs=node.inputs[:k] + (t,) + node.inputs[k + 1:])
             for k, t in enumerate(ins) if t is not None]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


TANGENTS: dict[str, Rule] = {
    "elementwise": _elementwise,
    "einsum": _multilinear,
    "stop_gradient": lambda node, ins: None,
    **{op: _linear for op in ("sum", "mean", "stack", "concatenate", "broadcast_to", "reshape",
                              "transpose", "index", "unindex")},
}
