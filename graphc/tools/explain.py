"""Inspection: what a compiled function computes, how much work it does, and a standalone copy.

Everything here reads a plan (and, for ``export``, the generated source); nothing feeds back
into compilation. ``Compiled`` exposes it as ``f.gradients``, ``f.latex()``, ``f.graph``,
``f.stats`` and ``f.export(path)``.

A fused ``Plan`` (``plan.Fused``) holds one scalar SymPy expression per element, which is
what ``gradients`` and ``latex`` show. A blocked one (``plan.Blocked``, wide layers) keeps the gradients
as tensor-level graph nodes; they are shown in index notation instead (``Indexing``):
one SymPy expression per parameter with symbolic indices, ``d(loss)/d(W[j, k])``, in which
every contraction and reduction is a ``Sum`` over its index, never unrolled.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import sympy as sp
from sympy.core.parameters import distribute

from ..ir import fold
from ..planning.blocked import fixed_shape, per_sample as _sample_wise, reduces_samples
from ..errors import GraphcError, UnsupportedError
from ..ir.graph import N, Graph, Node, spell, toposort
from ..ir.ops import fixed_indices
from ..ir.indexing import broadcast_map, view_source
from ..planning.plan import Plan
from ..planning.schedule import N_SYMBOL

SAMPLE = sp.Symbol("i", integer=True, nonnegative=True)  # the sample index in exact forms


# ---- symbolic gradients -----------------------------------------------------------------
def _element(name: str, idx: tuple, sample: bool) -> sp.Expr:
    """How one scalar shows to the user: ``a``, ``W[0, 1]``, ``x`` (one sample) or ``x[i]``."""
    index = ((SAMPLE,) if sample else ()) + tuple(idx)
    if not index:
        return sp.Symbol(name, real=True)
    return sp.IndexedBase(name, real=True)[index]


def user_symbols(plan: Plan, exact: bool) -> dict[sp.Symbol, sp.Expr]:
    """Plan symbols (``x_i``, ``lin_weight_0_1``) -> user-facing ones (``x``, ``lin.weight[0, 1]``).

    ``exact`` indexes per-sample data by the sample: ``x[i]``; otherwise ``x`` is one sample.
    """
    out: dict[sp.Symbol, sp.Expr] = {}
    for sym, load in plan.lowered.loads.items():
        out[sym] = _element(load.array.name, load.index, sample=exact)
    for sym, load in plan.lowered.fixed_loads.items():
        out[sym] = _element(load.array.name, load.index, sample=False)
    owner = {off: (name, shape) for name, (off, shape) in plan.layout.items()}
    starts = sorted(owner)
    for sym, k in plan.lowered.param_symbols.items():
        off = max(s for s in starts if s <= k)
        name, shape = owner[off]
        idx = _unravel(k - off, shape)
        out[sym] = _element(name, idx, sample=False)
    return out


def _unravel(flat: int, shape: tuple) -> tuple:
    idx = []
    for d in reversed(shape):
        idx.append(flat % d)
        flat //= d
    return tuple(reversed(idx))


def _uncse(plan: Plan) -> list[sp.Expr]:
    """The plan's outputs [loss, grads...] with the after-loop CSE temporaries substituted back."""
    outputs = list(plan.lowered.outputs)
    for sym, expr in reversed(plan.lowered.finish):
        outputs = [o.xreplace({sym: expr}) for o in outputs]
    return [fold.plain(o) for o in outputs]


def _sums(plan: Plan) -> dict[sp.Symbol, sp.Expr]:
    """Each accumulator as an explicit ``Sum`` over the samples (earlier sums substituted)."""
    names = user_symbols(plan, exact=True)
    sums: dict[sp.Symbol, sp.Expr] = {}
    for acc in plan.accumulators:  # in loop order: a later summand may use an earlier sum
        term = fold.plain(acc.summand).xreplace(sums).xreplace(names)
        sums[acc.symbol] = sp.Sum(term, (SAMPLE, 0, N_SYMBOL - 1))
    return sums


def _per_sample(plan: Plan, expr: sp.Expr) -> sp.Expr | None:
    """If ``expr`` is sum_k c_k * S_k over one-pass sums S_k, the summand sum_k c_k * s_k."""
    accs = {a.symbol: fold.plain(a.summand) for a in plan.accumulators}
    used = [s for s in expr.free_symbols if s in accs]
    if not used or any(set(accs[s].free_symbols) & set(accs) for s in used):
        return None
    coeffs = {s: sp.diff(expr, s) for s in used}
    if any(set(c.free_symbols) & set(accs) for c in coeffs.values()):
        return None
    if expr.xreplace({s: 0 for s in used}) != 0:
        return None
    return sp.Add(*[c * accs[s] for s, c in coeffs.items()])


def expressions(plan: Plan, per_sample: bool = True) -> dict[str, Any]:
    """``{"loss": expr, param: gradient}`` as SymPy; see ``gradients``."""
    if _blocked(plan):
        return _tensor_expressions(plan, per_sample)
    with distribute(False):  # keep 2*(r) a product, as the schedule wrote it
        return _expressions(plan, per_sample)


