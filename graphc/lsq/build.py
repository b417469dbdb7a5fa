"""From residuals to a compiled Levenberg-Marquardt fit: the sums, the plan, the module.

A fit needs, at each point it evaluates, three sums over the samples: the cost, ``g = J^T f``
and the upper triangle of ``A = J^T J`` (with a robust loss, the modified ``f`` and ``J`` of
scipy's ``least_squares``: same formulas, per-sample weights). All three are graph
expressions: the Jacobian's columns come from forward mode (``tangents.py``), and
``A[a, b] = sum(w * J[:, a] * J[:, b])`` is an ordinary sum over the samples. The fused
scheduler (``schedule.fuse``) then computes every one of them in one pass, as it computes a
loss and its gradient: ``A`` rides along as the "gradient" of a stand-in parameter ``jtj``,
as the exact Hessian of ``gc.Newton`` does (``optim.hessian_plan``). The target's emitter
prints ``evaluate`` as for any loss, and ``levmar.fit`` runs the whole fit in compiled code:
``evaluate``, then ``levmar.step``, until ``step`` stops.

That fused path unrolls ``A`` into P(P+1)/2 scalar sums: its compile time grows fast with P.
Above ``FUSED_PARAMS`` scalar parameters (or with ``path="dense"``) the dense path takes
over: ``tangents.per_sample_jacobian`` gives J's rows as one node ``J`` of shape (N, P) (one
reverse pass per residual column), and ``g = J^T (w f)`` and ``A = J^T W J`` are two einsums
over the samples, which the blocked schedule (``planning/blocked.py``) computes block by block:
J_b (rows x P) in a scratch array, then ``np.dot(J_b.T, J_b)`` (BLAS) added into ``A``; the
N x P Jacobian is never stored. grad then holds all of ``A`` row by row (levmar's SQUARE
layout). Up to ``MAX_PARAMS`` scalar parameters.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

import numba
import numpy as np

from .. import codegen, targets
from ..runtime import collector, loader, threads
from ..ir import ops
from ..planning import blocked, schedule
from ..compile import Timings
from ..errors import GraphcError, ShapeError, TargetError
from ..ir.graph import Graph, N, Node, code_names, format_shape, spell
from ..planning.plan import Plan
from . import levmar, tangents

FUSED_PARAMS = 16  # up to this many scalar parameters J^T J is P(P+1)/2 unrolled sums (fused path)
MAX_FUSED = 32  # path="fused": at most this many (compile time grows fast: 30 s at 32)
MAX_PARAMS = 2000  # the dense path's limit: a P x P system, factored several times per step (docs/fitting.md)
PATHS = ("auto", "fused", "dense")  # how J^T J is formed: unrolled sums, or J's rows and np.dot
LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")
EPS = float(np.finfo(float).eps)  # scipy's floor for a robust loss's Gauss-Newton weight


# ---- robust losses: rho(z), rho'(z), rho''(z) of z = (f / f_scale)**2, scipy's formulas ----
def _soft_l1(z: Node) -> tuple[Node, Node, Node]:
    t = 1 + z
    root = ops.sqrt(t)
    return 2 * (root - 1), 1 / root, -0.5 / (t * root)


def _huber(z: Node) -> tuple[Node, Node, Node]:
    inside, root = z <= 1, ops.sqrt(z)
    return (ops.where(inside, z, 2 * root - 1), ops.where(inside, 1.0, 1 / root),
            ops.where(inside, 0.0, -0.5 / (z * root)))


def _cauchy(z: Node) -> tuple[Node, Node, Node]:
    t = 1 + z
    return ops.log1p(z), 1 / t, -1 / (t * t)


def _arctan(z: Node) -> tuple[Node, Node, Node]:
    t = 1 + z * z
    return ops.arctan(z), 1 / t, -2 * z / (t * t)


RHO: dict[str, Callable[[Node], tuple[Node, Node, Node]]] = {
    "soft_l1": _soft_l1, "huber": _huber, "cauchy": _cauchy, "arctan": _arctan,
}


# ---- names the fit adds to the user's graph ------------------------------------------------
def fresh_name(base: str, taken: set[str], shape: tuple, op: str) -> str:
    """``base`` (or base2, base3, ...) such that neither it nor a name generated code derives
    from it is already a user name or derived from one; adds those names to ``taken``."""
    for k in range(1, 1000):
        name = base if k == 1 else f"{base}{k}"
        node = Node(op, shape=shape, name=name)
        derived = {name, *code_names(node)}
        if not derived & taken:
            taken |= derived
            return name
    raise GraphcError(f"no free name for {base!r}")  # pragma: no cover


def taken_names(graph: Graph) -> set[str]:
    out: set[str] = set()
    for node in graph.nodes:
        if node.op in ("data", "param"):
            out |= {node.name, spell(node.name), *code_names(node)}
    return out


def data_like(name: str, node: Node) -> Node:
    """An input of ``node``'s shape (gc.data spells the sample dim None)."""
    return ops.data(name, tuple(None if d is N else d for d in node.shape))


