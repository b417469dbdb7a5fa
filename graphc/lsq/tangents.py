"""The per-sample Jacobian of the residuals, two ways: by columns (forward mode) and by rows.

Columns: ``jacobian``, for the fused path's few parameters. ``autodiff`` runs reverse mode, which sums a parameter's gradient over the samples. A
least-squares fit needs the Jacobian itself, ``dr[i]/dp`` for every sample ``i``, to form
``J^T J = sum_i grad(r_i) grad(r_i)^T`` without storing ``J``. Forward mode gives it as one
node of the residuals' shape per scalar parameter: seed the parameter's tangent with 1 (a
one-hot constant for an element of a tensor parameter) and push tangents through the graph.
Elementwise ops use the same local derivatives as reverse mode (``ops.derivative_node``: SymPy's,
or a ``gc.function``'s own ``derivative=``); every structural op is linear, so its tangent
is the op applied to its inputs' tangents. One rule per op in ``TANGENTS`` (the ops of
``autodiff.ADJOINTS``, a test checks both tables list the same ops).

Rows: ``per_sample_jacobian``, for the dense path's many parameters. Forward mode takes one
pass per scalar parameter: right for a few, whose ``J^T J`` the fused schedule unrolls; for
hundreds (a basis expansion, a GLM, a small network) it is hundreds of passes. The rows come
from ONE reverse pass per residual column instead.

The reverse-mode gradient of ``sum(r)`` with respect to a parameter ``p`` is a sum over the
samples of per-sample terms, and those terms are exactly the rows of the Jacobian:
``d r[i] / d p``. Reverse mode sums them where an adjoint flows from a per-sample node into a
node that does not vary per sample (the weight ``W`` in ``X @ W.T``: the adjoint rule sums
``g[i, :, None] * X[i, None, :]`` over ``i``). ``per_sample_jacobian`` runs the same
adjoint rules (``autodiff.ADJOINTS``) on the per-sample nodes, but at that boundary keeps
the sample axis: the adjoint of a fixed node ``v`` becomes a per-sample node of shape
``(N, *v.shape)`` (``BOUNDARY``), and from there on the adjoints of fixed nodes carry that
leading sample axis (``BATCHED``: each structural op's adjoint rule with one more axis).
What reaches a parameter ``p`` is ``J_p``, of shape ``(N, *p.shape)``; row ``i`` holds
``d r[i] / d p``.

This holds when residual ``i`` depends on the parameters only through sample ``i``'s
values: no sum over the samples of anything that depends on a parameter. A residual that
does (``y - a * x / mean(a * x)``) is a GraphcError naming the sum.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from ..autodiff import ADJOINTS, _concatenate, _stack
from ..errors import GraphcError
from ..ir import ops
from ..ir.graph import N, Node, toposort
from ..ir.indexing import per_sample
from ..planning.blocked import reduces_samples

Tangent = Node | None  # None: the node does not depend on the seeded parameter element
Rule = Callable[[Node, list[Tangent]], Tangent]


def jacobian(residuals: Node, params: Sequence[Node]) -> list[tuple[str, Tangent]]:
    """``(label, d(residuals)/d(element))`` for every scalar element of every parameter, in
    theta's row-major order; each derivative has the residuals' shape (None: identically 0)."""
    order = toposort([residuals])
    return [(label(p, idx), tangent(order, p, _seed(p, idx))) for p in params for idx in np.ndindex(*p.shape)]


def label(p: Node, idx: tuple) -> str:
    """A scalar parameter's label: "b1", or an element of a tensor one, "W[0, 1]"."""
    return p.name + (f"[{', '.join(map(str, idx))}]" if idx else "")


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


# ==== rows: reverse mode that keeps the samples apart ====================================
ALL = ("slice", 0, None, 1)  # a normalized index key's ':' (ops._normalize_key)


