"""Blocked target code: a blocked Plan lowered to the loop IR (``loops.py``), rewritten by the
passes (``passes.py``) and printed.

Inside ``sums_k`` the samples lo..hi-1 are visited ``ROWS`` at a time. Each per-sample
node the plan keeps in memory gets one scratch array of shape ``(ROWS, *fixed dims)``,
allocated once per call; a contraction is one ``np.dot`` on those arrays (BLAS) or,
without SciPy, a loop nest; an elementwise op is a loop nest whose body is the SymPy
expression of one element; a sum over the samples adds each block into an accumulator (a
float64 scalar or array) that is written to ``out`` at the end. ``finish`` reads the
accumulators back from ``acc`` and writes the gradients. Index names: ``i0`` the first
sample of the block, ``rows`` its length, ``i`` the sample in the block, ``j0, j1, ...``
the fixed axes. The ``Writer`` below lowers one node at a time, each into its own loop
nest; joining nests, hoisting reads, pairing samples and CSE are the passes' work.
Everything else (evaluate, the training loops, the parallel driver) is the CPU emitter's,
unchanged: the functions have the same signatures.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import sympy as sp

from ..ir import fold
from ..planning.blocked import INLINE, SMALL, fixed_shape, is_product, per_sample
from ..errors import UnsupportedError
from ..ir.graph import N, Node, spell
from ..ir.ops import expression_string
from ..ir.indexing import broadcast_map, gather_dest, index_source, summed_index, view_source
from ..planning.plan import Plan
from ..planning.schedule import N_SYMBOL, _number
from . import passes
from .cpu import CpuEmitter
from .loops import Alloc, Assign, Code, Comment, Element, Ix, Loop, Stmt, local, print_body
from .parallel import ParallelEmitter
from .printer import printer

SAMPLE_INDEX = Ix.of("i0") + "i"  # the sample's row in the data: the block's first plus i


def _loop_names(shape: Sequence[int]) -> list[Ix]:
    """Index for the axes of ``shape``: j0, j1, ...; a size-1 axis is just 0."""
    return [Ix.of(f"j{a}") if d != 1 else Ix.of(0) for a, d in enumerate(shape)]


def _axes(idx: Sequence[Ix], sizes: Sequence[int]) -> list[tuple[str, int]]:
    """The (loop variable, size) pairs of the axes that have a loop (not size 1)."""
    return [(next(iter(k.vars)), d) for k, d in zip(idx, sizes) if k.vars]


@dataclass(frozen=True)
class View:
    """A node as a numpy array in the generated code: ``name``, its block's rows
    (``rows``: ``[:rows]``, or ``[i0:i0 + rows]`` for data) and maybe transposed."""

    name: str
    rows: str = ""
    T: bool = False

    def __str__(self) -> str:
        return f"{self.name}{self.rows}{'.T' if self.T else ''}"

    def flipped(self) -> "View":
        return View(self.name, self.rows, not self.T)


class Writer:
    """Lowers the nodes one function needs: ``prologue`` (parameters, loaded sums, scratch,
    loop-invariant values), ``block`` (inside the loop over blocks) and ``flush`` (after
    each block: partial sums into their accumulators)."""

    def __init__(self, emitter: "BlockedMixin", current_pass: int | None) -> None:
        self.e, self.plan = emitter, emitter.plan
        self.copies: dict[tuple, str] = {}  # C-ordered (maybe transposed) copies of weights
        self.partials: set[str] = set()
        self.current = current_pass  # None: finish (no per-sample values)
        self.var: dict[int, str] = {}
        self.known: dict[sp.Expr, sp.Symbol] = {}
        self.prologue: list[Stmt] = []
        self.block: list[Stmt] = []
        self.flush: list[Stmt] = []
        self.names = emitter.names

    # ---- element expressions ----
    def at(self, node: Node, idx: Sequence) -> sp.Symbol:
        var = self.var[id(node)]
        parts = ([Ix.of("i")] if per_sample(node) else []) + list(idx)
        return Element(var, parts) if parts else local(var)

    def elem(self, node: Node, idx: Sequence) -> sp.Expr:
        """``node``'s element at fixed index ``idx`` (sample ``i`` implied)."""
        self.need(node)
        if id(node) in self.var:
            return self.at(node, idx)
        return self.inline(node, idx)

    def inline(self, node: Node, idx: Sequence) -> sp.Expr:
        """The element computed from ``node``'s inputs (leaves: read where they live)."""
        rule = ELEMENT_RULES.get(node.op)
        if rule is None:  # pragma: no cover - the planner materializes every other op
            raise UnsupportedError(f"blocked schedule: cannot inline {node.op} {node.label()}")
        return rule(self, node, tuple(idx))

    def _data(self, node: Node, idx: tuple) -> sp.Expr:
        fixed = iter(idx)
        return Element(spell(node.name), [SAMPLE_INDEX if d is N else next(fixed) for d in node.shape])

    def _const(self, node: Node, idx: tuple) -> sp.Expr:
        value = np.asarray(node.attr("value"))
        if value.ndim == 0:
            return _number(value)
        return Element(self.e.constant(value), idx)

    def _elementwise(self, node: Node, idx: tuple) -> sp.Expr:
        return node.attr("fn").compose([self.elem(x, broadcast_map(node.shape, x.shape)(idx)) for x in node.inputs])

    def _view(self, node: Node, idx: tuple) -> sp.Expr:
        """broadcast_to, transpose, index, stop_gradient: one element of the input."""
        return self.elem(*view_source(node, idx, _affine))

    def _product(self, node: Node, idx: tuple) -> sp.Expr:
        if is_product(node):  # the sum over the letters the output drops (at most SMALL terms)
            ins = node.attr("ins")
            out = [c for c, d in zip(node.attr("out"), node.shape) if d is not N]
            dropped = {c: d for sub, x in zip(ins, node.inputs) for c, d in zip(sub, x.shape) if c not in node.attr("out")}
            terms = []
            for values in itertools.product(*(range(d) for d in dropped.values())):
                at = {**dict(zip(out, idx)), **{c: Ix.of(v) for c, v in zip(dropped, values)}}
                terms.append(fold.mul([self.weight_elem(x, [at[c] for c, d in zip(sub, x.shape) if d is not N])
                                       for sub, x in zip(ins, node.inputs)]))
            return fold.add(terms)
        raise UnsupportedError(f"blocked schedule: cannot inline einsum {node.label()}")  # pragma: no cover

    def weight_elem(self, x: Node, idx: Sequence) -> sp.Expr:
        """``elem``, except that a 2-D weight read down a column inside a loop (W[j0, 2]: a
        stride of a row per iteration, which does not vectorize) reads a transposed C-ordered
        copy instead (v[2, j0])."""
        e = self.elem(x, idx)
        source = x.inputs[0] if x.op == "transpose" else x
        if not isinstance(e, Element) or source.op != "param" or len(source.shape) != 2:
            return e
        row, col = e.index
        if e.array != self.var.get(id(source)) or not row.vars or col.vars:
            return e
        return Element(self.c_copy(source, View(e.array), True), (col, row))

    # ---- making a node available ----
    def need(self, node: Node) -> None:
        if id(node) in self.var:
            return
        acc = self.plan.acc_of.get(id(node))
        if acc is not None:
            if self.current is not None and acc.pass_ >= self.current:
                raise UnsupportedError(f"blocked schedule: {node.label()} is needed before its pass ends")  # pragma: no cover
            self.load_sum(node, acc)
            return
        if node.op == "param":
            self.load_param(node)
            return
        inline = node.op in INLINE or is_product(node)
        if node.op in ("data", "const", "count") or (inline and id(node) not in self.plan.lowered.materialize):
            return
        if per_sample(node) and self.current is None:
            raise UnsupportedError(f"blocked schedule: {node.label()} varies per sample")  # pragma: no cover
        self.compute(node)

    def load_param(self, node: Node) -> None:
        off, shape = self.plan.layout[node.name]
        name = spell(node.name)
        size = math.prod(shape)
        if not shape:
            text = f"{name} = theta[{off}]"
        elif len(shape) == 1:
            text = f"{name} = theta[{off}:{off + size}]"
        else:
            text = f"{name} = theta[{off}:{off + size}].reshape({shape})"
        self.prologue.append(Code(text, frozenset({"theta"}), frozenset({name})))
        self.var[id(node)] = name

    def load_sum(self, node: Node, acc) -> None:
        x = node.inputs[0]
        scale = ""
        if node.op == "mean":
            count = math.prod(x.shape[a] for a in node.attr("axes") if x.shape[a] is not N)
            scale = " / n" if count == 1 else f" / (n * {count})"
        view = f"acc[{acc.offset}]" if not acc.shape else f"acc[{acc.offset}:{acc.offset + acc.size}].reshape({acc.shape})"
        text = f"{acc.name} = {view}{scale}  # {self.e.comment(node)}"
        self.prologue.append(Code(text, frozenset({"acc", "n"}), frozenset({acc.name})))
        self.var[id(node)] = acc.name

    def new_var(self, node: Node) -> str:
        """``v<k>``, numbered once per node for the whole module."""
        return f"v{self.names.setdefault(id(node), len(self.names))}"

    def scratch(self, node: Node, zero: bool = False) -> tuple[str, list[Stmt]]:
        """A variable for ``node``: a per-block scratch array, a fixed array or a scalar.
        Returns its name and where its computing statements go."""
        name, fs = self.new_var(node), fixed_shape(node)
        if per_sample(node):
            self.prologue.append(Alloc(name, ("ROWS", *fs)))
            lines = self.block
            if zero:
                lines.append(Code(f"{name}[:rows] = 0.0", frozenset({"rows"}), frozenset({name})))
        else:
            lines = self.prologue
            if zero:
                lines.append(Alloc(name, fs, zero=True, dtype="") if fs else Assign(local(name), sp.S.Zero))
            elif fs:
                lines.append(Alloc(name, fs, dtype=""))
        return name, lines

    def compute(self, node: Node) -> None:
        for x in node.inputs:
            self.need(x)
        ARRAY_RULES[node.op](self, node)

    def _contraction(self, node: Node) -> None:
        if is_product(node):  # a few products per element: one loop nest, like an elementwise op
            self.elementwise(node)
        else:
            self.einsum(node, None)

    @staticmethod
    def loops(sample: bool, axes: Sequence[tuple[str, int]], body: list[Stmt], note: str = "") -> list[Stmt]:
        """One loop nest: over the block's samples (``sample``), then ``axes``."""
        for var, size in reversed(axes):
            body = [Loop(var, (size,), body)]
        if sample:
            body = [Loop("i", ("rows",), body)]
        if note:
            if isinstance(body[0], Loop):
                body[0].note = note
            else:
                body.insert(0, Comment(note))
        return body

    def elementwise(self, node: Node) -> None:
        fs = fixed_shape(node)
        idx = _loop_names(fs)
        raw = self.inline(node, idx)
        expr = raw.xreplace(self.known)
        name, lines = self.scratch(node)
        self.var[id(node)] = name
        if not fs and not per_sample(node):
            lines += [Comment(self.e.comment(node)), Assign(local(name), expr)]
        else:
            lines += self.loops(per_sample(node), _axes(idx, fs), [Assign(self.at(node, idx), expr)], self.e.comment(node))
        if raw.has(sp.Function) or raw.is_Pow:  # a later node may share it (tanh' reads tanh)
            self.known[raw] = self.at(node, idx)

    def reshape(self, node: Node) -> None:
        x = node.inputs[0]
        fs, name = fixed_shape(node), self.new_var(node)
        self.var[id(node)] = name
        lines = self.block if per_sample(node) else self.prologue
        src = self.array(x)
        if src is None:  # an inlined or strided input: copy it out first
            self.compute(x)
            src = self.array(x)
        if per_sample(node):
            shape = f"(rows, {', '.join(map(str, fs))})" if fs else "rows"
            text = f"{name} = {src}.reshape({shape})  # {self.e.comment(node)}"
        elif not fixed_shape(x):
            text = f"{name} = np.full({fs}, {src})" if fs else f"{name} = {src}"
        else:
            text = f"{name} = {src}.reshape({fs})" if fs else f"{name} = {src}.reshape(1)[0]"
        lines.append(Code(text, frozenset({src.name, "rows"}), frozenset({name})))

    def array(self, node: Node) -> View | None:
        """``node`` as a numpy array (per-sample: the block's rows), or None."""
        if node.op == "data":
            if per_sample(node) and node.shape[0] is not N:
                return None
            return View(spell(node.name), "[i0:i0 + rows]" if per_sample(node) else "")
        self.need(node)
        if node.op == "transpose" and id(node) not in self.var and node.ndim == 2 and not per_sample(node):
            inner = self.array(node.inputs[0])
            return None if inner is None else inner.flipped()
        if id(node) not in self.var:
            return None
        return View(self.var[id(node)], "[:rows]" if per_sample(node) else "")

    # ---- contractions ----
    def einsum(self, node: Node, acc) -> None:
        ins, out = node.attr("ins"), node.attr("out")
        letters = {c: d for s, x in zip(ins, node.inputs) for c, d in zip(s, x.shape)}
        sample = [c for c, d in letters.items() if d is N]
        if len(sample) > 1:
            raise UnsupportedError(f"blocked schedule: einsum {node.label()} pairs two sample dims")
        # a sum over the samples into a thin result (3 x 32, 32 x 1): loops, which can share
        # the loop that makes their operand; np.dot for anything wider
        thin = acc is not None and any(letters[c] <= SMALL for c in out)
        if self.plan.lowered.blas and not thin and self.gemm(node, acc):
            return
        # a loop nest: out[o] += a[..] * b[..] over every letter; letters of at most SMALL
        # values are unrolled into one statement each
        if acc is None:
            name, lines = self.scratch(node, zero=True)
            self.var[id(node)] = name
        else:
            lines = self.block
        fixed = [c for c in out if letters[c] is not N] + [c for c in letters if c not in out and letters[c] is not N]
        looped = [c for c in fixed if letters[c] > SMALL]
        unrolled = [c for c in fixed if letters[c] <= SMALL]
        body: list[Stmt] = []
        for values in itertools.product(*(range(letters[c]) for c in unrolled)):
            names = {**{c: Ix.of(f"j{k}") for k, c in enumerate(looped)}, **{c: Ix.of(v) for c, v in zip(unrolled, values)}}
            term = fold.mul([self.elem(x, [names[c] for c, d in zip(s, x.shape) if d is not N])
                             for s, x in zip(ins, node.inputs)]).xreplace(self.known)
            out_idx = [names[c] for c in out if letters[c] is not N]
            if acc is not None:
                target = self.partial(acc)
                dest = Element(target, out_idx) if out_idx else local(target)
            else:
                dest = self.at(node, out_idx)
            body.append(Assign(dest, term, "+="))
        axes = [(f"j{k}", letters[c]) for k, c in enumerate(looped)]
        lines += self.loops(bool(sample), axes, body, self.e.comment(node))

    def gemm(self, node: Node, acc) -> bool:
        """``np.dot`` for a two-operand contraction over one letter (a matrix/vector product)."""
        ins, out = node.attr("ins"), node.attr("out")
        if len(ins) != 2:
            return False
        letters = {c: d for s, x in zip(ins, node.inputs) for c, d in zip(s, x.shape)}

        def layout(sub: str) -> list[str]:  # letters in array order: the sample axis first
            return [c for c in sub if letters[c] is N] + [c for c in sub if letters[c] is not N]

        a, b, o = layout(ins[0]), layout(ins[1]), layout(out)
        summed = [c for c in a if c in b and c not in o]
        free_a, free_b = [c for c in a if c not in b], [c for c in b if c not in a]
        if len(summed) != 1 or len(free_a) > 1 or len(free_b) > 1 or not free_a + free_b:
            return False
        if any(c in a and c in b for c in o) or any(c not in o for c in free_a + free_b):
            return False
        if o == free_a + free_b:
            operands = [(0, a, free_a), (1, b, free_b)]
        elif o == free_b + free_a:
            operands = [(1, b, free_b), (0, a, free_a)]
        else:
            return False
        (c,) = summed
        views: list[View] = []
        for side, (k, lay, free) in enumerate(operands):
            x = node.inputs[k]
            arr = self.array(x)
            if arr is None:
                return False
            want = [c] if not free else [free[0], c] if side == 0 else [c, free[0]]
            if lay not in (want, want[::-1]):
                return False
            flip = (lay != want) != arr.T  # the array under any .T view is flipped
            base = View(arr.name, arr.rows)
            if per_sample(x):
                views.append(base.flipped() if flip else base)
            else:  # weights: a C-ordered array of the data's dtype (fewer np.dot variants to compile)
                source = x.inputs[0] if arr.T else x
                views.append(base if source.op == "param" and not flip else View(self.c_copy(source, base, flip)))
        read = frozenset(v.name for v in views) | {"rows"}
        note = Comment(self.e.comment(node))
        # np.dot through graphc's helpers (_dot_into, _dot: compiled once per installation)
        helper = "_dot_into" if acc is not None or per_sample(node) else "_dot"
        self.e.printer.use(helper)
        if acc is not None:
            # into a block-sized array, added into the accumulator after the block: np.dot
            # with out= allocates nothing and is the variant the layers already compile
            part = self.partial(acc, zeroed=False)
            self.block += [note, Code(f"{helper}({views[0]}, {views[1]}, {part})", read, frozenset({part}))]
        elif per_sample(node):
            name, lines = self.scratch(node)
            self.var[id(node)] = name
            lines += [note, Code(f"{helper}({views[0]}, {views[1]}, {name}[:rows])", read, frozenset({name}))]
        else:
            name = self.new_var(node)
            self.var[id(node)] = name
            self.prologue += [note, Code(f"{name} = {helper}({views[0]}, {views[1]})", read, frozenset({name}))]
        return True

    def partial(self, acc, zeroed: bool = True) -> str:
        """Where a block adds into the array accumulator ``acc``: itself (float64), or in a
        float32 module a float32 partial sum over the block, added into ``acc`` after each
        block (as np.dot's sgemm did): float64 additions of float32 terms convert every term
        and halve the vector width of the loop. ``zeroed=False``: an array the block
        overwrites (np.dot's out), in any dtype, added after the block and not zeroed."""
        if (self.e.dtype != "float32" and zeroed) or not acc.shape:
            return acc.name
        name = f"v{self.names.setdefault(('partial', acc.name), len(self.names))}"
        if name not in self.partials:
            self.partials.add(name)
            # np.empty with the int or 2-tuple shapes the scratch arrays use: each new
            # (shape type, dtype) signature of np.zeros/np.empty costs Numba a compile
            self.prologue.append(Alloc(name, acc.shape, note=f"{acc.name}, summed over a block"))
            idx = _loop_names(acc.shape)
            axes = _axes(idx, acc.shape)
            if zeroed:
                self.prologue += self.loops(False, axes, [Assign(Element(name, idx), sp.S.Zero)])
            body = [Assign(Element(acc.name, idx), Element(name, idx), "+=")]
            body += [Assign(Element(name, idx), sp.S.Zero)] * zeroed
            self.flush += self.loops(False, axes, body, f"{acc.name}: add the block's sum")
        return name

    def c_copy(self, source: Node, base: View, flip: bool) -> str:
        """A C-ordered copy of the fixed array ``base`` (transposed if ``flip``) in theta's
        dtype, made once per call before the blocks."""
        key = (id(source), flip)
        if key not in self.copies:
            shape = fixed_shape(source)
            flip = flip and len(shape) == 2
            name = f"v{self.names.setdefault(('copy', key), len(self.names))}"
            out = shape[::-1] if flip else shape
            idx = _loop_names(out)
            src = Element(base.name, idx[::-1] if flip else idx)
            self.prologue.append(Alloc(name, out))
            self.prologue += self.loops(False, _axes(idx, out), [Assign(Element(name, idx), src)],
                                        f"{base}{'.T' if flip else ''} in C order")
            self.copies[key] = name
        return self.copies[key]

    # ---- reductions and gathers ----
    def reduce(self, node: Node, acc) -> None:
        """sum/mean: into the accumulator ``acc`` (over the samples) or into a new value."""
        x = node.inputs[0]
        axes, keep = node.attr("axes"), node.attr("keepdims")
        xfs = fixed_shape(x)
        idx = _loop_names(xfs)
        out_idx = [Ix.of(k) for k in summed_index(x.shape, axes, keep, tuple(idx))]
        if acc is not None:
            lines = self.block
            dest = Element(self.partial(acc), out_idx) if acc.shape else local(acc.name)
        else:
            name, lines = self.scratch(node, zero=True)
            self.var[id(node)] = name
            dest = self.at(node, out_idx)
        term = self.elem(x, idx).xreplace(self.known)
        lines += self.loops(per_sample(x), _axes(idx, xfs), [Assign(dest, term, "+=")], self.e.comment(node))
        if acc is None and node.op == "mean":
            count = math.prod(x.shape[a] for a in axes)
            text = f"{name}[:rows] /= {count}" if per_sample(node) else f"{name} /= {count}"
            lines.append(Code(text, frozenset({name, "rows"}), frozenset({name})))

    def gather(self, node: Node) -> None:
        name, lines = self.scratch(node, zero=node.op == "unindex")
        self.var[id(node)] = name
        lines.append(Comment(self.e.comment(node)))
        fs = fixed_shape(node)
        if node.op == "unindex":
            g = node.inputs[0]
            gfs = fixed_shape(g)
            idx = _loop_names(gfs)
            dest = self.at(node, index_source(node.shape, node.attr("key"), tuple(idx), _affine))
            lines += self.loops(per_sample(node), _axes(idx, gfs), [Assign(dest, self.elem(g, idx), "+=")])
            return
        for k, x in enumerate(node.inputs):  # stack, concatenate: each input's loop writes its part
            xfs = fixed_shape(x)
            idx = _loop_names(xfs)
            dest = self.at(node, gather_dest(node, k, tuple(idx)))
            lines += self.loops(per_sample(node), _axes(idx, xfs), [Assign(dest, self.elem(x, idx))])