@dataclass
class Sums:
    """The graph of one evaluation: ``cost``, ``g[k]`` per scalar parameter, ``a[k]`` per
    entry of J^T J's upper triangle (row-major), and the nodes the fit adds."""

    cost: Node
    g: list[Node]
    a: list[Node]
    labels: list[str]  # scalar parameters: "b1", "W[0, 1]", ...
    zero: list[str]  # parameters the residuals do not depend on
    sigma: Node | None
    f_scale: Node | None


@dataclass
class FitTerms:
    """The residuals as a fit sees them: ``f`` (divided by ``sigma`` when weighted), the
    ``cost`` 0.5 * sum(rho(f**2)), and what the normal equations weight: ``fw`` (rho' f) in
    J^T f, the per-sample ``weight`` (None for the linear loss) in J^T W J; the nodes the fit
    adds, ``sigma`` (data) and ``f_scale`` (a parameter held fixed)."""

    f: Node
    cost: Node
    fw: Node
    weight: Node | None
    sigma: Node | None
    f_scale: Node | None


def fit_terms(residuals: Node, loss: str, weighted: bool, taken: set[str]) -> FitTerms:
    """scipy's robust losses and curve_fit's sigma on ``residuals`` (one place for both paths)."""
    sigma = f_scale = None
    f = residuals
    if weighted:  # curve_fit's sigma: residuals divided by it
        sigma = data_like(fresh_name("sigma", taken, residuals.shape, "data"), residuals)
        f = f / sigma
    if loss == "linear":
        return FitTerms(f, 0.5 * ops.sum(f * f), f, None, sigma, None)
    f_scale = ops.param(fresh_name("f_scale", taken, (), "param"))
    z = (f / f_scale) ** 2
    rho, rho1, rho2 = RHO[loss](z)
    return FitTerms(f, 0.5 * ops.sum(f_scale * f_scale * rho), rho1 * f, ops.maximum(rho1 + 2 * z * rho2, EPS),
                    sigma, f_scale)


def normal_equations(residuals: Node, params: list[Node], loss: str, weighted: bool, taken: set[str]) -> Sums:
    w = fit_terms(residuals, loss, weighted, taken)
    fw, weight = w.fw, w.weight
    columns = tangents.jacobian(w.f, params)
    labels = [label for label, _ in columns]
    jac = [j for _, j in columns]
    zero = ops.constant(0.0)
    g = [ops.sum(fw * j) if j is not None else zero for j in jac]
    a = []
    for i, ji in enumerate(jac):
        for jj in jac[i:]:
            if ji is None or jj is None:
                a.append(zero)
            else:
                a.append(ops.sum((weight * ji if weight is not None else ji) * jj))
    zero_labels = [label for label, j in columns if j is None]
    return Sums(w.cost, g, a, labels, zero_labels, w.sigma, w.f_scale)


def plan_for(sums: Sums, params: list[Node], taken: set[str], timings: Timings) -> Plan:
    """cost, g and A as one fused Plan: A is the "gradient" of a stand-in parameter ``jtj``."""
    jtj = ops.param(fresh_name("jtj", taken, (len(sums.a),), "param"), (len(sums.a),))
    graph = Graph.from_outputs(sums.cost, *sums.g, *sums.a)
    grads: dict[Node, Node | None] = {}
    flat = iter(sums.g)
    for p in params:  # a tensor parameter's gradient: its elements' sums, stacked to its shape
        elems = [next(flat) for _ in range(math.prod(p.shape))]
        grads[p] = ops.reshape(ops.stack(elems), p.shape) if p.shape else elems[0]
    grads[jtj] = ops.stack(sums.a)
    wrt = list(params) + [jtj]
    frozen = [sums.f_scale] if sums.f_scale is not None else []
    plan = schedule.fuse(sums.cost, wrt, grads, wrt + frozen, graph.data, timings)
    _label_sums(plan, sums)
    return plan


