"""Rewrites of the loop IR (``loops.py``): each a named function from statements to statements.

``PASSES`` lists them in the order the blocked emitter runs them on every function it
prints; each reads the structure of the IR (``Element.array``/``.index``, ``Loop.var``/
``.bounds``, the reads and writes a ``Code`` statement declares), never generated text.

- ``inline_single_use``: a scratch array written once (``v[i, j0] = e``) and read once, at
  the element written, is replaced by ``e`` at that read: one loop and one array fewer.
- ``fuse_loops``: adjacent loop nests over the same ranges become one nest when the second
  reads what the first writes only at the element the same iteration wrote.
- ``hoist_sample_reads``: in a loop over a block's samples, a read of one sample's element
  inside the inner loops (``X[i0 + i, 0]``) becomes a local set once per sample
  (``X_i_0``): LLVM cannot prove the arrays written there do not alias it, so it would load
  it every iteration and not vectorize.
- ``pair_samples``: a loop over the samples whose inner loops add into accumulators takes
  two samples per iteration, both samples' terms in one ``+=`` (each accumulator element is
  loaded and stored once per two samples); a per-sample array only that loop uses becomes
  a local.
- ``common_subexpressions``: ``sympy.cse`` on each assignment (``t0 = ...`` first).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import sympy as sp

from .loops import Alloc, Assign, Comment, Element, Ix, Loop, Stmt, Terms, array_reads, array_writes, elements, local, map_exprs, walk

SAMPLE, BLOCK_START = "i", "i0"  # the loop over a block's samples, the block's first sample


# ---- helpers ----
def _uses(expr: sp.Expr, target: sp.Symbol) -> int:
    """How often ``target`` is read in ``expr`` as printed (``v**2`` prints as ``v*v``: 2)."""
    if expr == target:
        return 1
    if expr.is_Pow and expr.base == target and expr.exp.is_Integer and expr.exp > 0:
        return int(expr.exp)
    return sum(_uses(a, target) for a in expr.args)


def _prune(body: list[Stmt], gone: Callable[[Stmt], bool]) -> list[Stmt]:
    """``body`` without the statements ``gone`` picks, and without loops left empty."""
    out: list[Stmt] = []
    for s in body:
        if gone(s):
            continue
        if isinstance(s, Loop):
            inner = _prune(s.body, gone)
            if not any(not isinstance(t, Comment) for t in inner):
                continue
            s = replace(s, body=inner)
        out.append(s)
    return out


def _perfect_nest(loop: Loop) -> tuple[list[tuple], list[Stmt]]:
    """The headers of a loop nest whose every level holds only the next loop (comments
    aside), and the innermost body."""
    headers, body = [loop.header], loop.body
    while True:
        inner = [s for s in body if not isinstance(s, Comment)]
        if len(inner) != 1 or not isinstance(inner[0], Loop) or len(body) != 1:
            return headers, body
        headers.append(inner[0].header)
        body = inner[0].body


def _rebuild(loop: Loop, depth: int, body: list[Stmt]) -> Loop:
    """``loop``'s nest with the body at ``depth`` (0: loop itself) replaced."""
    if depth == 0:
        return replace(loop, body=body)
    return replace(loop, body=[_rebuild(loop.body[0], depth - 1, body)])


def _written(body: Sequence[Stmt]) -> dict:
    """array or local -> the elements written with '=' (None: written some other way)."""
    def element(s: Stmt) -> Element | None:
        return s.target if isinstance(s, Assign) and s.op == "=" and isinstance(s.target, Element) else None

    written = {name: {element(s) for s in ws if not isinstance(s, Alloc)} for name, ws in array_writes(body).items()}
    return {name: elems for name, elems in written.items() if elems}  # an allocation writes no element


def _read_names(body: Sequence[Stmt]) -> dict:
    """array or local -> the elements read (None: read whole or as a local)."""
    return {name: {r if isinstance(r, Element) else None for _, r in rs} for name, rs in array_reads(body).items()}


# ---- the passes ----
def inline_single_use(body: list[Stmt]) -> list[Stmt]:
    """A scratch array (allocated in ``body``) that exactly one ``=`` assignment writes and
    exactly one expression reads, once and at the element written, is inlined there."""
    while True:
        allocated = {s.name for s in walk(body) if isinstance(s, Alloc)}
        writers, readers = array_writes(body), array_reads(body)
        for name in sorted(allocated):
            ws = [w for w in writers.get(name, []) if not isinstance(w, Alloc)]
            rs = readers.get(name, [])
            if len(ws) != 1 or len(rs) != 1 or not isinstance(ws[0], Assign) or ws[0].op != "=":
                continue
            (w,), (reader, element) = ws, rs[0]
            if element != w.target or not isinstance(reader, Assign) or _uses(reader.expr, element) != 1:
                continue
            if reader.op != "=" and reader.target == element:  # pragma: no cover - a += into it
                continue
            new = replace(reader, expr=reader.expr.xreplace({element: w.expr}))
            body = _prune(_substitute(body, reader, new), lambda s: s is w or (isinstance(s, Alloc) and s.name == name))
            break
        else:
            return body