def _expressions(plan: Plan, per_sample: bool) -> dict[str, Any]:
    outputs = _uncse(plan)
    sums = _sums(plan)
    one = user_symbols(plan, exact=False)
    exact = user_symbols(plan, exact=True)

    def show(expr: sp.Expr) -> sp.Expr:
        term = _per_sample(plan, expr) if per_sample else None
        if term is not None:
            return term.xreplace(one)
        return expr.xreplace(sums).xreplace(exact)

    out: dict[str, Any] = {"loss": show(outputs[0])}
    k = 1
    for p in plan.wrt:
        shape = plan.layout[p.name][1]
        size = math.prod(shape)
        elems = [show(e) for e in outputs[k : k + size]]
        k += size
        out[p.name] = elems[0] if not shape else sp.ImmutableDenseNDimArray(elems, shape)
    return out


def gradients(plan: Plan, per_sample: bool = True) -> dict[str, Any]:
    """d(loss)/d(p) for each parameter as SymPy expressions (all symbols real).

    When the loss is a sum (or mean) over samples, each gradient is a sum over samples too,
    and what comes back is its summand for ONE sample: data appear as ``x`` (or ``xx[0]``)
    meaning that sample's values, so ``d(loss)/d(p) = sum_i gradients[p](sample i)``. A
    gradient that is not such a sum (``log(sum(..))``), or any with ``per_sample=False``,
    comes back exact: ``Sum(.., (i, 0, n - 1))`` over indexed data ``x[i]``. Scalar
    parameters map to one expression, tensor ones to a SymPy Array of their shape.

    A blocked plan (wide layers) maps a tensor parameter to ``Lambda((j, k), expr)`` instead:
    one expression in the parameter's index symbols, whose contractions and reductions are
    ``Sum``s over their own indices (``g(0, 2)`` is element [0, 2]; ``.doit()`` writes the
    sums out). Same conventions otherwise: data ``X[m]`` is this sample's row, or ``X[i, m]``
    in an exact form.
    """
    exprs = expressions(plan, per_sample)
    del exprs["loss"]
    return exprs


def shown_gradients(plan: Any, per_sample: bool = True) -> dict[str, Any]:
    """``gradients(plan)``, except that a parameter whose gradient cannot be shown maps to the
    exception saying why (``graphc show --gradients`` prints the rest)."""
    if _blocked(plan):  # one parameter at a time: one that cannot be shown spoils no other
        low = Indexing(plan)
        return {p.name: _tensor_gradient(plan, p, low, per_sample, errors=True) for p in plan.wrt}
    try:
        return gradients(plan, per_sample)
    except (GraphcError, RecursionError) as exc:
        return {p.name: exc for p in plan.wrt}


# ---- LaTeX ------------------------------------------------------------------------------
def _tex_name(name: str) -> str:
    base = spell(name)
    if len(base) == 1:
        return base
    return r"\mathrm{" + base.replace("_", r"\_") + "}"


def _tex_symbols(plan: Plan) -> dict[sp.Symbol, str]:
    """Plan symbols -> LaTeX: ``{a}``, ``x_{i}``, ``\\mathrm{lin\\_weight}_{0,1}``."""
    names: dict[sp.Symbol, str] = {}
    for sym, load in list(plan.lowered.loads.items()) + list(plan.lowered.fixed_loads.items()):
        idx = (["i"] if sym in plan.lowered.loads else []) + [str(k) for k in load.index]
        names[sym] = _tex_name(load.array.name) + ("_{" + ",".join(idx) + "}" if idx else "")
    for sym, elem in user_symbols(plan, exact=False).items():
        if sym in plan.lowered.param_symbols:
            if isinstance(elem, sp.Indexed):
                names[sym] = _tex_name(str(elem.base)) + "_{" + ",".join(map(str, elem.indices)) + "}"
            else:  # braces: the LaTeX parser reads a bare "d x" as a differential
                names[sym] = "{" + _tex_name(str(elem)) + "}"
    return names


def latex(plan: Plan) -> str:
    """The loss and its gradients as an ``aligned`` LaTeX block, one equation per line.

    Sums over samples are written out (``\\sum_{i=0}^{n - 1}``) and data carry the sample
    index (``x_{i}``), so each right-hand side is a complete formula. A blocked plan gives one
    line per parameter in index notation, ``\\frac{\\partial L}{\\partial W_{j,k}}``.
    """
    if _blocked(plan):
        return _tensor_latex(plan)
    outputs = _uncse(plan)
    names = _tex_symbols(plan)
    sums: dict[sp.Symbol, sp.Expr] = {}
    for acc in plan.accumulators:
        sums[acc.symbol] = sp.Sum(fold.plain(acc.summand).xreplace(sums), (SAMPLE, 0, N_SYMBOL - 1))

    def tex(expr: sp.Expr) -> str:
        with distribute(False):
            expr = expr.xreplace(sums)
        return sp.latex(expr, mul_symbol="dot", symbol_names=names)

    lines = [f"L &= {tex(outputs[0])}"]
    k = 1
    for p in plan.wrt:
        for idx in fixed_indices(plan.layout[p.name][1]):
            sub = "_{" + ",".join(map(str, idx)) + "}" if idx else ""
            wrt = _tex_name(p.name) + sub
            lines.append(rf"\frac{{\partial L}}{{\partial {wrt}}} &= {tex(outputs[k])}")
            k += 1
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


# ---- the IR -----------------------------------------------------------------------------
def graph_text(plan: Plan) -> str:
    """The loss graph, one line per node (jaxpr style)."""
    return str(Graph.from_outputs(plan.loss))


