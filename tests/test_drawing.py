"""The graph as a picture: gc.to_dot (DOT text, no dependency) and gc.draw (Graphviz). No Numba."""

import re
import shutil
import sys
import types

import numpy as np
import pytest

import graphc as gc
from graphc.tools import drawing

NODE = re.compile(r'^  (n\d+) \[label="((?:[^"\\]|\\.)*)"(?:, [^\]]+)?\];$')
EDGE = re.compile(r'^  (n\d+) -> (n\d+)(?: \[label="(\d+)"\])?;$')


def parse(text: str) -> tuple[dict, list]:
    """{id: label} and [(from, to, argument)] of to_dot's output; any other line fails."""
    lines = text.splitlines()
    assert lines[0] == 'digraph "graphc" {' and lines[-1] == "}"
    nodes, edges = {}, []
    for line in lines[1:-1]:
        if m := NODE.match(line):
            nodes[m[1]] = m[2]
        elif m := EDGE.match(line):
            edges.append((m[1], m[2], m[3]))
        else:
            assert line.split()[0] in ("rankdir=BT;", "node", "edge"), line
    return nodes, edges


def model():
    X, y = gc.data("X", shape=(None, 3)), gc.data("y")
    W, b = gc.param("W", (1, 3)), gc.param("b")
    return gc.mean((gc.flatten(X @ W.T) + b - y) ** 2)


def test_every_node_and_edge_once_with_names_shapes_and_argument_order():
    loss = model()
    nodes, edges = parse(gc.to_dot(loss))
    graph = gc.Graph.from_outputs(loss)
    assert len(nodes) == len(graph.nodes) and len(edges) == sum(len(n.inputs) for n in graph.nodes)
    labels = set(nodes.values())
    assert {"X\\n(N, 3)", "W\\n(1, 3)", "b\\nscalar", "y\\n(N,)", "mean", "2"} <= labels
    by_label = {v: k for k, v in nodes.items()}
    sub = by_label["-\\n(N,)"]
    assert (by_label["y\\n(N,)"], sub, "1") in edges  # y is the right operand of the subtraction
    assert f'{by_label["mean"]} [label="mean", peripheries=2];' in gc.to_dot(loss)  # the output


def test_compiled_functions_tuples_and_errors():
    x, a = gc.data("x"), gc.param("a")
    pred = gc.tanh(a * x)
    nodes, _ = parse(gc.to_dot((pred, gc.sum(pred))))
    assert len(nodes) == 5
    fake_plan = types.SimpleNamespace(loss=gc.sum(pred))  # what Compiled.plan / res.compiled.plan hold
    assert gc.to_dot(types.SimpleNamespace(plan=fake_plan)) == gc.to_dot(gc.sum(pred))
    with pytest.raises(gc.GraphcError, match="expected an expression"):
        gc.to_dot(np.ones(3))


def test_labels_of_comparisons_constants_and_user_functions():
    x = gc.data("x")
    nodes, _ = parse(gc.to_dot(gc.sum(gc.where(x > 0, x, -1.5))))
    assert ">\\n(N,)" in nodes.values() and "-1.5" in nodes.values()
    f = gc.function("P3", lambda z: (5 * z**3 - 3 * z) / 2)
    nodes, _ = parse(gc.to_dot(gc.sum(f(x))))
    assert "P3\\n(N,)" in nodes.values()
    assert drawing._quote('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'


def test_draw_without_graphviz_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz raises ImportError
    with pytest.raises(gc.GraphcError, match="pip install graphviz"):
        gc.draw(model())


def test_draw_hands_the_dot_text_to_graphviz(monkeypatch, tmp_path):
    seen = {}

    class Source:
        def __init__(self, text):
            seen["text"] = text

        def pipe(self, format):
            seen["format"] = format
            return b"<svg/>" if format == "svg" else b"\x89PNG"

    fake = types.SimpleNamespace(Source=Source, ExecutableNotFound=RuntimeError)
    monkeypatch.setitem(sys.modules, "graphviz", fake)
    loss = model()
    assert gc.draw(loss) == b"<svg/>" and seen["text"] == gc.to_dot(loss)
    assert gc.draw(loss, tmp_path / "g.png") == b"\x89PNG" and seen["format"] == "png"
    assert (tmp_path / "g.png").read_bytes() == b"\x89PNG"


def test_draw_renders_svg_with_real_graphviz(tmp_path):
    pytest.importorskip("graphviz")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot program is not installed")
    svg = gc.draw(model(), tmp_path / "model.svg")
    assert b"<svg" in svg and (tmp_path / "model.svg").exists()