# how the blocked schedule prints each op: an element read inline where it is used (leaves,
# views, elementwise ops, products of a few terms), or computed into an array (every op but
# the leaves; see tests/test_registry.py)
ELEMENT_RULES: dict[str, Callable[[Writer, Node, tuple], sp.Expr]] = {
    "data": Writer._data, "const": Writer._const, "count": lambda w, node, idx: N_SYMBOL,
    "elementwise": Writer._elementwise, "einsum": Writer._product,
    **{op: Writer._view for op in ("broadcast_to", "transpose", "index", "stop_gradient")},
}
ARRAY_RULES: dict[str, Callable[[Writer, Node], None]] = {
    "reshape": Writer.reshape, "einsum": Writer._contraction,
    "sum": lambda w, node: w.reduce(node, None), "mean": lambda w, node: w.reduce(node, None),
    "stack": Writer.gather, "concatenate": Writer.gather, "unindex": Writer.gather,
    **{op: Writer.elementwise for op in ("elementwise", "broadcast_to", "transpose", "index", "stop_gradient")},
}


def _print_order(a) -> tuple[bool, bool]:
    """Accumulators with loops over fixed axes first (sums, then contractions), those without
    last: each can then share the loop nest that computed what it adds up (the bias gradient
    and the thin weight gradients join the loop that makes the layer's delta)."""
    node = a.node
    if node.op == "einsum":
        sizes = [d for s, x in zip(node.attr("ins"), node.inputs) for d in x.shape if d is not N]
        inner = any(d > SMALL for d in sizes)
    else:
        inner = any(d > 1 for d in fixed_shape(node.inputs[0]))
    return not inner, node.op == "einsum"


