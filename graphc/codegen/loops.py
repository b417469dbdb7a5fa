"""The loop IR: what a generated function does, as data, between the plan and the printer.

A function body is a list of statements:

- ``Assign(target, expr, op)``: ``target = expr`` or ``target += expr``; ``target`` is a
  local (a SymPy ``Symbol``) or an array ``Element``; ``expr`` a SymPy expression whose
  array reads are ``Element`` symbols.
- ``Loop(var, bounds, body)``: ``for var in range(*bounds):``.
- ``Alloc(name, shape, zero)``: a scratch array (``np.empty``/``np.zeros``).
- ``Code(text, reads, writes)``: one statement the IR does not look into (a ``np.dot``, a
  ``reshape`` view), with the arrays and locals it reads and writes declared by whoever
  made it, so that passes can reason about it without reading its text.
- ``Comment(text)``.

An ``Element`` is ``array[index]`` as a SymPy symbol: SymPy builds, folds and prints
expressions of them like any symbol, and the passes (``passes.py``) read their structure
(``.array``, ``.index``) instead of their text. Each index component is an ``Ix``: a sum of
integer multiples of loop variables and a constant, kept in the order it was written
(``i0 + i``, ``1 + 40*j0 + j1``). ``print_body`` turns statements into source lines; it is
the only place the IR becomes text, and nothing reads that text back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence, Union

import sympy as sp

from ..ir import fold


@dataclass(frozen=True)
class Ix:
    """An affine index ``c0*v0 + c1*v1 + ... + k``: ``terms`` are (coefficient, variable)
    pairs in written order; the variable None is the constant."""

    terms: tuple[tuple[int, str | None], ...]

    @staticmethod
    def of(k: "Ix | int | str") -> "Ix":
        if isinstance(k, Ix):
            return k
        if isinstance(k, (int,)) or hasattr(k, "__index__"):
            return Ix(((int(k), None),))
        if isinstance(k, str) and k.isidentifier():
            return Ix(((1, k),))
        raise TypeError(f"not an index: {k!r}")

    @property
    def vars(self) -> frozenset[str]:
        return frozenset(v for c, v in self.terms if v is not None and c)

    @property
    def constant(self) -> int | None:
        """The value when the index has no variable, else None."""
        return None if self.vars else sum(c for c, v in self.terms if v is None)

    def __add__(self, other: "Ix | int | str") -> "Ix":
        terms = list(self.terms)
        for c, v in Ix.of(other).terms:
            at = next((k for k, (_, w) in enumerate(terms) if w == v), None)
            if at is None:
                terms.append((c, v))
            else:
                terms[at] = (terms[at][0] + c, v)
        kept = tuple((c, v) for c, v in terms if c)
        return Ix(kept or ((0, None),))

    __radd__ = __add__

    def __mul__(self, k: int) -> "Ix":
        return Ix(tuple((c * k, v) for c, v in self.terms if c * k)) if k else Ix(((0, None),))

    __rmul__ = __mul__

    def shifted(self, var: str, by: int) -> "Ix":
        """The index with ``var`` replaced by ``var + by``."""
        coef = sum(c for c, v in self.terms if v == var)
        return self + coef * by if coef else self

    def __str__(self) -> str:
        parts = []
        for c, v in self.terms:
            mag = abs(c)
            text = str(mag) if v is None else v if mag == 1 else f"{mag}*{v}"
            if not parts:
                parts.append(text if c >= 0 else f"-{text}")
            else:
                parts.append(f"{'+' if c >= 0 else '-'} {text}")
        return " ".join(parts) or "0"


class Element(sp.Symbol):
    """``array[index]`` as a real SymPy symbol (its name is how it prints)."""

    array: str
    index: tuple[Ix, ...]

    def __new__(cls, array: str, index: Sequence["Ix | int | str"]) -> "Element":
        ix = tuple(Ix.of(k) for k in index)
        obj = super().__new__(cls, f"{array}[{', '.join(map(str, ix))}]", real=True)
        obj.array, obj.index = array, ix
        return obj

    def __getnewargs_ex__(self) -> tuple:
        return (self.array, self.index), {}

    @classmethod
    def class_key(cls) -> tuple:  # sorted (so printed) among symbols by name, like a Symbol
        return sp.Symbol.class_key()

    @property
    def vars(self) -> frozenset[str]:
        return frozenset().union(*(k.vars for k in self.index))

    def shifted(self, var: str, by: int) -> "Element":
        return Element(self.array, tuple(k.shifted(var, by) for k in self.index))


class Terms(fold.AsWritten):
    """A sum printed in the order written (``a + b``): both samples' terms of a paired ``+=``."""

    def _sympystr(self, printer: Any) -> str:
        return " + ".join(fold.wrapped(printer, a) for a in self.args)


def local(name: str) -> sp.Symbol:
    """A scalar local of the generated code."""
    return sp.Symbol(name, real=True)


@dataclass
class Assign:
    target: sp.Symbol  # a local or an Element
    expr: sp.Expr
    op: str = "="  # or "+="
    note: str = ""  # printed as a trailing comment

    @property
    def array(self) -> str | None:
        return self.target.array if isinstance(self.target, Element) else None


