"""Index arithmetic: which element of an op's input each element of its output reads.

One module for every stage that visits elements: the fused lowering (``planning/schedule.py``, with
int indices), the blocked printer (``codegen/blocked.py``, with affine loop indices) and
inspection (``tools/explain.py``, with SymPy index symbols). An index here is a tuple over a
node's *fixed* dims (the sample dim N is implied), and its entries may be any of those
kinds: the functions only reorder them, put constants in, or call ``affine`` for a sliced
axis.

``VIEWS`` is the index map of each view op (an output element is one element of one
input, nothing computed): ``VIEWS[op](node, idx, affine) -> (input position, its index)``.
"""

from __future__ import annotations

from typing import Any, Callable

from .graph import N, Node

Affine = Callable[[int, int, Any], Any]  # (start, step, i) -> start + step * i


def _affine(start: int, step: int, i: Any) -> Any:
    return start + step * i


def fixed_shape(node: Node) -> tuple:
    """``node``'s shape without the sample dim."""
    return tuple(d for d in node.shape if d is not N)


def per_sample(node: Node) -> bool:
    return N in node.shape


def broadcast_map(out_shape: tuple, in_shape: tuple) -> Callable[[tuple], tuple]:
    """Map an output fixed index to the input fixed index numpy broadcasting reads."""
    lead = len(out_shape) - len(in_shape)
    out_fixed = {a: j for j, a in enumerate(a for a, d in enumerate(out_shape) if d is not N)}
    picks = []
    for k, d in enumerate(in_shape):
        if d is N:
            continue
        picks.append(None if d == 1 else out_fixed[lead + k])
    return lambda idx: tuple(0 if p is None else idx[p] for p in picks)


def index_source(in_shape: tuple, key: tuple, idx: tuple, affine: Affine = _affine) -> tuple:
    """The fixed index of ``x`` that element ``idx`` of ``x[key]`` reads; ``affine(start,
    step, i)`` makes a sliced axis' index."""
    out, j, axis = [], 0, 0
    for k in key:
        if k[0] == "new":
            j += 1
            continue
        dim = in_shape[axis]
        axis += 1
        if dim is N:
            continue
        if k[0] == "int":
            out.append(k[1])
        else:
            out.append(affine(k[1], k[3], idx[j]))
            j += 1
    return tuple(out)


def transpose_source(node: Node, idx: tuple) -> tuple:
    """The input index element ``idx`` of ``transpose(x, perm)`` reads."""
    (x,), perm = node.inputs, node.attr("perm")
    out_fixed = [a for a in range(node.ndim) if node.shape[a] is not N]
    where = {perm[a]: j for j, a in enumerate(out_fixed)}  # input axis -> position in idx
    return tuple(idx[where[a]] for a in range(x.ndim) if x.shape[a] is not N)


def summed_index(x_shape: tuple, axes: tuple, keepdims: bool, idx: tuple) -> tuple:
    """The output index of ``sum(x, axes, keepdims)`` that element ``idx`` of x adds into."""
    out, k = [], 0
    for a, d in enumerate(x_shape):
        if a in axes:
            out += [0] if keepdims else []
        elif d is not N:
            out.append(idx[k])
        k += d is not N
    return tuple(out)


def gather_source(node: Node, idx: tuple) -> tuple[int, tuple]:
    """(input position, its index) that element ``idx`` of a stack or concatenate reads."""
    axis = node.attr("axis")
    pos = sum(1 for a in range(axis) if node.shape[a] is not N)
    if node.op == "stack":
        return idx[pos], idx[:pos] + idx[pos + 1:]
    start = 0
    for k, x in enumerate(node.inputs):
        if idx[pos] < start + x.shape[axis]:
            return k, idx[:pos] + (idx[pos] - start,) + idx[pos + 1:]
        start += x.shape[axis]
    raise IndexError(f"{idx} is outside {node.label()}")  # pragma: no cover


def gather_dest(node: Node, k: int, idx: tuple) -> tuple:
    """The output index of a stack or concatenate that element ``idx`` of input ``k`` goes
    to (the inverse of ``gather_source``; ``idx`` may hold loop indices)."""
    axis = node.attr("axis")
    pos = sum(1 for a in range(axis) if node.shape[a] is not N)
    if node.op == "stack":
        return tuple(idx[:pos]) + (k,) + tuple(idx[pos:])
    start = sum(x.shape[axis] for x in node.inputs[:k])
    return tuple(idx[:pos]) + ((idx[pos] + start) if start else idx[pos],) + tuple(idx[pos + 1:])


VIEWS: dict[str, Callable[[Node, tuple, Affine], tuple[int, tuple]]] = {
    "broadcast_to": lambda node, idx, affine: (0, broadcast_map(node.shape, node.inputs[0].shape)(idx)),
    "stop_gradient": lambda node, idx, affine: (0, tuple(idx)),
    "transpose": lambda node, idx, affine: (0, transpose_source(node, idx)),
    "index": lambda node, idx, affine: (0, index_source(node.inputs[0].shape, node.attr("key"), idx, affine)),
}


def view_source(node: Node, idx: tuple, affine: Affine = _affine) -> tuple[Node, tuple]:
    """The input node and index element ``idx`` of the view ``node`` reads."""
    k, source = VIEWS[node.op](node, tuple(idx), affine)
    return node.inputs[k], source
