"""Expression printing shared by every target: SymPy -> Python that Numba compiles."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import sympy as sp
from sympy.printing.precedence import precedence
from sympy.printing.pycode import PythonCodePrinter

from ..ir import fold
from . import mathlib


class GraphcPrinter(PythonCodePrinter):
    """``PythonCodePrinter`` with exact floats and small powers written as products.

    ``vector_math=True``: ``exp``, ``tanh``, ``log`` and ``log1p`` print as calls to graphc's
    own ``_exp``, ``_tanh``, ``_log`` and ``_log1p`` (``mathlib.SYMPY``), which LLVM can
    vectorize, instead of ``math.exp`` ...; ``used`` collects the helpers printed, for
    ``mathlib.source(used)``. A helper with constants takes its local copy of them too:
    ``_tanh(x, tanh_c)``.
    """

    def __init__(self, vector_math: bool = False) -> None:
        super().__init__({"standard": "python3", "fully_qualified_modules": True})
        self.vector_math = vector_math
        self.used: set[str] = set()
        self._scopes: list[set[str]] = []

    @contextmanager
    def collecting(self) -> Iterator[set[str]]:
        """The helpers printed inside the ``with`` block (one generated function's: it binds
        their constants, ``mathlib.bindings``)."""
        scope: set[str] = set()
        self._scopes.append(scope)
        try:
            yield scope
        finally:
            self._scopes.remove(scope)

    def _print_vector_math(self, expr: sp.Function) -> str:
        helper = mathlib.SYMPY.get(type(expr)) if self.vector_math else None
        if helper is None or expr.args[0].is_number:  # a constant: libm, once
            return getattr(super(), f"_print_{type(expr).__name__}")(expr)
        self.use(helper)
        return mathlib.call(helper, self._print(expr.args[0]))

    _print_exp = _print_tanh = _print_log = _print_log1p = _print_vector_math

    def _print_Float(self, expr: sp.Float) -> str:
        return repr(float(expr))

    @property
    def _one(self) -> str:
        """The numerator of a reciprocal: ``1``, or a float32 one (an int would make it float64)."""
        return self._print(sp.S.One)

    def doprint(self, expr: sp.Expr, assign_to: str | None = None) -> str:
        while isinstance(expr, fold.Opaque):  # a whole right-hand side needs no parentheses
            expr = expr.args[0]
        return super().doprint(expr, assign_to)

    def _print_Opaque(self, expr: fold.Opaque) -> str:
        return fold.wrapped(self, expr.args[0])

    def _print_Quotient(self, expr: fold.Quotient) -> str:
        a, b = expr.args
        return f"{self.parenthesize(a, precedence(expr))}/{self.parenthesize(b, precedence(expr), strict=True)}"

    def _print_Terms(self, expr: sp.Expr) -> str:  # codegen.loops.Terms: a sum in written order
        return " + ".join(self.parenthesize(a, precedence(sp.Add(sp.Symbol("a"), sp.Symbol("b")))) for a in expr.args)

    def _print_Literal(self, expr: fold.Literal) -> str:
        v = expr.value
        return "-0.0" if v == 0 else "math.nan" if v != v else "math.inf" if v > 0 else "-math.inf"

    def _print_Max(self, expr: sp.Max) -> str:
        return self._extreme("_maximum", expr.args)

    def _print_Min(self, expr: sp.Min) -> str:
        return self._extreme("_minimum", expr.args)

    def _extreme(self, helper: str, args: tuple) -> str:
        """np.maximum / np.minimum as graphc's helper (mathlib's _maximum, _minimum: selects,
        NaN if either argument is NaN); more arguments nest, _maximum(a, _maximum(b, c)),
        so the text grows linearly with their number (a select written out repeats each
        argument: three classes' max was 4 copies of the inner one, ten classes' 4**9)."""
        self.use(helper)
        a, rest = self._print(args[0]), args[1:]
        b = self._extreme(helper, rest) if len(rest) > 1 else self._print(rest[0])
        return f"{helper}({a}, {b})"

    def use(self, helper: str) -> None:
        """Note that the function being printed calls ``helper`` (the module gets its text)."""
        self.used.add(helper)
        for scope in self._scopes:
            scope.add(helper)

    def _print_Rational(self, expr: sp.Rational) -> str:
        return f"({expr.p}/{expr.q})"

    def _print_Half(self, expr: sp.Rational) -> str:
        return "0.5"

    def _print_Heaviside(self, expr: sp.Heaviside) -> str:
        # Not the inherited rewrite(Piecewise): that re-evaluates `arg < 0`, and when arg holds
        # a Piecewise whose condition cse turned into a symbol, SymPy keeps its first branch.
        arg = expr.args[0]
        at_zero = self._print(expr.args[1] if len(expr.args) > 1 else sp.S.Half)
        below = self._print(sp.StrictLessThan(arg, 0, evaluate=False))
        at = self._print(sp.Eq(arg, 0, evaluate=False))
        return f"(((0) if {below} else ({at_zero}) if {at} else (1)))"

    # ---- graphc.ir.special's functions and exp2, as numpy computes them. The CPU targets
    # (vector_math) call numpy's ufuncs, which Numba compiles (its math.floor returns an int);
    # CUDA kernels have no np.floor/np.rint/np.exp2, and there math.floor returns a float.
    def _print_Sign(self, expr: sp.Function) -> str:
        x, one = self._print(expr.args[0]), self._print(sp.Float(1.0))
        return f"({one} if {x} > 0 else (-{one} if {x} < 0 else {x}))"  # 0, -0.0 and NaN: x

    def _print_numpy_or_math(self, expr: sp.Function) -> str:  # Floor, Ceil: np.floor / math.floor
        return f"{'np' if self.vector_math else 'math'}.{type(expr).__name__.lower()}({self._print(expr.args[0])})"

    _print_Floor = _print_Ceil = _print_numpy_or_math

    def _print_Rint(self, expr: sp.Function) -> str:
        x = self._print(expr.args[0])
        if self.vector_math:
            return f"np.rint({x})"
        # IEEE remainder(x, 1) is x - (x rounded half to even), exactly; copysign: rint(-0.2) = -0.0
        one = self._print(sp.Float(1.0))
        return f"(math.copysign({x} - math.remainder({x}, {one}), {x}) if math.isfinite({x}) else {x})"

    def _print_exp2(self, expr: sp.Function) -> str:
        x = self._print(expr.args[0])
        return f"np.exp2({x})" if self.vector_math else f"{self._print(sp.Float(2.0))} ** ({x})"

    def _print_math(self, expr: sp.Function) -> str:  # Erfc, Atan2, Hypot: math.erfc(x) ...
        return f"math.{type(expr).__name__.lower()}({', '.join(self._print(a) for a in expr.args)})"

    _print_Erfc = _print_Atan2 = _print_Hypot = _print_math

    def parenthesize(self, item: sp.Basic, level: int, strict: bool = False) -> str:
        # x**2 prints as x*x: inside any larger expression it needs parentheses a Pow doesn't
        if _is_product_power(item) or isinstance(item, fold.Quotient):
            return f"({self._print(item)})"
        return super().parenthesize(item, level, strict)

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        base, exp = expr.as_base_exp()
        if exp.is_Integer and 2 <= abs(int(exp)) <= 4:
            b = self.parenthesize(base, precedence(sp.Mul(base, base, evaluate=False)), strict=False)
            product = "*".join([b] * abs(int(exp)))
            return product if exp > 0 else f"{self._one}/({product})"
        if exp == -1:
            return f"{self._one}/{self.parenthesize(base, precedence(expr), strict=False)}"
        if exp == sp.Rational(1, 2):
            return f"math.sqrt({self._print(base)})"
        if exp == -sp.Rational(1, 2):
            return f"{self._one}/math.sqrt({self._print(base)})"
        return super()._print_Pow(expr, rational=rational)


def _is_product_power(item: sp.Basic) -> bool:
    return isinstance(item, sp.Pow) and item.exp.is_Integer and 2 <= int(item.exp) <= 4


class Float32Printer(GraphcPrinter):
    """Numbers as ``np.float32(...)``: in loops over float32 arrays, a float64 constant would
    make the whole expression float64 (half the SIMD lanes, plus conversions)."""

    def _print_Integer(self, expr: sp.Integer) -> str:
        return f"np.float32({int(expr)})"

    def _print_Float(self, expr: sp.Float) -> str:
        return f"np.float32({float(expr)!r})"

    def _print_Rational(self, expr: sp.Rational) -> str:
        return f"np.float32({expr.p}/{expr.q})"

    def _print_Half(self, expr: sp.Rational) -> str:
        return "np.float32(0.5)"

    def _print_Literal(self, expr: fold.Literal) -> str:
        return f"np.float32({super()._print_Literal(expr)})"

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if expr.is_number:  # sqrt(2), 1/sqrt(pi): math.sqrt would be a float64 value
            return self._print_Float(sp.Float(expr.evalf(17)))
        return super()._print_Pow(expr, rational=rational)

    def _print_NumberSymbol(self, expr: sp.NumberSymbol) -> str:
        return self._print_Float(sp.Float(expr.evalf(17)))

    _print_Pi = _print_Exp1 = _print_EulerGamma = _print_NumberSymbol

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return "np.float32(n)" if expr.name == "n" else super()._print_Symbol(expr)  # the sample count


def printer(vector_math: bool = False, float32: bool = False) -> GraphcPrinter:
    """A fresh printer; ``vector_math=True`` for the CPU targets (see ``GraphcPrinter``);
    ``float32``: numbers typed float32 (the blocked schedule's float32 loops)."""
    return (Float32Printer if float32 else GraphcPrinter)(vector_math)
