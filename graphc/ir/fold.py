"""Where SymPy may simplify: composing elementwise formulas without changing their IEEE result.

Every elementwise op is a SymPy formula in its own argument symbols (``ops.ELEMENTWISE``).
Lowering a graph substitutes the arguments' expressions into the formula, and SymPy then
evaluates the result automatically: ``x - x -> 0``, ``a*0 -> 0``, ``a/a -> 1``,
``exp(log(a)) -> a``, ``a/0 -> zoo``, ``log(-2) -> log(2) + I*pi``. Those rewrites are
exact over the reals but not in IEEE arithmetic (``inf - inf`` is NaN, ``exp(log(-1))``
is NaN, ``a/0.0`` is an infinity). ``compose`` keeps SymPy's result only where it is safe:

- Constant arguments only: the value is computed now, with numpy in float64 (``numeric``),
  exactly as numpy computes it, NaN and inf included; a non-finite or ``-0.0`` result is a
  ``Literal`` symbol, which SymPy cannot fold.
- Otherwise SymPy's evaluated result is kept if it has the same *signature* as the formula
  as written: the same symbols the same number of times (``x*x`` is ``x**2``, two reads of
  ``x``), the same function applications, and no ``zoo``/``nan``/``oo``/``I`` atoms. So
  SymPy may flatten and reorder sums and products, combine numeric coefficients, resolve
  ``Piecewise`` conditions on constants and turn ``x**1`` into ``x``, which change a result
  at most by rounding (reassociation), but never drop, merge or cancel a term.
- Else each argument is wrapped in ``Opaque``: a parenthesis SymPy must honor. The formula
  is then evaluated over distinct black boxes, exactly as the op defines it.

``add``/``mul`` apply the same rule to the sums and products the schedules build.
docs/guarantees.md states the rule for users.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np
import sympy as sp
from sympy.core.parameters import distribute


class AsWritten(sp.Function):
    """A real-valued function SymPy never evaluates or rewrites (also graphc.ir.special's base)."""

    @classmethod
    def eval(cls, *args: sp.Expr) -> None:
        return None

    def _eval_is_extended_real(self) -> bool:
        return True


class Opaque(AsWritten):
    """``Opaque(e, k)`` is ``e`` in parentheses that SymPy cannot see into: ``Opaque(x, 1) - x``
    stays a subtraction. ``k`` only makes two wraps of the same ``e`` distinct; printers
    print ``(e)`` (or ``e`` where it is an atom)."""

    nargs = 2

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.Integer(1) if argindex == 1 else sp.Integer(0)

    def _eval_evalf(self, prec: int) -> sp.Expr:  # a boxed constant stays comparable (Max, Min)
        return self.args[0]._eval_evalf(prec)

    def _sympystr(self, printer: Any) -> str:
        return wrapped(printer, self.args[0])

    def _latex(self, printer: Any) -> str:
        inner = printer._print(self.args[0])
        return inner if self.args[0].is_Atom else rf"\left({inner}\right)"


class Quotient(AsWritten):
    """``a / b`` as written. SymPy's ``a/b`` is ``a*b**-1``, and ``cse`` then shares the
    reciprocal: ``a*(1/b)`` is NaN where ``1/b`` overflows (``0/1e-310`` is 0) and rounds
    twice. The ``div`` op and ``mean`` divide with this; printed ``a/b``."""

    nargs = 2

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        a, b = self.args
        return Quotient(1, b) if argindex == 1 else -Quotient(self, b)

    def _sympystr(self, printer: Any) -> str:
        a, b = (wrapped(printer, e, bare_calls=True) for e in self.args)
        return f"{a}/{b}"

    def _latex(self, printer: Any) -> str:
        return rf"\frac{{{printer._print(self.args[0])}}}{{{printer._print(self.args[1])}}}"


def wrapped(printer: Any, e: sp.Expr, bare_calls: bool = False) -> str:
    """``e`` parenthesized unless an atom (how every printer prints ``Opaque(e, k)``), or with
    ``bare_calls`` a function call too (a quotient's operands in ``str``)."""
    text = printer._print(e)
    bare = (e.is_Atom and not (e.is_Number and e.is_negative)) or (
        bare_calls and isinstance(e, sp.Function) and not isinstance(e, (Quotient, Opaque)))
    return text if bare else f"({text})"


class Literal(sp.Symbol):
    """A constant SymPy must not fold: ``inf``, ``-inf``, ``nan`` or ``-0.0`` (SymPy has no
    signed zero, and folds ``x + oo`` to ``oo``). Printed as its value."""

    NAMES = {"_inf": math.inf, "_ninf": -math.inf, "_nan": math.nan, "_nzero": -0.0}

    def __new__(cls, name: str, **assumptions: Any) -> "Literal":  # (name,): how pickle rebuilds it
        if name not in cls.NAMES:
            raise ValueError(f"no literal {name!r}")
        return super().__new__(cls, name, real=True)

    @classmethod
    def of(cls, value: float) -> "Literal":
        return cls("_nan" if math.isnan(value) else {math.inf: "_inf", -math.inf: "_ninf"}.get(value, "_nzero"))

    @property
    def value(self) -> float:
        return self.NAMES[self.name]

    def _sympystr(self, printer: Any) -> str:
        return repr(self.value)

    def _latex(self, printer: Any) -> str:
        return {"_inf": r"\infty", "_ninf": r"-\infty", "_nan": r"\mathrm{NaN}", "_nzero": "-0"}[self.name]


def number(v: Any) -> sp.Expr:
    """A SymPy constant for ``v`` (a Literal where SymPy would lose it)."""
    if isinstance(v, (bool, np.bool_)):
        return sp.true if v else sp.false
    v = float(v)
    if not math.isfinite(v) or (v == 0.0 and math.copysign(1.0, v) < 0):
        return Literal.of(v)
    return sp.Integer(int(v)) if v.is_integer() and abs(v) < 2**53 else sp.Float(v)


def value_of(e: sp.Basic) -> float | bool | None:
    """The Python value of a constant expression (None: not a constant)."""
    if isinstance(e, Literal):
        return e.value
    if e is sp.true or e is sp.false:
        return bool(e)
    if isinstance(e, sp.Number) and e.is_finite:
        return float(e)
    return None


def plain(e: sp.Expr) -> sp.Expr:
    """``e`` as ordinary SymPy, for people and for ``sympy.simplify``: quotients as ``a/b``,
    no Opaque parentheses, literals as ``oo``/``nan``/``0`` (graphc.tools.explain shows this)."""
    if not e.has(Quotient, Opaque, Literal):
        return e
    e = e.replace(Opaque, lambda x, tag: x).replace(Quotient, lambda a, b: a / b)
    return e.xreplace({s: sp.sympify(s.value) for s in e.atoms(Literal)})


# ---- constants: numpy's value ---------------------------------------------------------
_NUMPY_EXTRAS = {"Quotient": np.divide, "Opaque": lambda e, tag: e, "erf": np.vectorize(math.erf, otypes=[float]), "erfc": np.vectorize(math.erfc, otypes=[float])}


def numeric(formula: sp.Expr, symbols: Sequence[sp.Symbol], values: Sequence[Any],
            cache: dict | None = None) -> sp.Expr:
    """``formula`` at constant arguments, computed by numpy in float64 as numpy would."""
    key = (formula, tuple(symbols))
    fn = cache.get(key) if cache is not None else None
    if fn is None:
        fn = sp.lambdify(symbols, formula, modules=[_NUMPY_EXTRAS, "numpy"])
        if cache is not None:
            cache[key] = fn
    args = [np.bool_(v) if isinstance(v, bool) else np.float64(v) for v in values]
    with np.errstate(all="ignore"):
        out = np.asarray(fn(*args))
    if out.dtype.kind == "c":
        out = np.float64(np.nan) if out.imag != 0 else out.real
    return number(out.item() if out.dtype.kind == "b" else float(out))


# ---- the safety check -------------------------------------------------------------------
_BAD = (sp.zoo, sp.nan, sp.oo, sp.S.NegativeInfinity, sp.I)


@lru_cache(maxsize=1 << 16)
def signature(e: sp.Basic) -> Counter:
    """Symbols read (integer powers read their base |n| times) and functions applied."""
    if isinstance(e, Opaque):
        return signature(e.args[0])
    if e.is_Symbol:
        return Counter({e: 1})
    if e.is_Atom:
        return Counter()
    return _node_signature(e, signature, e.exp if e.is_Pow else None)


def _node_signature(e: sp.Basic, child: Callable[[sp.Basic], Counter], exponent: sp.Basic | None) -> Counter:
    """The signature of a compound ``e`` from its arguments' (``child``); ``exponent``: a
    power's exponent as it will be evaluated."""
    n = _integer(exponent) if e.is_Pow else None
    if n is not None:
        return Counter({k: v * abs(n) for k, v in child(e.args[0]).items()})
    out = Counter()
    if (isinstance(e, sp.Function) and not isinstance(e, sp.Piecewise)) or e.is_Pow:
        out["<" + type(e).__name__ + ">"] += 1
    for a in e.args:
        out.update(child(a))
    return out


def _integer(exp: sp.Basic) -> int | None:
    """An exponent's value if it is an integer constant (``2 - 1`` written out included)."""
    if exp.is_Integer:
        return int(exp)
    if exp.is_number and not exp.free_symbols:
        v = exp.evalf()
        if v.is_Number and v.is_finite and float(v).is_integer():
            return int(v)
    return None


@lru_cache(maxsize=1 << 16)
def exceptional(e: sp.Basic) -> bool:
    """Whether SymPy put an infinity, NaN or imaginary unit into ``e`` (outside Opaque)."""
    if isinstance(e, Opaque):
        return False
    if e in _BAD or (e.is_Number and not e.is_extended_real):
        return True
    return any(exceptional(a) for a in e.args)


# ---- composing ------------------------------------------------------------------------
def compose(formula: sp.Expr, symbols: Sequence[sp.Symbol], args: Sequence[sp.Expr],
            cache: dict | None = None) -> sp.Expr:
    """``formula`` with ``args`` for ``symbols``, computing what the formula computes as
    written (see the module docstring)."""
    values = [value_of(a) for a in args]
    if all(v is not None for v in values):
        return numeric(formula, symbols, values, cache)
    mapping = dict(zip(symbols, args))
    return _checked(lambda subs: formula.xreplace(dict(zip(symbols, subs))), args,
                    _written(formula, mapping), distribute_mul=_math_functions(formula))


def _written(formula: sp.Basic, mapping: dict) -> Counter:
    """``signature`` of ``formula`` with ``mapping`` substituted as written (not evaluated)."""
    if formula in mapping:
        return signature(mapping[formula])
    if formula.is_Atom:
        return signature(formula)
    if isinstance(formula, sp.Piecewise):  # a branch whose condition is a constant False is
        out = Counter()                    # not taken: dropping it is no fold
        for expr, cond in formula.args:
            cond = cond.xreplace(mapping)
            if cond is sp.false:
                continue
            out.update(_written(expr, mapping))
            if cond is sp.true:
                break
            out.update(_written(cond, mapping))
        return out
    exponent = formula.exp.xreplace(mapping) if formula.is_Pow else None
    return _node_signature(formula, lambda a: _written(a, mapping), exponent)


@lru_cache(maxsize=1024)
def _math_functions(formula: sp.Expr) -> bool:
    """Whether ``formula`` applies sin, exp, ...: SymPy then needs Mul to distribute, or
    ``sin(-2 - w)`` evaluates to ``-sin(-(-2 - w))`` and never settles."""
    return any(not isinstance(f, (sp.Piecewise, Quotient, Opaque)) for f in formula.atoms(sp.Function))


def add(terms: Sequence[sp.Expr]) -> sp.Expr:
    """``sum(terms)`` that cancels nothing (see ``compose``)."""
    return _reduce(sp.Add, terms, 0)


def mul(factors: Sequence[sp.Expr]) -> sp.Expr:
    """``prod(factors)`` that cancels nothing (see ``compose``)."""
    return _reduce(sp.Mul, factors, 1)


def _reduce(head: type, args: Sequence[sp.Expr], empty: int) -> sp.Expr:
    args = list(args)
    if not args:
        return sp.Integer(empty)
    if len(args) == 1:
        return args[0]
    return _checked(lambda subs: head(*subs), args, sum((signature(a) for a in args), Counter()))


def _checked(build: Callable[[Sequence[sp.Expr]], sp.Expr], args: Sequence[sp.Expr],
             written: Counter, distribute_mul: bool = False) -> sp.Expr:
    """``build(args)`` if SymPy's evaluation of it is safe (``written``: the signature of the
    unevaluated result), else ``build`` over Opaque args: first the compound and repeated
    ones, then (a constant folded unsafely) all of them."""
    with distribute(distribute_mul):
        evaluated = build(args)
    if not exceptional(evaluated) and signature(evaluated) == written:
        return evaluated
    seen: set = set()
    boxed = []
    for k, a in enumerate(args):
        compound = not (a.is_Atom and a not in seen)
        seen.add(a)
        boxed.append(Opaque(a, k) if compound and _boxable(a) else a)
    with distribute(distribute_mul):
        evaluated = build(boxed)
    if not exceptional(evaluated) and signature(evaluated) == written:
        return evaluated
    return build([Opaque(a, k) if _boxable(a) and not isinstance(a, Opaque) else a for k, a in enumerate(boxed)])


_CONDITIONS = (sp.core.relational.Relational, sp.logic.boolalg.BooleanFunction, sp.logic.boolalg.BooleanAtom)


def _boxable(a: sp.Basic) -> bool:
    return not isinstance(a, _CONDITIONS)  # a where's condition stays a condition
