"""Shared fixtures. Generated code goes to a private cache for the whole test session."""

import math
import os
import tempfile

import numpy as np
import pytest

os.environ.setdefault("GRAPHC_CACHE_DIR", tempfile.mkdtemp(prefix="graphc-test-cache-"))

import graphc as gc  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """CUDA tests run in their own process, with NUMBA_ENABLE_CUDASIM=1 set before numba loads."""
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
