"""Scheduling: lower the forward and gradient graphs to per-sample scalar SymPy expressions
and fuse them into as few passes over the samples as the data dependencies allow.

Every node becomes one SymPy expression per element of its fixed (non-sample) dims. A
reduction over the sample dim becomes an *accumulator*: a scalar summed inside a loop over
the samples. Accumulators whose summands do not need another accumulator share the first
loop; one that does (``log(sum(..))``'s gradient needs the sum) goes to the next loop. For
the polynomial fit this is ONE loop computing the loss and all four gradients.
``sympy.cse`` then shares work between the forward pass and all gradients of each loop.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import sympy as sp
from sympy.core.parameters import distribute

from ..ir import fold
from ..errors import UnsupportedError
from ..ir.graph import N, Node, format_shape, spell, toposort
from ..ir.indexing import broadcast_map, gather_source, index_source, summed_index, view_source
from ..ir.ops import Elementwise, expression_string, fixed_indices
from .plan import Accumulator, Fused, Load, Loop, Plan, param_layout
from ..timings import stages

Elems = dict  # fixed index tuple -> sympy expression
MAX_TERMS = 20_000  # scalar terms per graph before the unrolled schedule refuses
TEMP_MIN_OUTPUTS = 4  # a per-sample contraction with this many outputs gets one temporary each


N_SYMBOL = sp.Symbol("n", positive=True, integer=True)


def _suffix(index: tuple[int, ...]) -> str:
    return "".join(f"_{k}" for k in index)


class Lowering:
    """Node -> {fixed index: sympy expr}, creating accumulators for sums over samples."""

    def __init__(self) -> None:
        self.memo: dict[int, Elems] = {}
        self.accumulators: list[tuple[Accumulator, int]] = []  # with loop (phase) number
        self.phase: dict[sp.Symbol, int] = {}
        self.loads: dict[sp.Symbol, Load] = {}
        self.fixed_loads: dict[sp.Symbol, Load] = {}
        self.param_symbols: dict[sp.Symbol, tuple[Node, tuple]] = {}
        self.terms = 0
        # per-sample temporaries: contraction outputs computed once per sample in the loop body
        self.temps: list[tuple[sp.Symbol, sp.Expr]] = []
        self.need: dict[sp.Symbol, int] = {}  # first loop a temporary can be computed in

    def __call__(self, node: Node) -> Elems:
        for n in toposort([node]):
            if id(n) not in self.memo:
                self.memo[id(n)] = self.lower(n)
                self.terms += len(self.memo[id(n)])
                if self.terms > MAX_TERMS:
                    raise UnsupportedError(
                        f"the graph has more than {MAX_TERMS} scalar terms per sample at "
                        f"{n.label()} {format_shape(n.shape)}; layers this wide need schedule='blocked'"
                    )
        return self.memo[id(node)]

    def per_sample(self, expr: sp.Expr) -> bool:
        return any(s in self.loads or s in self.need for s in expr.free_symbols)

    def earliest(self, expr: sp.Expr) -> int:
        """The first loop whose body can compute ``expr`` (after the sums it reads)."""
        return max((self.phase[s] + 1 if s in self.phase else self.need[s]
                    for s in expr.free_symbols if s in self.phase or s in self.need), default=0)

    def temporary(self, expr: sp.Expr) -> sp.Expr:
        """A per-sample symbol for ``expr``: keeps layer outputs from being inlined into every
        later expression (SymPy and Numba time would grow with the depth)."""
        if expr.is_Atom or not self.per_sample(expr):
            return expr
        sym = sp.Symbol(f"h{len(self.temps)}", real=True)
        self.need[sym] = self.earliest(expr)
        self.temps.append((sym, expr))
        return sym

    def theta_index(self, layout: dict[str, tuple[int, tuple]]) -> dict[sp.Symbol, int]:
        """Where each parameter symbol made here lives in theta, given the plan's layout."""
        return {s: layout[node.name][0] + _flat(idx, node.shape) for s, (node, idx) in self.param_symbols.items()}

    def passes(self) -> list[Loop]:
        """The accumulators grouped into passes over the samples, in phase order."""
        count = max((ph for _, ph in self.accumulators), default=-1) + 1
        loops = [Loop([a for a, ph in self.accumulators if ph == k]) for k in range(count)]
        for offset, (k, a) in enumerate((k, a) for k, loop in enumerate(loops) for a in loop.accumulators):
            a.pass_, a.offset = k, offset
        return loops

    def lower(self, node: Node) -> Elems:
        return RULES[node.op](self, node, [self.memo[id(i)] for i in node.inputs])

    # ---- leaves ----
    def _data(self, node: Node, _: list) -> Elems:
        elems = {}
        per_sample = N in node.shape
        for idx in fixed_indices(node.shape):
            name = spell(node.name) + ("_i" if per_sample else "_v" if not idx else "") + _suffix(idx)
            sym = sp.Symbol(name, real=True)
            (self.loads if per_sample else self.fixed_loads)[sym] = Load(node, idx)
            elems[idx] = sym
        return elems

    def _param(self, node: Node, _: list) -> Elems:
        elems = {}
        for idx in fixed_indices(node.shape):
            sym = sp.Symbol(spell(node.name) + _suffix(idx), real=True)
            self.param_symbols[sym] = (node, idx)
            elems[idx] = sym
        return elems

    def _const(self, node: Node, _: list) -> Elems:
        value = node.attr("value")
        return {idx: _number(value[idx]) for idx in fixed_indices(node.shape)}

    def _count(self, node: Node, _: list) -> Elems:
        return {(): N_SYMBOL}

    # ---- elementwise ----
    def _elementwise(self, node: Node, ins: list[Elems]) -> Elems:
        op: Elementwise = node.attr("fn")
        maps = [broadcast_map(node.shape, i.shape) for i in node.inputs]
        return {idx: op.compose([e[m(idx)] for e, m in zip(ins, maps)]) for idx in fixed_indices(node.shape)}

    def _view(self, node: Node, ins: list[Elems]) -> Elems:
        """broadcast_to, transpose, index, stop_gradient: each element is one of the input's."""
        position = {id(x): k for k, x in enumerate(node.inputs)}
        out = {}
        for idx in fixed_indices(node.shape):
            x, source = view_source(node, idx)
            out[idx] = ins[position[id(x)]][source]
        return out

    # ---- reductions ----
    def _sum(self, node: Node, ins: list[Elems]) -> Elems:
        (x,) = node.inputs
        axes, keep = node.attr("axes"), node.attr("keepdims")
        groups: dict[tuple, list[sp.Expr]] = {}
        for idx, expr in ins[0].items():
            groups.setdefault(summed_index(x.shape, axes, keep, idx), []).append(expr)
        over_samples = any(x.shape[a] is N for a in axes)
        out = {}
        for key, terms in groups.items():
            total = fold.add(terms)
            out[key] = self.accumulate(total, node) if over_samples else total
        return out

    def _mean(self, node: Node, ins: list[Elems]) -> Elems:
        (x,) = node.inputs
        count = sp.Integer(1)
        for a in node.attr("axes"):
            count *= N_SYMBOL if x.shape[a] is N else x.shape[a]
        return {k: fold.Quotient(v, count) for k, v in self._sum(node, ins).items()}

    def accumulate(self, summand: sp.Expr, node: Node) -> sp.Expr:
        """Sum ``summand`` over the samples: a new accumulator, or n * summand if invariant."""
        if summand == 0:
            return sp.Integer(0)
        if not self.per_sample(summand):
            return N_SYMBOL * summand
        phase = self.earliest(summand)
        sym = sp.Symbol(f"s{len(self.accumulators)}", real=True)
        self.phase[sym] = phase
        text = expression_string(node, limit=80)
        self.accumulators.append((Accumulator(sym, summand=summand, comment=text), phase))
        return sym

    # ---- contractions ----
    def _einsum(self, node: Node, ins: list[Elems]) -> Elems:
        subs, out = node.attr("ins"), node.attr("out")
        sizes = {c: d for s, x in zip(subs, node.inputs) for c, d in zip(s, x.shape)}
        fixed = [c for c in sizes if sizes[c] is not N]
        over_samples = any(sizes[c] is N and c not in out for c in sizes)
        groups: dict[tuple, list[sp.Expr]] = {}
        for values in np.ndindex(*[sizes[c] for c in fixed]):
            at = dict(zip(fixed, values))
            term = fold.mul([e[tuple(at[c] for c in s if c in at)] for s, e in zip(subs, ins)])
            groups.setdefault(tuple(at[c] for c in out if c in at), []).append(term)
        if sum(len(t) for t in groups.values()) > MAX_TERMS:
            raise UnsupportedError(f"einsum {node.label()} is too large for the fused schedule; use schedule='blocked'")
        if over_samples:
            return {k: self.accumulate(fold.add(t), node) for k, t in groups.items()}
        wide = len(groups) >= TEMP_MIN_OUTPUTS
        return {k: self.temporary(fold.add(t)) if wide else fold.add(t) for k, t in groups.items()}

    # ---- index shuffles ----
    def _reshape(self, node: Node, ins: list[Elems]) -> Elems:
        return dict(zip(fixed_indices(node.shape), ins[0].values()))

    def _unindex(self, node: Node, ins: list[Elems]) -> Elems:
        g = node.inputs[0]
        terms: dict[tuple, list[sp.Expr]] = {idx: [] for idx in fixed_indices(node.shape)}
        for idx in fixed_indices(g.shape):
            terms[index_source(node.shape, node.attr("key"), idx)].append(ins[0][idx])
        return {idx: fold.add(t) for idx, t in terms.items()}

    def _gather(self, node: Node, ins: list[Elems]) -> Elems:
        """stack, concatenate."""
        out = {}
        for idx in fixed_indices(node.shape):
            k, source = gather_source(node, idx)
            out[idx] = ins[k][source]
        return out


