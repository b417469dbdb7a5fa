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
payload, a pickle of (key, plan, source) in which every graph node is a reference (the loss,
or a leaf by name) resolved to the caller's own nodes when it is read; user functions
(lambdas) are never pickled. SymPy expressions are rebuilt unevaluated, so they come back
exactly as they were stored. An entry that is missing, damaged or does not fit the graph
is rebuilt and rewritten; a graph that cannot be fingerprinted or pickled is built as
before and not stored. ``GRAPHC_PLAN_CACHE=0`` turns the cache off.
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

from . import __version__, loader
from .graph import N, Graph, Node
from .ops import ELEMENTWISE, Elementwise

FORMAT = 1  # bump when the entry layout changes
MAGIC = b"graphc-plan %d\n" % FORMAT
PACKAGE = Path(__file__).resolve().parent
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
    leaves = _leaves(graph, wrt_nodes)
    path = entry_path(key)
    with timings.stage("plancache"):
        hit = _read(path, key, loss, wrt_nodes, leaves)
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
        _write(path, key, plan, source, loss, leaves)
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
    """What the generated training loop takes from an optimizer: its update's SymPy
    expressions over symbols (``Optimizer.structure``), never its numbers (those run at run time)."""
    try:
        return ("optimizer", type(opt).__module__, type(opt).__qualname__, opt.structure())
    except Exception as exc:  # noqa: BLE001 - an optimizer we cannot describe is not cached
        raise Uncacheable(f"cannot key optimizer {opt!r}") from exc


def _checked(loss: Node, wrt: Any) -> tuple[Graph, list[Node]]:
    """The validated graph and parameters, as make_plan checks them (the same errors)."""
    from .compile import resolve_wrt

    if not isinstance(loss, Node):
        raise Uncacheable("not a node")
    graph = Graph.from_outputs(loss)
    if loss.shape != ():
        raise Uncacheable("not a scalar loss")  # build() raises the error
    return graph, resolve_wrt(graph, wrt)


def _leaves(graph: Graph, wrt: list[Node]) -> dict[str, Node]:
    leaves = {n.name: n for n in graph.nodes if n.name is not None}
    leaves.update((p.name, p) for p in wrt)  # parameters in wrt but not in the loss
    return leaves


# ---- entries ------------------------------------------------------------------------------
class _Pickler(pickle.Pickler):
    def __init__(self, file: Any, loss: Node, leaves: dict[str, Node]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.loss, self.leaves = loss, leaves

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Node):
            if obj is self.loss:
                return ("loss",)
            if obj.name is not None and self.leaves.get(obj.name) is obj:
                return ("leaf", obj.name)
            raise Uncacheable(f"the plan holds node {obj!r}, which is not a leaf of the graph")
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, loss: Node, leaves: dict[str, Node]) -> None:
        super().__init__(file)
        self.loss, self.leaves = loss, leaves

    def persistent_load(self, pid: Any) -> Node:
        if pid == ("loss",):
            return self.loss
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "leaf" and pid[1] in self.leaves:
            return self.leaves[pid[1]]
        raise pickle.UnpicklingError(f"unknown node reference {pid!r}")


def _read(path: Path, key: str, loss: Node, wrt: list[Node],
          leaves: dict[str, Node]) -> tuple[Any, str] | None:
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
            stored_key, plan, source = _Unpickler(io.BytesIO(payload), loss, leaves).load()
        ok = (stored_key == key and isinstance(source, str) and plan.loss is loss
              and len(plan.wrt) == len(wrt) and all(p is q for p, q in zip(plan.wrt, wrt)))
    except Exception:  # noqa: BLE001 - whatever does not load is rebuilt
        return None
    return (plan, source) if ok else None


def _write(path: Path, key: str, plan: Any, source: str, loss: Node, leaves: dict[str, Node]) -> None:
    """Store atomically; a plan that cannot be stored is simply not cached."""
    try:
        buf = io.BytesIO()
        _Pickler(buf, loss, leaves).dump((key, plan, source))
    except Exception:  # noqa: BLE001 - Uncacheable, or anything pickle refuses (a lambda, ...)
        return
    payload = buf.getvalue()
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
