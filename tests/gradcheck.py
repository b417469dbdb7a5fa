"""One gradient check, used everywhere: central differences along a random direction."""

from __future__ import annotations

import numpy as np


def directional_derivatives(f, bindings: dict, wrt: list[str], seed: int = 0):
    """Central difference and <grad, v> along a random direction v; returns them, f's result and eps."""
    rng = np.random.default_rng(seed)
    r = f(bindings)
    direction = {k: rng.standard_normal(np.shape(bindings[k])) for k in wrt}
    eps = 1e-6 * max(1.0, *(float(np.max(np.abs(bindings[k]))) for k in wrt))

    def moved(sign: float) -> float:
        shifted = dict(bindings)
        for k in wrt:
            shifted[k] = np.asarray(bindings[k], dtype=float) + sign * eps * direction[k]
        return f(shifted).loss

    numeric = (moved(1.0) - moved(-1.0)) / (2 * eps)
    analytic = sum(float(np.sum(np.asarray(r.grads[k]) * direction[k])) for k in wrt)
    return numeric, analytic, r, eps


def directional_check(f, bindings: dict, wrt: list[str], rtol: float = 1e-6, seed: int = 0) -> tuple[float, float]:
    """Assert (L(p + eps v) - L(p - eps v)) / 2 eps == <grad L(p), v> for a random v; return both."""
    numeric, analytic, r, eps = directional_derivatives(f, bindings, wrt, seed)
    # central differences carry ~1e-10 |L| / eps of rounding: allow for it
    atol = 1e-9 * max(1.0, abs(r.loss)) / eps * 1e-6
    assert abs(numeric - analytic) <= rtol * max(abs(numeric), abs(analytic)) + atol, (numeric, analytic)
    return numeric, analytic
