"""Large data: 64-bit sample indices (more than 2**31 samples) and long float32 sums.

The 2**31-sample inputs are stride-0 views (np.broadcast_to): a few bytes of memory, which
binding must not copy (it would be 16 GB). The loss is chosen so that every term is exactly
1.0: the result is then the exact sample count, which proves every sample was visited once.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

from . import strategies  # noqa: F401 - private cache dir when run alone

BIG = 2**31 + 7  # more samples than an int32 index can count


def line():
    x, y = gc.data("x"), gc.data("y")
    a, b = gc.params("a b")
    return gc.sum((a + b * x - y) ** 2)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_more_than_2_to_the_31_samples(target):
    f = gc.compile(line(), target=target)
    x = np.broadcast_to(np.float64(0.5), (BIG,))
    y = np.broadcast_to(np.float32(1.0), (BIG,))  # converted without materializing
    arrays, _ = f.bind(x=x, y=y, a=1.0, b=2.0)
    assert [arr.strides for arr in arrays] == [(0,), (0,)]  # no 16 GB copy
    r = f(x=x, y=y, a=1.0, b=2.0)  # each residual is 1 + 2*0.5 - 1 = 1 exactly
    assert r.loss == float(BIG)
    assert r.grads == {"a": 2.0 * BIG, "b": float(BIG)}


@pytest.fixture(scope="module")
def ten_million():
    rng = np.random.default_rng(11)
    x = rng.uniform(0.0, 1.0, 10**7).astype(np.float32)
    y = rng.uniform(-1.0, 0.0, 10**7).astype(np.float32)
    return x, y


@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_float32_sums_over_ten_million_samples(ten_million, target):
    """float32 data and parameters; the sums stay within 1e-6 of float64 on the same values."""
    x, y = ten_million
    a, b = np.float32(0.75), np.float32(-0.5)
    r = gc.compile(line(), target=target, dtype="float32")(x=x, y=y, a=a, b=b)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    res = float(a) + float(b) * x64 - y64  # positive: no cancellation hides the error
    assert r.loss == pytest.approx(np.sum(res**2), rel=1e-6)
    assert r.grads["a"] == pytest.approx(np.sum(2 * res), rel=1e-6)
    assert r.grads["b"] == pytest.approx(np.sum(2 * res * x64), rel=1e-6)
