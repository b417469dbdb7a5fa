"""Checkpoints: a fit's parameters, optimizer state and history in one ``.npz`` file.

``res.save(path)`` writes it; ``gc.load(path)`` (train.load, on ``read``) gives it back as a FitResult whose
``params``, ``optimizer`` and ``state`` continue training bit for bit:
``gc.fit(loss, data, init=ck.params, optimizer=ck.optimizer, state=ck.state, ...)``.
Nothing is pickled: arrays, and the optimizer as JSON text.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import fields
from typing import Any

import numpy as np

from ..errors import GraphcError
from .optim import OPTIMIZERS, SCHEDULES

FORMAT = "graphc-checkpoint"
VERSION = 1


class CheckpointError(GraphcError):
    """A checkpoint file is missing, unreadable, or of an unknown format version."""


def save(result: Any, path: Any) -> str:
    """Write ``result`` (a FitResult) to ``path``; '.npz' is appended if missing. Returns the path."""
    path = os.fspath(path)
    path = path if path.endswith(".npz") else path + ".npz"
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "dtype": np.array(result.dtype),
        "optimizer": np.array(json.dumps(_spec(result.optimizer))),
        "history": np.array(result.history, dtype=np.float64).reshape(-1, 2),
        "steps": np.array(result.steps),
        "seconds": np.array(result.seconds),
    }
    for name, value in result.params.items():
        arrays[f"param/{name}"] = np.asarray(value)
    for name, value in result.state.items():
        arrays[f"state/{name}"] = np.asarray(value)
    np.savez(path, **arrays)
    return path


def read(path: Any) -> dict[str, Any]:
    """The fields of the FitResult a checkpoint written by ``res.save(path)`` holds (all but
    the compiled module)."""
    try:
        with np.load(os.fspath(path), allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"cannot read checkpoint {os.fspath(path)!r}: {e}") from None
    if str(files.get("format", "")) != FORMAT:
        raise CheckpointError(f"{os.fspath(path)!r} is not a graphc checkpoint (no format tag {FORMAT!r})")
    version = int(files["version"])
    if version > VERSION:
        raise CheckpointError(f"{os.fspath(path)!r} has checkpoint format version {version}; "
                              f"this graphc reads versions up to {VERSION}")
    params = {k[6:]: (float(v) if v.ndim == 0 else v) for k, v in files.items() if k.startswith("param/")}
    state = {k[6:]: v for k, v in files.items() if k.startswith("state/")}
    if "count" in state:
        state["count"] = int(state["count"])
    history = [(int(t), float(v)) for t, v in files["history"]]
    optimizer = _optimizer(json.loads(str(files["optimizer"])))
    return dict(params=params, history=history, steps=int(files["steps"]), seconds=float(files["seconds"]),
                optimizer=optimizer, state=state, dtype=str(files["dtype"]))


def _spec(obj: Any) -> dict[str, Any] | None:
    if obj is None:
        return None
    out: dict[str, Any] = {"type": type(obj).__name__}
    for f in fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = _spec(v) if f.name == "schedule" else list(v) if isinstance(v, tuple) else v
    return out


def _optimizer(spec: dict[str, Any]) -> Any:
    kind = spec.pop("type")
    if kind not in OPTIMIZERS:
        raise CheckpointError(f"checkpoint names an unknown optimizer {kind!r}")
    sched = spec.pop("schedule", None)
    if sched is not None:
        spec["schedule"] = SCHEDULES[sched.pop("type")](**sched)
    if "betas" in spec:
        spec["betas"] = tuple(spec["betas"])
    return OPTIMIZERS[kind](**spec)