def per_sample_jacobian(residual: Node, params: Sequence[Node]) -> dict[Node, Node | None]:
    """``J_p`` (shape ``(N, *p.shape)``: ``J_p[i] = d residual[i] / d p``) for each parameter
    ``p``; None where the residual does not depend on ``p``. ``residual`` has shape ``(N,)``."""
    if residual.shape != (N,):  # pragma: no cover - the caller picks the residual's columns
        raise GraphcError(f"per_sample_jacobian: residual of shape {residual.shape}, expected (N,)")
    order = toposort([residual])
    wanted = {id(p) for p in params}
    needs: set[int] = set()  # nodes that depend on a parameter
    for node in order:
        if id(node) in wanted or any(id(i) in needs for i in node.inputs):
            needs.add(id(node))
            if reduces_samples(node):
                raise GraphcError(
                    f"least_squares: {node.label()} sums over the samples something that depends on the "
                    "parameters, so each residual depends on every sample; with more parameters than "
                    "the fused path takes (docs/fitting.md, Size), residual i may depend on the "
                    "parameters only through sample i's values")
    adjoint: dict[int, Node] = {id(residual): ops.broadcast_to(ops.constant(1.0), residual.shape)}
    for node in reversed(order):
        g = adjoint.get(id(node))
        if g is None or node.is_leaf or id(node) not in needs:
            continue
        mask = [id(i) in needs for i in node.inputs]
        if per_sample(node):
            inner = [m and per_sample(i) for m, i in zip(mask, node.inputs)]
            outs = list(ADJOINTS[node.op](g, node, inner)) if any(inner) else [None] * len(mask)
            for k, inp in enumerate(node.inputs):
                if not inner[k]:
                    outs[k] = None
                if mask[k] and not per_sample(inp):  # the boundary: keep the sample axis
                    rule = BOUNDARY.get(node.op)
                    if rule is None:  # pragma: no cover - ops.py builds no other such node
                        raise GraphcError(f"least_squares: cannot keep the samples apart through "
                                          f"{node.op} {node.label()}")
                    outs[k] = rule(g, node, k)
        else:
            outs = BATCHED[node.op](g, node, mask)
        for inp, g_inp in zip(node.inputs, outs):
            if g_inp is not None:
                prev = adjoint.get(id(inp))
                adjoint[id(inp)] = g_inp if prev is None else prev + g_inp
    return {p: adjoint.get(id(p)) for p in params}


# ---- helpers -------------------------------------------------------------------------------
def keep_samples(c: Node, shape: tuple) -> Node:
    """The per-sample ``c`` summed back to ``(N, *shape)``: over the axes broadcasting added
    or stretched to make ``c`` from a value of the fixed ``shape``, except the sample axis,
    which moves to the front (``autodiff.unbroadcast``, per sample)."""
    shape = tuple(shape)
    a = c.shape.index(N)
    lead = c.ndim - len(shape)
    summed = tuple(j for j in range(c.ndim)
                   if j != a and (j < lead or (shape[j - lead] == 1 and c.shape[j] != 1)))
    if summed:
        c = ops.sum(c, axis=summed, keepdims=True)
    if a != 0:
        c = ops.transpose(c, [a] + [j for j in range(c.ndim) if j != a])
    return ops.reshape(c, (N, *shape))


def _expand(g: Node, sub: str, seen: set[str], shape: tuple) -> Node:
    """Re-insert (as size 1, then broadcast) the letters of ``sub`` that einsum summed out of
    one operand alone; ``g`` has the sample axis first, then the kept letters."""
    private = [c not in seen for c in sub]
    if not any(private):
        return g
    key = (slice(None),) + tuple(None if p else slice(None) for p in private)
    return ops.broadcast_to(ops.index(g, key), (N, *shape))