def _affine(start: int, step: int, at: Ix) -> Ix:
    """A sliced axis' index (``indexing.index_source``) as a loop index."""
    return Ix.of(at) * step + start


def _copy(dest: str, off: int, shape: tuple, value: Callable[[list[Ix]], sp.Expr]) -> list[Stmt]:
    """``dest[off:off + size] = value`` in C order, as a loop nest (no slice assignment)."""
    idx = _loop_names(shape)
    flat = Ix.of(off)
    for k, (j, d) in enumerate(zip(idx, shape)):
        flat = flat + j * math.prod(shape[k + 1:])
    return Writer.loops(False, _axes(idx, shape), [Assign(Element(dest, [flat]), value(idx))])


class BlockedMixin:
    """Overrides the pass functions and finish of an emitter with the blocked ones."""

    plan: Plan
    visits = ", ROWS at a time"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.dtype == "float32":  # block arrays are float32: keep their arithmetic float32
            self.printer = printer(vector_math=self.vector_math, float32=True)
        self.names: dict = {}  # node id (or a weight copy's key) -> its v<k> number
        self.constants: list[str] = []
        self._const_ids: dict[bytes, str] = {}

    def comment(self, node: Node) -> str:
        shape = ", ".join("N" if d is N else str(d) for d in node.shape)
        return f"{expression_string(node, 70)}  [{shape}]"

    def constant(self, value: np.ndarray) -> str:
        key = value.tobytes() + str(value.shape).encode()
        if key not in self._const_ids:
            name = f"const{len(self._const_ids)}"
            self._const_ids[key] = name
            flat = ", ".join(repr(float(v)) for v in value.ravel())
            self.constants.append(f"{name} = np.array([{flat}]).reshape({value.shape})")
        return self._const_ids[key]

    def options(self) -> str:
        rows = f"ROWS = {self.plan.lowered.rows}  # samples per block: each scratch array is (ROWS, width)"
        return "\n".join([super().options(), rows, *self.constants])  # constants found while printing

    def print_function(self, head: list[str], body: list[Stmt]) -> str:
        """The passes over ``body``, then its lines under ``head`` (the def and docstring)."""
        return self.function(head, lambda: print_body(passes.run(body), self.expr, "    "))

    def pass_function(self, k: int) -> str:
        """sums_k: zero this pass's accumulators, add every block into them, write them to out."""
        mine = [a for a in self.plan.accumulators if a.pass_ == k]
        w = Writer(self, k)
        for a in sorted(mine, key=_print_order):
            if a.node.op == "einsum":
                for x in a.node.inputs:
                    w.need(x)
                w.einsum(a.node, a)
            else:
                w.reduce(a.node, a)
        body = w.prologue + [Alloc(a.name, a.shape, zero=True, dtype="") if a.shape else Assign(local(a.name), sp.S.Zero)
                             for a in mine]
        rows = Code("rows = min(hi - i0, ROWS)", frozenset({"hi", "i0"}), frozenset({"rows"}))
        body.append(Loop("i0", ("lo", "hi", "ROWS"), [rows, *w.block, *w.flush]))
        rel = 0
        for a in mine:  # element by element: Numba compiles a slice assignment slowly
            body += _copy("out", rel, a.shape, lambda idx, a=a: Element(a.name, idx) if idx else local(a.name))
            rel += a.size
        return self.print_function(self.loop_signature(k, sum(a.size for a in mine)), body)

    def finish(self) -> str:
        """The loss and the gradients from the sums in acc (and the parameters)."""
        plan = self.plan
        w = Writer(self, None)
        body: list[Stmt] = []
        loss = w.elem(plan.loss, ()).xreplace(w.known)
        off = 0  # grad: each parameter's gradient where it sits in theta, then any Hessian entries
        for name, g in plan.lowered.grads.items():
            shape = plan.layout[name][1] if name in plan.layout else ()  # an entry: a scalar
            if g is None:
                zero = f"the loss does not depend on {name}" if name in plan.layout else f"{name} is zero"
                body.append(Comment(zero))
                body += _copy("grad", off, shape, lambda idx: sp.S.Zero)
            else:
                body.append(Comment(f"d(loss)/d({name})" if name in plan.layout else f"the Hessian's entry {name}"))
                body += _copy("grad", off, shape, lambda idx, g=g: w.elem(g, idx).xreplace(w.known))
            off += math.prod(shape)
        if loss != local("loss"):
            body.append(Assign(local("loss"), loss))
        body.append(Code("return loss", frozenset({"loss"})))
        head = [
            self.helper_jit(sum(N not in d.shape for d in plan.data) + 4),
            f"def finish(n, {self.fixed_args + ', ' if self.fixed_args else ''}theta, acc, grad):",
            f'    """Loss from the sums in acc over n samples; writes {self.grad_doc} into grad."""',
        ]
        return self.print_function(head, w.prologue + body)


class BlockedCpuEmitter(BlockedMixin, CpuEmitter):
    target = "cpu"


class BlockedParallelEmitter(BlockedMixin, ParallelEmitter):
    target = "parallel"

    def helper_jit(self, nargs: int) -> str:
        """Not inlined into the prange loop: a call covers a whole parallel block, and Numba
        compiles a big inlined body under parallel=True very slowly."""
        return self.jit
