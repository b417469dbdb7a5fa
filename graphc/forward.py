"""Forward-only functions: ``gc.compile`` of an array, or of several expressions, and
``res.predict``. No gradients: the outputs' elements are lowered like a loss's
(``schedule.fuse_forward``), the sums over the samples they read run as the usual passes,
and one more pass over the samples stores each sample's output elements
(``codegen/forward.py``). ``g(**bindings).value`` is an ndarray of the expression's shape
(the sample dim, N, as long as the data), or a tuple of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .planning import blocked, schedule
from . import codegen, targets
from .runtime import cuda as cuda_runtime, loader, threads
from .tools import explain, notebook
from .errors import GraphcError, UnsupportedError
from .ir.graph import N, Graph, Node, NodeMemo, format_shape
from .planning.plan import Plan
from .runtime.binding import bind_data, check_names, merge, pack_params
from .timings import Timings


@dataclass(frozen=True)
class Prediction:
    """What a forward function returns: ``value``, an ndarray of the expression's shape (a
    float for a scalar), or a tuple of them for several expressions."""

    value: Any


def outputs_of(expr: Any) -> tuple[list[Node], bool]:
    """The output nodes of ``expr`` (one node, or a tuple/list of them), and whether it was one."""
    single = isinstance(expr, Node)
    nodes = [expr] if single else list(expr) if isinstance(expr, (tuple, list)) else None
    if not nodes or not all(isinstance(n, Node) for n in nodes):
        raise GraphcError(f"gc.compile takes a graph expression or a tuple of them, got {expr!r:.80}")
    return nodes, single


def is_forward(expr: Any) -> bool:
    """Whether ``gc.compile(expr)`` makes a forward function (not a scalar loss)."""
    return not isinstance(expr, Node) or expr.shape != ()


def compile_forward(expr: Any, target: str = "cpu", dtype: str = "float64") -> "Forward":
    """The forward function of ``expr``; compiled once per process for the same nodes."""
    nodes, single = outputs_of(expr)
    key = (tuple(id(n) for n in nodes), single, target, dtype)
    memo = nodes[0].__dict__.setdefault("_graphc_forward", NodeMemo())  # freed with the graph
    if key in memo:  # its plan holds the nodes the ids name, so no id in the key is reused
        return memo[key]
    timings = Timings()
    targets.get(target).emitter("fused", forward=True)  # a clear TargetError where there is none
    with timings.stage("graph"):
        graph = Graph.from_outputs(*nodes)
    plan = _plan(nodes, graph, target, timings)
    with timings.stage("codegen"):
        source = codegen.emit(plan, target, codegen.check_dtype(dtype))
    memo[key] = Forward(plan, source, target, dtype, timings, single)
    return memo[key]


def _plan(nodes: list[Node], graph: Graph, target: str, timings: Timings) -> Any:
    """Fused (per-sample scalar expressions), or blocked where a layer is wide (the choice of
    ``schedule="auto"``), or where the fused schedule cannot unroll the graph."""
    if blocked.choose(nodes[0], {}, target, nodes[1:]) == "fused":
        try:
            return schedule.fuse_forward(nodes, graph.params, graph.data, timings)
        except UnsupportedError:
            if not targets.get(target).blocks:
                raise
    return blocked.forward_plan(nodes, graph.params, graph.data, timings)


class Forward:
    """A compiled forward function: ``g(X=..., W=...) -> Prediction`` (``.value``)."""

    def __init__(self, plan: Plan, source: str, target: str, dtype: str, timings: Any,
                 single: bool = True) -> None:
        self.plan, self.source, self.target, self.dtype, self.timings = plan, source, target, dtype, timings
        self.single = single
        spec = targets.get(target)
        spec.require()  # a clear TargetError before any numba.cuda error
        self._device = spec.device
        self._warm: set[Any] = set()  # the cuda runtime's compiled signatures
        with timings.stage("load"):
            self.module, cached = loader.load(source, "graphc_forward")
        timings["cache"] = "hit" if cached else "miss"

    @property
    def inputs(self) -> list[str]:
        return [d.name for d in self.plan.data]

    @property
    def params(self) -> list[str]:
        return list(self.plan.layout)

    @property
    def path(self) -> str:
        return self.module.__file__

    def __call__(self, bindings: Mapping[str, Any] | None = None, /, **kwargs: Any) -> Prediction:
        given = merge(bindings, kwargs)
        plan = self.plan
        if self._device:
            return self._prediction(cuda_runtime.forward(self, given, self._shape))
        check_names(plan, given, self.inputs + self.params)
        arrays, n = bind_data(plan, given, self.dtype)
        return self.run(arrays, n, pack_params(plan, given, self.dtype))

    def run(self, arrays: list[np.ndarray], n: int | None, theta: np.ndarray) -> Prediction:
        """The outputs for data already bound (``bind_data``: arrays and their sample count)
        and packed parameters ``theta``; the cpu targets."""
        results = [np.empty(self._shape(node, n), dtype=self.dtype) for node in self.plan.results]
        with threads.guard(self.target, self.plan.blas):  # a blocked plan's np.dot on one BLAS thread
            self.module.forward(*arrays, theta, np.zeros(max(1, self.plan.n_acc)), *results)
        return self._prediction(results)

    def _prediction(self, results: list[np.ndarray]) -> Prediction:
        values = [float(r[0]) if not node.shape else r for node, r in zip(self.plan.results, results)]
        return Prediction(values[0] if self.single else tuple(values))

    @staticmethod
    def _shape(node: Node, n: int | None) -> tuple:
        if not node.shape:
            return (1,)
        if N in node.shape and n is None:
            raise GraphcError(f"{node.label()} has shape {format_shape(node.shape)} but no input has samples")
        return tuple(n if d is N else d for d in node.shape)

    def export(self, path: str) -> str:
        """Write a standalone .py (numpy + numba only): ``outputs(*, <data>, <params>)``
        returns what ``g(...).value`` does, with every array checked first."""
        return str(explain.export_forward(self.source, self.plan, self.dtype, path, self.single))

    def _repr_markdown_(self) -> str:  # a notebook shows the outputs and the source (tools/notebook.py)
        return notebook.forward_markdown(self)

    def __repr__(self) -> str:
        shapes = ", ".join(format_shape(r.shape) for r in self.plan.results)
        return f"<graphc.Forward target={self.target} dtype={self.dtype} outputs=[{shapes}] at {self.path}>"


def predict(expr: Any, params: Mapping[str, Any], data: Mapping[str, Any], target: str = "cpu",
            dtype: str = "float64") -> Any:
    """``expr`` on ``data`` with ``params`` bound: an ndarray (or a tuple of them)."""
    g = compile_forward(expr, target, dtype)
    given = {**{k: v for k, v in params.items() if k in g.plan.layout}, **dict(data)}
    return g(given).value


__all__ = ["Forward", "Prediction", "compile_forward", "predict"]
