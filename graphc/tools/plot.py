"""Plots of a training run (matplotlib, an optional extra: pip install 'graphc[plot]')."""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import GraphcError


def _pyplot() -> Any:
    try:
        import matplotlib

        if os.environ.get("MPLBACKEND") is None and not os.environ.get("DISPLAY"):
            matplotlib.use("Agg")  # no display: draw to files only
        import matplotlib.pyplot as plt
    except ImportError:
        raise GraphcError("plotting needs matplotlib: pip install 'graphc[plot]'") from None
    return plt


def _finish(plt: Any, fig: Any, ax: Any, path: Any) -> Any:
    ax.grid(True, alpha=0.3)
    if path is not None:
        fig.savefig(os.fspath(path), dpi=100, bbox_inches="tight")
        plt.close(fig)
    return ax


def plot_history(result: Any, path: Any = None, ax: Any = None) -> Any:
    """The logged loss against the step (and the validation loss, if the fit had val_data),
    log scale; saved to ``path`` if given. Returns the Axes."""
    if not result.history:
        raise GraphcError("plot_history: the run logged no losses (steps < log_every?)")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4)) if ax is None else (ax.figure, ax)
    steps, losses = zip(*result.history)
    ax.plot(steps, losses, marker=".", label="training")
    val = getattr(result, "val_history", None) or []  # fit(val_data=...): the held-out loss too
    if val:
        ax.plot(*zip(*val), marker=".", label="validation")
        ax.legend()
    if all(v > 0 for v in losses) and all(v > 0 for _, v in val):
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="loss", title=f"{type(result.optimizer).__name__}: loss")
    return _finish(plt, fig, ax, path)


def plot_fit(x: Any, y: Any, model: Callable[..., Any] | np.ndarray, params: Mapping[str, Any] | None = None,
             path: Any = None, ax: Any = None, label: str = "model") -> Any:
    """Data ``(x, y)`` as points and the model as a line, for 1-D inputs.

    ``model`` is the model's predictions at ``x`` (an array) or a function computing them:
    ``model(x)``, or ``model(x, **params)`` when ``params`` (e.g. ``res.params``) is given.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or y.shape != x.shape:
        raise GraphcError(f"plot_fit: x and y must be 1-D of the same length, "
                          f"got shapes {x.shape} and {y.shape}")
    if callable(model):
        pred = model(x, **params) if params is not None else model(x)
    else:
        pred = model
    pred = np.broadcast_to(np.asarray(pred, dtype=float), x.shape)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4)) if ax is None else (ax.figure, ax)
    order = np.argsort(x)
    ax.plot(x, y, ".", markersize=3, alpha=0.5, label="data")
    ax.plot(x[order], pred[order], "-", linewidth=2, label=label)
    ax.set(xlabel="x", ylabel="y", title="data vs model")
    ax.legend()
    return _finish(plt, fig, ax, path)
