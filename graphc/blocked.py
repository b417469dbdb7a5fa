"""Scheduling, blocked: for layers too wide to unroll into scalars.

The fused schedule (``schedule.py``) writes every element of every layer as its own SymPy
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
from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import UnsupportedError
from .graph import N, Node, toposort
from .schedule import Layout

SCHEDULES = ("auto", "fused", "blocked")
WIDE = 64  # auto: a per-sample contraction with a weight this large runs blocked
BLOCK_ELEMENTS = 16384  # rows per block * the widest per-sample node (its arrays stay in cache)
INLINE = ("elementwise", "broadcast_to", "transpose", "index", "stop_gradient")  # element views


@dataclass
class Accumulator:
    """A sum over the samples: ``node``'s value, added up block by block in pass ``pass_``."""

    node: Node
    pass_: int
    offset: int  # first slot in acc
    shape: tuple  # fixed shape (the value's shape)
    name: str = ""

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass
class BlockPlan(Layout):
    """What ``codegen/blocked.py`` prints; the runtime reads the same fields as on a Plan."""

    loss: Node
    wrt: list[Node]
    frozen: list[Node]
    data: list[Node]
    layout: dict[str, tuple[int, tuple]]
    grads: dict[str, Node | None]
    zero_grads: list[str]
    order: list[Node]  # every node of the loss and gradient graphs, inputs first
    stage: dict[int, int]  # per-sample node: its pass; fixed node: first pass it is known in
    accumulators: list[Accumulator]
    materialize: set[int]  # nodes kept in arrays (the rest are inlined into their consumers)
    rows: int  # samples per block
    blas: bool  # contractions call np.dot (SciPy present) rather than printed loops
    kind: str = "blocked"
    n_terms: int = 0
    acc_of: dict[int, Accumulator] = field(default_factory=dict)

    @property
    def n_acc(self) -> int:
        return sum(a.size for a in self.accumulators)

    @property
    def pass_sizes(self) -> list[int]:
        sizes = [0] * (max((a.pass_ for a in self.accumulators), default=-1) + 1)
        for a in self.accumulators:
            sizes[a.pass_] += a.size
        return sizes


def per_sample(node: Node) -> bool:
    return N in node.shape


def fixed_shape(node: Node) -> tuple:
    return tuple(d for d in node.shape if d is not N)


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
    """An einsum that sums nothing (every letter it drops has size 1): an elementwise
    product, like g[:, None] * w[None, :] from a width-1 layer's backward pass."""
    if node.op != "einsum" or reduces_samples(node):
        return False
    out = node.attr("out")
    return all(d == 1 for s, x in zip(node.attr("ins"), node.inputs) for c, d in zip(s, x.shape) if c not in out)


def blas_available() -> bool:
    """Numba's np.dot needs SciPy's BLAS (``pip install graphc[blas]``)."""
    return importlib.util.find_spec("scipy") is not None


def choose(loss: Node, grads: dict[Node, Node | None], target: str) -> str:
    """``schedule="auto"``: blocked when a per-sample contraction has a weight of WIDE or
    more elements (a layer that wide costs the fused schedule one unrolled term per weight),
    fused otherwise (and always on cuda, which has no blocked printer)."""
    if target == "cuda":
        return "fused"
    for node in toposort([loss] + [g for g in grads.values() if g is not None]):
        if node.op == "einsum" and any(per_sample(x) for x in node.inputs):
            if any(not per_sample(x) and math.prod(x.shape) >= WIDE for x in node.inputs):
                return "blocked"
    return "fused"


def plan(loss: Node, wrt: Sequence[Node], grads: dict[Node, Node | None], params: Sequence[Node],
         data: Sequence[Node]) -> BlockPlan:
    outputs = [loss] + [g for p in wrt if (g := grads[p]) is not None]
    order = toposort(outputs)
    consumers: dict[int, int] = {}
    for node in order:
        for inp in node.inputs:
            consumers[id(inp)] = consumers.get(id(inp), 0) + 1
    for out in outputs:  # an output is read by finish
        consumers[id(out)] = consumers.get(id(out), 0) + 1

    stage: dict[int, int] = {}
    accumulators: list[Accumulator] = []
    for node in order:
        first = max((stage[id(i)] for i in node.inputs), default=0)
        if reduces_samples(node):
            accumulators.append(Accumulator(node, first, 0, fixed_shape(node)))
            stage[id(node)] = first + 1
        else:
            if any(per_sample(i) for i in node.inputs) and not per_sample(node):
                raise UnsupportedError(f"blocked schedule: {node.op} {node.label()} leaves the sample dim")
            stage[id(node)] = first

    materialize: set[int] = set()
    array_ops = {"reshape", "stack", "concatenate", "unindex", "einsum", "sum", "mean"}
    readers: dict[int, list[Node]] = {}
    for node in order:
        for inp in node.inputs:
            readers.setdefault(id(inp), []).append(node)
    def fed(node: Node) -> bool:  # read by an op that needs an array
        return any(r.op == "reshape" or (r.op == "einsum" and not is_product(r)) for r in readers.get(id(node), []))

    for node in order:
        if (node.op == "elementwise" and node.dtype != "bool") or is_product(node):
            if consumers.get(id(node), 0) >= 2 or fed(node):
                materialize.add(id(node))
        elif node.op in array_ops:
            materialize.add(id(node))
        elif node.op in INLINE and fed(node):
            if not (node.op == "transpose" and node.ndim == 2 and not per_sample(node)):  # W.T is a view
                materialize.add(id(node))

    accumulators.sort(key=lambda a: a.pass_)
    offset = 0
    for k, a in enumerate(accumulators):
        a.offset, a.name = offset, f"s{k}"
        offset += a.size
    widest = max((math.prod(fixed_shape(n)) for n in order if per_sample(n)), default=1)
    rows = 1 << max(6, min(11, int(math.log2(max(1, BLOCK_ELEMENTS // max(1, widest))))))

    frozen = [p for p in params if all(p is not q for q in wrt)]
    layout, off = {}, 0
    for p in list(wrt) + frozen:
        layout[p.name] = (off, tuple(p.shape))
        off += math.prod(p.shape)
    bp = BlockPlan(loss, list(wrt), frozen, list(data), layout, {p.name: grads[p] for p in wrt},
                   [p.name for p in wrt if grads[p] is None], order, stage, accumulators, materialize,
                   rows, blas_available(), n_terms=len(order))
    bp.acc_of = {id(a.node): a for a in accumulators}
    return bp