# ---- operation counts and the roofline --------------------------------------------------
def count_ops(expr: sp.Expr, counts: Counter | None = None) -> Counter:
    """Floating-point operations to evaluate ``expr`` as graphc prints it.

    ``x**3`` is two multiplies (the printer writes ``x*x*x``), ``a - b`` one add, a
    function call (``tanh``, ``exp``) one op under its own name.
    """
    counts = Counter() if counts is None else counts
    stack = [expr]
    while stack:
        e = stack.pop()
        if e.is_Atom:
            continue
        if e.is_Add:
            counts["add"] += len(e.args) - 1
        elif e.is_Mul:
            factors = [a for a in e.args if a != -1]
            counts["mul"] += max(len(factors) - 1, 0)
        elif isinstance(e, fold.Quotient):
            counts["div"] += 1
        elif isinstance(e, fold.Opaque):
            stack.append(e.args[0])
            continue
        elif e.is_Pow:
            base, exp = e.as_base_exp()
            if exp.is_Integer and 2 <= abs(int(exp)) <= 4:
                counts["mul"] += abs(int(exp)) - 1
                counts["div"] += int(exp) < 0
            elif exp == -1:
                counts["div"] += 1
            elif abs(exp) == sp.Rational(1, 2):
                counts["sqrt"] += 1
                counts["div"] += exp < 0
            else:
                counts["pow"] += 1
            stack.append(base)
            continue
        else:
            counts[type(e).__name__.lower()] += 1
        stack.extend(e.args)
    return counts


@dataclass(frozen=True)
class Stats:
    """Work per sample, before and after CSE, and the roofline time it implies.

    ``flops_per_sample`` counts every operation the fused loops run per sample (the adds into
    the accumulators included; a function call counts as one). ``bytes_per_sample`` is what
    the loops read from memory per sample: each pass reads every data element it uses once.

    For a blocked plan (``schedule == "blocked"``) the counts come from the tensor graph, each
    node once (the graph already shares work; there is no scalar CSE, so before equals
    after): an elementwise op costs its formula's ops per element, a contraction one multiply
    per extra operand and one add per product it sums (those into the accumulators
    included), a sum one add per element it reduces; views (index, transpose, broadcast,
    reshape, stack) cost nothing. Work on values without samples (on the parameters alone,
    or after the sums) is ``per_call``. ``temporaries`` counts the arrays a block keeps
    (``materialize``); ``bytes_per_sample`` counts data only, as for fused plans: block
    arrays stay in cache.
    """

    ops_before_cse: dict[str, int]
    ops_after_cse: dict[str, int]
    bytes_per_sample: int
    passes: int
    accumulators: int
    temporaries: int
    dtype: str
    per_call: dict[str, int] = field(default_factory=dict)
    schedule: str = "fused"

    @property
    def flops_per_sample(self) -> int:
        return sum(self.ops_after_cse.values())

    @property
    def flops_before_cse(self) -> int:
        return sum(self.ops_before_cse.values())

    @property
    def intensity(self) -> float:
        """Flops per byte read: below a machine's flops/bandwidth ratio, memory bounds it."""
        return self.flops_per_sample / max(self.bytes_per_sample, 1)

    def step_time(self, n: int, bandwidth: float, flops: float | None = None) -> float:
        """Roofline seconds per step on ``n`` samples: memory time at ``bandwidth`` bytes/s,
        or compute time at ``flops`` ops/s if that is larger."""
        memory = n * self.bytes_per_sample / bandwidth
        compute = n * self.flops_per_sample / flops if flops else 0.0
        return max(memory, compute)

    def __str__(self) -> str:
        def ops(c: dict) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"

        if self.schedule == "blocked":
            head = [f"passes over the samples: {self.passes}, accumulators: {self.accumulators}, "
                    f"block arrays: {self.temporaries} (blocked schedule)",
                    f"ops per sample:            {self.flops_per_sample:5d}  ({ops(self.ops_after_cse)})",
                    f"ops per call:              {sum(self.per_call.values()):5d}  ({ops(self.per_call)})"]
        else:
            head = [f"passes over the samples: {self.passes}, accumulators: {self.accumulators}, "
                    f"CSE temporaries: {self.temporaries}",
                    f"ops per sample before CSE: {self.flops_before_cse:5d}  ({ops(self.ops_before_cse)})",
                    f"ops per sample after CSE:  {self.flops_per_sample:5d}  ({ops(self.ops_after_cse)})"]
        return "\n".join(head + [
            f"bytes read per sample:     {self.bytes_per_sample:5d}  ({self.dtype} data)",
            f"arithmetic intensity:      {self.intensity:8.2f} flops/byte",
            f"roofline at 10 GB/s:       {self.step_time(10**6, 10e9) * 1e3:8.3f} ms per step "
            "per million samples",
        ])


