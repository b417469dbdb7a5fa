"""The plan cache: a process that compiles a graph an earlier process already compiled skips
SymPy entirely (autodiff, schedule, CSE and code generation).

``compile()`` and ``fit()`` get their (plan, generated source) pair from ``get``. The key is
a SHA-256 of a structural fingerprint of everything that shapes the pair:

- the graph: every node's op, inputs, attributes (constants by their bytes), shape, dtype
  and name; a user function (``gc.function``) by its SymPy form and its derivative override;
- the parameters differentiated (``wrt``) and every argument of the caller (``target``,
  ``dtype``, the optimizer's generated lines, ``batch_size`` or not, ...);
- the versions of Python, SymPy and NumPy, and a hash of graphc's own source files, so an
  edited graphc never reuses an entry made by the old code.

An entry is ``<cache dir>/plans/<key>.plan``: a header, the SHA-256 of the payload, and the
payload, a pickle of (key, made, plan, source). Every node of the caller's graph is a
reference (the loss; a leaf by name; any other node by its position in the graph's
topological order, which the key fixes) resolved to the caller's own nodes when it is read.
``made`` lists the nodes the plan holds that the caller's graph does not (a blocked plan's
gradient graph, built by autodiff) in topological order, so each one's inputs are stored
before it and the pickle never recurses deeper than one node, however deep the graph.
Elementwise ops are references too (a registry op by name, a ``gc.function`` by the graph
node that applies it), so user functions (lambdas) are never pickled; a derivative op that
autodiff made is stored as its SymPy ``Lambda``. SymPy expressions are rebuilt
unevaluated, so they come back exactly as they were stored. A blocked plan keeps the
nodes it keeps in arrays as nodes (``plan.Blocked.kept``); tables keyed by node ids are
made again after loading (``Plan.__getstate__``). An entry that is
missing, damaged or does not fit the graph is rebuilt and rewritten; a graph that cannot be
fingerprinted or pickled is built as before and not stored. ``GRAPHC_PLAN_CACHE=0`` turns
the cache off.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import pickle
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import sympy as sp

from ..runtime import loader
from ..version import __version__
from ..ir.graph import N, Graph, Node, resolve_wrt, toposort
from ..ir.ops import ELEMENTWISE, Elementwise
from ..training.optim import OPTIMIZERS, SCHEDULES

FORMAT = 2  # bump when the entry layout changes
MAGIC = b"graphc-plan %d\n" % FORMAT
PACKAGE = Path(__file__).resolve().parent.parent  # graphc/ (this file is graphc/planning/plancache.py)
_WARNED: set[tuple[str, str]] = set()  # (key, parameter): zero-gradient warnings already given here
_WARNED_LOCK = threading.Lock()


class Uncacheable(Exception):
    """The graph or the plan holds something the cache cannot key or store; built as before."""


def enabled() -> bool:
    return os.environ.get("GRAPHC_PLAN_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def get(build: Callable[[], tuple[Any, str]], loss: Node, wrt: Any, timings: Any,
        warn_zero_grads: bool = True, **args: Any) -> tuple[Any, str]:
    """``build()``'s (plan, source), read from the cache when an earlier process stored it.

    ``args`` must name every argument of the caller that changes the plan or the source;
    they all go into the key. ``timings`` gets ``plan`` ('hit', 'miss' or 'off') and the
    seconds of ``plancache`` (reading, or writing the entry).
    """
    if not enabled():
        timings["plan"] = "off"
        return build()
    try:
        with timings.stage("graph"):
            graph, wrt_nodes = _checked(loss, wrt)
            key = fingerprint(graph, loss, wrt_nodes, args)
    except Exception:  # noqa: BLE001 - build() raises the user's error (GraphcError), or builds uncached
        timings["plan"] = "off"
        return build()
    refs = _Refs(graph, loss, wrt_nodes)
    path = entry_path(key)
    with timings.stage("plancache"):
        hit = _read(path, key, wrt_nodes, refs)
    if hit is not None:
        timings["plan"] = "hit"
        plan, source = hit
        if warn_zero_grads:
            _warn_zero_grads(key, plan)
        return plan, source
    timings["plan"] = "miss"
    plan, source = build()
    with _WARNED_LOCK:  # make_plan warned in this process already
        _WARNED.update((key, name) for name in getattr(plan, "zero_grads", ()))
    with timings.stage("plancache"):
        _write(path, key, plan, source, refs)
    return plan, source


def entry_path(key: str) -> Path:
    return loader.cache_dir() / "plans" / f"{key}.plan"


# ---- the key ------------------------------------------------------------------------------
def fingerprint(graph: Graph, loss: Node, wrt: list[Node], args: dict[str, Any]) -> str:
    """SHA-256 (hex) of the graph's structure, ``wrt``, the caller's arguments and the versions."""
    index = {id(n): k for k, n in enumerate(graph.nodes)}
    parts: list[Any] = [
        ("graphc-plan", FORMAT, __version__, code_digest(), tuple(sys.version_info[:3]),
         sp.__version__, np.__version__),
    ]
    for node in graph.nodes:
        attrs = tuple((k, _encode(v)) for k, v in node.attrs)
        parts.append((node.op, tuple(index[id(i)] for i in node.inputs), attrs, _encode(node.shape),
                      node.dtype, node.name))
    parts.append(("loss", index[id(loss)]))
    parts.append(("wrt", tuple(index[id(p)] if id(p) in index else ("extra", p.name, _encode(p.shape))
                               for p in wrt)))
    parts.append(("args", tuple(sorted((k, _encode(v, len(wrt))) for k, v in args.items()))))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


@functools.lru_cache(maxsize=None)
def code_digest() -> str:
    """A hash of every .py file of the graphc package (the code that builds plans and source)."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def _encode(value: Any, n_wrt: int = 0) -> Any:
    """A repr-able, exact stand-in for an attribute or argument (raises Uncacheable)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return ("float", value.hex())
    if value is N:
        return "N"
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_encode(v, n_wrt) for v in value))
    if isinstance(value, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
        return ("array", value.dtype.str, value.shape, digest)
    if isinstance(value, np.generic):
        return ("scalar", value.dtype.str, value.tobytes().hex())
    if isinstance(value, Elementwise):
        if ELEMENTWISE.get(value.name) is value:
            return ("op", value.name)
        given = sp.srepr(value._given) if value.derivative is not None else None
        return ("function", value.name, value.nargs, value.nondiff, value.out_dtype, value.infix,
                _encode(value.domain), _encode(value.kinks), sp.srepr(value.expr), given)
    if all(hasattr(value, a) for a in ("hyper", "slots", "formula")):
        return _optimizer(value, n_wrt)
    raise Uncacheable(f"cannot key a {type(value).__name__}")


def _optimizer(opt: Any, n_wrt: int) -> tuple:
    """What the generated training loop takes from an optimizer: for graphc's own, its type and
    flags (``optimizer_key``, no SymPy); for any other, its update's SymPy expressions over
    symbols (``Optimizer.structure``). Never its numbers (those run at run time)."""
    if own_optimizer(opt):
        return ("optimizer", _named(optimizer_key(opt)))
    try:
        return ("optimizer", type(opt).__module__, type(opt).__qualname__, opt.structure())
    except Exception as exc:  # noqa: BLE001 - an optimizer we cannot describe is not cached
        raise Uncacheable(f"cannot key optimizer {opt!r}") from exc


_OWN = {**OPTIMIZERS, **SCHEDULES}  # graphc's optimizers and schedules, by name


def own_optimizer(opt: Any) -> bool:
    """Whether ``opt`` is one of graphc's optimizers (its exact class, not a subclass)."""
    return _OWN.get(type(opt).__name__) is type(opt)


