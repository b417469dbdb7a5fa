"""compile(): the whole pipeline, one stage per line."""

from __future__ import annotations

import time
import warnings
import weakref
from typing import Any, Mapping, Sequence

import numpy as np

from . import autodiff, blocked, codegen, collector, cuda_runtime, distributed, explain, forward, loader, notebook, plancache, targets, threads
from .blocked import BlockPlan
from .errors import GraphcError, UnsupportedError
from .graph import Graph, Node, format_shape, resolve_wrt
from .runtime import Result, bind_data, check_names, dtype_name, merge, pack_params, unpack
from . import schedule as schedule_
from .schedule import Plan, fuse
from .timings import Timings

_PLANS: "weakref.WeakKeyDictionary[Node, dict]" = weakref.WeakKeyDictionary()


def compile(loss: Node, wrt: Sequence[Node] | None = None, target: str = "cpu", dtype: str = "float64",
            schedule: str = "auto") -> "Compiled":
    """Build graph -> differentiate -> schedule -> emit -> load. Each line is one stage.

    ``schedule``: "fused" (one unrolled loop body per sample), "blocked" (blocks of samples
    as arrays, dense products; for wide layers) or "auto" (blocked when a per-sample
    contraction has a weight of blocked.WIDE or more elements; see docs/design.md).
    An array (or a tuple of expressions) compiles a forward function (graphc/forward.py)."""
    dtype = dtype_name(dtype)  # np.float32 as "float32"
    if forward.is_forward(loss):
        if wrt is not None:
            raise GraphcError("wrt names what to differentiate a scalar loss by; a forward function "
                              "(gc.compile of an array or a tuple) has no gradients")
        return forward.compile_forward(loss, target, dtype)
    timings = Timings()

    def build() -> tuple[Plan | BlockPlan, str]:
        plan = make_plan(loss, wrt, timings, schedule, target)          # graph, autodiff, schedule
        with timings.stage("codegen"):
            source = codegen.emit(plan, target, codegen.check_dtype(dtype))  # readable Python for Numba
        return plan, source

    # or both from the plan cache (a second process skips SymPy); every argument is in its key
    plan, source = plancache.get(build, loss, wrt, timings, kind="evaluate", target=target, dtype=dtype,
                                 schedule=schedule)
    return Compiled(plan, source, target, dtype, timings)          # loaded (and cached) by loader


def make_plan(loss: Node, wrt: Sequence[Node] | None, timings: Timings, schedule: str = "auto",
              target: str = "cpu", hessian: bool = False) -> Plan | BlockPlan:
    """Graph and gradients lowered and scheduled; memoised per (loss, wrt, schedule).
    ``hessian``: the exact Hessian's upper triangle too (second-order optimizers; fused,
    scalar parameters)."""
    if schedule not in blocked.SCHEDULES:
        raise GraphcError(f"unknown schedule {schedule!r}; choose one of {', '.join(blocked.SCHEDULES)}")
    with timings.stage("graph"):
        graph = Graph.from_outputs(loss)
        if loss.shape != ():
            raise GraphcError(
                f"the loss must be a scalar, but {loss.label()} has shape {format_shape(loss.shape)}; "
                "reduce it with gc.sum or gc.mean"
            )
        wrt = resolve_wrt(graph, wrt)
    memo = _PLANS.setdefault(loss, {})
    key = tuple(id(p) for p in wrt)
    grads = memo.get(key)
    if grads is None:
        with timings.stage("autodiff"):
            grads = memo[key] = autodiff.gradients(loss, wrt)
    if hessian:
        return _hessian_plan(loss, wrt, grads, graph, schedule, timings, memo, key)
    kind = blocked.choose(loss, grads, target) if schedule == "auto" else schedule
    cached = memo.get((key, kind))
    if cached is not None:
        return cached
    if kind == "blocked":
        with timings.stage("schedule"):
            plan = blocked.plan(loss, wrt, grads, graph.params, graph.data)
    else:
        try:
            plan = fuse(loss, wrt, grads, graph.params, graph.data, timings)  # times schedule and cse
        except UnsupportedError:  # too many scalar terms to unroll
            if schedule != "auto" or "blocked" not in targets.get(target).schedules:
                raise
            with timings.stage("schedule"):
                plan = blocked.plan(loss, wrt, grads, graph.params, graph.data)
    for name in plan.zero_grads:
        warnings.warn(f"the loss does not depend on parameter {name!r}; its gradient is zero", stacklevel=3)
    memo[(key, kind)] = plan
    return plan