def stats(plan: Plan, dtype: str = "float64") -> Stats:
    if _blocked(plan):
        return _tensor_stats(plan, dtype)
    before, after = Counter(), Counter()
    nbytes, temps = 0, 0
    itemsize = 4 if dtype == "float32" else 8
    for loop in plan.lowered.loops:
        for acc in loop.accumulators:
            count_ops(acc.summand, before)
        for _, expr in loop.body:
            count_ops(expr, after)
        for expr in loop.sums:
            count_ops(expr, after)
        before["add"] += len(loop.accumulators)  # acc += term
        after["add"] += len(loop.accumulators)
        used = set().union(*(e.free_symbols for _, e in loop.body), *(s.free_symbols for s in loop.sums))
        nbytes += itemsize * sum(1 for s in plan.lowered.loads if s in used)
        temps += len(loop.body) + len(loop.invariants)
    per_call = Counter()
    for _, expr in plan.lowered.finish:
        count_ops(expr, per_call)
    before, after = (Counter({k: v for k, v in c.items() if v}) for c in (before, after))
    return Stats(dict(before), dict(after), nbytes, len(plan.lowered.loops), len(plan.accumulators), temps,
                 dtype, dict(per_call))


# ---- blocked plans: the tensor graph in index notation ----------------------------------
FREE = ("j", "k", "l", "p", "q")  # a tensor parameter's own indices: d(loss)/d(W[j, k])
DUMMIES = ("h", "m", "r", "s", "t", "u", "v", "w")  # one per contracted or reduced axis


def _blocked(plan: Any) -> bool:
    return plan.schedule == "blocked"


class Sum(sp.Sum):
    """``sympy.Sum`` that keeps its summand as written. SymPy's own constructor runs
    ``piecewise_fold``, which moves a ``Piecewise`` out of an inner sum even when the
    condition reads that sum's index (``Sum(Piecewise((a, Eq(h, 0)), (b, True)), (h, 0, 1))``
    inside a sum over the samples comes out wrong). Prints, and ``doit``s, as a Sum."""

    def __new__(cls, function: Any, *limits: Any, **assumptions: Any) -> "Sum":
        function = sp.sympify(function)
        obj = sp.Expr.__new__(cls, function, *[sp.Tuple(*limit) for limit in limits])
        obj.is_commutative = function.is_commutative
        return obj


def _index_symbol(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True, nonnegative=True)


