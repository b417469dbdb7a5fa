"""Rich display in a notebook (graphc/tools/notebook.py): what Jupyter shows for a compiled loss,
a forward function and a fit."""

from __future__ import annotations

import base64
import importlib.util

import numpy as np
import pytest

import graphc as gc


@pytest.fixture(scope="module")
def fitted():
    x, y = gc.data("x"), gc.data("y")
    a, b = gc.params("a b")
    loss = gc.sum((a + b * x - y) ** 2)
    xs = np.linspace(-1, 1, 30)
    res = gc.fit(loss, data={"x": xs, "y": 2 * xs}, init={"a": 0.0, "b": 0.0}, optimizer=gc.SGD(lr=0.01),
                 steps=200, log_every=50)
    return loss, x, a, b, res


def test_a_compiled_loss_shows_its_maths_and_source(fitted):
    loss = fitted[0]
    f = gc.compile(loss)
    md = f._repr_markdown_()
    assert "target `cpu`" in md and "`a`, `b`" in md
    assert "$$\n" in md and f.latex() in md  # the loss and gradients as LaTeX
    assert "```python\n" + f.source.splitlines()[0] in md and "def evaluate(" in md


def test_a_forward_function_shows_its_outputs(fitted):
    _, x, a, b, _ = fitted
    g = gc.compile(gc.stack([a + b * x, b * x], axis=1))
    md = g._repr_markdown_()
    assert "forward function" in md and "`(N, 2)`" in md and "def forward(" in md


def test_a_fit_shows_its_parameters_and_loss_curve(fitted):
    res = fitted[4]
    md = res._repr_markdown_()
    assert f"{res.steps} steps" in md and "| `a` |" in md and "| `b` |" in md
    page = res._repr_html_()
    assert "<table>" in page and "<code>b</code>" in page
    if importlib.util.find_spec("matplotlib") is None:
        assert "<img" not in page
    else:
        png = page.split("base64,")[1].split('"')[0]
        assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"
