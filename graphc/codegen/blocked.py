"""Blocked target code: a BlockPlan printed as loops over blocks of samples.

Inside ``sums_k`` the samples lo..hi-1 are visited ``ROWS`` at a time. Each per-sample
node the plan keeps in memory gets one scratch array of shape ``(ROWS, *fixed dims)``,
allocated once per call; a contraction is one ``np.dot`` on those arrays (BLAS) or,
without SciPy, a printed loop nest; an elementwise chain is one loop nest whose body SymPy
prints (with ``sympy.cse``); a sum over the samples adds each block into an accumulator
(a float64 scalar or array) that is written to ``out`` at the end. ``finish`` reads the
accumulators back from ``acc`` and writes the gradients. Index names: ``i0`` the first
sample of the block, ``rows`` its length, ``i`` the sample in the block, ``j0, j1, ...``
the fixed axes. Everything else (evaluate, the training loops, the parallel driver) is the
CPU emitter's, unchanged: the functions have the same signatures.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Callable, Sequence

import numpy as np
import sympy as sp

from .. import fold
from ..blocked import INLINE, SMALL, BlockPlan, fixed_shape, is_product, per_sample
from ..errors import UnsupportedError
from ..graph import N, Node, spell
from ..ops import expression_string
from ..schedule import N_SYMBOL, _broadcast_map, _number, index_source
from .cpu import CpuEmitter
from .parallel import ParallelEmitter
from .printer import printer


def _sym(text: str) -> sp.Symbol:
    return sp.Symbol(text, real=True)


def _loop_names(shape: Sequence[int]) -> list[str]:
    """Index names for the axes of ``shape``: j0, j1, ...; a size-1 axis is just 0."""
    return [f"j{a}" if d != 1 else "0" for a, d in enumerate(shape)]


class Writer:
    """Prints the nodes one function needs: ``prologue`` (parameters, loaded sums, scratch,
    loop-invariant values) and ``block`` (inside the loop over blocks)."""

    def __init__(self, emitter: "BlockedMixin", current_pass: int | None, materialize: set[int]) -> None:
        self.e, self.plan = emitter, emitter.plan
        self.materialize = materialize
        self.canon: dict[str, str] = {}  # elementwise array -> the element text its loop writes
        self.group: dict | None = None  # the loop nest printed last (loops joins it when it can)
        self.copies: dict[tuple, str] = {}  # C-ordered (maybe transposed) copies of weights
        self.current = current_pass  # None: finish (no per-sample values)
        self.var: dict[int, str] = {}
        self.known: dict[sp.Expr, sp.Symbol] = {}
        self.prologue: list[str] = []
        self.block: list[str] = []
        self.names = emitter.names
        self.flush: list[str] = []  # run after each block: partial sums into their accumulators

    # ---- element expressions ----
    def at(self, node: Node, idx: Sequence) -> sp.Expr:
        var = self.var[id(node)]
        parts = (["i"] if per_sample(node) else []) + [str(k) for k in idx]
        return _sym(f"{var}[{', '.join(parts)}]") if parts else _sym(var)

    def elem(self, node: Node, idx: Sequence) -> sp.Expr:
        """``node``'s element at fixed index ``idx`` (texts or ints; sample ``i`` implied)."""
        self.need(node)
        if id(node) in self.var:
            return self.at(node, idx)
        return self.inline(node, idx)

    def inline(self, node: Node, idx: Sequence) -> sp.Expr:
        """The element computed from ``node``'s inputs (leaves: read where they live)."""
        op = node.op
        if op == "data":
            return _sym(self.e.element(node, tuple(idx), "i0 + i"))
        if op == "const":
            value = np.asarray(node.attr("value"))
            if value.ndim == 0:
                return _number(value)
            return _sym(f"{self.e.constant(value)}[{', '.join(map(str, idx))}]")
        if op == "count":
            return N_SYMBOL
        if op == "elementwise":
            fn = node.attr("fn")
            return fn.compose([self.elem(x, _broadcast_map(node.shape, x.shape)(tuple(idx))) for x in node.inputs])
        if op == "broadcast_to":
            x = node.inputs[0]
            return self.elem(x, _broadcast_map(node.shape, x.shape)(tuple(idx)))
        if op == "stop_gradient":
            return self.elem(node.inputs[0], idx)
        if op == "transpose":
            x, perm = node.inputs[0], node.attr("perm")
            out_fixed = [a for a in range(node.ndim) if node.shape[a] is not N]
            where = {perm[a]: j for j, a in enumerate(out_fixed)}
            return self.elem(x, tuple(idx[where[a]] for a in range(x.ndim) if x.shape[a] is not N))
        if op == "index":
            return self.elem(node.inputs[0], _index_source(node.inputs[0].shape, node.attr("key"), idx))
        if is_product(node):  # the sum over the letters the output drops (at most SMALL terms)
            ins = node.attr("ins")
            out = [c for c, d in zip(node.attr("out"), node.shape) if d is not N]
            dropped = {c: d for sub, x in zip(ins, node.inputs) for c, d in zip(sub, x.shape) if c not in node.attr("out")}
            terms = []
            for values in itertools.product(*(range(d) for d in dropped.values())):
                at = {**dict(zip(out, idx)), **dict(zip(dropped, values))}
                terms.append(fold.mul([self.weight_elem(x, [at[c] for c, d in zip(sub, x.shape) if d is not N])
                                       for sub, x in zip(ins, node.inputs)]))
            return fold.add(terms)
        raise UnsupportedError(f"blocked schedule: cannot inline {op} {node.label()}")  # pragma: no cover

    def weight_elem(self, x: Node, idx: Sequence) -> sp.Expr:
        """``elem``, except that a 2-D weight read down a column inside a loop (W[j0, 2]: a
        stride of a row per iteration, which does not vectorize) reads a transposed C-ordered
        copy instead (v[2, j0])."""
        e = self.elem(x, idx)
        source = x.inputs[0] if x.op == "transpose" else x
        m = re.fullmatch(r"(\w+)\[(j\d+), (\d+)\]", str(e)) if isinstance(e, sp.Symbol) else None
        if m is None or source.op != "param" or len(source.shape) != 2 or m.group(1) != self.array(source):
            return e
        return _sym(f"{self.c_copy(source, m.group(1), True)}[{m.group(3)}, {m.group(2)}]")

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
        if node.op in ("data", "const", "count") or (inline and id(node) not in self.materialize):
            return
        if per_sample(node) and self.current is None:
            raise UnsupportedError(f"blocked schedule: {node.label()} varies per sample")  # pragma: no cover
        self.compute(node)

    def load_param(self, node: Node) -> None:
        off, shape = self.plan.layout[node.name]
        name = spell(node.name)
        size = math.prod(shape)
        if not shape:
            self.prologue.append(f"{name} = theta[{off}]")
        elif len(shape) == 1:
            self.prologue.append(f"{name} = theta[{off}:{off + size}]")
        else:
            self.prologue.append(f"{name} = theta[{off}:{off + size}].reshape({shape})")
        self.var[id(node)] = name

    def load_sum(self, node: Node, acc) -> None:
        x = node.inputs[0]
        scale = ""
        if node.op == "mean":
            count = math.prod(x.shape[a] for a in node.attr("axes") if x.shape[a] is not N)
            scale = " / n" if count == 1 else f" / (n * {count})"
        if not acc.shape:
            self.prologue.append(f"{acc.name} = acc[{acc.offset}]{scale}  # {self.e.comment(node)}")
        else:
            view = f"acc[{acc.offset}:{acc.offset + acc.size}].reshape({acc.shape})"
            self.prologue.append(f"{acc.name} = {view}{scale}  # {self.e.comment(node)}")
        self.var[id(node)] = acc.name

    def new_var(self, node: Node) -> str:
        """``v<k>``, numbered once per node for the whole module (reprints keep the names)."""
        return f"v{self.names.setdefault(id(node), len(self.names))}"

    def scratch(self, node: Node, zero: bool = False) -> tuple[str, list[str]]:
        """A variable for ``node``: a per-block scratch array, a fixed array or a scalar.
        Returns its name and where its computing lines go."""
        name, fs = self.new_var(node), fixed_shape(node)
        if per_sample(node):
            self.prologue.append(f"{name} = np.empty((ROWS, {', '.join(map(str, fs))}), theta.dtype)"
                                 if fs else f"{name} = np.empty(ROWS, theta.dtype)")
            lines = self.block
            if zero:
                lines.append(f"{name}[:rows] = 0.0")
        else:
            lines = self.prologue
            if zero:
                lines.append(f"{name} = np.zeros({fs})" if fs else f"{name} = 0.0")
            elif fs:
                lines.append(f"{name} = np.empty({fs})")
        return name, lines

    def compute(self, node: Node) -> None:
        for x in node.inputs:
            self.need(x)
        op = node.op
        if op == "reshape":
            self.reshape(node)
        elif op == "einsum" and not is_product(node):
            self.einsum(node, None)
        elif op in ("sum", "mean"):
            self.reduce(node, None)
        elif op in ("stack", "concatenate", "unindex"):
            self.gather(node)
        else:
            self.elementwise(node)

    # ---- printing loop nests ----
    def loops(self, lines: list[str], sample: bool, sizes: Sequence[tuple[str, int]], body: list[str],
              comment: str | None = None, writes: tuple[str, str | None] | None = None) -> None:
        """A loop nest over the block's samples (``sample``) and the given axes. It joins the
        loop nest just printed when that one has the same axes and wrote nothing this body
        reads other than at the element being computed (``writes``: the array written and
        the element text each iteration writes, None when it adds into other elements)."""
        header = (sample, tuple(s for s in sizes if s[0] != "0"))  # size-1 axes have no loop
        g = self.group
        if g and g["lines"] is lines and g["end"] == len(lines) and g["header"] == header and _reads_only(body, g["writes"]):
            indent = g["indent"]
        else:
            if comment:
                lines.append(f"# {comment}")
                comment = None
            indent = ""
            if sample:
                lines.append("for i in range(rows):")
                indent = "    "
            g = {"lines": lines, "header": header, "writes": {}, "hoisted": set(), "at": len(lines)}
            for name, size in sizes:
                if name != "0":  # a size-1 axis has no loop
                    lines.append(f"{indent}for {name} in range({size}):")
                    indent += "    "
            g["indent"], self.group = indent, g
        if sample and len(lines) > g["at"] and g["indent"] != "    ":  # inner loops: hoist per-sample reads
            body = self.hoist(body, g)
        lines += [f"{indent}# {comment}"] * bool(comment) + [indent + b for b in body]
        g["end"] = len(lines)
        if writes:
            g["writes"][writes[0]] = writes[1]

    def hoist(self, body: list[str], g: dict) -> list[str]:
        """Reads of one sample's element (``X[i0 + i, 0]``, ``v8[i, 0]``) inside the loops over
        the fixed axes become locals (``X_i_0``, ``v8_i_0``) set once per sample, before those
        loops: LLVM cannot prove the arrays written there do not alias them, so it would load
        them every iteration (and not vectorize). Elements the body writes stay."""
        written = {m.group(1) for line in body for m in [re.match(r"\s*([^=]*?)\s*\+?=", line)] if m}
        lines, new = g["lines"], []

        def local(m: re.Match) -> str:
            if m.group(0) in written:
                return m.group(0)
            name = m.group(1) + "_i" + "".join(f"_{k}" for k in re.findall(r"\d+", m.group(3)))
            if name not in g["hoisted"]:
                g["hoisted"].add(name)
                new.append(f"    {name} = {m.group(0)}")
            return name

        out = []
        for line in body:
            target, sep, rest = line.partition(" = ") if " = " in line else line.partition(" += ")
            out.append(target + sep + SAMPLE_READ.sub(local, rest) if sep else line)
        lines[g["at"]:g["at"]] = new
        g["at"] += len(new)
        g["end"] = g.get("end", 0) + len(new)
        return out

    def statements(self, target: str, expr: sp.Expr, op: str = "=") -> list[str]:
        """``target op expr`` with expr's common subexpressions (sympy.cse) first."""
        pairs, (reduced,) = sp.cse([expr], symbols=sp.numbered_symbols("t", real=True), order="none")
        lines = [f"{s} = {self.e.expr(v)}" for s, v in pairs]
        return lines + [f"{target} {op} {self.e.expr(reduced)}"]

    def elementwise(self, node: Node) -> None:
        fs = fixed_shape(node)
        idx = _loop_names(fs)
        raw = self.inline(node, idx)
        expr = raw.xreplace(self.known)
        name, lines = self.scratch(node)
        self.var[id(node)] = name
        if not fs and not per_sample(node):
            lines += [f"# {self.e.comment(node)}"] + self.statements(name, expr)
        else:
            target = str(self.at(node, idx))
            self.loops(lines, per_sample(node), list(zip(idx, fs)), self.statements(target, expr),
                       self.e.comment(node), (name, target))
            self.canon[name] = target
        if raw.has(sp.Function) or raw.is_Pow:  # a later node may share it (tanh' reads tanh)
            self.known[raw] = self.at(node, idx)

    def reshape(self, node: Node) -> None:
        x = node.inputs[0]
        fs, name = fixed_shape(node), self.new_var(node)
        self.var[id(node)] = name
        lines = self.block if per_sample(node) else self.prologue
        src = self.array(x)
        if src is None:  # an inlined or strided input: copy it out first
            self.materialize.add(id(x))
            self.compute(x)
            src = self.array(x)
        if per_sample(node):
            lines.append(f"{name} = {src}.reshape((rows, {', '.join(map(str, fs))}))  # {self.e.comment(node)}"
                         if fs else f"{name} = {src}.reshape(rows)  # {self.e.comment(node)}")
        elif not fixed_shape(x):
            lines.append(f"{name} = np.full({fs}, {src})" if fs else f"{name} = {src}")
        else:
            lines.append(f"{name} = {src}.reshape({fs})" if fs else f"{name} = {src}.reshape(1)[0]")

    def array(self, node: Node) -> str | None:
        """Text of ``node`` as a numpy array (per-sample: the block's rows), or None."""
        if node.op == "data":
            if per_sample(node) and node.shape[0] is not N:
                return None
            return f"{spell(node.name)}[i0:i0 + rows]" if per_sample(node) else spell(node.name)
        self.need(node)
        if node.op == "transpose" and id(node) not in self.var and node.ndim == 2 and not per_sample(node):
            inner = self.array(node.inputs[0])
            return None if inner is None else f"{inner}.T"
        if id(node) not in self.var:
            return None
        var = self.var[id(node)]
        return f"{var}[:rows]" if per_sample(node) else var

    # ---- contractions ----
    def einsum(self, node: Node, acc) -> None:
        ins, out = node.attr("ins"), node.attr("out")
        letters = {c: d for s, x in zip(ins, node.inputs) for c, d in zip(s, x.shape)}
        sample = [c for c, d in letters.items() if d is N]
        if len(sample) > 1:
            raise UnsupportedError(f"blocked schedule: einsum {node.label()} pairs two sample dims")
        # a sum over the samples into a thin result (3 x 32, 32 x 1): printed loops, which can
        # share the loop that makes their operand; np.dot for anything wider
        thin = acc is not None and any(letters[c] <= SMALL for c in out)
        if self.plan.blas and not thin and self.gemm(node, acc):
            return
        # a printed loop nest: out[o] += a[..] * b[..] over every letter; letters of at most
        # SMALL values are unrolled into one statement each
        if acc is None:
            name, lines = self.scratch(node, zero=True)
            self.var[id(node)] = name
        else:
            lines = self.block
        fixed = [c for c in out if letters[c] is not N] + [c for c in letters if c not in out and letters[c] is not N]
        looped = [c for c in fixed if letters[c] > SMALL]
        unrolled = [c for c in fixed if letters[c] <= SMALL]
        body, dest = [], ""
        for values in itertools.product(*(range(letters[c]) for c in unrolled)):
            names = {**{c: f"j{k}" for k, c in enumerate(looped)}, **{c: str(v) for c, v in zip(unrolled, values)}}
            term = fold.mul([self.elem(x, [names[c] for c, d in zip(s, x.shape) if d is not N])
                             for s, x in zip(ins, node.inputs)]).xreplace(self.known)
            out_idx = [names[c] for c in out if letters[c] is not N]
            if acc is not None:
                target = self.partial(acc)
                dest = f"{target}[{', '.join(out_idx)}]" if out_idx else target
            else:
                dest = str(self.at(node, out_idx))
            body += self.statements(dest, term, "+=")
        self.loops(lines, bool(sample), [(f"j{k}", letters[c]) for k, c in enumerate(looped)], body,
                   self.e.comment(node), (dest.split("[")[0], None))

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
        texts = []
        for side, (k, lay, free) in enumerate(operands):
            x = node.inputs[k]
            arr = self.array(x)
            if arr is None:
                return False
            want = [c] if not free else [free[0], c] if side == 0 else [c, free[0]]
            if lay not in (want, want[::-1]):
                return False
            flip = (lay != want) != arr.endswith(".T")  # the array under any .T view is flipped
            base = arr[:-2] if arr.endswith(".T") else arr
            if per_sample(x):
                texts.append(f"{base}.T" if flip else base)
            else:  # weights: a C-ordered array of the data's dtype (fewer np.dot variants to compile)
                source = x.inputs[0] if arr.endswith(".T") else x
                texts.append(base if source.op == "param" and not flip else self.c_copy(source, base, flip))
        product = f"np.dot({texts[0]}, {texts[1]})"
        comment = f"# {self.e.comment(node)}"
        if acc is not None:
            # into a block-sized array, added into the accumulator after the block: np.dot
            # with out= allocates nothing and is the variant the layers already compile
            part = self.partial(acc, zeroed=False)
            self.block += [comment, f"np.dot({texts[0]}, {texts[1]}, {part})"]
        elif per_sample(node):
            name, lines = self.scratch(node)
            self.var[id(node)] = name
            lines += [comment, f"np.dot({texts[0]}, {texts[1]}, {name}[:rows])"]
        else:
            name = self.new_var(node)
            self.var[id(node)] = name
            self.prologue += [comment, f"{name} = {product}"]
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
        if not any(line.startswith(f"{name} = ") for line in self.prologue):
            # np.empty with the int or 2-tuple shapes the scratch arrays use: each new
            # (shape type, dtype) signature of np.zeros/np.empty costs Numba a compile
            shape = acc.shape[0] if len(acc.shape) == 1 else acc.shape
            self.prologue.append(f"{name} = np.empty({shape}, theta.dtype)  # {acc.name}, summed over a block")
            idx = _loop_names(acc.shape)
            at = ", ".join(idx)
            group = self.group  # the block's loop nest being printed stays open for joining
            if zeroed:
                self.loops(self.prologue, False, list(zip(idx, acc.shape)), [f"{name}[{at}] = 0.0"])
            lines: list[str] = []
            self.loops(lines, False, list(zip(idx, acc.shape)),
                       [f"{acc.name}[{at}] += {name}[{at}]", *[f"{name}[{at}] = 0.0"] * zeroed],
                       f"{acc.name}: add the block's sum")
            self.group = group
            self.flush += lines
        return name

    def c_copy(self, source: Node, base: str, flip: bool) -> str:
        """A C-ordered copy of the fixed array ``base`` (transposed if ``flip``) in theta's
        dtype, made once per call before the blocks."""
        key = (id(source), flip)
        if key not in self.copies:
            shape = fixed_shape(source)
            flip = flip and len(shape) == 2
            name = f"v{self.names.setdefault(('copy', key), len(self.names))}"
            out = shape[::-1] if flip else shape
            idx = _loop_names(out)
            src = f"{base}[{', '.join(idx[::-1] if flip else idx)}]"
            self.prologue.append(f"{name} = np.empty({out}, theta.dtype)")
            lines: list[str] = []
            self.loops(lines, False, list(zip(idx, out)), [f"{name}[{', '.join(idx)}] = {src}"],
                       f"{base}{'.T' if flip else ''} in C order")
            self.prologue += lines
            self.group = None
            self.copies[key] = name
        return self.copies[key]

    # ---- reductions and gathers ----
    def reduce(self, node: Node, acc) -> None:
        """sum/mean: into the accumulator ``acc`` (over the samples) or into a new value."""
        x = node.inputs[0]
        axes, keep = node.attr("axes"), node.attr("keepdims")
        xfs = fixed_shape(x)
        idx = _loop_names(xfs)
        out_idx, k = [], 0
        for a, d in enumerate(x.shape):
            if a in axes:
                out_idx += ["0"] if keep else []
            elif d is not N:
                out_idx.append(idx[k])
            k += d is not N
        if acc is not None:
            lines = self.block
            dest = f"{self.partial(acc)}[{', '.join(out_idx)}]" if acc.shape else acc.name
        else:
            name, lines = self.scratch(node, zero=True)
            self.var[id(node)] = name
            dest = str(self.at(node, out_idx))
        term = self.elem(x, idx).xreplace(self.known)
        self.loops(lines, per_sample(x), list(zip(idx, xfs)), self.statements(dest, term, "+="),
                   self.e.comment(node), (dest.split("[")[0], None))
        if acc is None and node.op == "mean":
            count = math.prod(x.shape[a] for a in axes)
            lines.append(f"{name}[:rows] /= {count}" if per_sample(node) else f"{name} /= {count}")

    def gather(self, node: Node) -> None:
        name, lines = self.scratch(node, zero=node.op == "unindex")
        self.var[id(node)] = name
        lines.append(f"# {self.e.comment(node)}")
        self.group = None
        fs = fixed_shape(node)
        if node.op == "unindex":
            g = node.inputs[0]
            gfs = fixed_shape(g)
            idx = _loop_names(gfs)
            dest = self.at(node, _index_source(node.shape, node.attr("key"), idx))
            self.loops(lines, per_sample(node), list(zip(idx, gfs)), self.statements(str(dest), self.elem(g, idx), "+="),
                       writes=(name, None))
            return
        axis = node.attr("axis")
        p = sum(1 for a in range(axis) if node.shape[a] is not N)
        start = 0
        for k, x in enumerate(node.inputs):
            width = 1 if node.op == "stack" else x.shape[axis]
            idx = _loop_names(fs)
            if node.op == "stack":
                sizes = [(idx[a], d) for a, d in enumerate(fs) if a != p]
                src_idx = idx[:p] + idx[p + 1 :]
                dest_idx = idx[:p] + [str(k)] + idx[p + 1 :]
                src = self.elem(x, src_idx)
            else:
                sizes = list(zip(idx, fixed_shape(x)))
                dest_idx = idx[:p] + [f"{start} + {idx[p]}" if start else idx[p]] + idx[p + 1 :]
                src = self.elem(x, idx)
            self.loops(lines, per_sample(node), sizes, self.statements(str(self.at(node, dest_idx)), src),
                       writes=(name, None))
            start += width