class Indexing:
    """A blocked plan's tensor graph as SymPy in index notation.

    ``at(node, idx)`` is element ``idx`` of ``node`` (``idx``: its fixed dims, as ints or
    index symbols) for the current sample ``i`` (``SAMPLE``). Data read at that sample are
    ``X[i, m]`` (the sample index first, as in the fused forms); a contraction or a sum
    over a fixed axis is a ``Sum`` over a dummy index of its own, a sum over the samples a
    ``Sum`` over ``i`` from 0 to ``n - 1``. Nothing is unrolled: a 256-wide layer is one
    ``Sum`` of 256 terms. Index names avoid every name in the graph."""

    def __init__(self, plan: Any) -> None:
        self.nodes = toposort([plan.loss] + [g for g in plan.lowered.grads.values() if g is not None])
        taken = {n.name for n in self.nodes if n.name is not None} | {SAMPLE.name, N_SYMBOL.name}
        names = self._names(taken)
        rank = max((len(p.shape) for p in plan.wrt), default=0)
        self.free = [_index_symbol(next(names[0])) for _ in range(rank)]
        self._dummy_names = names[1]
        self._dummies: dict[int, list[sp.Symbol]] = {}
        self.memo: dict[tuple[int, tuple], sp.Expr] = {}

    @staticmethod
    def _names(taken: set[str]) -> tuple[Iterator[str], Iterator[str]]:
        def source(base: tuple[str, ...], other: tuple[str, ...]) -> Iterator[str]:
            for k in itertools.count():
                for b in base:
                    name = b if k == 0 else f"{b}{k}"
                    if name not in taken and not (k == 0 and name in other):
                        yield name
        return source(FREE, DUMMIES), source(DUMMIES, FREE)

    def dummies(self, node: Node, count: int) -> list[sp.Symbol]:
        """The dummy indices of ``node``'s own sums (the same on every visit)."""
        have = self._dummies.setdefault(id(node), [])
        while len(have) < count:
            have.append(_index_symbol(next(self._dummy_names)))
        return have[:count]

    def at(self, node: Node, idx: tuple) -> sp.Expr:
        key = (id(node), idx)
        if key not in self.memo:
            rule = INDEX_RULES.get(node.op)
            if rule is None:  # pragma: no cover - every op has a rule (tests/test_registry.py)
                raise UnsupportedError(f"cannot show a {node.op} node ({node.label()}) in index notation")
            self.memo[key] = rule(self, node, tuple(idx))
        return self.memo[key]

    # ---- leaves ----
    def _data(self, node: Node, idx: tuple) -> sp.Expr:
        return _element(node.name, idx, sample=N in node.shape)

    def _param(self, node: Node, idx: tuple) -> sp.Expr:
        return _element(node.name, idx, sample=False)

    def _const(self, node: Node, idx: tuple) -> sp.Expr:
        value = node.attr("value")
        if all(isinstance(k, (int, sp.Integer)) for k in idx):
            return fold.plain(fold.number(value[tuple(int(k) for k in idx)]))
        if value.size and np.all(value == value.flat[0]):
            return fold.plain(fold.number(value.flat[0]))
        return sp.ImmutableDenseNDimArray(value.tolist())[idx]

    def _count(self, node: Node, idx: tuple) -> sp.Expr:
        return N_SYMBOL

    # ---- elementwise and views ----
    def _elementwise(self, node: Node, idx: tuple) -> sp.Expr:
        args = [self.at(x, broadcast_map(node.shape, x.shape)(idx)) for x in node.inputs]
        return fold.plain(node.attr("fn").compose(args))

    def _view(self, node: Node, idx: tuple) -> sp.Expr:
        """broadcast_to, transpose, index, stop_gradient: one element of the input."""
        return self.at(*view_source(node, idx))

    def _reshape(self, node: Node, idx: tuple) -> sp.Expr:
        (x,) = node.inputs
        out_dims, in_dims = fixed_shape(node), fixed_shape(x)
        kept = [k for k, d in zip(idx, out_dims) if d != 1]
        if [d for d in out_dims if d != 1] == [d for d in in_dims if d != 1]:  # dims of 1 come or go
            it = iter(kept)
            return self.at(x, tuple(0 if d == 1 else next(it) for d in in_dims))
        flat, stride = sp.Integer(0), 1  # the element's position in C order, read back in x's dims
        for k, d in reversed(list(zip(idx, out_dims))):
            flat, stride = flat + k * stride, stride * d
        source = []
        for a in reversed(range(len(in_dims))):
            source.append(sp.Mod(flat, in_dims[a]) if a else flat)  # the first dim needs no Mod
            flat = sp.floor(flat / in_dims[a])
        return self.at(x, tuple(reversed(source)))


    def _unindex(self, node: Node, idx: tuple) -> sp.Expr:
        """``g`` placed at the positions ``key`` selects of a zero tensor."""
        (g,), shape = node.inputs, node.shape
        source, conds, pos, axis = [], [], 0, 0
        for k in node.attr("key"):
            if k[0] == "new":
                source.append(0)
                continue
            dim, axis = shape[axis], axis + 1
            if dim is N:
                continue
            v, pos = idx[pos], pos + 1
            if k[0] == "int":
                conds.append(sp.Eq(v, k[1]))
                continue
            start, stop, step = k[1:]
            j = v - start if step == 1 else sp.floor((v - start) / step)  # exact where the condition holds
            conds += [j >= 0, j < len(range(start, stop, step))]
            if abs(step) != 1:
                conds.append(sp.Eq(sp.Mod(v - start, step), 0))
            source.append(j)
        cond = sp.And(*conds)
        if cond is sp.false:
            return sp.Integer(0)
        value = self.at(g, tuple(source))
        return value if cond is sp.true else sp.Piecewise((value, cond), (0, True))

    def _stack(self, node: Node, idx: tuple) -> sp.Expr:
        pos = sum(1 for a in range(node.attr("axis")) if node.shape[a] is not N)
        k, rest = idx[pos], idx[:pos] + idx[pos + 1 :]
        if isinstance(k, (int, sp.Integer)):
            return self.at(node.inputs[int(k)], rest)
        pieces = [(self.at(x, rest), sp.Eq(k, j)) for j, x in enumerate(node.inputs)]
        return sp.Piecewise(*pieces[:-1], (pieces[-1][0], True))

    def _concatenate(self, node: Node, idx: tuple) -> sp.Expr:
        axis = node.attr("axis")
        pos = sum(1 for a in range(axis) if node.shape[a] is not N)
        v, pieces, start = idx[pos], [], 0
        for x in node.inputs:
            size = x.shape[axis]
            if not isinstance(v, (int, sp.Integer)) or start <= v < start + size:
                pieces.append((self.at(x, idx[:pos] + (v - start,) + idx[pos + 1 :]), v < start + size))
            start += size
        if len(pieces) == 1:
            return pieces[0][0]
        return sp.Piecewise(*pieces[:-1], (pieces[-1][0], True))

    # ---- reductions ----
    def _sum(self, node: Node, idx: tuple) -> sp.Expr:
        (x,) = node.inputs
        axes, keep = node.attr("axes"), node.attr("keepdims")
        reduced = [a for a in axes if x.shape[a] is not N and x.shape[a] > 1]
        dummy = {a: sp.Integer(0) for a in axes if x.shape[a] == 1}  # a sum of one term is that term
        dummy.update(zip(reduced, self.dummies(node, len(reduced))))
        source, rest = [], iter(idx)
        for a, d in enumerate(x.shape):
            if a in axes and keep:  # a kept axis is 1 in the output (fixed, even over the samples)
                next(rest)
            if d is N:
                continue
            source.append(dummy[a] if a in axes else next(rest))
        limits = [(dummy[a], 0, x.shape[a] - 1) for a in reduced]
        if any(x.shape[a] is N for a in axes):
            limits.append((SAMPLE, 0, N_SYMBOL - 1))
        term = self.at(x, tuple(source))
        return Sum(term, *limits) if limits else term

    def _mean(self, node: Node, idx: tuple) -> sp.Expr:
        x = node.inputs[0]
        count = sp.Mul(*[N_SYMBOL if x.shape[a] is N else sp.Integer(x.shape[a]) for a in node.attr("axes")])
        return self._sum(node, idx) / count

    def _einsum(self, node: Node, idx: tuple) -> sp.Expr:
        subs, out = node.attr("ins"), node.attr("out")
        sizes = {c: d for s, x in zip(subs, node.inputs) for c, d in zip(s, x.shape)}
        value = dict(zip([c for c in out if sizes[c] is not N], idx))
        summed = [c for c in sizes if c not in out and sizes[c] is not N and sizes[c] > 1]
        value.update((c, sp.Integer(0)) for c in sizes if sizes[c] == 1 and c not in out)
        value.update(zip(summed, self.dummies(node, len(summed))))
        term = sp.Mul(*[self.at(x, tuple(value[c] for c in s if sizes[c] is not N))
                        for s, x in zip(subs, node.inputs)])
        limits = [(value[c], 0, sizes[c] - 1) for c in summed]
        if any(sizes[c] is N and c not in out for c in sizes):
            limits.append((SAMPLE, 0, N_SYMBOL - 1))
        return Sum(term, *limits) if limits else term


