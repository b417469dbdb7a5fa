"""SymPy functions with numpy's semantics, for ops SymPy has no faithful function for.

SymPy's own ``sign``, ``floor``, ``ceiling``, ``atan2`` and ``erfc`` evaluate on
construction: ``floor(x + 1) -> floor(x) + 1`` (wrong in floating point at x = -1e-17),
``erfc(-x) -> 2 - erfc(x)`` (0 instead of 2e-45 at x = -10), ``atan2(y, 2) -> atan(y/2)``, and
SymPy's ``sign`` prints as ``copysign`` (+-1 at NaN, where numpy gives NaN). The classes here
never rewrite themselves: each is applied as written, like a numpy ufunc.

- ``_imp_`` is the numpy function (float64): ``fold.numeric`` computes an op of constants
  with it (lambdify puts ``_imp_`` in its namespace).
- ``codegen/printer.py`` prints each for Numba (``_print_Sign`` ...), CPU and CUDA.
- ``fdiff``: the partials, with torch's conventions (``sympy.diff`` uses them, in a
  ``gc.function`` body too; the registry's ``arctan2`` and ``hypot`` take them as written).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sympy as sp

from .fold import AsWritten, Quotient


def _numpy(fn: Any) -> Any:
    """``_imp_`` for ``fn``: float64 arguments (lambdify passes numpy scalars, evalf SymPy Floats)."""
    return staticmethod(lambda *args: fn(*(np.asarray(a, dtype=np.float64) for a in args)))


class NumpyFunction(AsWritten):
    """A real function of real arguments that SymPy applies as written (no ``eval`` rewrites)."""

    numpy_name = ""  # how str() and explain show it: numpy's name

    def _sympystr(self, printer: Any) -> str:
        return f"{self.numpy_name}({', '.join(printer._print(a) for a in self.args)})"

    def _latex(self, printer: Any) -> str:
        args = ", ".join(printer._print(a) for a in self.args)
        return rf"\operatorname{{{self.numpy_name}}}{{\left({args}\right)}}"


class Steps(NumpyFunction):
    """A piecewise-constant function of one argument: derivative 0 everywhere (torch's)."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.Integer(0)


class Sign(Steps):
    """numpy's sign: -1, 0 or 1; NaN at NaN (SymPy's sign would print copysign: +-1 at NaN)."""

    numpy_name = "sign"
    _imp_ = _numpy(np.sign)


class Floor(Steps):
    numpy_name = "floor"
    _imp_ = _numpy(np.floor)


class Ceil(Steps):
    numpy_name = "ceil"
    _imp_ = _numpy(np.ceil)


class Rint(Steps):
    """Round half to even, like ``np.round``/``np.rint``: rint(2.5) = 2, rint(-0.5) = -0.0."""

    numpy_name = "round"
    _imp_ = _numpy(np.rint)


class Erfc(NumpyFunction):
    """erfc, without SymPy's ``erfc(-x) -> 2 - erfc(x)`` (which cancels in the tail)."""

    nargs = 1
    numpy_name = "erfc"
    _imp_ = _numpy(np.vectorize(math.erfc, otypes=[float]))

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        z = self.args[0]
        return -2 * sp.exp(-(z**2)) / sp.sqrt(sp.pi)


class Atan2(NumpyFunction):
    """``arctan2(y, x)``: the angle of (x, y), numpy's signed zeros and infinities included."""

    nargs = 2
    numpy_name = "arctan2"
    _imp_ = _numpy(np.arctan2)

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        # x/(x*x + y*y) and -y/(x*x + y*y); 0 where x*x + y*y is 0 (torch masks the 0/0 at the origin)
        y, x = self.args
        r = x**2 + y**2
        return sp.Piecewise((0, sp.Eq(r, 0)), (Quotient(x, r) if argindex == 1 else -Quotient(y, r), True))


class Hypot(NumpyFunction):
    """``hypot(a, b) = sqrt(a*a + b*b)`` without overflow or underflow; inf if either is inf."""

    nargs = 2
    numpy_name = "hypot"
    _imp_ = _numpy(np.hypot)

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return Quotient(self.args[argindex - 1], self)  # 0/0 = nan at (0, 0), as torch