# how the fused schedule lowers each op: op name -> Lowering method (every op has one; see
# tests/test_registry.py)
RULES: dict[str, Callable[[Lowering, Node, list[Elems]], Elems]] = {
    "data": Lowering._data, "param": Lowering._param, "const": Lowering._const, "count": Lowering._count,
    "elementwise": Lowering._elementwise, "sum": Lowering._sum, "mean": Lowering._mean,
    "einsum": Lowering._einsum, "reshape": Lowering._reshape, "unindex": Lowering._unindex,
    "stack": Lowering._gather, "concatenate": Lowering._gather,
    **{op: Lowering._view for op in ("broadcast_to", "transpose", "index", "stop_gradient")},
}

_number = fold.number


# ---- the stage entry point ----------------------------------------------------------------
def fuse(loss: Node, wrt: Sequence[Node], grads: dict[Node, Node | None], params: Sequence[Node],
         data: Sequence[Node], timings: Any = None) -> Plan:
    """Lower loss and gradients, group accumulators into loops, CSE each loop.
    ``timings`` (compile.Timings), if given, gets the seconds of 'schedule' and 'cse'."""
    stage = stages(timings)
    with distribute(False):  # keep 2*(r) a product, so r stays shared with the loss
        return _fuse(loss, wrt, grads, params, data, stage)