# how inspection shows each op in index notation: op name -> Indexing method (every op has
# one; see tests/test_registry.py)
INDEX_RULES: dict[str, Any] = {
    "data": Indexing._data, "param": Indexing._param, "const": Indexing._const, "count": Indexing._count,
    "elementwise": Indexing._elementwise, "reshape": Indexing._reshape, "unindex": Indexing._unindex,
    "stack": Indexing._stack, "concatenate": Indexing._concatenate, "sum": Indexing._sum,
    "mean": Indexing._mean, "einsum": Indexing._einsum,
    **{op: Indexing._view for op in ("broadcast_to", "transpose", "index", "stop_gradient")},
}


def _sample_summand(expr: sp.Expr) -> sp.Expr | None:
    """If ``expr`` is a combination of sums over the samples (with no sum over the samples
    inside them), the summand of the one sum they make; else None."""
    def inner(e: sp.Expr) -> bool:
        return any(SAMPLE in s.variables for s in e.atoms(sp.Sum))

    if isinstance(expr, sp.Sum) and expr.limits[-1] == (SAMPLE, 0, N_SYMBOL - 1):
        body = Sum(expr.function, *expr.limits[:-1]) if len(expr.limits) > 1 else expr.function
        return None if inner(body) else body
    if expr.is_Add:
        terms = [_sample_summand(a) for a in expr.args]
        return None if any(t is None for t in terms) else sp.Add(*terms)
    if expr.is_Mul:
        sums = [a for a in expr.args if inner(a)]
        if len(sums) == 1:
            term = _sample_summand(sums[0])
            if term is not None:
                return sp.Mul(*[term if a is sums[0] else a for a in expr.args])
    return None


def _one_sample(expr: sp.Expr) -> sp.Expr:
    """``X[i, m]`` -> ``X[m]``, ``y[i]`` -> ``y``: data of the one sample a summand is about."""
    return expr.replace(lambda e: isinstance(e, sp.Indexed) and e.indices[0] == SAMPLE,
                        lambda e: _element(str(e.base.label), e.indices[1:], sample=False))


def _tensor_expressions(plan: Any, per_sample: bool, low: Indexing | None = None) -> dict[str, Any]:
    low = Indexing(plan) if low is None else low
    out: dict[str, Any] = {"loss": _shown(low, plan.loss, (), per_sample)}
    for p in plan.wrt:
        out[p.name] = _tensor_gradient(plan, p, low, per_sample)
    return out


def _tensor_gradient(plan: Any, p: Node, low: Indexing, per_sample: bool, errors: bool = False) -> Any:
    """d(loss)/d(p) in index notation: ``Lambda(p's index symbols, expr)`` for a tensor ``p``."""
    g, free = plan.lowered.grads[p.name], tuple(low.free[: len(p.shape)])
    try:
        expr = sp.Integer(0) if g is None else _shown(low, g, free, per_sample)
    except (GraphcError, RecursionError) as exc:
        if not errors:
            raise
        return exc
    return sp.Lambda(free, expr) if free else expr


def _shown(low: Indexing, node: Node, idx: tuple, per_sample: bool) -> sp.Expr:
    try:
        expr = low.at(node, idx)
    except RecursionError:
        raise UnsupportedError(f"the graph of {node.label()} is too deep to show in index notation") from None
    term = _sample_summand(expr) if per_sample else None
    return _one_sample(term) if term is not None else expr


def _tensor_latex(plan: Any) -> str:
    low = Indexing(plan)
    exprs = _tensor_expressions(plan, per_sample=False, low=low)
    # a scalar in braces (the LaTeX parser reads a bare "d x" as a differential), a base bare
    names = {sp.Symbol(n.name, real=True): _tex_name(n.name) if n.shape else "{" + _tex_name(n.name) + "}"
             for n in low.nodes + list(plan.wrt) if n.op in ("data", "param")}

    def tex(expr: sp.Expr) -> str:
        return sp.latex(expr, mul_symbol="dot", symbol_names=names)

    lines = [f"L &= {tex(exprs['loss'])}"]
    for p in plan.wrt:
        expr = exprs[p.name]
        free = expr.variables if isinstance(expr, sp.Lambda) else ()
        body = expr.expr if isinstance(expr, sp.Lambda) else expr
        wrt = _tex_name(p.name) + ("_{" + ",".join(map(str, free)) + "}" if free else "")
        lines.append(rf"\frac{{\partial L}}{{\partial {wrt}}} &= {tex(body)}")
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


_VIEWS = ("data", "param", "const", "count", "broadcast_to", "transpose", "reshape", "index", "unindex",
          "stack", "concatenate", "stop_gradient")


