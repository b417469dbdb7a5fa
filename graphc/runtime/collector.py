"""The cyclic garbage collector, paused while graphc makes many long-lived objects at once.

Importing Numba and SymPy, and Numba's first compile in a process (which loads its typing and
lowering registries), create hundreds of thousands of objects that live as long as the
process. The collector scanning them again and again while they are made cost about 0.3 s of
the import and 0.1-0.2 s of the first compile of a cold start; so it pauses during ``import
graphc`` and during the first call of each generated function (where Numba compiles), and what
exists at the end of the import is frozen (``gc.freeze``: left out of later collections; cyclic
garbage among those objects is never reclaimed). ``GRAPHC_GC_FREEZE=0`` leaves it alone.
"""

from __future__ import annotations

import contextlib
import gc
import os
from typing import Iterator

ENABLED = os.environ.get("GRAPHC_GC_FREEZE", "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection inside the block (reference counting still frees objects)."""
    was = gc.isenabled()
    if ENABLED:
        gc.disable()
    try:
        yield
    finally:
        if ENABLED and was:
            gc.enable()


def freeze() -> None:
    if ENABLED:
        gc.freeze()
