"""compile(): the whole pipeline, one stage per line."""

from __future__ import annotations

import functools
import os
import sys
import time
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from . import autodiff, codegen, forward, targets
from .planning import blocked, plancache
from .runtime import collector, cuda as cuda_runtime, distributed, loader, threads
from .tools import explain, notebook
from .errors import GraphcError, UnsupportedError
from .ir.graph import Graph, Node, NodeMemo, format_shape, resolve_wrt
from .runtime.binding import Binder, Result, check_names, dtype_name, merge
from .planning import plan as plan_
from .planning.plan import Plan
from .planning.schedule import fuse
from .timings import Timings



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
    key = ("evaluate", wrt_key(wrt), target, dtype, schedule)
    hit = memo_get(loss, key)  # compiled already in this process: nothing is read or built
    if hit is not None:
        return hit
    timings = Timings()

    def build() -> tuple[Plan, str]:
        plan = make_plan(loss, wrt, timings, schedule, target)          # graph, autodiff, schedule
        with timings.stage("codegen"):
            source = codegen.emit(plan, target, codegen.check_dtype(dtype))  # readable Python for Numba
        return plan, source

    # or both from the plan cache (a second process skips SymPy); every argument is in its key
    plan, source = plancache.get(build, loss, wrt, timings, kind="evaluate", target=target, dtype=dtype,
                                 schedule=schedule)
    compiled = Compiled(plan, source, target, dtype, timings)  # loaded (and cached) by loader
    return memo_put(loss, key, compiled)


# ---- the warm path (issue #18): what this process compiled, by graph identity ------------
MEMO = True  # False: every compile goes through the plan cache and the loader (their tests)
_FORGOTTEN = [0]  # forget() advances it: entries made before are not used


def wrt_key(wrt: Any) -> Any:
    """``wrt`` as a memo key: the nodes themselves (hashed and compared by identity)."""
    return tuple(wrt) if isinstance(wrt, (list, tuple)) else wrt


def memo_get(loss: Node, key: tuple) -> "Compiled | None":
    """A copy of the Compiled made for ``(loss, key)`` in this process, or None.

    A node is immutable, so the same loss object is the same graph; ``key`` holds every other
    argument that shapes the plan or the source, and the environment that decides where the
    caches are (and loader.generation, which clear_cache and drop advance). An entry is used
    only while its module is still the one imported under its name."""
    memo = getattr(loss, "__dict__", {}).get("_graphc_memo") if MEMO and isinstance(loss, Node) else None
    if not memo:
        return None
    try:
        entry = memo.get(key + _environment())
    except TypeError:  # an unhashable argument: the build path raises the user's error
        return None
    if entry is None or sys.modules.get(entry.module.__name__) is not entry.module:
        return None
    return entry.copy()


def memo_put(loss: Node, key: tuple, compiled: "Compiled") -> "Compiled":
    if MEMO and isinstance(loss, Node):
        try:
            loss.__dict__.setdefault("_graphc_memo", NodeMemo())[key + _environment()] = compiled.copy()
        except TypeError:
            pass
    return compiled


def forget() -> None:
    """Forget this process's memo (the next compile of each graph reads the caches again)."""
    _FORGOTTEN[0] += 1


def _environment() -> tuple:
    env = os.environ.get
    return (env("GRAPHC_CACHE_DIR"), env("XDG_CACHE_HOME"), env("GRAPHC_PLAN_CACHE"), loader.generation,
            _FORGOTTEN[0])


def make_plan(loss: Node, wrt: Sequence[Node] | None, timings: Timings, schedule: str = "auto",
              target: str = "cpu", hessian: bool = False) -> Plan:
    """Graph and gradients lowered and scheduled; memoised per (loss, wrt, schedule).
    ``hessian``: the exact Hessian's upper triangle too (second-order optimizers, scalar
    parameters; either schedule)."""
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
    memo = loss.__dict__.setdefault("_graphc_plans", NodeMemo())  # on the node: freed with the graph
    key = tuple(id(p) for p in wrt)
    grads = memo.get(key)
    if grads is None:
        with timings.stage("autodiff"):
            grads = memo[key] = autodiff.gradients(loss, wrt)
    if hessian:
        _check_hessian(wrt)
    kind = blocked.choose(loss, grads, target) if schedule == "auto" else schedule
    cached = memo.get((key, kind, hessian))
    if cached is not None:
        return cached
    hess = memo.get((key, "hessian"))
    if hessian and hess is None:
        with timings.stage("autodiff"):
            hess = memo[(key, "hessian")] = autodiff.hessian(grads, wrt)

    def lower(how: str) -> Plan:  # each schedule times its stages
        build = functools.partial(fuse if how == "fused" else blocked.plan, timings=timings)
        if hessian:
            return plan_.with_hessian(build, loss, wrt, grads, hess, graph.params, graph.data)
        return build(loss, wrt, grads, graph.params, graph.data)

    try:
        plan = lower(kind)
    except UnsupportedError:  # too many scalar terms to unroll
        if kind == "blocked" or schedule != "auto" or not targets.get(target).blocks:
            raise
        plan = lower("blocked")
    for name in plan.zero_grads:
        warnings.warn(f"the loss does not depend on parameter {name!r}; its gradient is zero", stacklevel=3)
    memo[(key, kind, hessian)] = plan
    return plan