def optimizer_key(opt: Any) -> Any:
    """What of ``opt`` shapes the generated training loop, without SymPy. graphc's own
    optimizers and schedules branch only on whether a number is zero and on their flags, so
    for them it is the type and the fields with each number replaced by ``number != 0`` (a
    new learning rate is the same loop; tests/test_latency.py checks that equal keys mean equal
    ``structure()`` for every class). Any other optimizer is its own key: equal optimizers,
    equal loops (fit's in-process memo; the plan cache keys those on ``structure()``)."""
    cls = type(opt)
    if not own_optimizer(opt):
        return cls, opt
    return cls, tuple(_field_key(getattr(opt, f)) for f in _field_names(cls))


def _named(key: Any) -> Any:
    """An optimizer_key with each class as its name (repr-able, the same in every process)."""
    if isinstance(key, type):
        return key.__qualname__
    return tuple(_named(k) for k in key) if isinstance(key, tuple) else key


@functools.lru_cache(maxsize=None)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _field_key(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, tuple):
        return tuple(_field_key(v) for v in value)
    return optimizer_key(value)  # a schedule


def _checked(loss: Node, wrt: Any) -> tuple[Graph, list[Node]]:
    """The validated graph and parameters, as make_plan checks them (the same errors)."""

    if not isinstance(loss, Node):
        raise Uncacheable("not a node")
    graph = Graph.from_outputs(loss)
    if loss.shape != ():
        raise Uncacheable("not a scalar loss")  # build() raises the error
    return graph, resolve_wrt(graph, wrt)


