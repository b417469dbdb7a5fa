"""Threads: make compiled functions safe to call from several Python threads at once.

``parallel`` code runs on Numba's threading layer. Its fallback layer, ``workqueue``, is not
threadsafe: two Python threads calling parallel code at once abort the whole process. At
import, graphc asks Numba for a threadsafe layer (TBB or OpenMP) when one is installed and
the user has not chosen a layer; where only ``workqueue`` is left, ``guard`` serializes
calls into parallel code with one lock. ``cpu`` code releases the GIL and needs no lock.

BLAS: a blocked plan's contractions are ``np.dot``, which Numba runs on SciPy's BLAS, and that
BLAS (OpenBLAS) starts threads of its own. The ``cpu`` target is one core, and ``parallel``
already runs one block per core (its threads would multiply), so while generated code that
may call BLAS runs, ``guard(target, blas=True)`` sets SciPy's OpenBLAS to one thread and
then back to what it was (process-wide, counted: concurrent calls restore it once, after the
last). Measured on 2 cores, least squares' dense path (300 parameters, N = 2e4, one warm fit):
0.47 s with OpenBLAS's two threads on an idle machine, 1.3-1.5 s with another process busy on
one core, 0.74 s with one thread either way. Another BLAS (MKL, a system OpenBLAS without
these functions) is left alone: ``blas_threads()`` returns None there.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import os
import threading
from contextlib import nullcontext
from typing import Any, ContextManager

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


def guard(target: str, blas: bool = False) -> ContextManager[object]:
    """Context for one call into generated code: the lock for parallel code on workqueue, and
    with ``blas`` (the code may call np.dot: a blocked plan) SciPy's BLAS on one thread."""
    lock = targets.get(target).threaded and needs_lock()
    if blas and _blas() is not None:
        return _Pinned(lock)
    return _LOCK if lock else nullcontext()


def one_blas_thread(blas: bool = True) -> ContextManager[object]:
    """SciPy's BLAS on one thread for one call (``blas``: the code may call np.dot), with no
    target's lock: a Dask chunk task, which runs one core's share."""
    return _Pinned(False) if blas and _blas() is not None else nullcontext()


class _Pinned:
    """The workqueue lock (if ``lock``) and one BLAS thread, for one call."""

    __slots__ = ("lock",)

    def __init__(self, lock: bool) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        if self.lock:
            _LOCK.acquire()
        _BLAS_PIN.enter()

    def __exit__(self, *exc: Any) -> None:
        _BLAS_PIN.exit()
        if self.lock:
            _LOCK.release()


@functools.lru_cache(maxsize=None)
def _blas() -> tuple[Any, Any] | None:
    """SciPy's OpenBLAS thread count (get, set), which Numba's np.dot uses (it calls
    scipy.linalg.cython_blas), or None: no SciPy, or a BLAS without OpenBLAS's functions.
    The symbols are looked up from cython_blas's module, so in the library it is linked to."""
    try:
        from scipy.linalg import cython_blas
        library = ctypes.CDLL(cython_blas.__file__)
    except (ImportError, OSError):  # pragma: no cover - depends on the installation
        return None
    for prefix in ("scipy_openblas", "openblas"):  # SciPy's wheels; a SciPy built on OpenBLAS
        try:
            get, set_ = getattr(library, f"{prefix}_get_num_threads"), getattr(library, f"{prefix}_set_num_threads")
        except AttributeError:
            continue
        get.restype, get.argtypes = ctypes.c_int, []
        set_.restype, set_.argtypes = None, [ctypes.c_int]
        return get, set_
    return None  # pragma: no cover - MKL, Accelerate, ...


def blas_threads() -> int | None:
    """The threads SciPy's BLAS uses now (one while generated code runs), or None where
    graphc cannot set them."""
    found = _blas()
    return None if found is None else int(found[0]())


class _BlasPin:
    """Counted: the first of concurrent calls saves the thread count and sets one, the last
    puts it back."""

    def __init__(self) -> None:
        self.lock, self.depth, self.saved = threading.Lock(), 0, 1

    def enter(self) -> None:
        get, set_ = _blas()  # type: ignore[misc]
        with self.lock:
            if self.depth == 0:
                self.saved = get()
                if self.saved != 1:
                    set_(1)
            self.depth += 1

    def exit(self) -> None:
        _, set_ = _blas()  # type: ignore[misc]
        with self.lock:
            self.depth -= 1
            if self.depth == 0 and self.saved != 1:
                set_(self.saved)


_BLAS_PIN = _BlasPin()
