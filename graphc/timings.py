"""``Timings``: seconds per pipeline stage of one compiled function (``f.timings``)."""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, ContextManager, Iterator


class Timings(dict):
    """Seconds per pipeline stage, plus ``cache``: 'hit' or 'miss'."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - start


def stages(timings: "Timings | None") -> Callable[[str], ContextManager[Any]]:
    """``timings.stage``, or a context that times nothing (a stage called without Timings)."""
    return timings.stage if timings is not None else lambda name: nullcontext()