# ---- entries ------------------------------------------------------------------------------
class _Refs:
    """How an entry names what the caller already holds: its loss, its leaves by name, every
    other node of its graph by position, and the elementwise ops (registry ones by name, a
    ``gc.function`` by the position of a node that applies it)."""

    def __init__(self, graph: Graph, loss: Node, wrt: list[Node]) -> None:
        self.loss, self.nodes, self.wrt = loss, graph.nodes, wrt

    @functools.cached_property  # the tables are built on first use: a hit on a fused plan reads few
    def leaves(self) -> dict[str, Node]:
        leaves = {n.name: n for n in self.nodes if n.name is not None}
        leaves.update((p.name, p) for p in self.wrt)  # parameters in wrt but not in the loss
        return leaves

    @functools.cached_property
    def position(self) -> dict[int, int]:
        return {id(n): k for k, n in enumerate(self.nodes)}

    @functools.cached_property
    def functions(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for k, node in enumerate(self.nodes):
            fn = node.attr("fn") if node.op == "elementwise" else None
            if isinstance(fn, Elementwise) and ELEMENTWISE.get(fn.name) is not fn:
                out.setdefault(id(fn), k)
        return out

    def node_id(self, node: Node) -> Any:
        """The reference of a node of the caller's graph, or None for a node the plan made."""
        if node is self.loss:
            return ("loss",)
        if node.name is not None and self.leaves.get(node.name) is node:
            return ("leaf", node.name)
        k = self.position.get(id(node))
        if k is not None and self.nodes[k] is node:
            return ("graph", k)
        return None

    def op_id(self, op: Elementwise) -> Any:
        if ELEMENTWISE.get(op.name) is op:
            return ("op", op.name)
        k = self.functions.get(id(op))
        return ("fn", k) if k is not None else None

    def load(self, pid: Any) -> Any:
        """What ``node_id`` or ``op_id`` named; anything else is a damaged entry."""
        kind, arg = pid if isinstance(pid, tuple) and len(pid) == 2 else (pid, None)
        if pid == ("loss",):
            return self.loss
        if kind == "leaf" and arg in self.leaves:
            return self.leaves[arg]
        if kind in ("graph", "fn") and isinstance(arg, int) and 0 <= arg < len(self.nodes):
            node = self.nodes[arg]
            if kind == "graph":
                return node
            if node.op == "elementwise":
                return node.attr("fn")
        if kind == "op" and isinstance(arg, str) and arg in ELEMENTWISE:
            return ELEMENTWISE[arg]
        raise pickle.UnpicklingError(f"unknown reference {pid!r}")


def _elementwise(fields: tuple) -> Elementwise:
    return Elementwise(**dict(fields))


class _Pickler(pickle.Pickler):
    """Pickles a (key, made, plan, source) entry; see the module docstring.

    With ``made=None`` it only collects the nodes the plan made (``self.found``), writing a
    placeholder for each: a first pass whose bytes are the entry when it found none."""

    def __init__(self, file: Any, refs: _Refs, made: list[Node] | None) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.refs, self.made = refs, made
        self.found: dict[int, Node] = {}

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Node):
            ref = self.refs.node_id(obj)
            if ref is None and self.made is None:  # first pass: note it, do not descend
                self.found[id(obj)] = obj
                return ("made?",)
            return ref  # second pass: a made node is pickled by value, after its inputs
        if isinstance(obj, Elementwise):
            return self.refs.op_id(obj)
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Elementwise):  # a derivative op autodiff made: its fields, not its caches
            return _elementwise, (tuple((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)),)
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, refs: _Refs) -> None:
        super().__init__(file)
        self.refs = refs

    def persistent_load(self, pid: Any) -> Any:
        return self.refs.load(pid)