def _fuse(loss: Node, wrt: Sequence[Node], grads: dict[Node, Node | None], params: Sequence[Node],
          data: Sequence[Node], stage: Callable[[str], Any]) -> Plan:
    with stage("schedule"):  # lowering and fusing
        low = Lowering()
        outputs = [low(loss)[()]]
        zero = []
        for p in wrt:
            g = grads[p]
            if g is None:
                zero.append(p.name)
            elems = low(g) if g is not None else {}
            outputs += [elems.get(idx, sp.Integer(0)) for idx in fixed_indices(p.shape)]
        frozen, layout = param_layout(wrt, params)
        param_symbols, loops = low.theta_index(layout), low.passes()
        outputs = _name_accumulators(loops, outputs, loss, wrt)
    with stage("cse"):
        temps = sp.numbered_symbols("t", real=True)
        for loop in loops:
            _cse_loop(loop, set(low.loads), temps, low.temps)
        finish, outputs = _cse(outputs, temps)
    return Plan(loss, list(wrt), frozen, list(data), layout, zero, _accumulators(loops),
                Fused(param_symbols, low.loads, low.fixed_loads, loops, finish, outputs, low.terms))


def _accumulators(loops: list[Loop]) -> list[Accumulator]:
    return [a for loop in loops for a in loop.accumulators]


def fuse_forward(results: Sequence[Node], params: Sequence[Node], data: Sequence[Node],
                 timings: Any = None) -> Plan:
    """Lower ``results`` (any shapes) for a forward function: the fused schedule's passes for
    the sums they read, then a pass that stores the per-sample elements."""
    stage = stages(timings)
    with distribute(False), stage("schedule"):
        low = Lowering()
        stores, store_targets, fixed, fixed_targets = [], [], [], []
        for k, node in enumerate(results):
            elems = low(node)
            for idx in fixed_indices(node.shape):
                if N in node.shape:
                    stores.append(elems[idx])
                    store_targets.append((k, idx))
                else:
                    fixed.append(elems[idx])
                    fixed_targets.append((k, idx))
        frozen, layout = param_layout([], params)
        param_symbols, loops = low.theta_index(layout), low.passes()
        store = Loop([Accumulator(sp.Symbol(f"o{j}", real=True), summand=e) for j, e in enumerate(stores)])
    with distribute(False), stage("cse"):
        temps = sp.numbered_symbols("t", real=True)
        for loop in loops:
            _cse_loop(loop, set(low.loads), temps, low.temps)
        _cse_loop(store, set(low.loads), temps, low.temps)
        finish, outputs = _cse(fixed, temps)
    lowered = Fused(param_symbols, low.loads, low.fixed_loads, loops, finish, outputs, low.terms, store,
                    store_targets, fixed_targets)
    return Plan(results[0], [], frozen, list(data), layout, [], _accumulators(loops), lowered, list(results))


def _flat(idx: tuple, shape: tuple) -> int:
    return int(np.ravel_multi_index(idx, shape)) if idx else 0


