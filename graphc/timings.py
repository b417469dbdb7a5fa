"""``Timings``: seconds per pipeline stage of one compiled function (``f.timings``)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class Timings(dict):
    """Seconds per pipeline stage, plus ``cache``: 'hit' or 'miss'."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - start
