"""Reverse-mode differentiation on the graph, node by node.

Elementwise ops get their local derivatives from SymPy (``ops.Elementwise.partials``);
structural ops have adjoint rules at the tensor level in ``ADJOINTS``, so a layer's
weight matrix stays one node and is never expanded into scalar symbols. The result is
more graph: one gradient node per parameter, lowered and fused with the forward pass by
``schedule``.
"""

from __future__ import annotations

from typing import Callable, Sequence

from .ir import ops
from .ir.graph import N, Node, toposort

Rule = Callable[[Node, Node, list[bool]], Sequence["Node | None"]]


def gradients(loss: Node, wrt: Sequence[Node]) -> dict[Node, Node | None]:
    """d(loss)/d(p) for each p in ``wrt`` as graph nodes (None where the loss ignores p)."""
    order = toposort([loss])
    wanted = {id(p) for p in wrt}
    needs: set[int] = set()  # nodes that depend on some parameter in wrt
    for node in order:
        if id(node) in wanted or any(id(i) in needs for i in node.inputs):
            needs.add(id(node))
    adjoint: dict[int, Node] = {id(loss): ops.constant(1.0)}
    for node in reversed(order):
        g = adjoint.get(id(node))
        if g is None or node.is_leaf or id(node) not in needs:
            continue
        mask = [id(i) in needs for i in node.inputs]
        for inp, g_inp in zip(node.inputs, ADJOINTS[node.op](g, node, mask)):
            if g_inp is not None:
                prev = adjoint.get(id(inp))
                adjoint[id(inp)] = g_inp if prev is None else prev + g_inp
    return {p: adjoint.get(id(p)) for p in wrt}


def hessian(grads: dict[Node, Node | None], wrt: Sequence[Node]) -> dict[tuple[Node, Node], Node | None]:
    """d2(loss)/d(p)d(q) for p up to q in ``wrt`` (the upper triangle, row by row) as graph
    nodes, from the gradients ``grads`` (``gradients(loss, wrt)``); None where it is zero."""
    out: dict[tuple[Node, Node], Node | None] = {}
    for k, p in enumerate(wrt):
        g = grads[p]
        row = gradients(g, wrt[k:]) if g is not None else {}
        for q in wrt[k:]:
            out[(p, q)] = row.get(q)
    return out


# ---- helpers ---------------------------------------------------------------------------
def unbroadcast(g: Node, shape: tuple) -> Node:
    """Sum ``g`` over the axes that broadcasting added or stretched, back to ``shape``."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead:
        g = ops.sum(g, axis=tuple(range(lead)))
    stretched = tuple(k for k, d in enumerate(shape) if d == 1 and g.shape[k] != 1)
    return ops.sum(g, axis=stretched, keepdims=True) if stretched else g


def expand(g: Node, axes: tuple[int, ...], shape: tuple) -> Node:
    """Undo a reduction over ``axes``: re-insert them (size 1) and broadcast to ``shape``."""
    key = tuple(None if k in axes else slice(None) for k in range(len(shape)))
    return ops.broadcast_to(ops.index(g, key) if axes else g, shape)


def _scaled(g: Node, d: Node | None) -> Node | None:
    if d is None:
        return None
    if d.op == "const" and d.attr("value").ndim == 0:
        v = float(d.attr("value"))
        return g if v == 1.0 else -g if v == -1.0 else g * v
    return g * d


def sample_count() -> Node:
    """The number of samples N as a scalar node (bound at call time)."""
    return Node("count")


# ---- adjoint rules: one per structural op --------------------------------------------
def _elementwise(g: Node, node: Node, mask: list[bool]) -> list[Node | None]:
    out: list[Node | None] = []
    for k, inp in enumerate(node.inputs):
        contrib = _scaled(g, ops.derivative_node(node, k)) if mask[k] else None
        out.append(None if contrib is None else unbroadcast(contrib, inp.shape))
    return out


def _sum(g: Node, node: Node, mask: list[bool]) -> list[Node]:
    shape = node.inputs[0].shape
    if node.attr("keepdims"):
        return [ops.broadcast_to(g, shape)]
    return [expand(g, node.attr("axes"), shape)]


def _mean(g: Node, node: Node, mask: list[bool]) -> list[Node]:
    (x,) = node.inputs
    fixed = 1
    for k in node.attr("axes"):
        fixed *= 1 if x.shape[k] is N else x.shape[k]
    count = sample_count() * fixed if any(x.shape[k] is N for k in node.attr("axes")) else ops.constant(fixed)
    return [_sum(g, node, mask)[0] / count]


def _einsum(g: Node, node: Node, mask: list[bool]) -> list[Node | None]:
    ins, out = node.attr("ins"), node.attr("out")
    grads: list[Node | None] = []
    for k, (sub, x) in enumerate(zip(ins, node.inputs)):
        if not mask[k]:
            grads.append(None)
            continue
        others = [(s, o) for j, (s, o) in enumerate(zip(ins, node.inputs)) if j != k]
        seen = set(out).union(*[set(s) for s, _ in others])
        kept = "".join(c for c in sub if c in seen)  # letters only x has were summed out of x alone
        spec = ",".join([out] + [s for s, _ in others]) + "->" + kept
        gx = ops.einsum(spec, g, *[o for _, o in others])
        private = tuple(j for j, c in enumerate(sub) if c not in seen)
        grads.append(expand(gx, private, x.shape))
    return grads


def _stack(g: Node, node: Node, mask: list[bool], lead: int = 0) -> list[Node | None]:
    """``lead``: axes g has before node's (lsq/tangents.py's per-sample adjoints: one)."""
    axis = node.attr("axis") + lead
    pick = lambda k: tuple([slice(None)] * axis + [k])  # noqa: E731
    return [ops.index(g, pick(k)) if m else None for k, m in enumerate(mask)]


def _concatenate(g: Node, node: Node, mask: list[bool], lead: int = 0) -> list[Node | None]:
    """``lead``: as for _stack."""
    axis, out, start = node.attr("axis"), [], 0
    for inp, m in zip(node.inputs, mask):
        size = inp.shape[axis]
        key = tuple([slice(None)] * (axis + lead) + [slice(start, start + size)])
        out.append(ops.index(g, key) if m else None)
        start += size
    return out


ADJOINTS: dict[str, Rule] = {
    "elementwise": _elementwise,
    "sum": _sum,
    "mean": _mean,
    "einsum": _einsum,
    "stack": _stack,
    "concatenate": _concatenate,
    "stop_gradient": lambda g, node, mask: [None],
    "broadcast_to": lambda g, node, mask: [unbroadcast(g, node.inputs[0].shape)],
    "reshape": lambda g, node, mask: [ops.reshape(g, node.inputs[0].shape)],
    "transpose": lambda g, node, mask: [
        ops.transpose(g, [node.attr("perm").index(k) for k in range(node.ndim)])
    ],
    "index": lambda g, node, mask: [ops.unindex(g, node.attr("key"), node.inputs[0].shape)],
    "unindex": lambda g, node, mask: [Node("index", (g,), node.attrs, node.inputs[0].shape)],
}