def _substitute(body: list[Stmt], old: Stmt, new: Stmt) -> list[Stmt]:
    out: list[Stmt] = []
    for s in body:
        if s is old:
            out.append(new)
        elif isinstance(s, Loop):
            out.append(replace(s, body=_substitute(s.body, old, new)))
        else:
            out.append(s)
    return out


def fuse_loops(body: list[Stmt]) -> list[Stmt]:
    """Adjacent loop nests with the same headers, merged where that is safe: the second nest
    reads an array the first writes only at the one element the first writes with ``=``
    (the same iteration's), and writes nothing the first reads or writes."""
    out: list[Stmt] = []
    for s in body:
        if isinstance(s, Loop):
            s = replace(s, body=fuse_loops(s.body))
            prev = out[-1] if out else None
            if isinstance(prev, Loop):
                merged = _merge(prev, s)
                if merged is not None:
                    out[-1] = merged
                    continue
        out.append(s)
    return out


def _merge(a: Loop, b: Loop) -> Loop | None:
    ha, body_a = _perfect_nest(a)
    hb, body_b = _perfect_nest(b)
    if ha != hb:
        return None
    written, read_a = _written(body_a), _read_names(body_a)
    for name, elems in _read_names(body_b).items():
        if name in written:
            w = written[name]
            if len(w) != 1 or None in w or elems != w:
                return None
    if any(name in read_a or name in written for name in _written(body_b)):
        return None
    notes = [Comment(n) for n in (b.note,) if n]
    return _rebuild(a, len(ha) - 1, fuse_loops(body_a + notes + body_b))


def sample_local(e: Element) -> sp.Symbol:
    """The local holding one sample's element: ``X[i0 + i, 0]`` -> ``X_i_0``, ``v9[i + 1, 0]``
    -> ``v9_i1_0``."""
    parts = [e.array]
    for k in e.index:
        if SAMPLE in k.vars:
            offset = sum(c for c, v in k.terms if v is None)
            parts.append(f"{SAMPLE}{offset or ''}")
        else:
            parts.append(str(k.constant))
    return local("_".join(parts))


def _sample_element(e: Element) -> bool:
    return SAMPLE in e.vars and e.vars <= {SAMPLE, BLOCK_START}


def hoist_sample_reads(body: list[Stmt]) -> list[Stmt]:
    """In a loop over the samples that holds inner loops, the reads of one sample's element
    inside those loops become locals set at the top of the sample's iteration (unless the
    loop writes that array)."""
    out: list[Stmt] = []
    for s in body:
        if isinstance(s, Loop) and s.var == SAMPLE and any(isinstance(t, Loop) for t in s.body):
            written = _written(s.body)
            found: dict[Element, sp.Symbol] = {}
            for t in s.body:
                if isinstance(t, Loop):
                    for u in walk([t]):
                        if isinstance(u, Assign):
                            for e in sorted(elements(u.expr), key=str):
                                if _sample_element(e) and e.array not in written:
                                    found.setdefault(e, sample_local(e))
            inner = [map_exprs([t], lambda x: x.xreplace(found), targets=False)[0] if isinstance(t, Loop) else t
                     for t in s.body]
            s = replace(s, body=[Assign(v, e) for e, v in found.items()] + inner)
        elif isinstance(s, Loop):
            s = replace(s, body=hoist_sample_reads(s.body))
        out.append(s)
    return out


def pair_samples(body: list[Stmt]) -> list[Stmt]:
    """Every loop over the samples ``range(rows)`` of the shape below, rewritten to take two
    samples per iteration (and a loop for an odd block's last sample): hoisted reads, then
    one loop nest whose innermost statements write this sample's elements or add into
    accumulators (and read nothing added into here). A per-sample scratch array that only
    this loop uses, at the element it writes, becomes a local (its allocation goes)."""
    whole = body

    def visit(stmts: list[Stmt]) -> list[Stmt]:
        out: list[Stmt] = []
        for s in stmts:
            if isinstance(s, Loop) and s.var == SAMPLE and s.bounds == ("rows",):
                done = _paired(s, whole)
                if done is not None:
                    loops, gone = done
                    out += loops
                    dropped.update(gone)
                    continue
            if isinstance(s, Loop):
                s = replace(s, body=visit(s.body))
            out.append(s)
        return out

    dropped: set[str] = set()
    body = visit(body)
    return _prune(body, lambda s: isinstance(s, Alloc) and s.name in dropped)