def _made(found: dict[int, Node], refs: _Refs) -> list[Node]:
    """The nodes the plan made, inputs before users (the caller's own nodes are references)."""
    return [n for n in toposort(found.values()) if refs.node_id(n) is None]


def _read(path: Path, key: str, wrt: list[Node], refs: _Refs) -> tuple[Any, str] | None:
    """The stored (plan, source), or None when missing, damaged or not this graph's."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(MAGIC)
    if not data.startswith(MAGIC) or len(data) < head + 32:
        return None
    digest, payload = data[head : head + 32], data[head + 32 :]
    if hashlib.sha256(payload).digest() != digest:
        return None
    try:
        with sp.evaluate(False):  # rebuild each expression exactly as it was, not re-simplified
            stored_key, _, plan, source = _Unpickler(io.BytesIO(payload), refs).load()
        ok = (stored_key == key and isinstance(source, str) and plan.loss is refs.loss
              and len(plan.wrt) == len(wrt) and all(p is q for p, q in zip(plan.wrt, wrt)))
    except Exception:  # noqa: BLE001 - whatever does not load is rebuilt
        return None
    return (plan, source) if ok else None


def _payload(key: str, plan: Any, source: str, refs: _Refs) -> bytes:
    """The pickled entry (raises whatever pickle refuses: a lambda, a local class ...)."""
    buf = io.BytesIO()
    probe = _Pickler(buf, refs, None)
    probe.dump((key, (), plan, source))
    if not probe.found:  # a fused plan: only the caller's nodes, the first pass is the entry
        return buf.getvalue()
    made = _made(probe.found, refs)
    buf = io.BytesIO()
    _Pickler(buf, refs, made).dump((key, made, plan, source))
    return buf.getvalue()


def _write(path: Path, key: str, plan: Any, source: str, refs: _Refs) -> None:
    """Store atomically; a plan that cannot be stored is simply not cached."""
    try:
        payload = _payload(key, plan, source, refs)
    except Exception:  # noqa: BLE001 - Uncacheable, or anything pickle refuses (a lambda, ...)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem[:16], suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError:
        return  # a read-only or full cache costs speed, never a result


def _warn_zero_grads(key: str, plan: Any) -> None:
    """make_plan's warning for parameters the loss ignores, once per process and graph."""
    for name in getattr(plan, "zero_grads", ()):
        with _WARNED_LOCK:
            if (key, name) in _WARNED:
                continue
            _WARNED.add((key, name))
        warnings.warn(f"the loss does not depend on parameter {name!r}; its gradient is zero",
                      stacklevel=_user_stacklevel())


def _user_stacklevel() -> int:
    """The stacklevel of the first caller outside graphc (where the user called compile or fit)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and Path(frame.f_code.co_filename).resolve().parent.is_relative_to(PACKAGE):
        frame, level = frame.f_back, level + 1
    return level