SAMPLE_READ = re.compile(r"\b([A-Za-z_]\w*)\[(i0 \+ i|i)((?:, \d+)*)\]")  # one sample's element


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


def _index_source(in_shape: tuple, key: tuple, idx: Sequence) -> tuple:
    """The fixed index of ``x`` that element ``idx`` of ``x[key]`` reads, as texts."""

    def affine(start: int, step: int, at: str) -> str:
        term = str(at) if step == 1 else f"{step}*{at}"
        return term if start == 0 else f"{start} + {term}"

    return index_source(in_shape, key, tuple(idx), affine)


def _uses(var: str, lines: list[str]) -> list[str]:
    """Every mention of the variable ``var`` in ``lines``, with its index if it has one
    (``v3[i, j0]``, ``v3[:rows]``, ``v3``)."""
    pattern = re.compile(rf"\b{var}\b(\[[^\]]*\])?")
    return [m.group(0) for line in lines for m in pattern.finditer(line)]


def _reads_only(body: list[str], writes: dict[str, str | None]) -> bool:
    """Whether ``body`` reads the arrays in ``writes`` only at the element each one's loop
    wrote in the same iteration (so the loops can share one nest)."""
    return all(element is not None and use == element
               for var, element in writes.items() for use in _uses(var, body))


def _copy(dest: str, off: int, shape: tuple, w: Writer, value: Callable[[list[str]], "sp.Expr | str"]) -> list[str]:
    """``dest[off:off + size] = value`` in C order, as a loop nest (no slice assignment)."""
    idx = _loop_names(shape)
    strides = [math.prod(shape[a + 1:]) for a in range(len(shape))]
    flat = " + ".join([str(off)] * bool(off) + [f"{j}*{st}" if st > 1 else j for j, st in zip(idx, strides) if j != "0"])
    v = value(idx)
    lines: list[str] = []
    body = w.statements(f"{dest}[{flat or 0}]", v) if isinstance(v, sp.Basic) else [f"{dest}[{flat or 0}] = {v}"]
    w.loops(lines, False, list(zip(idx, shape)), body)
    return lines