def _paired(loop: Loop, whole: list[Stmt]) -> tuple[list[Stmt], set[str]] | None:
    k = 0
    while k < len(loop.body) and isinstance(a := loop.body[k], Assign) and not isinstance(a.target, Element) \
            and isinstance(a.expr, Element):
        k += 1
    hoisted, rest = loop.body[:k], loop.body[k:]
    if len(rest) != 1 or not isinstance(rest[0], Loop):
        return None
    headers, stmts = _perfect_nest(rest[0])
    if not all(isinstance(s, (Assign, Comment)) for s in stmts):
        return None
    added = {s.array for s in stmts if isinstance(s, Assign) and s.op == "+="}
    # per-sample scratch arrays written here and read only here, at the element written
    per_sample = {s.name for s in walk(whole) if isinstance(s, Alloc) and s.shape and s.shape[0] == "ROWS"}
    outside = _prune(whole, lambda s: s is loop)
    elsewhere = {**_read_names(outside), **_written(outside)}
    mine = _read_names(stmts)
    localize: dict[Element, sp.Symbol] = {}
    for s in stmts:
        if isinstance(s, Assign) and s.op == "=" and s.array in per_sample and SAMPLE in s.target.vars:
            if mine.get(s.array, set()) <= {s.target} and s.array not in elsewhere \
                    and len(_written(stmts).get(s.array, ())) == 1:
                localize[s.target] = local(f"{s.array}_{SAMPLE}")
    renames = {a.target: sample_local(a.expr.shifted(SAMPLE, 1)) for a in hoisted}
    renames.update({v: local(f"{v.name}1") for v in localize.values()})

    def here(x: sp.Expr) -> sp.Expr:
        return x.xreplace(localize)

    def next_sample(x: sp.Expr) -> sp.Expr:
        x = here(x)
        shift = {e: e.shifted(SAMPLE, 1) for e in elements(x) if SAMPLE in e.vars}
        return x.xreplace({**shift, **renames})

    paired: list[Stmt] = []
    fused = False
    for s in stmts:
        if isinstance(s, Comment):
            paired.append(s)
            continue
        if any(e.array in added for e in elements(s.expr)):
            return None
        if s.op == "=" and (s.target in localize or SAMPLE in getattr(s.target, "vars", ())):
            first = replace(s, target=localize.get(s.target, s.target), expr=here(s.expr))
            second = replace(first, target=renames.get(first.target) or next_sample(first.target), expr=next_sample(s.expr))
            paired += [first, second]
        elif s.op == "+=" and isinstance(s.target, Element) and SAMPLE not in s.target.vars:
            paired.append(replace(s, expr=Terms(here(s.expr), next_sample(s.expr))))
            fused = True
        else:
            return None
    if not fused:
        return None
    twice = hoisted + [Assign(renames[a.target], a.expr.shifted(SAMPLE, 1)) for a in hoisted]
    pairs = Loop(SAMPLE, (0, "rows - 1", 2), twice + [_rebuild(rest[0], len(headers) - 1, paired)],
                 note=loop.note, tail="two samples per iteration (accumulators stored once)")
    single = map_exprs([rest[0]], here)
    last = Loop(SAMPLE, ("rows - rows % 2", "rows"), hoisted + single, tail="an odd block's last sample")
    return [pairs, last], {e.array for e in localize}


def common_subexpressions(body: list[Stmt]) -> list[Stmt]:
    """Each assignment's repeated subexpressions (``sympy.cse``) as locals t0, t1, ... first."""
    out: list[Stmt] = []
    for s in body:
        if isinstance(s, Loop):
            out.append(replace(s, body=common_subexpressions(s.body)))
        elif isinstance(s, Assign):
            pairs, (reduced,) = sp.cse([s.expr], symbols=sp.numbered_symbols("t", real=True), order="none")
            out += [Assign(t, v) for t, v in pairs]
            out.append(replace(s, expr=reduced))
        else:
            out.append(s)
    return out


PASSES = (inline_single_use, fuse_loops, hoist_sample_reads, pair_samples, common_subexpressions)


def run(body: list[Stmt], passes: Sequence[Callable[[list[Stmt]], list[Stmt]]] = PASSES) -> list[Stmt]:
    for p in passes:
        body = p(body)
    return body


__all__ = ["PASSES", "run", "inline_single_use", "fuse_loops", "hoist_sample_reads", "pair_samples",
           "common_subexpressions", "sample_local", "Ix"]
