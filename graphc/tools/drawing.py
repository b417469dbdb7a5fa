"""Inspection: the graph as a picture. ``to_dot`` writes Graphviz DOT text (no dependency);
``draw`` renders it to SVG or PNG with the ``graphviz`` package and its ``dot`` program."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..ir import ops
from ..errors import GraphcError
from ..ir.graph import Graph, Node, format_shape

# fill colours: data, parameters, constants (the inputs a reader looks for first)
_LEAF_STYLE = {
    "data": 'shape=box, style=filled, fillcolor="#dbeafe"',
    "param": 'shape=box, style="filled,rounded", fillcolor="#fde68a"',
    "const": 'shape=plaintext',
}


def to_dot(what: Any, title: str = "graphc") -> str:
    """Graphviz DOT text of a graph: ``what`` is an expression (or a tuple of them), a
    ``gc.Graph``, or anything compiled (``gc.compile(...)``, ``res.compiled``). One node per
    graph node, labelled with its op and shape; data are blue boxes, parameters yellow, the
    outputs drawn with a double border; edges run from inputs to users, numbered by argument
    where an op takes several. Render it with ``dot -Tsvg``, or ``gc.draw``."""
    graph = Graph.from_outputs(*_outputs(what))
    ids = {id(node): f"n{k}" for k, node in enumerate(graph.nodes)}
    outputs = {id(node) for node in graph.outputs}
    lines = [f"digraph {_quote(title)} {{", "  rankdir=BT;",
             '  node [fontname="Helvetica", fontsize=10, shape=ellipse];',
             '  edge [fontname="Helvetica", fontsize=8, arrowsize=0.6];']
    for node in graph.nodes:
        style = _LEAF_STYLE.get(node.op, "")
        if id(node) in outputs:
            style = ", ".join(s for s in (style, "peripheries=2") if s)
        lines.append(f"  {ids[id(node)]} [label={_quote(_label(node))}{', ' + style if style else ''}];")
    for node in graph.nodes:
        for k, arg in enumerate(node.inputs):
            number = f" [label={_quote(str(k))}]" if len(node.inputs) > 1 else ""
            lines.append(f"  {ids[id(arg)]} -> {ids[id(node)]}{number};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(what: Any, path: str | Path | None = None, format: str | None = None) -> bytes:  # noqa: A002
    """The graph rendered by Graphviz: SVG or PNG bytes (``format``: "svg", "png", ...;
    default from ``path``'s suffix, else "svg"), also written to ``path`` if given. Needs the
    ``graphviz`` Python package and Graphviz's ``dot`` program; without them a GraphcError
    says so (``to_dot`` needs neither)."""
    fmt = format or (Path(path).suffix.lstrip(".") if path is not None and Path(path).suffix else "svg")
    try:
        import graphviz
    except ImportError:
        raise GraphcError("gc.draw needs the graphviz package (pip install graphviz) and Graphviz's dot "
                          "program; gc.to_dot(...) gives the DOT text without them") from None
    try:
        picture = graphviz.Source(to_dot(what)).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise GraphcError("gc.draw: Graphviz's dot program is not installed (apt install graphviz, "
                          "brew install graphviz); gc.to_dot(...) gives the DOT text") from None
    if path is not None:
        Path(path).write_bytes(picture)
    return picture


def _outputs(what: Any) -> tuple[Node, ...]:
    if isinstance(what, Node):
        return (what,)
    if isinstance(what, (tuple, list)) and what and all(isinstance(w, Node) for w in what):
        return tuple(what)
    if isinstance(what, Graph):
        return what.outputs
    plan = getattr(what, "plan", what)  # a compiled function, or its plan
    results = getattr(plan, "results", None)  # a forward function's outputs
    if results:
        return tuple(results)
    if isinstance(getattr(plan, "loss", None), Node):
        return (plan.loss,)
    raise GraphcError("to_dot: expected an expression, a graph or a compiled function, "
                      f"got {type(what).__name__}")


def _label(node: Node) -> str:
    shape = format_shape(node.shape) if node.shape else ""
    if node.op in ("data", "param"):
        return f"{node.name}\n{shape or 'scalar'}"
    if node.op == "const":
        value = node.attr("value")
        return str(node) if value.ndim == 0 else f"const {format_shape(value.shape)}"
    return "\n".join(part for part in (_op_text(node), shape) if part)


def _op_text(node: Node) -> str:
    if node.op == "elementwise":
        fn = node.attr("fn")
        return fn.infix or fn.name
    if node.op in ("sum", "mean"):
        axes = node.attr("axes")
        if len(axes) == node.inputs[0].ndim:
            return node.op
        return f"{node.op} axis={axes[0] if len(axes) == 1 else axes}"
    if node.op == "index":
        return f"[{ops._key_text(node.attr('key'))}]"
    if node.op == "einsum":
        return f"einsum {','.join(node.attr('ins'))}->{node.attr('out')}"
    if node.op == "transpose":
        return f"transpose {node.attr('perm')}"
    attrs = " ".join(f"{k}={v}" for k, v in node.attrs if isinstance(v, (int, str, tuple)))
    text = f"{node.op} {attrs}".rstrip()
    return text if len(text) <= 40 else text[:37] + "..."


def _quote(text: str) -> str:
    """A DOT string literal (labels are built from validated names and graphc's own text)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


__all__ = ["draw", "to_dot"]