def _name_accumulators(loops: list[Loop], outputs: list[sp.Expr], loss: Node, wrt: Sequence[Node]) -> list[sp.Expr]:
    """Give an accumulator that IS an output the output's name: ``loss``, ``grad_a``, ..."""
    names = ["loss"] + [f"grad_{spell(p.name)}{_suffix(idx)}" for p in wrt for idx in fixed_indices(p.shape)]
    shown = ["loss"] + [p.name + (f"[{', '.join(map(str, idx))}]" if idx else "") for p in wrt for idx in fixed_indices(p.shape)]
    accs = {a.symbol: a for loop in loops for a in loop.accumulators}
    rename: dict[sp.Symbol, sp.Symbol] = {}
    for name, label, out in zip(names, shown, outputs):
        if out in accs and out not in rename:
            rename[out] = sp.Symbol(name, real=True)
            accs[out].comment = "loss = " + expression_string(loss, 80) if name == "loss" else f"d(loss)/d({label})"
    for loop in loops:
        for a in loop.accumulators:
            a.summand = a.summand.xreplace(rename)
            a.symbol = rename.get(a.symbol, a.symbol)
    return [o.xreplace(rename) for o in outputs]


def _cse(exprs: list[sp.Expr], temps: Any) -> tuple[list[tuple[sp.Symbol, sp.Expr]], list[sp.Expr]]:
    if not exprs:
        return [], []
    pairs, reduced = sp.cse(exprs, symbols=temps, order="none")
    return _without_copies(pairs, reduced)


def _without_copies(pairs: list[tuple[sp.Symbol, sp.Expr]], reduced: list[sp.Expr]
                    ) -> tuple[list[tuple[sp.Symbol, sp.Expr]], list[sp.Expr]]:
    """Drop the temporaries that only copy another: ``t7 = Opaque(t0)`` (a value kept apart
    from SymPy's folding, ``fold.Opaque``) prints as ``t7 = t0``; its readers get the
    ``Opaque(t0)`` itself, which prints as ``t0`` and still folds with nothing."""
    copies: dict[sp.Symbol, sp.Expr] = {}
    kept = []
    for sym, expr in pairs:  # in definition order: a copy's copy resolves to the first
        expr = expr.xreplace(copies) if copies else expr
        if isinstance(expr, fold.Opaque) and expr.args[0].is_Atom:
            copies[sym] = expr
        else:
            kept.append((sym, expr))
    return kept, [e.xreplace(copies) for e in reduced] if copies else list(reduced)


def _cse_loop(loop: Loop, sample_symbols: set[sp.Symbol], temps: Any,
              defined: Sequence[tuple[sp.Symbol, sp.Expr]] = ()) -> None:
    """CSE the summands of one loop (with the per-sample temporaries they read) and hoist
    what does not vary per sample."""
    summands = [a.summand for a in loop.accumulators]
    used = _needed(summands, defined)
    pairs, reduced = _cse([e for _, e in used] + summands, temps)
    loop.sums = reduced[len(used):]
    varying = set(sample_symbols) | {s for s, _ in defined}
    assignments = pairs + [(s, e) for (s, _), e in zip(used, reduced[: len(used)])]
    for sym, expr in _in_order(assignments):
        if expr.free_symbols & varying:
            varying.add(sym)
            loop.body.append((sym, expr))
        else:
            loop.invariants.append((sym, expr))


def _needed(exprs: list[sp.Expr], defined: Sequence[tuple[sp.Symbol, sp.Expr]]) -> list[tuple[sp.Symbol, sp.Expr]]:
    """The temporaries ``exprs`` read, directly or through other temporaries, in definition order."""
    index = {s: k for k, (s, _) in enumerate(defined)}
    seen: set[sp.Symbol] = set()
    todo = [s for e in exprs for s in e.free_symbols if s in index]
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo += [t for t in defined[index[s]][1].free_symbols if t in index]
    return [defined[k] for k in sorted(index[s] for s in seen)]


def _in_order(pairs: list[tuple[sp.Symbol, sp.Expr]]) -> list[tuple[sp.Symbol, sp.Expr]]:
    """Assignments ordered so each comes after those it reads (stable otherwise)."""
    pending = {s: e for s, e in pairs}
    done: set[sp.Symbol] = set()
    out: list[tuple[sp.Symbol, sp.Expr]] = []

    def visit(s: sp.Symbol) -> None:
        stack = [(s, False)]
        while stack:
            sym, expanded = stack.pop()
            if sym in done:
                continue
            if expanded:
                done.add(sym)
                out.append((sym, pending[sym]))
                continue
            stack.append((sym, True))
            stack += [(t, False) for t in pending[sym].free_symbols if t in pending and t not in done]

    for s, _ in pairs:
        visit(s)
    return out
