"""How compiled functions and fit results show in a notebook (Jupyter's rich display).

``Compiled``, ``Forward`` and ``FitResult`` have ``_repr_markdown_``: a heading, the loss and
its gradients as LaTeX (for a compiled loss), the parameters and losses (for a fit), and
the generated source in a fenced ``python`` block, which the notebook highlights. A fit's
``_repr_html_`` adds the loss curve as an inline PNG when matplotlib is installed. Nothing
here runs until a notebook asks for it.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

from ..ir.graph import format_shape

MAX_SOURCE_LINES = 400  # longer sources are cut, with a line saying how to see all of it


def _source_block(source: str) -> str:
    lines = source.splitlines()
    cut = len(lines) > MAX_SOURCE_LINES
    text = "\n".join(lines[:MAX_SOURCE_LINES])
    note = f"\n\n*(first {MAX_SOURCE_LINES} of {len(lines)} lines; `print(f.source)` shows all)*" if cut else ""
    return f"```python\n{text}\n```{note}"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    arr = np.asarray(v)
    return f"array of shape {arr.shape}" if arr.size > 6 else np.array2string(arr, precision=6)


def compiled_markdown(f: Any) -> str:
    """A compiled loss: target, parameters, the loss and gradients as LaTeX, the source."""
    head = (f"**graphc compiled function** &mdash; target `{f.target}`, dtype `{f.dtype}`, "
            f"schedule `{f.schedule}`; inputs {', '.join(f'`{n}`' for n in f.inputs) or '(none)'}; "
            f"parameters {', '.join(f'`{n}`' for n in f.params) or '(none)'}")
    try:
        maths = f"$$\n{f.latex()}\n$$"
    except Exception as err:  # noqa: BLE001 - a display never raises; say why the maths is missing
        maths = f"*(no LaTeX: {err})*"
    return "\n\n".join([head, maths, _source_block(f.source)])


def forward_markdown(g: Any) -> str:
    shapes = ", ".join(f"`{format_shape(r.shape)}`" for r in g.plan.results)
    head = (f"**graphc forward function** &mdash; target `{g.target}`, dtype `{g.dtype}`; outputs {shapes}; "
            f"inputs {', '.join(f'`{n}`' for n in g.inputs) or '(none)'}")
    return "\n\n".join([head, _source_block(g.source)])


def _fit_summary(res: Any) -> str:
    """Steps, time, optimizer, last loss and why the fit stopped, as plain text."""
    loss = f"{res.loss:.6g}" if res.loss is not None else "(not logged)"
    stopped = f", stopped: {res.stopped}" if res.stopped else ""
    return f"{res.steps} steps in {res.seconds:.3g} s, {type(res.optimizer).__name__}, last loss {loss}{stopped}"


def fit_markdown(res: Any) -> str:
    """A fit: steps, time, last loss, why it stopped, and the parameters."""
    lines = [f"**graphc fit** &mdash; {_fit_summary(res)}", "", "| parameter | value |", "|---|---|"]
    lines += [f"| `{name}` | {_value(v)} |" for name, v in res.params.items()]
    return "\n".join(lines)


def loss_curve_png(res: Any) -> str | None:
    """The loss curve as base64 PNG text, or None (no history, or no matplotlib)."""
    if not res.history:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from .plot import plot_history

    fig, ax = plt.subplots(figsize=(5, 3))
    plot_history(res, ax=ax)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def fit_html(res: Any) -> str:
    """The fit's summary as HTML, with the loss curve inline when matplotlib is there."""
    rows = "".join(f"<tr><td><code>{html.escape(n)}</code></td><td>{html.escape(_value(v))}</td></tr>"
                   for n, v in res.params.items())
    text = (f"<p><b>graphc fit</b> &mdash; {html.escape(_fit_summary(res))}</p>"
            f"<table><tr><th>parameter</th><th>value</th></tr>{rows}</table>")
    png = loss_curve_png(res)
    return text + (f'<img alt="loss curve" src="data:image/png;base64,{png}"/>' if png else "")