def _label_sums(plan: Plan, sums: Sums) -> None:
    """Comments for the sums of J^T J (the scheduler calls them d(loss)/d(jtj[k]))."""
    n = len(sums.labels)
    names = [f"J^T J[{a}, {b}]" for i, a in enumerate(sums.labels) for b in sums.labels[i:]]
    accs = {acc.symbol: acc for acc in plan.accumulators}
    first = 1 + n
    for k, (out, label) in enumerate(zip(plan.lowered.outputs[first:], names)):
        if out in accs and out not in plan.lowered.outputs[:first + k]:
            accs[out].comment = label


# ---- the dense path: J's rows per block of samples, J^T J by BLAS ----------------------------
@dataclass
class DenseSums:
    """The graph of one evaluation on the dense path: ``cost``, ``g = J^T f`` (shape (P,)) and
    ``a = J^T W J`` (shape (P, P)), both sums over the samples of products of J's rows."""

    cost: Node
    g: Node
    a: Node
    labels: list[str]
    zero: list[str]
    sigma: Node | None
    f_scale: Node | None


def labels_of(params: list[Node]) -> list[str]:
    """The scalar parameters' labels in theta's order: "b1", "W[0, 1]", ..."""
    return [tangents.label(p, idx) for p in params for idx in np.ndindex(*p.shape)]


def residual_columns(f: Node) -> list[tuple[tuple, Node]]:
    """``f`` as columns of shape (N,): one per element of its fixed dims (the index key of
    each, and the column); f itself when its shape is (N,)."""
    if f.shape == (N,):
        return [((), f)]
    fixed = [d for d in f.shape if d is not N]
    out = []
    for idx in np.ndindex(*fixed):
        it = iter(idx)
        key = tuple(slice(None) if d is N else next(it) for d in f.shape)
        out.append((key, ops.index(f, key)))
    return out


def dense_normal_equations(residuals: Node, params: list[Node], loss: str, weighted: bool,
                           taken: set[str]) -> DenseSums:
    """cost, J^T f and J^T W J with J's rows from ``tangents.per_sample_jacobian``: per residual
    column one reverse pass, giving ``J`` (N, P) as one node (each parameter's rows reshaped to
    (N, size) and joined in theta's order); ``g = einsum("n,nk->k", w f, J)`` and ``a =
    einsum("nk,nl->kl", W J, J)`` are sums over the samples, which the blocked schedule adds
    up block by block with np.dot."""
    w = fit_terms(residuals, loss, weighted, taken)
    fw, weight = w.fw, w.weight
    used: set[int] = set()
    g = a = None
    for key, column in residual_columns(w.f):
        rows = tangents.per_sample_jacobian(column, params)
        used |= {id(p) for p in params if rows[p] is not None}
        jac = join_rows(params, rows)
        fw_k = ops.index(fw, key) if key else fw
        weighted_jac = jac * ops.index(ops.index(weight, key) if key else weight, (slice(None), None)) \
            if weight is not None else jac
        g_k = ops.einsum("n,nk->k", fw_k, jac)
        a_k = ops.einsum("nk,nl->kl", weighted_jac, jac)
        g, a = (g_k, a_k) if g is None else (g + g_k, a + a_k)
    zero = [label for p in params if id(p) not in used for label in labels_of([p])]
    return DenseSums(w.cost, g, a, labels_of(params), zero, w.sigma, w.f_scale)


def join_rows(params: list[Node], rows: dict[Node, Node | None]) -> Node:
    """J (N, P) from each parameter's rows (N, *p.shape), in theta's order: a run of scalar
    parameters is one stack of their (N,) columns (each column's expression then prints
    inside the loop that fills J, not into an array of its own), a tensor parameter its
    rows reshaped to (N, size); the pieces joined along axis 1."""
    pieces: list[Node] = []
    scalars: list[Node] = []

    def flush() -> None:
        if scalars:
            pieces.append(ops.stack(scalars, axis=1) if len(scalars) > 1 else ops.reshape(scalars[0], (N, 1)))
            scalars.clear()

    for p in params:
        size = math.prod(p.shape)
        got = rows[p]
        if not p.shape:
            scalars.append(got if got is not None else ops.broadcast_to(ops.constant(0.0), (N,)))
            continue
        flush()
        pieces.append(ops.reshape(got, (N, size)) if got is not None
                      else ops.broadcast_to(ops.constant(0.0), (N, size)))
    flush()
    return ops.concatenate(pieces, axis=1) if len(pieces) > 1 else pieces[0]


