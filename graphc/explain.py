"""Inspection: what a compiled function computes, how much work it does, and a standalone copy.

Everything here reads a ``schedule.Plan`` (and, for ``export``, the generated source); nothing
feeds back into compilation. ``Compiled`` exposes it as ``f.gradients``, ``f.latex()``,
``f.graph``, ``f.stats`` and ``f.export(path)``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sympy as sp
from sympy.core.parameters import distribute

from . import fold
from .errors import GraphcError
from .graph import Graph, spell
from .ops import fixed_indices
from .schedule import N_SYMBOL, Plan

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
    for sym, load in plan.loads.items():
        out[sym] = _element(load.array.name, load.index, sample=exact)
    for sym, load in plan.fixed_loads.items():
        out[sym] = _element(load.array.name, load.index, sample=False)
    owner = {off: (name, shape) for name, (off, shape) in plan.layout.items()}
    starts = sorted(owner)
    for sym, k in plan.param_symbols.items():
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
    outputs = list(plan.outputs)
    for sym, expr in reversed(plan.finish):
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
    """
    exprs = expressions(plan, per_sample)
    del exprs["loss"]
    return exprs


# ---- LaTeX ------------------------------------------------------------------------------
def _tex_name(name: str) -> str:
    base = spell(name)
    if len(base) == 1:
        return base
    return r"\mathrm{" + base.replace("_", r"\_") + "}"


def _tex_symbols(plan: Plan) -> dict[sp.Symbol, str]:
    """Plan symbols -> LaTeX: ``{a}``, ``x_{i}``, ``\\mathrm{lin\\_weight}_{0,1}``."""
    names: dict[sp.Symbol, str] = {}
    for sym, load in list(plan.loads.items()) + list(plan.fixed_loads.items()):
        idx = (["i"] if sym in plan.loads else []) + [str(k) for k in load.index]
        names[sym] = _tex_name(load.array.name) + ("_{" + ",".join(idx) + "}" if idx else "")
    for sym, elem in user_symbols(plan, exact=False).items():
        if sym in plan.param_symbols:
            if isinstance(elem, sp.Indexed):
                names[sym] = _tex_name(str(elem.base)) + "_{" + ",".join(map(str, elem.indices)) + "}"
            else:  # braces: the LaTeX parser reads a bare "d x" as a differential
                names[sym] = "{" + _tex_name(str(elem)) + "}"
    return names


