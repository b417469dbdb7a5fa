"""Graph IR: immutable nodes with shapes and dtypes, checked when they are built.

A shape is a tuple of dims; a dim is an int or ``N``, the sample count, bound when the
compiled function is called. At most one axis of a shape is ``N``.
"""

from __future__ import annotations

import builtins
import itertools
import keyword
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from ..errors import GraphcError, InvalidName


class SampleDim:
    """The sample count: the one dim bound at call time (``None`` in ``gc.data``)."""

    _instance: "SampleDim | None" = None

    def __new__(cls) -> "SampleDim":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "N"


N = SampleDim()
Dim = "int | SampleDim"
Shape = tuple


def format_shape(shape: Shape) -> str:
    inner = ", ".join(map(repr, shape))
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def sample_axis(shape: Shape) -> int | None:
    """Position of N in ``shape``, or None for a shape that does not vary per sample."""
    axes = [k for k, d in enumerate(shape) if d is N]
    return axes[0] if axes else None


# --- names ------------------------------------------------------------------------------
MAX_NAME = 64
# Identifiers the generated code itself uses. A user name among them is spelled differently
# in generated code (``spell``: n -> n_), never refused.
RESERVED = frozenset(
    """math np numba cuda prange i j n lo hi idx step blk count theta grad acc out part hyper state
    history steps log_every nblocks stopped BLOCK OPTS loss evaluate finish update train i0 rows ROWS
    train_batches batch shuffle seed nb order epoch take total
    train_val train_batches_val val val_loss val_history val_state patience best stop
    MATH_OPTS _exp _tanh _exp_reduce EXP_C exp_c TANH_C tanh_c
    _log _log1p _log_core LOG_C log_c LOG1P_C log1p_c _maximum _minimum
    _dot_into _dot _arange _permutation""".split()  # the last twenty-one: codegen/mathlib.NAMES
) | frozenset(dir(builtins))
# Names codegen makes: CSE temporaries, sums, per-sample temporaries, loop functions, blocked
# arrays, loop indices, constants (t0, s1, h2, sums_0, v3, j0, const0, batch_0), and names it
# derives from a leaf (x_i, xx_i1_0, c_v, X_flat, W_0_1, grad_a); see code_names.
_NUMBERED = ("sums_", "const", "batch_", "t", "s", "h", "v", "j")  # each followed by digits
_SUFFIXES = ("i", "i1", "v", "flat")  # after a "_", then maybe "_<digits>" parts


def _derived(base: str) -> bool:
    """Whether codegen makes or derives the identifier ``base``: a numbered name (t0, sums_1),
    a name ending in _<digits> or in _i, _i1, _v or _flat (then maybe _<digits> parts), or
    grad_<anything>."""
    if base.startswith("grad_"):
        return True
    if any(base.startswith(p) and base[len(p):].isdigit() for p in _NUMBERED):
        return True
    parts = base.split("_")
    if len(parts) > 1 and parts[-1].isdigit():
        return True
    return len(parts) > 1 and parts[-1] in _SUFFIXES


def check_name(name: Any, what: str = "name") -> str:
    """Return ``name`` if it is a safe identifier (dotted parts allowed), else raise InvalidName."""
    if not isinstance(name, str):
        raise InvalidName(f"{what} must be a string, got {type(name).__name__}")
    shown = repr(name) if len(name) <= 40 else repr(name[:40]) + f"... ({len(name)} characters)"
    if len(name) > MAX_NAME:
        raise InvalidName(f"{what} {shown} is longer than {MAX_NAME} characters")
    for part in name.split("."):
        if not (part.isascii() and part.isidentifier()):
            raise InvalidName(
                f"{what} {shown} is not an ASCII identifier "
                "(letters, digits and _, not starting with a digit; '.' separates parts)"
            )
        if keyword.iskeyword(part) or keyword.issoftkeyword(part):
            raise InvalidName(f"{what} {shown} is a Python keyword")
    return name


def spell(name: str) -> str:
    """How a validated name is spelled in generated code: ``lin.weight`` -> ``lin_weight``; a
    name codegen uses or derives itself, or one ending in ``_``, gets a trailing ``_`` (``n`` ->
    ``n_``, ``t0`` -> ``t0_``, ``x_i`` -> ``x_i_``, ``sum`` -> ``sum_``). Codegen's own names
    never end in ``_``, and no other user name spells the same (``n_`` -> ``n__``). What is
    left, a name derived from a spelled leaf (``grad_n_`` from ``n``) equal to another leaf's
    (``grad_n`` -> ``grad_n_``), is an InvalidName naming both (``_check_code_names``)."""
    base = name.replace(".", "_")
    return base + "_" if base in RESERVED or _derived(base) or base.endswith("_") else base


def code_names(node: "Node") -> list[str]:
    """Every identifier generated code derives from a named leaf (see ``schedule.Lowering``).

    Data ``x`` is the argument ``x`` and the per-sample load ``x_i`` (``xx_i_0`` ... for
    fixed dims, plus the flat view ``xx_flat`` when the sample axis is first; ``s_v`` for a
    scalar without samples), and ``x_i1`` (``xx_i1_0`` ...), the next sample's in a loop that
    takes two samples per iteration (codegen/blocked.py); parameter ``W`` is ``W_0_1`` ... and
    its gradient ``grad_W_0_1`` ...
    """
    base = spell(node.name)
    fixed = [range(d) for d in node.shape if d is not N]
    suffixes = ["".join(f"_{k}" for k in idx) for idx in itertools.product(*fixed)]
    if node.op == "data":
        mid = "_i" if N in node.shape else "" if fixed else "_v"
        flat = [base + "_flat"] if len(node.shape) > 1 and node.shape[0] is N else []  # cpu: X_flat = X.ravel()
        second = [base + "_i1" + s for s in suffixes] if N in node.shape else []
        return [base] + flat + [base + mid + s for s in suffixes] + second
    return [base] + [p + base + s for s in suffixes for p in ("", "grad_")]