def dense_plan(sums: DenseSums, params: list[Node], taken: set[str], timings: Timings) -> Plan:
    """cost, g and A as one blocked Plan: each parameter's gradient is its slice of g, and A
    is the "gradient" of a stand-in parameter ``jtj`` of shape (P, P), so grad holds g, then A
    row by row (levmar's SQUARE layout). More rows per block than the blocked schedule picks
    for a layer: each block adds J_b^T W J_b (P x P) into the sum, and wider blocks make fewer
    of those additions."""
    n = len(sums.labels)
    # its name checked as a scalar's: the blocked printer spells a parameter, and grad_<it>,
    # never its elements (the element names of a (2000, 2000) parameter are 8 million strings)
    jtj = ops.param(fresh_name("jtj", taken, (), "param"), (n, n))
    grads: dict[Node, Node | None] = {}
    off = 0
    for p in params:
        size = math.prod(p.shape)
        piece = ops.index(sums.g, off) if not p.shape else ops.index(sums.g, slice(off, off + size))
        grads[p] = ops.reshape(piece, p.shape) if len(p.shape) > 1 else piece
        off += size
    grads[jtj] = sums.a
    wrt = list(params) + [jtj]
    frozen = [sums.f_scale] if sums.f_scale is not None else []
    graph = Graph.from_outputs(sums.cost, sums.g, sums.a)
    plan = blocked.plan(sums.cost, wrt, grads, wrt + frozen, graph.data, timings)
    plan.lowered.rows = max(plan.lowered.rows, dense_rows(n))
    return plan


