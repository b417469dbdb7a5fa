"""The result of a least-squares fit: scipy's fields, and what fitters read (covariance,
standard errors, correlations), computed on first access from J^T J at the solution."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

# MINPACK's info -> scipy's status and message (scipy.optimize.least_squares, method="lm")
SCIPY_STATUS = {1: 2, 2: 3, 3: 4, 4: 1, 5: 0, 6: 2, 7: 3, 8: 1}
MESSAGES = {
    0: "The maximum number of function evaluations is exceeded.",
    1: "`gtol` termination condition is satisfied.",
    2: "`ftol` termination condition is satisfied.",
    3: "`xtol` termination condition is satisfied.",
    4: "Both `ftol` and `xtol` termination conditions are satisfied.",
}
AT_PRECISION = {6: "ftol", 7: "xtol", 8: "gtol"}  # MINPACK: no further progress is possible


def message(info: int) -> str:
    text = MESSAGES[SCIPY_STATUS[info]]
    if info in AT_PRECISION:
        text += f" (at machine precision: `{AT_PRECISION[info]}` is too small for further progress)"
    return text


@dataclass(eq=False)
class LeastSquaresResult:
    """What ``gc.least_squares`` found. Like ``scipy.optimize.OptimizeResult``:

    ``params`` ({name: float | ndarray}), ``x`` (the same, flat, in ``names`` order: init's),
    ``cost`` (0.5 * sum of the (weighted, robust) squared residuals), ``grad`` (d cost / d x),
    ``optimality`` (max |grad|), ``status``/``message``/``success`` (scipy's codes), ``steps``
    (= ``nfev`` = ``njev``: evaluations, each one fused pass giving the residuals and the
    Jacobian's products), ``history`` ([(evaluation, cost)] at every accepted point).
    Fitters' statistics: ``covariance`` (s^2 (J^T J)^-1, s^2 = 2 cost / (m - P), or
    (J^T J)^-1 with ``absolute_sigma``), ``stderr`` ({name: float | ndarray}), ``correlation``,
    ``dof`` (m - P); ``jtj`` is J^T J at the solution. ``seconds``: the compiled fit's run time;
    ``timings``: the compile stages' (``numba``: first call only) and ``total``.
    """

    x: np.ndarray
    names: list[str]
    shapes: dict[str, tuple]
    cost: float
    grad: np.ndarray
    jtj: np.ndarray
    status: int
    message: str
    nfev: int
    trace: np.ndarray = field(repr=False)  # per evaluation: (cost, accepted)
    m: int  # residuals
    absolute_sigma: bool = False
    seconds: float = 0.0
    timings: dict[str, Any] = field(repr=False, default_factory=dict)
    source: str = field(repr=False, default="")

    @cached_property
    def params(self) -> dict[str, Any]:
        return self._per_param(self.x)

    @cached_property
    def history(self) -> list[tuple[int, float]]:
        """(evaluation, cost) of the points the fit accepted, the initial one first."""
        return [(int(k), float(self.trace[k, 0])) for k in np.flatnonzero(self.trace[:self.nfev, 1])]

    @property
    def success(self) -> bool:
        return self.status > 0

    @property
    def steps(self) -> int:
        return self.nfev

    @property
    def njev(self) -> int:
        return self.nfev

    @property
    def optimality(self) -> float:
        return float(np.max(np.abs(self.grad))) if self.grad.size else 0.0

    @property
    def dof(self) -> int:
        return self.m - len(self.x)

    @cached_property
    def covariance(self) -> np.ndarray:
        """s^2 pinv(J^T J) as curve_fit computes it (inf where m <= P), in ``names`` order."""
        inverse = pseudo_inverse(self.jtj)
        if self.absolute_sigma:
            return inverse
        if self.dof <= 0:
            warnings.warn("least_squares: as many parameters as residuals or more; the covariance "
                          "cannot be estimated (inf)", RuntimeWarning, stacklevel=2)
            return np.full_like(inverse, np.inf)
        return inverse * (2.0 * self.cost / self.dof)

    @cached_property
    def stderr(self) -> dict[str, Any]:
        """Standard errors: sqrt of the covariance's diagonal, per parameter."""
        return self._per_param(np.sqrt(np.diag(self.covariance)))

    @cached_property
    def correlation(self) -> np.ndarray:
        cov = self.covariance
        d = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            return cov / np.outer(d, d)

    def _per_param(self, flat: np.ndarray) -> dict[str, Any]:
        out, k = {}, 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            chunk = flat[k:k + size]
            out[name] = float(chunk[0]) if not shape else np.array(chunk).reshape(shape)
            k += size
        return out

    def __repr__(self) -> str:
        return (f"LeastSquaresResult(params={self.params!r}, cost={self.cost!r}, success={self.success}, "
                f"status={self.status}, nfev={self.nfev}, message={self.message!r})")


def pseudo_inverse(a: np.ndarray) -> np.ndarray:
    """pinv of the symmetric positive semi-definite ``a``, after scaling it to a unit diagonal
    (the scaling removes the badly scaled parameters' share of the condition number).
    Directions with eigenvalues below the float64 noise of ``a`` are dropped, as curve_fit drops
    J's small singular values, with a warning."""
    d = np.sqrt(np.diag(a)).copy()
    d[~(d > 0)] = 1.0
    scaled = a / np.outer(d, d)
    w, v = np.linalg.eigh(scaled)
    keep = w > np.finfo(float).eps * max(a.shape[0], 1) * max(w.max(initial=0.0), 0.0)
    if not keep.all():
        warnings.warn(f"least_squares: J^T J is singular at the solution (rank {int(keep.sum())} of "
                      f"{a.shape[0]}); the covariance is its pseudo-inverse", RuntimeWarning, stacklevel=3)
    inv = (v[:, keep] / w[keep]) @ v[:, keep].T
    return inv / np.outer(d, d)