@dataclass
class Loop:
    var: str
    bounds: tuple  # range(*bounds): ints and names of locals (codegen's own: rows, lo, hi, ROWS)
    body: list
    note: str = ""  # a comment line printed above the loop
    tail: str = ""  # a comment after the for line

    @property
    def header(self) -> tuple:
        return (self.var, self.bounds)


@dataclass
class Alloc:
    name: str
    shape: tuple  # ints and names (ROWS)
    zero: bool = False
    dtype: str = "theta.dtype"  # "" for numpy's default float64
    note: str = ""


@dataclass
class Code:
    """A statement the IR does not look into; ``reads``/``writes``: the names it uses."""

    text: str
    reads: frozenset = frozenset()
    writes: frozenset = frozenset()


@dataclass
class Comment:
    text: str


Stmt = Union[Assign, Loop, Alloc, Code, Comment]


# ---- walking ----
def walk(body: Sequence[Stmt]) -> Iterator[Stmt]:
    """Every statement, loops before their bodies (program order)."""
    for s in body:
        yield s
        if isinstance(s, Loop):
            yield from walk(s.body)


def elements(expr: sp.Expr) -> set[Element]:
    return {a for a in expr.free_symbols if isinstance(a, Element)}


def reads(s: Stmt) -> set:
    """What one statement (not its body) reads: Elements, locals, and names (Code)."""
    if isinstance(s, Assign):
        out = set(s.expr.free_symbols)
        if s.op != "=":
            out.add(s.target)
        return out
    if isinstance(s, Code):
        return set(s.reads)
    return set()


def name_of(x: "Element | sp.Symbol | str") -> str:
    """The array or local a read or write is of: an Element's array, a local's name, a name."""
    return x.array if isinstance(x, Element) else x if isinstance(x, str) else x.name


def array_reads(body: Sequence[Stmt]) -> dict[str, list[tuple[Stmt, Any]]]:
    """array (or local name) -> each (statement, what it reads of it: an Element, a local, a name)."""
    out: dict[str, list] = {}
    for s in walk(body):
        for r in reads(s):
            out.setdefault(name_of(r), []).append((s, r))
    return out


def array_writes(body: Sequence[Stmt]) -> dict[str, list]:
    """array (or local name) -> the assignments and Code statements that write it."""
    out: dict[str, list] = {}
    for s in walk(body):
        if isinstance(s, Assign):
            out.setdefault(name_of(s.target), []).append(s)
        elif isinstance(s, Code):
            for w in s.writes:
                out.setdefault(w, []).append(s)
        elif isinstance(s, Alloc):
            out.setdefault(s.name, []).append(s)
    return out


def map_exprs(body: Sequence[Stmt], fn: Callable[[sp.Expr], sp.Expr], targets: bool = True) -> list[Stmt]:
    """A copy of ``body`` with ``fn`` applied to every expression (and target)."""
    out: list[Stmt] = []
    for s in body:
        if isinstance(s, Assign):
            out.append(replace(s, target=fn(s.target) if targets else s.target, expr=fn(s.expr)))
        elif isinstance(s, Loop):
            out.append(replace(s, body=map_exprs(s.body, fn, targets)))
        else:
            out.append(s)
    return out


# ---- printing ----
def print_body(body: Sequence[Stmt], expr: Callable[[sp.Expr], str], indent: str = "") -> list[str]:
    """Source lines of ``body``; ``expr`` prints an expression (the target's printer)."""
    lines: list[str] = []
    for s in body:
        if isinstance(s, Assign):
            note = f"  # {s.note}" if s.note else ""
            value = "0.0" if s.expr is sp.S.Zero else expr(s.expr)  # a float64 zero in any module
            lines.append(f"{indent}{s.target} {s.op} {value}{note}")
        elif isinstance(s, Loop):
            if s.note:
                lines.append(f"{indent}# {s.note}")
            bounds = ", ".join(map(str, s.bounds))
            lines.append(f"{indent}for {s.var} in range({bounds}):" + (f"  # {s.tail}" if s.tail else ""))
            lines += print_body(s.body, expr, indent + "    ")
        elif isinstance(s, Alloc):
            shape = _shape_text(s.shape)
            fn = "np.zeros" if s.zero else "np.empty"
            args = f"{shape}, {s.dtype}" if s.dtype else shape
            lines.append(f"{indent}{s.name} = {fn}({args})" + (f"  # {s.note}" if s.note else ""))
        elif isinstance(s, Code):
            lines.append(indent + s.text)
        elif isinstance(s, Comment):
            lines.append(f"{indent}# {s.text}")
        else:  # pragma: no cover
            raise TypeError(f"not a statement: {s!r}")
    return lines


def _shape_text(shape: tuple) -> str:
    if len(shape) == 1:
        return str(shape[0])
    return f"({', '.join(map(str, shape))})"


__all__ = ["Ix", "Element", "Terms", "local", "Assign", "Loop", "Alloc", "Code", "Comment", "Stmt", "walk", "elements",
           "reads", "name_of", "array_reads", "array_writes", "map_exprs", "print_body"]