def _tensor_stats(plan: Any, dtype: str) -> Stats:
    nodes = toposort([plan.loss] + [g for g in plan.lowered.grads.values() if g is not None])
    sample, call = Counter(), Counter()
    for node in nodes:
        if node.op in _VIEWS:
            continue
        x = node.inputs[0] if node.inputs else None
        size = math.prod(fixed_shape(node))
        work = Counter()
        if node.op == "elementwise":  # its formula, with scalar constants in place (x**2 is one mul)
            op = node.attr("fn")
            args = [fold.number(i.attr("value")) if i.op == "const" and not i.shape else u
                    for i, u in zip(node.inputs, op.args)]
            for k, v in count_ops(op.compose(args)).items():
                work[k] += v * size
        elif node.op in ("sum", "mean"):
            work["add"] += math.prod(fixed_shape(x)) - (0 if reduces_samples(node) else size)
            if node.op == "mean":  # a mean over the samples divides once, after the pass
                (call if reduces_samples(node) else work)["div"] += size
        elif node.op == "einsum":
            subs, out = node.attr("ins"), node.attr("out")
            sizes = {c: d for s, i in zip(subs, node.inputs) for c, d in zip(s, i.shape)}
            products = size * math.prod(d for c, d in sizes.items() if c not in out and d is not N)
            work["mul"] += products * (len(node.inputs) - 1)
            work["add"] += products - (0 if reduces_samples(node) else size)
        else:
            work[node.op] += size
        target = sample if _sample_wise(node) or reduces_samples(node) else call
        target.update(work)
    stage: dict[int, int] = {}  # the pass that computes each node, as blocked.plan assigns them
    readers: dict[int, set[int]] = {}
    for node in nodes:
        first = max((stage[id(i)] for i in node.inputs), default=0)
        stage[id(node)] = first + 1 if reduces_samples(node) else first
        for i in node.inputs:
            if i.op == "data" and _sample_wise(i):
                readers.setdefault(id(i), set()).add(first)
    itemsize = 4 if dtype == "float32" else 8
    nbytes = sum(itemsize * math.prod(fixed_shape(d)) * len(readers.get(id(d), ())) for d in plan.data)
    counts = {k: v for k, v in sample.items() if v}
    return Stats(counts, dict(counts), nbytes, len(plan.pass_sizes), len(plan.accumulators),
                 len(plan.lowered.materialize), dtype, {k: v for k, v in call.items() if v}, schedule="blocked")


# ---- export -----------------------------------------------------------------------------
CHECKS = '''

# ---- standalone runner (graphc export): needs only numpy and numba ----------------------
DTYPE = np.{dtype}
INPUTS = {inputs}  # argument -> (graphc name, shape; None: the sample dim)
PARAMS = {params}  # argument -> (graphc name, offset in theta, shape)
WRT = {wrt}  # differentiated parameters (arguments); grad has their offsets
N_GRADS = {n_grads}
N_ACC = {n_acc}


def data_arrays(given):
    """The data arguments, checked (dims, sizes, one sample count, numbers) and converted."""
    arrays, n, first = [], None, None
    for arg, (name, shape) in INPUTS.items():
        value = np.asarray(given[arg])
        if value.dtype.kind not in "biuf":
            raise TypeError(f"input {{name!r}} holds {{value.dtype}} values; expected numbers")
        if value.ndim != len(shape):
            raise ValueError(f"input {{name!r}} has shape {{value.shape}}; expected {{len(shape)}} dim(s): {{shape}}")
        for got, want in zip(value.shape, shape):
            if want is None:
                if n is not None and got != n:
                    raise ValueError(f"input {{name!r}} has {{got}} samples but {{first!r}} has {{n}}")
                n, first = got, name
            elif got != want:
                raise ValueError(f"input {{name!r}} has shape {{value.shape}}; expected {{shape}} (None: any)")
        arrays.append(np.ascontiguousarray(value, dtype=DTYPE))
    if n == 0:
        raise ValueError(f"input {{first!r}} has no samples")
    return arrays, n


def pack(given):
    """The parameter arguments -> the flat parameter vector theta."""
    theta = np.empty({n_theta}, dtype=DTYPE)
    for arg, (name, off, shape) in PARAMS.items():
        value = np.asarray(given[arg])
        if value.dtype.kind not in "biuf":
            raise TypeError(f"parameter {{name!r}} holds {{value.dtype}} values; expected numbers")
        if value.shape != shape:
            raise ValueError(f"parameter {{name!r}} has shape {{value.shape}}; expected {{shape}}")
        theta[off : off + value.size] = value.astype(np.float64).ravel()
    return theta


def unpack(flat, args):
    """Flat vector -> {{graphc name: float or ndarray}}."""
    out = {{}}
    for arg in args:
        name, off, shape = PARAMS[arg]
        size = int(np.prod(shape))
        out[name] = float(flat[off]) if not shape else np.array(flat[off : off + size]).reshape(shape)
    return out
'''

RUNNER = '''

def loss_and_grads({signature}):
    """The loss and its gradients ({{graphc name: value}}) at the given parameters, as
    graphc's f(...) returns them. Keyword arguments only: data and parameters by name."""
    given = dict({bound})
    grad = np.zeros(N_GRADS)
    acc = np.zeros(N_ACC)
    loss = evaluate(*data_arrays(given)[0], pack(given), grad, acc)
    return float(loss), unpack(grad, WRT)
'''