def _inlinable(w: Writer, lines: list[str]) -> set[str]:
    """Arrays an elementwise loop wrote that exactly one statement reads, at the element the
    loop wrote: inline their expression there instead (one loop and one array fewer)."""
    out = set()
    for var, canon in w.canon.items():
        skip = (f"{canon} =", f"{var} = np.empty(")  # its own loop and its allocation
        uses = _uses(var, [line for line in lines if not line.strip().startswith(skip)])
        if len(uses) == 1 and uses[0] == canon:
            out.add(var)
    return out


_FOR = re.compile(r"(\s*)for \w+ in range\([^()]*\):$")
_STMT = re.compile(r"(\s*)([A-Za-z_]\w*)\[([^\]]*)\] (\+?=) (.*)$")
_SAMPLE = re.compile(r"\bi\b")
_SAMPLE_AT = re.compile(r"(\[(?:i0 \+ )?)?\bi\b")  # i, opening an index ([i, [i0 + i) or elsewhere


def _next_sample(text: str, renames: dict[str, str]) -> str:
    """``text`` for the next sample: i -> i + 1 (``[i, j0]`` -> ``[i + 1, j0]``), hoisted
    locals renamed (``X_i_0`` -> ``X_i1_0``)."""
    text = _SAMPLE_AT.sub(lambda m: f"{m.group(1)}i + 1" if m.group(1) else "(i + 1)", text)
    return re.sub(r"\b\w+_i(?:_\d+)*\b", lambda m: renames.get(m.group(0), m.group(0)), text)