def latex(plan: Plan) -> str:
    """The loss and its gradients as an ``aligned`` LaTeX block, one equation per line.

    Sums over samples are written out (``\\sum_{i=0}^{n - 1}``) and data carry the sample
    index (``x_{i}``), so each right-hand side is a complete formula.
    """
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
    """

    ops_before_cse: dict[str, int]
    ops_after_cse: dict[str, int]
    bytes_per_sample: int
    passes: int
    accumulators: int
    temporaries: int
    dtype: str
    per_call: dict[str, int] = field(default_factory=dict)

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

        return "\n".join([
            f"passes over the samples: {self.passes}, accumulators: {self.accumulators}, "
            f"CSE temporaries: {self.temporaries}",
            f"ops per sample before CSE: {self.flops_before_cse:5d}  ({ops(self.ops_before_cse)})",
            f"ops per sample after CSE:  {self.flops_per_sample:5d}  ({ops(self.ops_after_cse)})",
            f"bytes read per sample:     {self.bytes_per_sample:5d}  ({self.dtype} data)",
            f"arithmetic intensity:      {self.intensity:8.2f} flops/byte",
            f"roofline at 10 GB/s:       {self.step_time(10**6, 10e9) * 1e3:8.3f} ms per step "
            "per million samples",
        ])


def stats(plan: Plan, dtype: str = "float64") -> Stats:
    before, after = Counter(), Counter()
    nbytes, temps = 0, 0
    itemsize = 4 if dtype == "float32" else 8
    for loop in plan.loops:
        for acc in loop.accumulators:
            count_ops(acc.summand, before)
        for _, expr in loop.body:
            count_ops(expr, after)
        for expr in loop.sums:
            count_ops(expr, after)
        before["add"] += len(loop.accumulators)  # acc += term
        after["add"] += len(loop.accumulators)
        used = set().union(*(e.free_symbols for _, e in loop.body), *(s.free_symbols for s in loop.sums))
        nbytes += itemsize * sum(1 for s in plan.loads if s in used)
        temps += len(loop.body) + len(loop.invariants)
    per_call = Counter()
    for _, expr in plan.finish:
        count_ops(expr, per_call)
    before, after = (Counter({k: v for k, v in c.items() if v}) for c in (before, after))
    return Stats(dict(before), dict(after), nbytes, len(plan.loops), len(plan.accumulators), temps,
                 dtype, dict(per_call))


# ---- export -----------------------------------------------------------------------------
RUNNER = '''

# ---- standalone runner (graphc export): needs only numpy and numba ----------------------
DTYPE = np.{dtype}
PARAMS = {params}  # name -> (offset in theta, shape)
WRT = {wrt}  # differentiated parameters; grad has their offsets
N_GRADS = {n_grads}
N_ACC = {n_acc}


def pack(params):
    """{{name: value}} -> the flat parameter vector theta."""
    theta = np.empty({n_theta}, dtype=DTYPE)
    for name, (off, shape) in PARAMS.items():
        value = np.asarray(params[name], dtype=np.float64)
        if value.shape != shape:
            raise ValueError(f"parameter {{name!r}} has shape {{value.shape}}; expected {{shape}}")
        theta[off : off + value.size] = value.ravel()
    return theta


def unpack(flat, names):
    """Flat vector -> {{name: float or ndarray}}."""
    out = {{}}
    for name in names:
        off, shape = PARAMS[name]
        size = int(np.prod(shape))
        out[name] = float(flat[off]) if not shape else np.array(flat[off : off + size]).reshape(shape)
    return out


def loss_and_grads({args}params):
    """The loss and its gradients at params ({{name: value}}), as graphc's f(...) returns them."""
    grad = np.zeros(N_GRADS)
    acc = np.zeros(N_ACC)
    loss = evaluate({arrays}pack(params), grad, acc)
    return float(loss), unpack(grad, WRT)
'''

FIT = '''

HYPER = {hyper}  # optimizer: {optimizer!r}
SLOTS = {slots}


def fit({args}init, steps, log_every=100):
    """Train from init for `steps` steps; returns (params, history) like graphc's fit."""
    theta = pack(init)
    hyper = np.array(list(HYPER.values()), dtype=np.float64)
    state = np.zeros((SLOTS, N_GRADS))
    history = np.zeros(steps // log_every)
    scratch = np.zeros(N_GRADS), np.zeros(N_ACC)
    done = train(({arrays}), theta, hyper, state, 0, steps, log_every, history, *scratch)
    kept = len(history) if done >= steps else (done + 1) // log_every
    logged = [(k * log_every + log_every - 1, float(v)) for k, v in enumerate(history[:kept])]
    return unpack(theta, list(PARAMS)), logged
'''


def export(source: str, plan: Plan, dtype: str, path: str | Path, optimizer: Any = None,
           has_train: bool = False) -> Path:
    """Write ``source`` plus a small runner as one file that needs only numpy and numba."""
    names = [spell(d.name) for d in plan.data]
    fields = dict(
        dtype=dtype,
        params=repr({name: (off, tuple(shape)) for name, (off, shape) in plan.layout.items()}),
        wrt=repr([p.name for p in plan.wrt]),
        n_grads=plan.n_grads, n_acc=plan.n_acc, n_theta=plan.n_theta,
        args="".join(f"{n}, " for n in names),
        arrays="".join(f"np.ascontiguousarray({n}, dtype=DTYPE), " for n in names),
    )
    text = source + RUNNER.format(**fields)
    if has_train:
        if optimizer is None:
            raise GraphcError("this function holds a training loop; export it with "
                              "res.compiled.export(path, optimizer=res.optimizer)")
        text += FIT.format(hyper=repr(dict(optimizer.hyper)), optimizer=optimizer,
                           slots=len(optimizer.slots), **fields)
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path


__all__ = ["Stats", "count_ops", "export", "expressions", "gradients", "graph_text", "latex", "stats",
           "user_symbols"]
