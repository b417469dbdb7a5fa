"""Shared fixtures. Generated code goes to a private cache for the whole test session.

Under pytest-xdist each worker is a session of its own with a cache of its own: the workers
inherit the controller's environment, so a cache directory this file made in the controller
is replaced in each worker (tests assert cache misses, hits and which Numba signatures a
module has compiled, as one process sees them). A GRAPHC_CACHE_DIR set by the caller is kept.
"""

import math
import os
import shutil
import tempfile

import numpy as np
import pytest

_OWNED = "GRAPHC_TEST_OWNED_CACHE_DIR"  # the directory below was made here, not by the caller
if "GRAPHC_CACHE_DIR" not in os.environ or os.environ.get(_OWNED) == os.environ["GRAPHC_CACHE_DIR"]:
    _worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    _CACHE = tempfile.mkdtemp(prefix=f"graphc-test-cache-{_worker}-")
    os.environ["GRAPHC_CACHE_DIR"] = os.environ[_OWNED] = _CACHE
else:
    _CACHE = None

import graphc as gc  # noqa: E402


def pytest_unconfigure(config):
    """Remove the cache this process made (the controller's under xdist was never used)."""
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)


# ---- pytest-xdist (make test: -n <cores> --dist loadfile --no-loadscope-reorder) -------------
# loadfile keeps each file on one worker, so its module- and session-scoped compiled fixtures
# are built once. (loadgroup would allow finer units, but pytest-xdist 3.8 tags a test's group
# onto item._nodeid, which pytest 9 no longer reads: every test became a unit of its own.)
# The files below, most expensive first (seconds of compiling, measured in one process), are
# handed out first, so that no long file starts last; the rest follow in collection order.
# Only the order changes, never what a test checks; without xdist the order is pytest's own.
HEAVY = [
    "tests/test_nn.py", "tests/test_optim.py", "tests/test_docs.py", "tests/test_blocked.py",
    "tests/test_lsq_dense.py", "tests/test_conformance.py", "tests/test_inspect.py", "tests/test_mathlib.py",
    "tests/test_numerics.py", "tests/test_batches.py", "tests/test_latency.py", "tests/test_bench.py",
    "tests/test_properties.py",
]


def _heavy_files_first(items) -> None:
    rank = {path: i for i, path in enumerate(HEAVY)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))  # stable


def pytest_collection_modifyitems(config, items):
    """CUDA tests run in their own process, with NUMBA_ENABLE_CUDASIM=1 set before numba loads."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _heavy_files_first(items)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return
    skip = pytest.mark.skip(reason="cuda tests run under NUMBA_ENABLE_CUDASIM=1 in their own process")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def sine_data():
    x = np.linspace(-math.pi, math.pi, 2000)
    return x, np.sin(x)


@pytest.fixture(scope="session")
def cubic():
    """The tutorial's model: loss = sum((a + b x + c x^2 + d x^3 - y)^2)."""
    x, y = gc.data("x"), gc.data("y")
    a, b, c, d = gc.params("a b c d")
    return gc.sum((a + b * x + c * x**2 + d * x**3 - y) ** 2)


@pytest.fixture(scope="session")
def cubic_cpu(cubic):
    return gc.compile(cubic, target="cpu")