def _group(expr: str) -> str:
    return f"({expr})" if re.search(r"\b(if|or|and|not|lambda)\b", expr) else expr


def _paired(lines: list[str], at: int) -> tuple[list[str], int, set[str]] | None:
    """The loop over a block's samples starting at ``lines[at]``, rewritten to take two samples
    per iteration when its body is per-sample reads (hoisted locals), then one loop nest over
    fixed axes whose statements write per-sample elements or add into accumulators
    (``s1[0, j0] += X_i_0*v10[i, j0]``): the two samples' terms go into one ``+=``, so each
    accumulator element is loaded and stored once per two samples (with small weight
    gradients, those stores bound the loop). A block array only this loop reads, at the
    element it wrote, becomes a local (``v10_i``, ``v10_i1``): returned with the new lines and
    the index after the loop, so its allocation goes too. An odd block's last sample takes
    the loop as it was. None (and the loop stays as printed) for any other shape of body."""
    head = lines[at]
    ind = head[: len(head) - len(head.lstrip())]
    end = at + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith(ind + " ")):
        end += 1
    body = lines[at + 1:end]
    bi = ind + "    "
    k = 0
    renames: dict[str, str] = {}
    while k < len(body) and not _FOR.match(body[k]):
        m = re.match(rf"{bi}(\w+_i(?:_\d+)*) = (.*)$", body[k])
        if not m:
            return None
        renames[m.group(1)] = re.sub(r"_i((?:_\d+)*)$", r"_i1\1", m.group(1))  # X_i_0 -> X_i1_0
        k += 1
    hoisted, nest = body[:k], body[k:]
    depth = 0
    while depth < len(nest) and _FOR.match(nest[depth]) and nest[depth].startswith(bi + "    " * depth):
        depth += 1
    if depth == 0:
        return None
    inner, stmts = bi + "    " * depth, nest[depth:]
    added = {m.group(2) for line in stmts for m in [_STMT.match(line)] if m and m.group(4) == "+="}
    # a block array this loop writes and only it reads (its allocation aside), at the element
    # written: a local
    outside = lines[:at] + lines[end:]
    local = {}
    for line in stmts:
        m = _STMT.match(line)
        if m and m.group(4) == "=" and re.fullmatch(r"v\d+", m.group(2)) and _SAMPLE.search(m.group(3)):
            var, element = m.group(2), f"{m.group(2)}[{m.group(3)}]"
            if set(_uses(var, stmts)) == {element} and not _uses(
                    var, [x for x in outside if not x.strip().startswith(f"{var} = np.empty(")]):
                local[element] = f"{var}_i"
                renames[f"{var}_i"] = f"{var}_i1"

    def localized(line: str) -> str:
        for element, name in local.items():
            line = line.replace(element, name)
        return line

    out: list[str] = []
    fused = False
    for line in map(localized, stmts):
        if line.startswith(inner + "#"):
            out.append(line)
            continue
        m = re.match(r"(\s*)(v\d+_i) = (.*)$", line)
        if m and m.group(2) in renames:  # a local for one sample's element
            out += [line, inner + _next_sample(line.strip(), renames)]
            continue
        m = _STMT.match(line)
        if not m or m.group(1) != inner or any(re.search(rf"\b{a}\b", m.group(5)) for a in added):
            return None
        name, idx, op, expr = m.group(2), m.group(3), m.group(4), m.group(5)
        if _SAMPLE.search(idx):  # one sample's element: once per sample
            out += [line, inner + _next_sample(f"{name}[{idx}] {op} {expr}", renames)]
        elif op == "+=":  # an accumulator: both samples' terms in one statement
            out.append(f"{inner}{name}[{idx}] += {_group(expr)} + {_group(_next_sample(expr, renames))}")
            fused = True
        else:
            return None
    if not fused:
        return None
    pairs = [f"{ind}for i in range(0, rows - 1, 2):  # two samples per iteration (accumulators stored once)"]
    pairs += hoisted + [bi + _next_sample(h.strip(), renames) for h in hoisted]
    pairs += nest[:depth] + out
    pairs += [f"{ind}for i in range(rows - rows % 2, rows):  # an odd block's last sample"]
    pairs += [localized(line) for line in body]
    return pairs, end, {element.split("[")[0] for element in local}