def _check_hessian(wrt: list[Node]) -> None:
    for p in wrt:
        if p.shape != ():
            raise GraphcError(
                f"the exact Hessian (gc.Newton) needs scalar parameters, and {p.name!r} has shape "
                f"{format_shape(p.shape)}: use a first-order optimizer, or split it into scalars with gc.params"
            )


class Compiled:
    """A compiled loss-and-gradient function: ``f(x=..., a=...) -> Result``."""

    def __init__(self, plan: Plan, source: str, target: str, dtype: str, timings: Timings, stem: str = "graphc") -> None:
        self.plan, self.source, self.target, self.dtype, self.timings = plan, source, target, dtype, timings
        spec = targets.get(target)
        spec.require()  # a clear TargetError before any numba.cuda error
        with timings.stage("load"):
            self.module, cached = loader.load(source, stem)
        timings["cache"] = "hit" if cached else "miss"
        self.binder = Binder(plan, dtype)  # argument checks and conversions, precomputed
        self._device, self._threaded = spec.device, spec.threaded
        self._blas = plan.blas  # read once: run is on the warm path
        self._warm: set[Any] = set()  # the cuda runtime's compiled signatures

    def copy(self) -> "Compiled":
        """This compiled function with timings of its own (``plan``: 'memo'): what a warm
        compile returns. Module, plan and binder are shared."""
        new = object.__new__(Compiled)
        new.__dict__.update(self.__dict__)
        new.timings = Timings(plan="memo", cache="hit")
        return new

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
        return self.plan.schedule

    # ---- inspection (graphc/tools/explain.py; fused plans per element, blocked ones in index notation) ----
    @property
    def gradients(self) -> dict[str, Any]:
        """d(loss)/d(p) per parameter as SymPy, for one sample when the loss sums over samples
        (a blocked plan's tensor parameter: ``Lambda((j, k), d(loss)/d(W[j, k]))``)."""
        return explain.gradients(self.plan)

    def latex(self) -> str:
        """The loss and its gradients as LaTeX (an ``aligned`` block)."""
        return explain.latex(self.plan)

    def _repr_markdown_(self) -> str:  # a notebook shows the maths and the source (tools/notebook.py)
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
        arrays, _ = self.binder.data(given)
        return arrays, self.binder.theta(given)

    def __call__(self, bindings: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Result:
        given = merge(bindings, kwargs) if bindings else kwargs
        bound = None if self._device else self.binder.fast(given)
        if bound is None:
            return self._call(given)
        arrays, theta = bound
        grad, acc = self.binder.scratch()
        loss = self.run(self.module.evaluate, *arrays, theta, grad, acc)
        return Result(float(loss), self.binder.grads(grad))

    def _call(self, given: dict[str, Any]) -> Result:
        """Any bindings: device targets, Dask arrays, values to check or convert."""
        if self._device:
            return cuda_runtime.evaluate(self, given)
        if distributed.uses_dask(given):  # the data stays where its chunks live
            check_names(self.plan, given, self.inputs + self.params)
            return distributed.evaluate(self, given)
        arrays, theta = self.bind(given)
        grad, acc = self.binder.scratch()
        loss = self.run(self.module.evaluate, *arrays, theta, grad, acc)
        return Result(float(loss), self.binder.grads(grad))

    def run(self, fn: Any, *args: Any) -> Any:
        """Call a generated function; a call in which Numba compiles (or loads) a signature is
        timed as 'numba', and the first one runs with the garbage collector paused."""
        if self._threaded or self._blas:
            # serializes parallel calls on Numba's workqueue layer; one thread for BLAS
            with threads.guard(self.target, self._blas):
                return self._run(fn, args)
        return self._run(fn, args)

    def _run(self, fn: Any, args: tuple) -> Any:
        seen = len(fn.overloads)
        if not seen:
            with self.timings.stage("numba"), collector.paused():
                return fn(*args)
        start = time.perf_counter()
        out = fn(*args)
        if len(fn.overloads) != seen:  # a new signature (dtype, layout, read-only ...) compiled
            self.timings["numba"] = self.timings.get("numba", 0.0) + time.perf_counter() - start
        return out

    def __repr__(self) -> str:
        wrt = ", ".join(p.name for p in self.plan.wrt)
        return f"<graphc.Compiled target={self.target} dtype={self.dtype} wrt=[{wrt}] at {self.path}>"