def _hessian_plan(loss: Node, wrt: list[Node], grads: dict, graph: Graph, schedule: str, timings: Timings,
                  memo: dict, key: tuple) -> Plan:
    if schedule == "blocked":
        raise UnsupportedError("the exact Hessian (a second-order optimizer) needs schedule='fused'")
    for p in wrt:
        if p.shape != ():
            raise GraphcError(
                f"the exact Hessian (gc.Newton) needs scalar parameters, and {p.name!r} has shape "
                f"{format_shape(p.shape)}: use a first-order optimizer, or split it into scalars with gc.params"
            )
    plan = memo.get((key, "hessian"))
    if plan is None:
        with timings.stage("autodiff"):
            hess = autodiff.hessian(grads, wrt)
        plan = memo[(key, "hessian")] = schedule_.fuse_hessian(loss, wrt, grads, hess, graph.params, graph.data,
                                                               timings)
    return plan


class Compiled:
    """A compiled loss-and-gradient function: ``f(x=..., a=...) -> Result``."""

    def __init__(self, plan: Plan, source: str, target: str, dtype: str, timings: Timings, stem: str = "graphc") -> None:
        self.plan, self.source, self.target, self.dtype, self.timings = plan, source, target, dtype, timings
        targets.get(target).require()  # a clear TargetError before any numba.cuda error
        with timings.stage("load"):
            self.module, cached = loader.load(source, stem)
        timings["cache"] = "hit" if cached else "miss"
        self._warm: set[Any] = set()

    @property
    def path(self) -> str:
        """The generated file on disk (tracebacks and ``inspect`` point into it)."""
        return self.module.__file__

    @property
    def params(self) -> list[str]:
        return list(self.plan.layout)

    @property
    def inputs(self) -> list[str]:
        return [d.name for d in self.plan.data]

    @property
    def schedule(self) -> str:
        """The schedule the plan was made with: "fused" or "blocked"."""
        return self.plan.kind

    # ---- inspection (graphc/explain.py; fused plans per element, blocked ones in index notation) ----
    @property
    def gradients(self) -> dict[str, Any]:
        """d(loss)/d(p) per parameter as SymPy, for one sample when the loss sums over samples
        (a blocked plan's tensor parameter: ``Lambda((j, k), d(loss)/d(W[j, k]))``)."""
        return explain.gradients(self.plan)

    def latex(self) -> str:
        """The loss and its gradients as LaTeX (an ``aligned`` block)."""
        return explain.latex(self.plan)

    def _repr_markdown_(self) -> str:  # a notebook shows the maths and the source (notebook.py)
        return notebook.compiled_markdown(self)

    @property
    def graph(self) -> str:
        """The loss graph, one line per node."""
        return explain.graph_text(self.plan)

    @property
    def stats(self) -> explain.Stats:
        """Ops per sample (before and after CSE), bytes read per sample, roofline step time."""
        return explain.stats(self.plan, self.dtype)

    batching: dict | None = None  # a mini-batch fit's batch_size, shuffle and seed (set by fit)

    def export(self, path: str, optimizer: Any = None) -> str:
        """Write a standalone .py (numpy + numba only) that reproduces this computation;
        a mini-batch fit's function exports its batching as the defaults of its fit."""
        optimizer = optimizer if optimizer is not None else getattr(self, "optimizer", None)
        has_train, has_batches = hasattr(self.module, "train"), hasattr(self.module, "train_batches")
        return str(explain.export(self.source, self.plan, self.dtype, path, optimizer, has_train, has_batches,
                                  self.batching))

    def bind(self, bindings: Mapping[str, Any] | None = None, **kwargs: Any) -> tuple[list[np.ndarray], np.ndarray]:
        given = merge(bindings, kwargs)
        check_names(self.plan, given, self.inputs + self.params)
        arrays, _ = bind_data(self.plan, given, self.dtype)
        return arrays, pack_params(self.plan, given, self.dtype)

    def __call__(self, bindings: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Result:
        given = merge(bindings, kwargs)
        if targets.get(self.target).device:
            return cuda_runtime.evaluate(self, given)
        if distributed.uses_dask(given):  # the data stays where its chunks live
            check_names(self.plan, given, self.inputs + self.params)
            return distributed.evaluate(self, given)
        arrays, theta = self.bind(given)
        grad = np.zeros(self.plan.n_grads)
        acc = np.zeros(self.plan.n_acc)
        loss = self.run(self.module.evaluate, *arrays, theta, grad, acc)
        return Result(float(loss), unpack(self.plan, grad, [p.name for p in self.plan.wrt]))

    def run(self, fn: Any, *args: Any) -> Any:
        """Call a generated function; the first call per signature is timed as 'numba'."""
        key = (fn.__name__, tuple(getattr(a, "dtype", type(a)) for a in args))
        with threads.guard(self.target):  # serializes parallel calls on Numba's workqueue layer
            if key in self._warm:
                return fn(*args)
            with self.timings.stage("numba"), collector.paused():
                out = fn(*args)
        self._warm.add(key)
        return out

    def __repr__(self) -> str:
        wrt = ", ".join(p.name for p in self.plan.wrt)
        return f"<graphc.Compiled target={self.target} dtype={self.dtype} wrt=[{wrt}] at {self.path}>"
