"""Threads: make compiled functions safe to call from several Python threads at once.

``parallel`` code runs on Numba's threading layer. Its fallback layer, ``workqueue``, is not
threadsafe: two Python threads calling parallel code at once abort the whole process. At
import, graphc asks Numba for a threadsafe layer (TBB or OpenMP) when one is installed and
the user has not chosen a layer; where only ``workqueue`` is left, ``guard`` serializes
calls into parallel code with one lock. ``cpu`` code releases the GIL and needs no lock.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from contextlib import nullcontext
from typing import ContextManager

import numba

from .. import targets

SAFE_LAYERS = ("tbb", "omp")
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def available_layers() -> tuple[str, ...]:
    """The threadsafe layers whose libraries load here (``omp`` needs libgomp, ``tbb`` libtbb)."""
    found = []
    for layer in SAFE_LAYERS:
        try:
            importlib.import_module(f"numba.np.ufunc.{layer}pool")
        except (ImportError, OSError):
            continue
        found.append(layer)
    return tuple(found)


def configure() -> None:
    """Choose a threadsafe layer unless the user set NUMBA_THREADING_LAYER or Numba started one."""
    if os.environ.get("NUMBA_THREADING_LAYER") or numba.config.THREADING_LAYER != "default":
        return
    if _launched() is None and available_layers():
        numba.config.THREADING_LAYER = "threadsafe"  # tbb, else omp (Numba's own order)


def _launched() -> str | None:
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel code has run yet
        return None


def needs_lock() -> bool:
    """Whether parallel calls must be serialized: the layer is (or will be) workqueue."""
    layer = _launched()
    if layer is not None:
        return layer == "workqueue"
    chosen = numba.config.THREADING_LAYER
    if chosen in ("safe", "tbb"):
        return False
    if chosen in ("threadsafe", "omp"):
        return not available_layers()
    return chosen == "workqueue" or not available_layers()


def guard(target: str) -> ContextManager[object]:
    """Context for one call into generated code: the lock for parallel code on workqueue."""
    return _LOCK if targets.get(target).threaded and needs_lock() else nullcontext()