def _pair_samples(lines: list[str]) -> list[str]:
    """Every sample loop of a pass that ``_paired`` can rewrite, rewritten."""
    out, at, gone = [], 0, set()
    while at < len(lines):
        if lines[at].strip() == "for i in range(rows):":
            done = _paired(lines, at)
            if done:
                out += done[0]
                at = done[1]
                gone |= done[2]
                continue
        out.append(lines[at])
        at += 1
    return [line for line in out if line.split(" = np.empty(")[0].strip() not in gone]


def _refined(make: "Callable[[set[int]], tuple[Writer, list[str]]]", materialize: set[int]) -> list[str]:
    """Print a function, then reprint it with the arrays only one statement reads inlined."""
    materialize = set(materialize)
    for _ in range(8):
        w, lines = make(materialize)
        drop = _inlinable(w, lines)
        if not drop:
            return lines
        by_var = {f"v{k}": node_id for node_id, k in w.names.items()}
        materialize -= {by_var[v] for v in drop}
    return lines


class BlockedMixin:
    """Overrides the pass functions and finish of an emitter with the blocked ones."""

    plan: BlockPlan
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
        rows = f"ROWS = {self.plan.rows}  # samples per block: each scratch array is (ROWS, width)"
        return "\n".join([super().options(), rows, *self.constants])  # constants found while printing

    def pass_function(self, k: int) -> str:
        """sums_k: zero this pass's accumulators, add every block into them, write them to out."""
        mine = [a for a in self.plan.accumulators if a.pass_ == k]
        size = sum(a.size for a in mine)
        lines = self.loop_signature(k, size)

        def make(materialize: set[int]) -> tuple[Writer, list[str]]:
            w = Writer(self, k, materialize)
            for a in sorted(mine, key=_print_order):
                if a.node.op == "einsum":
                    for x in a.node.inputs:
                        w.need(x)
                    w.einsum(a.node, a)
                else:
                    w.reduce(a.node, a)
            body = w.prologue + [f"{a.name} = np.zeros({a.shape})" if a.shape else f"{a.name} = 0.0" for a in mine]
            body += ["for i0 in range(lo, hi, ROWS):", "    rows = min(hi - i0, ROWS)"]
            body += ["    " + s for s in w.block + w.flush]
            rel = 0
            for a in mine:  # element by element: Numba compiles a slice assignment slowly
                body += _copy("out", rel, a.shape, w, lambda idx, a=a: f"{a.name}[{', '.join(idx)}]" if idx else a.name)
                rel += a.size
            return w, body

        return "\n".join(lines + ["    " + s for s in _pair_samples(_refined(make, self.plan.materialize))])

    def finish(self) -> str:
        """The loss and the gradients from the sums in acc (and the parameters)."""
        plan = self.plan

        def make(materialize: set[int]) -> tuple[Writer, list[str]]:
            w = Writer(self, None, materialize)
            body: list[str] = []
            loss = w.elem(plan.loss, ()).xreplace(w.known)
            for p in plan.wrt:
                off, shape = plan.layout[p.name]
                g = plan.grads[p.name]
                if g is None:
                    body.append(f"# the loss does not depend on {p.name}")
                    body += _copy("grad", off, shape, w, lambda idx: "0.0")
                    continue
                body.append(f"# d(loss)/d({p.name})")
                body += _copy("grad", off, shape, w, lambda idx, g=g: w.elem(g, idx).xreplace(w.known))
            tail = w.statements("loss", loss) if loss != sp.Symbol("loss", real=True) else []
            return w, w.prologue + body + tail + ["return loss"]

        lines = [
            self.helper_jit(sum(N not in d.shape for d in plan.data) + 4),
            f"def finish(n, {self.fixed_args + ', ' if self.fixed_args else ''}theta, acc, grad):",
            f'    """Loss from the sums in acc over n samples; writes d(loss)/d(theta[0:{plan.n_grads}]) into grad."""',
        ]
        return "\n".join(lines + ["    " + s for s in _refined(make, plan.materialize)])


class BlockedCpuEmitter(BlockedMixin, CpuEmitter):
    target = "cpu"


class BlockedParallelEmitter(BlockedMixin, ParallelEmitter):
    target = "parallel"

    def helper_jit(self, nargs: int) -> str:
        """Not inlined into the prange loop: a call covers a whole parallel block, and Numba
        compiles a big inlined body under parallel=True very slowly."""
        return self.jit
