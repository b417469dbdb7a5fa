"""The plan: what scheduling decides, and all that code generation and the runtime read.

One ``Plan`` class for every schedule and every kind of compiled function. Its fields say

- where the parameters live in theta (``layout``: trained ones first, then the frozen) and
  which data arrays the function reads;
- every sum over the samples (``accumulators``, one ``Accumulator`` type): the pass over the
  samples that adds it up and its slots in the scratch vector ``acc``;
- what the function returns: a loss and its gradients (``wrt``), plus the Hessian's upper
  triangle (``n_hessian``: second-order optimizers), or the arrays ``results`` (a forward
  function: ``gc.compile`` of an array, ``res.predict``);
- how the per-sample work is written (``lowered``), the one choice the schedule makes:
  ``Fused`` holds one SymPy expression per scalar element, printed as one loop body per
  sample (``planning/schedule.py`` lowers to it); ``Blocked`` keeps the tensor-level graph, printed
  over blocks of samples with dense products (``planning/blocked.py`` plans it, for wide layers).

The runtime (binding inputs, packing theta, sizing grad and acc) reads only the fields
above ``lowered``; each target's printer reads the lowering its schedule made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import sympy as sp

from ..ir.graph import N, Node, spell


@dataclass(eq=False)
class Accumulator:
    """A sum over the samples, added up in pass ``pass_`` into ``acc[offset:offset + size]``.

    ``symbol`` is its name in the generated code (``loss``, ``grad_a`` when it is that output,
    else ``s<k>``). Fused: a scalar whose per-sample ``summand`` is a SymPy expression. Blocked:
    the value of ``node`` (a sum or an einsum over the samples), of ``shape``."""

    symbol: sp.Symbol
    shape: tuple = ()
    pass_: int = 0
    offset: int = 0
    summand: sp.Expr | None = None
    node: Node | None = None
    comment: str = ""

    @property
    def name(self) -> str:
        return self.symbol.name

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass
class Load:
    """A data element the fused lowering reads: ``array`` at fixed index ``index`` (the sample
    index goes at the array's sample axis)."""

    array: Node
    index: tuple[int, ...]


@dataclass
class Loop:
    """One pass of the fused lowering over the samples: hoisted invariants, per-sample
    temporaries, the accumulators it adds up (their summands after CSE in ``sums``)."""

    accumulators: list[Accumulator]
    invariants: list[tuple[sp.Symbol, sp.Expr]] = field(default_factory=list)
    body: list[tuple[sp.Symbol, sp.Expr]] = field(default_factory=list)
    sums: list[sp.Expr] = field(default_factory=list)


@dataclass
class Fused:
    """Every node as one SymPy expression per scalar element (``schedule.fuse``)."""

    param_symbols: dict[sp.Symbol, int]  # scalar parameter symbol -> theta index
    loads: dict[sp.Symbol, Load]  # per-sample data symbols
    fixed_loads: dict[sp.Symbol, Load]  # loop-invariant data symbols
    loops: list[Loop]  # the passes over the samples
    finish: list[tuple[sp.Symbol, sp.Expr]]  # after the passes: CSE'd terms of the outputs
    outputs: list[sp.Expr]  # loss, d(loss)/d(theta[0]), ... (forward: the fixed result elements)
    n_terms: int = 0  # scalar terms lowered (the size the schedule guards)
    stores: Loop | None = None  # forward: the pass that writes the per-sample result elements
    store_targets: list[tuple[int, tuple]] = field(default_factory=list)  # (result, index) of stores.sums[j]
    fixed_targets: list[tuple[int, tuple]] = field(default_factory=list)  # (result, index) of outputs[j]
    name = "fused"


@dataclass
class Blocked:
    """The tensor-level graph over blocks of ``rows`` samples (``blocked.plan``)."""

    grads: dict[str, Node | None]  # what grad holds, in order: name -> node (None: zero); each
    # wrt parameter's gradient, then any Hessian entries (``with_hessian``'s stand-in names)
    kept: list[Node]  # nodes kept in arrays, in topological order (the rest are inlined)
    rows: int  # samples per block
    blas: bool  # contractions call np.dot (SciPy present) rather than printed loops
    name = "blocked"

    @cached_property
    def materialize(self) -> set[int]:
        """The ids of the nodes kept in arrays (made per process: never pickled)."""
        return {id(n) for n in self.kept}

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "materialize"}