# --- nodes ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Node:
    """One value in the graph: an input, a parameter, a constant or an op application."""

    op: str
    inputs: tuple["Node", ...] = ()
    attrs: tuple[tuple[str, Any], ...] = ()
    shape: Shape = ()
    dtype: str = "float"  # "float" | "bool"; the float width is chosen at compile time
    name: str | None = None

    # numpy on nodes builds nodes (np.sin(node), np.sum(node, axis=0) ...): ir/interop.py installs
    # __array_ufunc__ and __array_function__; ir/ops.py the operators, methods and __str__.

    def __array__(self, dtype: Any = None, copy: Any = None) -> Any:
        raise GraphcError(
            f"{self.label()} is a graph node and has no values until it is compiled and run "
            "(gc.compile(...)(...)); to collect nodes into a vector use gc.stack"
        )

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_leaf(self) -> bool:
        return self.op in ("data", "param", "const")

    def label(self) -> str:
        """Short description for error messages: the name, or the expression."""
        if self.name is not None:
            return self.name
        text = str(self)
        return text if len(text) <= 60 else text[:57] + "..."

    def __bool__(self) -> bool:
        raise GraphcError(
            f"{self.label()} is a graph node and has no truth value; use gc.where(cond, a, b)"
        )

    def __iter__(self) -> Iterator["Node"]:
        raise GraphcError(f"{self.label()} is a graph node and cannot be iterated; index it")

    def __len__(self) -> int:
        if not self.shape or self.shape[0] is N:
            raise GraphcError(f"{self.label()} has no fixed length (shape {format_shape(self.shape)})")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<graphc {self.op} {self.label()} shape={format_shape(self.shape)}>"


def toposort(outputs: Iterable[Node]) -> list[Node]:
    """Nodes reachable from ``outputs``, inputs before users (iterative: deep graphs are fine)."""
    order: list[Node] = []
    seen: set[int] = set()
    for out in outputs:
        stack = [(out, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((inp, False) for inp in reversed(node.inputs) if id(inp) not in seen)
    return order


@dataclass(frozen=True)
class Graph:
    """A validated, topologically ordered graph with its named leaves."""

    outputs: tuple[Node, ...]
    nodes: tuple[Node, ...]

    @classmethod
    def from_outputs(cls, *outputs: Node) -> "Graph":
        for out in outputs:
            if not isinstance(out, Node):
                raise GraphcError(f"expected a graph expression, got {type(out).__name__}")
        nodes = tuple(toposort(outputs))
        by_name: dict[str, Node] = {}
        spelled: dict[str, str] = {}
        for node in nodes:
            if node.name is None:
                continue
            other = by_name.setdefault(node.name, node)
            if other is not node:
                raise InvalidName(f"two different inputs are named {node.name!r}; names must be unique")
            clash = spelled.setdefault(spell(node.name), node.name)
            if clash != node.name:
                raise InvalidName(
                    f"names {clash!r} and {node.name!r} are both spelled {spell(node.name)!r} "
                    "in generated code; rename one"
                )
        _check_code_names([n for n in nodes if n.op in ("data", "param")])
        return cls(outputs, nodes)

    @property
    def data(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "data"]

    @property
    def params(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "param"]


def _check_code_names(leaves: list[Node]) -> None:
    """Two leaves must not derive the same identifier (param ``n`` and data ``grad_n`` both give
    ``grad_n_``), or one would alias the other."""
    owner: dict[str, Node] = {}
    for node in leaves:
        for ident in code_names(node):
            other = owner.setdefault(ident, node)
            if other is not node:
                raise InvalidName(
                    f"names {other.name!r} and {node.name!r} clash: generated code spells a value "
                    f"of each as {ident!r}; rename one"
                )


def resolve_wrt(graph: Graph, wrt: "Sequence[Node] | Node | None") -> list[Node]:
    """The parameters to differentiate: ``wrt`` checked against ``graph`` (all its parameters
    when None; one not in the graph gets a zero gradient, with a warning from the planner)."""
    params = graph.params
    if wrt is None:
        return params
    if isinstance(wrt, Node):
        wrt = [wrt]
    out = []
    for p in wrt:
        if not isinstance(p, Node) or p.op != "param":
            raise GraphcError(f"wrt must list parameters (gc.param), got {p!r}")
        if any(p is q for q in out):
            raise GraphcError(f"parameter {p.name!r} appears twice in wrt")
        if not any(p is q for q in params):
            if any(p.name == q.name for q in params):
                raise GraphcError(f"wrt names {p.name!r}, a different parameter than the loss uses")
            params = params + [p]  # not in the loss: zero gradient, with a warning
        out.append(p)
    return out


class NodeMemo(dict):
    """What graphc made for one node, kept on the node itself (``node.__dict__``): its plans and
    compiled functions (compile.py, forward.py). An entry holds its plan, which holds the node:
    on the node, the cycle is collected with the graph, where a table keyed weakly by nodes
    would keep every graph ever compiled. Never pickled or copied with the node."""

    def __reduce__(self) -> tuple:
        return NodeMemo, ()

    def __copy__(self) -> "NodeMemo":
        return NodeMemo()

    def __deepcopy__(self, memo: dict) -> "NodeMemo":
        return NodeMemo()