def dense_rows(n: int) -> int:
    """Rows per block for P = n: about 2^18 elements of J per block (256 rows at P = 1000),
    between 64 and 1024 rows."""
    return 1 << max(6, min(10, int(math.log2(max(1, (1 << 18) // max(1, n))))))


@dataclass
class Solver:
    """One compiled fit: the plan, the generated module and where things live in theta."""

    plan: Plan
    source: str
    module: Any
    target: str
    dtype: str
    params: list[Node]
    labels: list[str]
    sums: Sums
    timings: Timings
    user_data: list[Node] = field(default_factory=list)
    residual_shape: tuple = ()
    dense: bool = False  # the dense path: grad holds g, then J^T J row by row (all P x P)
    entry: Any = None  # levmar.fit's compiled entry point, once compiled
    callees: tuple = ()  # evaluate and levmar.step as Pointers

    @property
    def n(self) -> int:
        return len(self.labels)

    @cached_property
    def offsets(self) -> dict[str, tuple[int, tuple]]:
        """Parameter name -> (offset in theta, shape)."""
        return {p.name: self.plan.layout[p.name] for p in self.params}

    @cached_property
    def data_names(self) -> dict[str, None]:
        """The user's inputs, in plan order (a dict: its keys compare with a data dict's as a set)."""
        return dict.fromkeys(d.name for d in self.user_data)

    @cached_property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @cached_property
    def unbounded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """levmar's bound kinds, lower and upper bounds of a fit without bounds (read only)."""
        arrays = (np.zeros(self.n, dtype=np.int64), np.full(self.n, -np.inf), np.full(self.n, np.inf))
        for a in arrays:
            a.setflags(write=False)
        return arrays

    @cached_property
    def shapes(self) -> dict[str, tuple]:
        return {p.name: tuple(p.shape) for p in self.params}

    @property
    def path(self) -> str:
        return self.module.__file__

    def run(self, data: list, theta: np.ndarray, grad: np.ndarray, acc: np.ndarray, state: tuple) -> float:
        """levmar.fit on this model: its loop with this module's evaluate and levmar.step as
        first-class functions (``Pointer``). The first call compiles (timed as 'numba')
        evaluate, and finds levmar.fit for these argument types in Numba's cache (it depends
        on the data's layout, not on the model). The call goes to that compiled fit directly
        (Numba's dispatch would compile another one, with both callees linked in); the arrays
        are always C-ordered and of the solver's dtype (``_bind``), so one signature serves."""
        args = (tuple(data), theta, grad, acc, state)
        if self.entry is None:
            with self.timings.stage("numba"), collector.paused():
                types = tuple(numba.typeof(a) for a in args)
                evaluate = Pointer(self.module.evaluate, (*types[0], *types[1:4]))
                step = Pointer(levmar.step, (numba.float64, types[2], types[1], types[4]))
                sig = types + (evaluate.type, step.type)
                levmar.fit.compile(sig)
                self.entry, self.callees = levmar.fit.overloads[sig].entry_point, (evaluate, step)
        with threads.guard(self.target, self.plan.blas):  # the dense path's np.dot: one BLAS thread
            return self.entry(*args, *self.callees)


class Pointer:
    """A compiled function as a first-class function argument: its address, found once
    (numba's ``__wrapper_address__`` protocol; a dispatcher would be looked up on every call)."""

    def __init__(self, dispatcher: Any, argtypes: tuple) -> None:
        dispatcher.compile(argtypes)
        compiled = dispatcher.overloads[argtypes]
        self.type = numba.types.FunctionType(compiled.signature)
        self.address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_cfunc_wrapper_name)
        self.dispatcher = dispatcher  # keeps the compiled code alive

    def __wrapper_address__(self) -> int:
        return self.address


_SOLVERS: "weakref.WeakKeyDictionary[Node, dict]" = weakref.WeakKeyDictionary()


def solver(residuals: Node, loss: str, weighted: bool, target: str, dtype: str, path: str = "auto") -> Solver:
    """The compiled fit of ``residuals`` (memoised per residual node and options)."""
    if not isinstance(residuals, Node):
        raise GraphcError(f"least_squares: residuals must be a graph expression, "
                          f"got {type(residuals).__name__}")
    if path not in PATHS:
        raise GraphcError(f"least_squares: unknown path {path!r}; choose one of {', '.join(PATHS)}")
    memo = _SOLVERS.setdefault(residuals, {})
    key = (loss, weighted, target, dtype, path)
    if key not in memo:
        memo[key] = _build(residuals, loss, weighted, target, dtype, path)
    return memo[key]


def _build(residuals: Node, loss: str, weighted: bool, target: str, dtype: str, path: str) -> Solver:
    if targets.get(target).device:
        raise TargetError(f"least_squares runs on the CPU targets (cpu, parallel), not {target!r}")
    dtype = codegen.check_dtype(dtype)
    timings = Timings()
    with timings.stage("graph"):
        graph = Graph.from_outputs(residuals)
        check_residuals(residuals, graph)
        params = graph.params
        count = sum(math.prod(p.shape) for p in params)
        if count > MAX_PARAMS:
            raise GraphcError(
                f"least_squares: {count} scalar parameters; at most {MAX_PARAMS} are supported (the "
                f"normal equations are a dense {count} x {count} system, factored at every step; "
                "docs/fitting.md, Size)")
        if path == "fused" and count > MAX_FUSED:
            raise GraphcError(f"least_squares: {count} scalar parameters; path='fused' takes at most "
                              f"{MAX_FUSED} (J^T J is unrolled into P(P+1)/2 sums); use path='dense'")
        dense = path == "dense" or (path == "auto" and count > FUSED_PARAMS)
        taken = taken_names(graph)
    with timings.stage("autodiff"):
        if dense:
            sums = dense_normal_equations(residuals, params, loss, weighted, taken)
        else:
            sums = normal_equations(residuals, params, loss, weighted, taken)
    for name in sums.zero:
        warnings.warn(f"least_squares: the residuals do not depend on parameter {name!r}; "
                      "it stays at its initial value", stacklevel=4)
    plan = dense_plan(sums, params, taken, timings) if dense else plan_for(sums, params, taken, timings)
    with timings.stage("codegen"):
        source = codegen.emit(plan, target, dtype)
    with timings.stage("load"):
        module, cached = loader.load(source, "lsq")
    timings["cache"] = "hit" if cached else "miss"
    return Solver(plan, source, module, target, dtype, params, sums.labels, sums, timings, graph.data,
                  tuple(residuals.shape), dense=dense)


def check_residuals(residuals: Node, graph: Graph) -> None:
    if N not in residuals.shape:
        hint = ("; pass the residuals themselves (e.g. y - model), not their sum of squares"
                if residuals.op in ("sum", "mean") or residuals.shape == () else "")
        raise ShapeError(f"least_squares: the residuals must have one value per sample (a shape with "
                         f"the sample dim N), but {residuals.label()} has shape "
                         f"{format_shape(residuals.shape)}{hint}")
    if residuals.dtype == "bool":
        raise GraphcError(f"least_squares: the residuals {residuals.label()} are a comparison, not numbers")
    if not graph.params:
        raise GraphcError("least_squares: the residuals depend on no parameter (gc.param); nothing to fit")