@dataclass(eq=False)
class Plan:
    """Everything code generation and the runtime need, target-independent (see the module)."""

    loss: Node  # a forward function's: its first result
    wrt: list[Node]  # differentiated parameters (none in a forward function)
    frozen: list[Node]  # parameters not differentiated (still inputs)
    data: list[Node]
    layout: dict[str, tuple[int, tuple]]  # param name -> (offset in theta, shape)
    zero_grads: list[str]  # wrt parameters the loss does not depend on
    accumulators: list[Accumulator]  # in pass order, each at its offset
    lowered: Fused | Blocked
    results: list[Node] = field(default_factory=list)  # a forward function's outputs
    n_hessian: int = 0  # entries of the Hessian's upper triangle after the gradient in grad

    @property
    def schedule(self) -> str:
        """"fused" or "blocked": how the per-sample work is lowered."""
        return self.lowered.name

    @property
    def blas(self) -> bool:
        """Whether its code may call BLAS: a blocked plan's products are np.dot (the runtime
        holds BLAS to one thread around such calls, ``runtime.threads``)."""
        return self.schedule == "blocked"

    @property
    def forward(self) -> bool:
        """A forward function's plan: results, no loss and gradients."""
        return bool(self.results)

    @property
    def n_grads(self) -> int:
        """The length of grad: the gradient, then any Hessian entries (0 for forward functions)."""
        if self.forward:
            return 0
        return sum(math.prod(self.layout[p.name][1]) for p in self.wrt) + self.n_hessian

    @property
    def n_theta(self) -> int:
        return sum(math.prod(shape) for _, shape in self.layout.values())

    @property
    def sample_data(self) -> list[Node]:
        return [d for d in self.data if N in d.shape]

    @property
    def n_acc(self) -> int:
        return sum(a.size for a in self.accumulators)

    @property
    def pass_sizes(self) -> list[int]:
        """Slots of ``acc`` written by each pass over the samples, in order."""
        sizes = [0] * (max((a.pass_ for a in self.accumulators), default=-1) + 1)
        for a in self.accumulators:
            sizes[a.pass_] += a.size
        return sizes

    @cached_property
    def acc_of(self) -> dict[int, Accumulator]:
        """The accumulator of each node that is a sum over the samples (by node id; blocked)."""
        return {id(a.node): a for a in self.accumulators if a.node is not None}

    def __getstate__(self) -> dict:
        """For the plan cache: the fields, not the per-process tables keyed by node ids."""
        return {k: v for k, v in self.__dict__.items() if k != "acc_of"}


def param_layout(wrt: list[Node], params: list[Node]) -> tuple[list[Node], dict[str, tuple[int, tuple]]]:
    """The parameters not trained (``frozen``), and where every parameter lives in theta:
    name -> (offset, shape), trained ones first (every schedule uses this layout)."""
    frozen = [p for p in params if all(p is not q for q in wrt)]
    layout, offset = {}, 0
    for p in list(wrt) + frozen:
        layout[p.name] = (offset, tuple(p.shape))
        offset += math.prod(p.shape)
    return frozen, layout


def with_hessian(lower: Callable[..., Plan], loss: Node, wrt: list[Node], grads: dict[Node, Node | None],
                 hess: dict[tuple[Node, Node], Node | None], params: list[Node], data: list[Node]) -> Plan:
    """Loss, gradient and the Hessian entries ``hess`` (``autodiff.hessian``: the upper
    triangle, scalar parameters) as one plan, made by either schedule's ``lower``. The entries
    ride through it as the "gradients" of stand-in parameters, named apart from every
    parameter, which are then dropped from the layout: grad holds the gradient, then the
    entries in order (``n_hessian``)."""
    taken = {p.name for p in params}
    stand_ins, entries, labels = [], dict(grads), {}
    for (p, q), node in hess.items():
        name = f"hess_{spell(p.name)}_{spell(q.name)}"
        while name in taken:  # a user's parameter of that name: the stand-in takes another
            name += "_"
        taken.add(name)
        stand_in = Node("param", shape=(), name=name)
        stand_ins.append(stand_in)
        entries[stand_in] = node
        labels[name] = f"d2(loss)/d({p.name})d({q.name})"
    plan = lower(loss, list(wrt) + stand_ins, entries, list(params), list(data))
    n, m = len(wrt), len(labels)
    shift = lambda k: k if k < n else k - m  # noqa: E731  (frozen parameters move down by m)
    plan.layout = {name: (shift(off), shape) for name, (off, shape) in plan.layout.items() if name not in labels}
    plan.wrt, plan.n_hessian = list(wrt), m
    plan.zero_grads = [z for z in plan.zero_grads if z not in labels]
    low = plan.lowered
    if isinstance(low, Fused):  # its own theta index, and the comments of the sums that are entries
        low.param_symbols = {s: shift(k) for s, k in low.param_symbols.items()}
        accs = {acc.symbol: acc for acc in plan.accumulators}
        for k, (out, label) in enumerate(zip(low.outputs[1 + n:1 + n + m], labels.values())):
            if out in accs and out not in low.outputs[:1 + n + k]:
                accs[out].comment = label
    return plan