def _einsum_operand(g: Node, node: Node, k: int, sample: str, out: str) -> Node:
    """The adjoint of einsum operand ``k`` (a fixed node), per sample: the product of ``g``
    (subscripts ``out``, the sample letter ``sample`` among them) with the other operands,
    keeping ``sample`` as the leading axis."""
    ins = node.attr("ins")
    sub, x = ins[k], node.inputs[k]
    others = [(s, o) for j, (s, o) in enumerate(zip(ins, node.inputs)) if j != k]
    seen = set(out).union(*[set(s) for s, _ in others])
    kept = "".join(c for c in sub if c in seen)
    spec = ",".join([out] + [s for s, _ in others]) + "->" + sample + kept
    return _expand(ops.einsum(spec, g, *[o for _, o in others]), sub, seen, x.shape)


# ---- at the boundary: a per-sample node's adjoint into a fixed input ----------------------
def _boundary_elementwise(g: Node, node: Node, k: int) -> Node | None:
    contrib = _times(ops.derivative_node(node, k), g)
    return None if contrib is None else keep_samples(contrib, node.inputs[k].shape)


def _boundary_einsum(g: Node, node: Node, k: int) -> Node:
    out = node.attr("out")
    (sample,) = [c for c, d in zip(out, node.shape) if d is N]
    return _einsum_operand(g, node, k, sample, out)


BOUNDARY: dict[str, Callable[[Node, Node, int], Node | None]] = {
    "elementwise": _boundary_elementwise,
    "einsum": _boundary_einsum,
    "broadcast_to": lambda g, node, k: keep_samples(g, node.inputs[0].shape),
}


# ---- fixed nodes: adjoints with a leading sample axis --------------------------------------
BatchedRule = Callable[[Node, Node, list[bool]], list["Node | None"]]


def _batched_elementwise(g: Node, node: Node, mask: list[bool]) -> list[Node | None]:
    out: list[Node | None] = []
    for k, inp in enumerate(node.inputs):
        contrib = _times(ops.derivative_node(node, k), g) if mask[k] else None
        out.append(None if contrib is None else keep_samples(contrib, inp.shape))
    return out


def _batched_sum(g: Node, node: Node, mask: list[bool]) -> list[Node]:
    x = node.inputs[0]
    axes = node.attr("axes")
    if not node.attr("keepdims"):
        g = ops.index(g, (slice(None),) + tuple(None if a in axes else slice(None) for a in range(x.ndim)))
    g = ops.broadcast_to(g, (N, *x.shape))
    if node.op == "mean":
        g = g / float(math.prod(x.shape[a] for a in axes))
    return [g]


def _batched_einsum(g: Node, node: Node, mask: list[bool]) -> list[Node | None]:
    used = set("".join(node.attr("ins")))
    sample = next(c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used)
    out = sample + node.attr("out")
    return [_einsum_operand(g, node, k, sample, out) if m else None for k, m in enumerate(mask)]


def _batched_transpose(g: Node, node: Node, mask: list[bool]) -> list[Node]:
    perm = node.attr("perm")
    return [ops.transpose(g, [0] + [perm.index(k) + 1 for k in range(node.ndim)])]


def _batched_index(g: Node, node: Node, mask: list[bool]) -> list[Node]:
    x = node.inputs[0]
    return [ops.unindex(g, (ALL,) + node.attr("key"), (N, *x.shape))]


def _batched_unindex(g: Node, node: Node, mask: list[bool]) -> list[Node]:
    x = node.inputs[0]
    return [Node("index", (g,), (("key", (ALL,) + node.attr("key")),), (N, *x.shape))]


BATCHED: dict[str, BatchedRule] = {
    "elementwise": _batched_elementwise,
    "sum": _batched_sum,
    "mean": _batched_sum,
    "einsum": _batched_einsum,
    "stack": lambda g, node, mask: _stack(g, node, mask, lead=1),  # the sample axis first
    "concatenate": lambda g, node, mask: _concatenate(g, node, mask, lead=1),
    "stop_gradient": lambda g, node, mask: [None],
    "broadcast_to": lambda g, node, mask: [keep_samples(g, node.inputs[0].shape)],
    "reshape": lambda g, node, mask: [ops.reshape(g, (N, *node.inputs[0].shape))],
    "transpose": _batched_transpose,
    "index": _batched_index,
    "unindex": _batched_unindex,
}
