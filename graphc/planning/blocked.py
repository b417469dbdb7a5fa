"""Scheduling, blocked: for layers too wide to unroll into scalars.

The fused schedule (``planning/schedule.py``) writes every element of every layer as its own SymPy
expression: right for narrow layers, whose activations then never touch memory, but a
256-wide layer would be 65,536 scalar terms per sample. The blocked schedule keeps the
graph at the tensor level instead: the samples are visited in blocks of ``rows``; inside
a block every per-sample node is an array of shape ``(rows, *its fixed dims)``,
contractions become dense products on those arrays (``np.dot``, i.e. BLAS, where SciPy
provides it to Numba), elementwise chains become one loop nest each (SymPy still prints
every elementwise expression and derivative), and a reduction over the samples becomes an
*accumulator array* that each block adds into.

This module decides WHAT is computed where: which pass over the samples computes each
node, which nodes are kept in arrays (``materialize``) and which are inlined into their
consumer's loop, and where each accumulator lives in ``acc``. ``codegen/blocked.py``
prints it. The choice between the schedules is ``choose`` (``schedule="auto"``).
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any, Sequence

import sympy as sp

from .. import targets
from ..errors import UnsupportedError
from ..ir.graph import N, Node, spell, toposort
from ..ir.indexing import fixed_shape, per_sample
from .plan import Accumulator, Blocked, Plan, param_layout
from ..timings import stages

SCHEDULES = ("auto", "fused", "blocked")
WIDE = 64  # auto: a per-sample contraction with a weight this large runs blocked
SMALL = 4  # a contraction over at most this many products per element is printed as their sum
BLOCK_ELEMENTS = 65536  # rows per block * the widest per-sample node: 256 rows at width 256 (measured best)
INLINE = ("elementwise", "broadcast_to", "transpose", "index", "stop_gradient")  # element views


def reduces_samples(node: Node) -> bool:
    """A sum over the sample dim: its value is known only after a whole pass."""
    if node.op in ("sum", "mean"):
        x = node.inputs[0]
        return any(x.shape[a] is N for a in node.attr("axes"))
    if node.op == "einsum":
        out = node.attr("out")
        return any(d is N and c not in out for s, x in zip(node.attr("ins"), node.inputs) for c, d in zip(s, x.shape))
    return False


def is_product(node: Node) -> bool:
    """An einsum that sums at most SMALL products per element and nothing over the samples:
    inlined into its consumer as a sum of products, like an elementwise op. g[:, None] *
    w[None, :] from a width-1 layer's backward pass sums none; X @ W.T with 3 input features
    sums 3 (np.dot on a 3-long contraction costs more than the products)."""
    if node.op != "einsum" or reduces_samples(node):
        return False
    out = node.attr("out")
    dropped = {c: d for s, x in zip(node.attr("ins"), node.inputs) for c, d in zip(s, x.shape) if c not in out}
    return math.prod(dropped.values()) <= SMALL


def blas_available() -> bool:
    """Numba's np.dot needs SciPy's BLAS (``pip install graphc[blas]``)."""
    return importlib.util.find_spec("scipy") is not None


def choose(loss: Node, grads: dict[Node, Node | None], target: str, extra: Sequence[Node] = ()) -> str:
    """``schedule="auto"``: blocked when a per-sample contraction has a weight of WIDE or
    more elements (a layer that wide costs the fused schedule one unrolled term per weight),
    fused otherwise (and always on cuda, which has no blocked printer). ``extra``: more
    outputs (a forward function's)."""
    if not targets.get(target).blocks:
        return "fused"
    for node in toposort([loss, *extra] + [g for g in grads.values() if g is not None]):
        if node.op == "einsum" and any(per_sample(x) for x in node.inputs):
            if any(not per_sample(x) and math.prod(x.shape) >= WIDE for x in node.inputs):
                return "blocked"
    return "fused"


def plan(loss: Node, wrt: Sequence[Node], grads: dict[Node, Node | None], params: Sequence[Node],
         data: Sequence[Node], timings: Any = None) -> Plan:
    """Loss and gradients at tensor level (``schedule.fuse``'s arguments; ``timings`` gets
    the seconds of 'schedule')."""
    outputs = [loss] + [g for p in wrt if (g := grads[p]) is not None]
    named = {id(g): f"grad_{spell(p.name)}" for p in wrt if (g := grads[p]) is not None}
    named[id(loss)] = "loss"
    with stages(timings)("schedule"):
        accumulators, kept, rows = _analyse(outputs, named)
    frozen, layout = param_layout(list(wrt), list(params))
    lowered = Blocked({p.name: grads[p] for p in wrt}, kept, rows, blas_available())
    return Plan(loss, list(wrt), frozen, list(data), layout, [p.name for p in wrt if grads[p] is None],
                accumulators, lowered)


def forward_plan(results: Sequence[Node], params: Sequence[Node], data: Sequence[Node],
                 timings: Any = None) -> Plan:
    """A forward function's blocked plan (``gc.compile`` of wide layers' outputs): the passes
    for the sums ``results`` read, then a loop over the blocks that stores them."""
    with stages(timings)("schedule"):
        accumulators, kept, rows = _analyse(list(results), {})
    frozen, layout = param_layout([], list(params))
    return Plan(results[0], [], frozen, list(data), layout, [], accumulators,
                Blocked({}, kept, rows, blas_available()), list(results))


def _analyse(outputs: list[Node], named: dict[int, str]) -> tuple[list[Accumulator], list[Node], int]:
    """The accumulators (each sum over the samples, its pass and slot; ``named``: names of
    those that are outputs), the nodes kept in arrays (in topological order), and the rows
    per block."""
    order = toposort(outputs)
    readers: dict[int, list[Node]] = {}
    for node in order:
        for inp in node.inputs:
            readers.setdefault(id(inp), []).append(node)
    finished = {id(out) for out in outputs}

    def consumers(node: Node) -> int:  # an output is also read by finish
        return len(readers.get(id(node), [])) + (id(node) in finished)

    stage: dict[int, int] = {}
    sums: list[tuple[int, Node]] = []  # (pass, node) of each sum over the samples
    for node in order:
        first = max((stage[id(i)] for i in node.inputs), default=0)
        if reduces_samples(node):
            sums.append((first, node))
            stage[id(node)] = first + 1
        else:
            if any(per_sample(i) for i in node.inputs) and not per_sample(node):
                raise UnsupportedError(f"blocked schedule: {node.op} {node.label()} leaves the sample dim")
            stage[id(node)] = first

    materialize: set[int] = set()
    array_ops = {"reshape", "stack", "concatenate", "unindex", "einsum", "sum", "mean"}

    def fed(node: Node) -> bool:  # read by an op that needs an array
        return any(r.op == "reshape" or (r.op == "einsum" and not is_product(r)) for r in readers.get(id(node), []))

    for node in order:
        if (node.op == "elementwise" and node.dtype != "bool") or is_product(node):
            if consumers(node) >= 2 or fed(node):
                materialize.add(id(node))
        elif node.op in array_ops:
            materialize.add(id(node))
        elif node.op in INLINE and fed(node):
            if not (node.op == "transpose" and node.ndim == 2 and not per_sample(node)):  # W.T is a view
                materialize.add(id(node))

    accumulators, offset = [], 0
    for k, (pass_, node) in enumerate(sorted(sums, key=lambda t: t[0])):  # a sum that IS an output is named after it
        name = named.get(id(node), f"s{k}") if node.op != "mean" else f"s{k}"
        accumulators.append(Accumulator(sp.Symbol(name, real=True), fixed_shape(node), pass_, offset, node=node))
        offset += accumulators[-1].size
    widest = max((math.prod(fixed_shape(n)) for n in order if per_sample(n)), default=1)
    rows = 1 << max(6, min(11, int(math.log2(max(1, BLOCK_ELEMENTS // max(1, widest))))))
    return accumulators, [n for n in order if id(n) in materialize], rows