FIT = '''

HYPER = {hyper}  # optimizer: {optimizer!r}
SLOTS = {slots}
BATCHES = {batches}  # the mini-batch loop (train_batches) is in this file


def fit(*, {data_signature}init, steps, log_every=100, batch_size={batch_size}, shuffle={shuffle}, seed={seed}):
    """Train from init ({{graphc name: value}}) for `steps` steps; returns (params, history)
    like graphc's fit (with batch_size: on mini-batches, as gc.fit(batch_size=...) runs them)."""
    given = dict({data_bound})
    given.update({{arg: init[name] for arg, (name, _, _) in PARAMS.items()}})
    data = tuple(data_arrays(given)[0])
    theta = pack(given)
    hyper = np.array(list(HYPER.values()), dtype=np.float64)
    state = np.zeros((SLOTS, N_GRADS))
    scratch = np.zeros(N_GRADS), np.zeros(N_ACC)
    if batch_size is None and shuffle:
        raise ValueError("shuffle needs batch_size")
    if batch_size is not None and not BATCHES:
        raise ValueError("this file has no mini-batch loop: export the function of a fit with batch_size")

    def run(count, n, period):
        history = np.zeros(n // period)
        if batch_size is None:
            done = train(data, theta, hyper, state, count, n, period, history, *scratch)
        else:
            done = train_batches(data, theta, hyper, state, count, n, period, history, batch_size, shuffle, seed,
                                 *scratch)
        kept = len(history) if done >= n else (done + 1) // period
        return done, [(count + k * period + period - 1, float(v)) for k, v in enumerate(history[:kept])]

    on_grid = steps - steps % log_every  # then the last step is logged too, as gc.fit logs it
    done, logged = run(0, on_grid, log_every) if on_grid else (0, [])
    if done == on_grid and steps > on_grid:
        _, last = run(on_grid, steps - on_grid, steps - on_grid)
        logged += last
    return unpack(theta, list(PARAMS)), logged
'''


def _runner_fields(plan: Any, dtype: str) -> tuple[dict[str, Any], dict[str, tuple]]:
    """What CHECKS and the entry points are filled with: the argument tables (data and
    parameters, by the names the generated code spells them) and the signature; and the data
    table."""
    data = {spell(d.name): (d.name, tuple(None if k is N else k for k in d.shape)) for d in plan.data}
    params = {spell(name): (name, off, tuple(shape)) for name, (off, shape) in plan.layout.items()}
    args = list(data) + list(params)
    fields = dict(
        dtype=dtype, inputs=repr(data), params=repr(params), wrt=repr([spell(p.name) for p in plan.wrt]),
        n_grads=plan.n_grads, n_acc=plan.n_acc, n_theta=plan.n_theta,
        signature="*, " + ", ".join(args) if args else "", bound=", ".join(f"{a}={a}" for a in args),
    )
    return fields, data


def export(source: str, plan: Plan, dtype: str, path: str | Path, optimizer: Any = None,
           has_train: bool = False, has_batches: bool = False, batching: dict | None = None) -> Path:
    """Write ``source`` plus a small runner as one file that needs only numpy and numba:
    keyword-only entry points named after the data and parameters (spelled as the generated
    code spells them), which check every array's dims, sizes and sample count.
    ``batching``: the defaults of the exported fit's batch_size, shuffle and seed."""
    fields, data = _runner_fields(plan, dtype)
    batching = {"batch_size": None, "shuffle": False, "seed": 0, **(batching or {})}
    text = source + CHECKS.format(**fields) + RUNNER.format(**fields)
    if has_train:
        if optimizer is None:
            raise GraphcError("this function holds a training loop; export it with "
                              "res.compiled.export(path, optimizer=res.optimizer)")
        text += FIT.format(hyper=repr(dict(optimizer.hyper)), optimizer=optimizer, slots=len(optimizer.slots),
                           batches=has_batches, data_signature="".join(f"{a}, " for a in data),
                           data_bound=", ".join(f"{a}={a}" for a in data),
                           **{k: repr(v) for k, v in batching.items()}, **fields)
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path


FORWARD = '''

RESULTS = {results}  # each output's shape (None: the sample dim)
SINGLE = {single}  # one expression (not a tuple of them) was compiled


def outputs({signature}):
    """The outputs at the given parameters, as graphc's g(...).value: an ndarray of each
    output's shape (a float for a scalar), a tuple for several. Keyword arguments only."""
    given = dict({bound})
    arrays, n = data_arrays(given)
    results = [np.empty(tuple(n if d is None else d for d in shape) or (1,), dtype=DTYPE) for shape in RESULTS]
    forward(*arrays, pack(given), np.zeros(max(1, N_ACC)), *results)
    values = [float(r[0]) if not shape else r for shape, r in zip(RESULTS, results)]
    return values[0] if SINGLE else tuple(values)
'''


def export_forward(source: str, plan: Any, dtype: str, path: str | Path, single: bool = True) -> Path:
    """A forward function (``gc.compile`` of arrays) as one file that needs only numpy and
    numba: ``outputs(*, <data>, <params>)``, with the same argument checks as ``export``;
    ``single``: one expression was compiled (not a tuple), as ``g(...).value`` returns it."""
    fields, _ = _runner_fields(plan, dtype)
    results = repr([tuple(None if k is N else k for k in r.shape) for r in plan.results])
    path = Path(path)
    path.write_text(source + CHECKS.format(**fields) + FORWARD.format(results=results, single=single, **fields),
                    encoding="utf-8")
    return path


__all__ = ["Indexing", "Stats", "count_ops", "export", "export_forward", "expressions", "gradients", "graph_text", "latex",
           "shown_gradients", "stats", "user_symbols"]
