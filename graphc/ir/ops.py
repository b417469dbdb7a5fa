"""The op registry and the user-facing graph builders.

Elementwise ops live in ONE table, ``ELEMENTWISE``: each entry is a SymPy form and an
optional derivative override. Code is printed from the SymPy form and local derivatives
come from ``sympy.diff`` of it. Structural ops (sum, mean, broadcast, index, transpose,
reshape, stack, einsum/matmul) are nodes whose adjoints live in ``autodiff.ADJOINTS``.
"""

from __future__ import annotations

import builtins
import inspect
import itertools
import math
import numbers
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np
import sympy as sp

from . import fold
from . import special
from ..errors import DTypeError, GraphcError, ShapeError, UnsupportedError
from .graph import N, Graph, Node, check_name, format_shape, sample_axis


# ---- elementwise registry ---------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Elementwise:
    """An elementwise op: its SymPy form, and optionally its derivative(s)."""

    name: str
    sym: Callable[..., Any]
    derivative: Callable[..., Any] | None = None
    nargs: int = 1
    domain: tuple[float, float] = (-3.0, 3.0)  # where tests sample it
    kinks: tuple[float, ...] = ()  # where the derivative jumps (tests stay away)
    nondiff: tuple[int, ...] = ()  # argument positions that carry no gradient
    out_dtype: str = "float"
    infix: str | None = None  # "+", "*", ... for printing expressions

    @cached_property
    def args(self) -> tuple[sp.Symbol, ...]:
        return tuple(sp.symbols(f"u0:{self.nargs}", real=True))

    @cached_property
    def expr(self) -> sp.Expr:
        return _sympify_user(self, _call_user(self, self.sym, "fn"), "fn")

    @cached_property
    def partials(self) -> tuple[sp.Expr | None, ...]:
        """d(op)/d(arg k) for every k, as SymPy expressions in ``self.args`` (None: no gradient)."""
        return tuple(self.partial(k) for k in range(self.nargs))

    def partial(self, k: int) -> sp.Expr | None:
        """d(op)/d(arg k); sympy.diff runs only for the arguments that need a gradient."""
        if self.out_dtype == "bool" or k in self.nondiff:
            return None
        if self.derivative is not None:
            return self._given[k]
        cache = self.__dict__.setdefault("_partial", {})
        if k not in cache:  # powsimp: diff(a**(b - 1), a) is (b - 1)*a**(b - 1)/a, 0/0 at a = 0
            cache[k] = sp.powsimp(sp.diff(self.expr, self.args[k]), deep=True, combine="exp")
        return cache[k]

    @cached_property
    def _given(self) -> tuple[sp.Expr, ...]:
        given = _call_user(self, self.derivative, "derivative")
        given = given if isinstance(given, (tuple, list)) else (given,)
        if len(given) != self.nargs:
            raise GraphcError(
                f"function {self.name!r}: derivative returned {len(given)} value(s) for "
                f"{self.nargs} argument(s); return one per argument"
            )
        return tuple(_sympify_user(self, g, "derivative") for g in given)

    def compose(self, args: Sequence[sp.Expr]) -> sp.Expr:
        """The op applied to SymPy expressions, as written: no IEEE-unsafe folding (ir/fold.py)."""
        return fold.compose(self.expr, self.args, args, self.__dict__.setdefault("_numeric", {}))

    def __call__(self, *args: Any) -> Any:
        return apply(self, *args)

    def __repr__(self) -> str:
        return f"<graphc function {self.name} of {self.nargs} argument(s)>"


def _sympify_user(op: Elementwise, value: Any, what: str) -> sp.Expr:
    try:
        expr = sp.sympify(value)
    except (sp.SympifyError, TypeError) as exc:
        expr, cause = None, exc
    else:
        cause = None
    if not isinstance(expr, (sp.Expr, sp.logic.boolalg.Boolean)):  # np.array([z, z]) -> an Array
        raise GraphcError(
            f"function {op.name!r}: its {what} must return a SymPy-compatible expression of its "
            f"arguments (use +, -, *, /, ** and gc.sin, gc.exp, ...), got {type(value).__name__}"
        ) from cause
    return expr


def _call_user(op: Elementwise, fn: Callable[..., Any], what: str) -> Any:
    """``fn(*op.args)``: a gc.function body runs once, on SymPy symbols, so numpy, math and
    Python control flow that need numbers fail there; say what to write instead."""
    try:
        return fn(*op.args)
    except GraphcError:
        raise
    except (TypeError, AttributeError, ValueError) as exc:
        text = str(exc)
        # numpy's ufunc on an object calls its method of the same name: np.sin(z) tried z.sin()
        missing = exc.__cause__ if isinstance(exc.__cause__, AttributeError) else None
        ufunc = getattr(missing, "name", None) if isinstance(exc, TypeError) else None
        if "truth value" in text:
            advice = ("a Python if/and/or, max/min, np.where or np.maximum needs a value, which the "
                      "argument does not have while the graph is built: use gc.where(cond, a, b), "
                      "gc.maximum or gc.minimum")
        elif ufunc or isinstance(exc, AttributeError):
            use = f"gc.{ufunc}" if ufunc in __all__ else "gc.sin, gc.exp, ..."
            advice = f"numpy's functions need numbers: use graphc's ({use}), which work on the argument"
        elif "convert" in text or "round" in text:
            advice = ("math.* functions, float(), int() and round() need numbers: use graphc's "
                      "(gc.exp, gc.sin, gc.log, gc.floor, gc.round, ...), which work on the argument")
        else:
            advice = "write it with +, -, *, /, ** and gc.* functions (gc.sin, gc.exp, gc.where, ...)"
        raise GraphcError(
            f"function {op.name!r}: its {what} failed on the symbolic argument(s) "
            f"{', '.join(map(str, op.args))} ({type(exc).__name__}: {text}); {advice}"
        ) from exc


# Derivatives follow torch's conventions (docs/guarantees.md): relu'(0) = 0; a NaN input
# passes the gradient on (the Piecewise's last branch); maximum/minimum split ties 0.5/0.5.
def _relu_derivative(z: sp.Expr) -> sp.Expr:
    return sp.Piecewise((0, z <= 0), (1, True))


def _abs_derivative(z: sp.Expr) -> sp.Expr:
    return sp.Piecewise((1, z > 0), (-1, z < 0), (0, True))  # torch: sign(z), 0 at 0 and NaN


def _max_derivative(a: sp.Expr, b: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    half = sp.Rational(1, 2)
    return (sp.Piecewise((1, a > b), (half, sp.Eq(a, b)), (0, a < b), (1, True)),
            sp.Piecewise((1, b > a), (half, sp.Eq(a, b)), (0, b < a), (1, True)))


def _min_derivative(a: sp.Expr, b: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    half = sp.Rational(1, 2)
    return (sp.Piecewise((1, a < b), (half, sp.Eq(a, b)), (0, a > b), (1, True)),
            sp.Piecewise((1, b < a), (half, sp.Eq(a, b)), (0, b > a), (1, True)))


def _pow_derivative(a: sp.Expr, b: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    # b*a**(b - 1), not sympy.diff's b*a**b/a (0/0 where the base is 0); masked like torch:
    # d/da = 0 where b == 0, d/db = 0 where a == 0 and b >= 0 (log(0) would make it nan)
    return (sp.Piecewise((0, sp.Eq(b, 0)), (b * a ** (b - 1), True)),
            sp.Piecewise((0, sp.And(sp.Eq(a, 0), b >= 0)), (a**b * sp.log(a), True)))


def _div_derivative(a: sp.Expr, b: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    # -(a/b)/b: not -a/b**2, where b**2 under- or overflows and a/b does not
    return fold.Quotient(1, b), -fold.Quotient(fold.Quotient(a, b), b)


def _sigmoid(z: sp.Expr) -> sp.Expr:
    return 1 / (1 + sp.exp(-z))


def _sigmoid_derivative(z: sp.Expr) -> sp.Expr:
    # s*(1 - s) stays finite where sympy.diff's exp(-z)/(1 + exp(-z))**2 gives inf/inf
    return _sigmoid(z) * (1 - _sigmoid(z))


def _gelu(z: sp.Expr) -> sp.Expr:
    # torch's default (erf) form, not the tanh one; erfc(-z/sqrt 2) is 1 + erf(z/sqrt 2)
    # without the cancellation that loses the left tail (gelu'(-30) ~ -4.4e-195, not 0);
    # special.Erfc: SymPy's erfc would rewrite erfc(-w) as 2 - erfc(w), the cancellation again
    return z * special.Erfc(-z / sp.sqrt(2)) / 2


def _softplus(z: sp.Expr) -> sp.Expr:
    # log(1 + exp(z)) written so that exp never overflows: max(z, 0) + log1p(exp(-|z|))
    from sympy.codegen.cfunctions import log1p  # imported when first used: sympy.codegen is 10 ms

    return sp.Max(z, 0) + log1p(sp.exp(-sp.Abs(z)))


# numpy's math functions (issue #16): values as numpy computes them, NaN, inf and domain
# edges included; derivatives as torch's backward formulas (docs/api.md lists them).
LN2, LN10 = sp.Float(math.log(2.0)), sp.Float(math.log(10.0))  # float64 constants, printed exactly


def _cfunction(name: str) -> Callable[..., sp.Expr]:
    """``sympy.codegen.cfunctions.<name>`` (log1p, expm1, log2, log10, exp2), imported when used."""

    def sym(*args: sp.Expr) -> sp.Expr:
        from sympy.codegen import cfunctions

        return getattr(cfunctions, name)(*args)

    sym.__name__ = name
    return sym


_log1p, _expm1, _log2, _log10, _exp2 = map(_cfunction, ("log1p", "expm1", "log2", "log10", "exp2"))


def _arccosh_derivative(z: sp.Expr) -> sp.Expr:
    # torch's (x*x - 1)**-0.5: one sqrt; sympy.diff's 1/(sqrt(x - 1)*sqrt(x + 1)) takes two
    return 1 / sp.sqrt(z**2 - 1)


def _logaddexp(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    # numpy's npy_logaddexp: x + log(2) where x == y (inf + inf is inf, not inf - inf = nan),
    # else the larger plus log1p(exp(-|a - b|)); NaN falls to the last branch and stays NaN
    return sp.Piecewise((a + LN2, sp.Eq(a, b)), (a + _log1p(sp.exp(b - a)), a > b),
                        (b + _log1p(sp.exp(a - b)), True))


def _logaddexp_derivative(a: sp.Expr, b: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    return fold.Quotient(1, 1 + sp.exp(b - a)), fold.Quotient(1, 1 + sp.exp(a - b))  # torch's


def _clip(x: sp.Expr, lo: sp.Expr, hi: sp.Expr) -> sp.Expr:
    return sp.Min(sp.Max(x, lo), hi)  # numpy's clip: hi where lo > hi; NaN anywhere gives NaN


def _clip_derivative(x: sp.Expr, lo: sp.Expr, hi: sp.Expr) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    # the chain rule through maximum then minimum, with their tie and NaN conventions
    dx, dlo = _max_derivative(x, lo)
    dm, dhi = _min_derivative(sp.Max(x, lo), hi)
    return dm * dx, dm * dlo, dhi


ELEMENTWISE: dict[str, Elementwise] = {
    op.name: op
    for op in [
        Elementwise("add", lambda a, b: a + b, nargs=2, infix="+"),
        Elementwise("sub", lambda a, b: a - b, nargs=2, infix="-"),
        Elementwise("mul", lambda a, b: a * b, nargs=2, infix="*"),
        Elementwise("div", fold.Quotient, _div_derivative, nargs=2, domain=(0.5, 2.0), infix="/"),
        Elementwise("pow", lambda a, b: a**b, derivative=_pow_derivative, nargs=2, domain=(0.5, 2.0), infix="**"),
        Elementwise("neg", lambda a: -a, infix="-"),
        Elementwise("sin", sp.sin),
        Elementwise("cos", sp.cos),
        Elementwise("tan", sp.tan, domain=(-1.2, 1.2)),
        Elementwise("exp", sp.exp),
        Elementwise("log", sp.log, domain=(0.1, 3.0)),
        Elementwise("sqrt", sp.sqrt, domain=(0.1, 3.0)),
        Elementwise("tanh", sp.tanh),
        Elementwise("sigmoid", _sigmoid, derivative=_sigmoid_derivative),
        Elementwise("relu", lambda z: sp.Max(z, 0), derivative=_relu_derivative, kinks=(0.0,)),
        Elementwise("gelu", _gelu),
        Elementwise("softplus", _softplus, derivative=_sigmoid),
        Elementwise("abs", sp.Abs, _abs_derivative, kinks=(0.0,)),
        Elementwise("maximum", sp.Max, _max_derivative, nargs=2, kinks=(0.0,)),
        Elementwise("minimum", sp.Min, _min_derivative, nargs=2, kinks=(0.0,)),
        Elementwise(
            "where", lambda c, a, b: sp.Piecewise((a, c), (b, True)), nargs=3, nondiff=(0,)
        ),
        Elementwise("gt", lambda a, b: a > b, nargs=2, out_dtype="bool", infix=">"),
        Elementwise("ge", lambda a, b: a >= b, nargs=2, out_dtype="bool", infix=">="),
        Elementwise("lt", lambda a, b: a < b, nargs=2, out_dtype="bool", infix="<"),
        Elementwise("le", lambda a, b: a <= b, nargs=2, out_dtype="bool", infix="<="),
        # numpy's math functions (issue #16); aliases (atan = arctan ...) are builders below
        Elementwise("arctan", sp.atan),
        Elementwise("arcsin", sp.asin, domain=(-0.9, 0.9)),
        Elementwise("arccos", sp.acos, domain=(-0.9, 0.9)),
        Elementwise("sinh", sp.sinh),
        Elementwise("cosh", sp.cosh),
        Elementwise("arcsinh", sp.asinh),
        Elementwise("arccosh", sp.acosh, _arccosh_derivative, domain=(1.1, 3.0)),
        Elementwise("arctanh", sp.atanh, domain=(-0.9, 0.9)),
        Elementwise("log1p", _log1p, domain=(-0.9, 3.0)),
        Elementwise("expm1", _expm1, lambda z: _expm1(z) + 1),  # torch: result + 1
        Elementwise("log2", _log2, lambda z: fold.Quotient(1, z * LN2), domain=(0.1, 3.0)),
        Elementwise("log10", _log10, lambda z: fold.Quotient(1, z * LN10), domain=(0.1, 3.0)),
        Elementwise("exp2", _exp2, lambda z: _exp2(z) * LN2),
        Elementwise("erf", sp.erf),
        Elementwise("erfc", special.Erfc),
        Elementwise("square", lambda z: z**2),
        # graphc.ir.special's functions: sympy.diff takes their fdiff (torch's conventions: sign,
        # floor, ceil, round 0 everywhere, NaN included; arctan2's gradient 0 at the origin)
        Elementwise("sign", special.Sign, kinks=(0.0,)),
        Elementwise("floor", special.Floor, kinks=(-2.0, -1.0, 0.0, 1.0, 2.0)),
        Elementwise("ceil", special.Ceil, kinks=(-2.0, -1.0, 0.0, 1.0, 2.0)),
        Elementwise("round", special.Rint, kinks=(-2.5, -1.5, -0.5, 0.5, 1.5, 2.5)),
        Elementwise("arctan2", special.Atan2, nargs=2),
        Elementwise("hypot", special.Hypot, nargs=2),
        Elementwise("logaddexp", _logaddexp, _logaddexp_derivative, nargs=2),
        Elementwise("clip", _clip, _clip_derivative, nargs=3),
    ]
}


def function(name: str, fn: Callable[..., Any], derivative: Callable[..., Any] | None = None) -> Elementwise:
    """A user-defined differentiable elementwise function (like ``torch.autograd.Function``).

    ``fn`` is written with arithmetic and ``gc.*`` functions; SymPy derives its derivative
    unless ``derivative`` is given, in which case that one is used, as written.
    """
    check_name(name, "function name")
    if not callable(fn) or (derivative is not None and not callable(derivative)):
        raise GraphcError(f"function {name!r}: fn and derivative must be callables")
    try:
        params = inspect.signature(fn).parameters.values()
        nargs = builtins.sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    except (TypeError, ValueError):
        nargs = 1
    if nargs < 1:
        raise GraphcError(f"function {name!r}: fn must take at least one argument")
    op = Elementwise(name, fn, derivative, nargs=nargs)
    op.expr, op.partials  # evaluate now, so a broken fn fails here and not inside compile
    return op


# ---- constants and leaves ------------------------------------------------------------
def as_node(value: Any, context: str = "operand") -> Node:
    if isinstance(value, Node):
        return value
    if isinstance(value, (bool, np.bool_)):
        value = float(value)
    if isinstance(value, (numbers.Real, np.ndarray, np.generic, list, tuple)):
        return constant(value)
    raise GraphcError(f"{context}: cannot use a {type(value).__name__} in a graph expression")


def constant(value: Any) -> Node:
    """A constant; numpy arrays become constant tensors."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise DTypeError(f"constant of dtype {arr.dtype} is not supported; use real numbers")
    if arr.size > 4096:
        raise UnsupportedError(
            f"constant of shape {arr.shape} is too large to inline; pass it as gc.data instead"
        )
    arr = np.array(arr, dtype=np.float64)
    arr.setflags(write=False)
    return Node("const", attrs=(("value", arr),), shape=arr.shape)


def _shape_of(shape: Any, what: str, allow_none: bool) -> tuple:
    if isinstance(shape, (int, type(None))):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise ShapeError(f"{what}: shape must be a tuple, got {shape!r}") from None
    out = []
    for d in dims:
        if d is None and allow_none:
            out.append(N)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1:
            out.append(int(d))
        else:
            hint = "a positive int or None" if allow_none else "a positive int"
            raise ShapeError(f"{what}: shape {shape!r} has dim {d!r}; each dim must be {hint}")
    if builtins.sum(d is N for d in out) > 1:
        raise ShapeError(f"{what}: shape {shape!r} has more than one None (sample) dim")
    return tuple(out)


def data(name: str, shape: Any = (None,)) -> Node:
    """An input bound at call time. ``None`` marks the sample dim N, shared by all inputs."""
    check_name(name, "data name")
    return Node("data", shape=_shape_of(shape, f"data {name!r}", allow_none=True), name=name)


def param(name: str, shape: Any = ()) -> Node:
    """A trainable parameter: a scalar, or a tensor of fixed shape."""
    check_name(name, "param name")
    return Node("param", shape=_shape_of(shape, f"param {name!r}", allow_none=False), name=name)


def params(names: str | Sequence[str], shape: Any = ()) -> tuple[Node, ...]:
    """Several parameters at once: ``a, b, c, d = gc.params("a b c d")``."""
    names = names.replace(",", " ").split() if isinstance(names, str) else list(names)
    return tuple(param(n, shape) for n in names)


# ---- shapes ---------------------------------------------------------------------------
def broadcast_shapes(op: str, nodes: Sequence[Node], target: tuple | None = None) -> tuple:
    """numpy broadcasting of the nodes' shapes (and ``target``), or a ShapeError naming them."""
    shapes = [tuple(n.shape) for n in nodes] + ([tuple(target)] if target is not None else [])
    ndim = max(len(s) for s in shapes)
    out = []
    for dims in zip(*[(1,) * (ndim - len(s)) + s for s in shapes]):
        big = {d for d in dims if d != 1}
        if len(big) > 1:
            names = [f"{n.label()} {format_shape(n.shape)}" for n in nodes]
            names += [format_shape(target)] if target is not None else []
            raise ShapeError(f"{op}: cannot broadcast {' with '.join(names)}{_data_hint(nodes, big)}")
        out.append(big.pop() if big else 1)
    return tuple(out)


def _data_hint(nodes: Sequence[Node], dims: set) -> str:
    """A numpy array as long as the samples, mixed into a graph, is a constant of fixed length."""
    if N not in dims or not any(n.op == "const" and N not in n.shape for n in nodes):
        return ""
    return ("; a numpy array in an expression is a constant of fixed shape: declare per-sample "
            "values with gc.data(\"name\") and pass the array when you call or fit")


def _normalize_axes(node: Node, axis: Any, op: str) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(node.ndim))
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -node.ndim <= a < node.ndim:
            raise ShapeError(f"{op}: axis {a!r} is out of range for {node.label()} {format_shape(node.shape)}")
        out.append(int(a) % node.ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"{op}: repeated axis in {axis!r}")
    return tuple(sorted(out))


# ---- elementwise application ---------------------------------------------------------
def apply(op: Elementwise, *args: Any) -> Any:
    if len(args) != op.nargs:
        raise GraphcError(f"{op.name} takes {op.nargs} argument(s), got {len(args)}")
    if any(isinstance(a, sp.Basic) for a in args) and not any(isinstance(a, Node) for a in args):
        return op.sym(*args)  # inside a gc.function body: build the SymPy form
    nodes = [as_node(a, op.name) for a in args]
    if op.name == "where" and nodes[0].dtype != "bool":
        raise DTypeError(f"where: condition {nodes[0].label()} must be a comparison, like x > 0")
    # a comparison used as a number is 1.0 where it holds, else 0.0 (numpy's bool -> float)
    nodes = [where(n, 1.0, 0.0) if n.dtype == "bool" and k not in op.nondiff else n for k, n in enumerate(nodes)]
    shape = broadcast_shapes(op.name, nodes)
    return Node("elementwise", tuple(nodes), (("fn", op),), shape, op.out_dtype)


def _builder(name: str) -> Callable[..., Any]:
    op = ELEMENTWISE[name]

    def build(*args: Any) -> Any:
        return apply(op, *args)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"Elementwise {name}; numpy broadcasting."
    return build


sin, cos, tan, exp, log, sqrt = map(_builder, ("sin", "cos", "tan", "exp", "log", "sqrt"))
tanh, sigmoid, relu, maximum, minimum = map(_builder, ("tanh", "sigmoid", "relu", "maximum", "minimum"))
gelu, softplus = map(_builder, ("gelu", "softplus"))
abs = _builder("abs")  # noqa: A001 - gc.abs mirrors np.abs


def where(cond: Any, a: Any, b: Any) -> Node:
    """``a`` where ``cond`` holds, else ``b`` (cond: a comparison such as ``x > 0``)."""
    return apply(ELEMENTWISE["where"], cond, a, b)


# numpy's math functions (issue #16): numpy's names, and the torch/math aliases
arctan, arcsin, arccos, arctan2 = map(_builder, ("arctan", "arcsin", "arccos", "arctan2"))
sinh, cosh, arcsinh, arccosh, arctanh = map(_builder, ("sinh", "cosh", "arcsinh", "arccosh", "arctanh"))
log1p, expm1, log2, log10, exp2 = map(_builder, ("log1p", "expm1", "log2", "log10", "exp2"))
erf, erfc, square, sign, floor, ceil = map(_builder, ("erf", "erfc", "square", "sign", "floor", "ceil"))
hypot, logaddexp = map(_builder, ("hypot", "logaddexp"))
atan, asin, acos, atan2, asinh, acosh, atanh = arctan, arcsin, arccos, arctan2, arcsinh, arccosh, arctanh


def round(e: Any, decimals: int = 0) -> Any:  # noqa: A001 - gc.round mirrors np.round
    """numpy's round: half to even (``round(2.5) == 2``); with ``decimals``, as np.round computes
    it: ``rint(e * 10**d) / 10**d`` (``rint(e / 10**-d) * 10**-d`` for d < 0). Gradient 0."""
    if not isinstance(decimals, (int, np.integer)) or isinstance(decimals, bool) or builtins.abs(decimals) > 300:
        raise GraphcError(f"round: decimals must be an int between -300 and 300, got {decimals!r}")
    op = ELEMENTWISE["round"]
    if decimals == 0:
        return apply(op, e)
    scale = 10.0 ** builtins.abs(int(decimals))
    return apply(op, e * scale) / scale if decimals > 0 else apply(op, e / scale) * scale


def clip(e: Any, lo: Any, hi: Any) -> Any:
    """numpy's clip: ``minimum(maximum(e, lo), hi)`` (so ``hi`` where ``lo > hi``; NaN in any
    argument gives NaN); ``None`` leaves that side open. Gradients as maximum/minimum's."""
    if lo is None and hi is None:
        raise GraphcError("clip: give lo, hi or both (None leaves a side open)")
    if lo is None:
        return minimum(e, hi)
    if hi is None:
        return maximum(e, lo)
    return apply(ELEMENTWISE["clip"], e, lo, hi)


# ---- structural ops ------------------------------------------------------------------
def _reduce(op: str, e: Any, axis: Any, keepdims: bool) -> Node:
    e = as_node(e, op)
    axes = _normalize_axes(e, axis, op)
    shape = tuple(1 if k in axes else d for k, d in enumerate(e.shape) if keepdims or k not in axes)
    return Node(op, (e,), (("axes", axes), ("keepdims", bool(keepdims))), shape)


def sum(e: Any, axis: Any = None, keepdims: bool = False) -> Node:  # noqa: A001
    """Sum over ``axis`` (all axes by default); summing over samples fuses into the loop."""
    return _reduce("sum", e, axis, keepdims)


def mean(e: Any, axis: Any = None, keepdims: bool = False) -> Node:
    """Mean over ``axis``; over samples it divides by the sample count bound at call time."""
    return _reduce("mean", e, axis, keepdims)


def broadcast_to(e: Any, shape: tuple) -> Node:
    e = as_node(e, "broadcast_to")
    if broadcast_shapes("broadcast_to", [e], tuple(shape)) != tuple(shape):
        raise ShapeError(f"broadcast_to: cannot broadcast {e.label()} {format_shape(e.shape)} to {format_shape(shape)}")
    return e if e.shape == tuple(shape) else Node("broadcast_to", (e,), (), tuple(shape))


def reshape(e: Any, shape: Sequence[Any]) -> Node:
    """Reshape within a sample: the sample axis, if any, must stay leading."""
    e = as_node(e, "reshape")
    shape = tuple(N if d is None or d is N else int(d) for d in shape)
    fixed_in = [d for d in e.shape if d is not N]
    fixed_out = [d for d in shape if d is not N]
    ok = math.prod(fixed_in) == math.prod(fixed_out) and (N in e.shape) == (N in shape)
    lead = all(math.prod(s[: s.index(N)]) == 1 for s in (e.shape, shape) if N in s)
    if not (ok and lead):
        raise ShapeError(f"reshape: cannot reshape {e.label()} {format_shape(e.shape)} to {format_shape(shape)}")
    return e if e.shape == shape else Node("reshape", (e,), (), shape)


def flatten(e: Any) -> Node:
    """Flatten to 1-D: (N, 1) -> (N,), like torch's ``Flatten(0, 1)`` on a one-output layer."""
    e = as_node(e, "flatten")
    fixed = math.prod(d for d in e.shape if d is not N)
    if N in e.shape:
        if fixed != 1:
            raise ShapeError(
                f"flatten: {e.label()} {format_shape(e.shape)} would mix the sample dim with "
                "fixed dims; only (N, 1, ...) flattens to (N,)"
            )
        return reshape(e, (N,))
    return reshape(e, (fixed,))


def transpose(e: Any, axes: Sequence[int] | None = None) -> Node:
    e = as_node(e, "transpose")
    perm = tuple(reversed(range(e.ndim))) if axes is None else tuple(int(a) % max(e.ndim, 1) for a in axes)
    if sorted(perm) != list(range(e.ndim)):
        raise ShapeError(f"transpose: axes {axes!r} are not a permutation for {e.label()} {format_shape(e.shape)}")
    if perm == tuple(range(e.ndim)):
        return e
    return Node("transpose", (e,), (("perm", perm),), tuple(e.shape[p] for p in perm))


def _normalize_key(e: Node, key: Any) -> tuple:
    key = key if isinstance(key, tuple) else (key,)
    if builtins.sum(k is Ellipsis for k in key) > 1:
        raise ShapeError("index: only one ... allowed")
    used = builtins.sum(k is not None and k is not Ellipsis for k in key)
    if used > e.ndim:
        raise ShapeError(f"index: too many indices for {e.label()} {format_shape(e.shape)}")
    if Ellipsis in key:
        at = key.index(Ellipsis)
        key = key[:at] + (slice(None),) * (e.ndim - used) + key[at + 1 :]
    key = key + (slice(None),) * (e.ndim - used)
    out, axis = [], 0
    for k in key:
        if k is None:
            out.append(("new",))
            continue
        dim = e.shape[axis]
        if dim is N:
            if k != slice(None):
                raise UnsupportedError(
                    f"index: {e.label()} can only be indexed with ':' along its sample dim"
                )
            out.append(("slice", 0, None, 1))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            if not -dim <= k < dim:
                raise ShapeError(f"index: {k} is out of range for axis {axis} of {e.label()} {format_shape(e.shape)}")
            out.append(("int", int(k) % dim))
        elif isinstance(k, slice):
            start, stop, step = k.indices(dim)
            if len(range(start, stop, step)) == 0:
                raise ShapeError(f"index: slice {k} selects nothing from axis {axis} of {e.label()}")
            out.append(("slice", start, stop, step))
        else:
            raise UnsupportedError(f"index: {type(k).__name__} indices are not supported (use ints, slices, None)")
        axis += 1
    return tuple(out)


def key_shape(e: Node, key: tuple) -> tuple:
    shape, axis = [], 0
    for k in key:
        if k[0] == "new":
            shape.append(1)
            continue
        dim = e.shape[axis]
        if k[0] == "slice":  # (start, stop, step) from slice.indices: a stop of -1 is before 0
            shape.append(N if dim is N else len(range(k[1], k[2], k[3])))
        axis += 1
    return tuple(shape)


def index(e: Any, key: Any) -> Node:
    e = as_node(e, "index")
    key = _normalize_key(e, key)
    return Node("index", (e,), (("key", key),), key_shape(e, key))


def stack(items: Sequence[Any], axis: int = -1) -> Node:
    """Stack equally shaped expressions along a new axis (numpy semantics)."""
    nodes = [as_node(x, "stack") for x in items]
    if not nodes:
        raise ShapeError("stack: needs at least one expression")
    shape = broadcast_shapes("stack", nodes)
    for n in nodes:
        if n.shape != shape:
            raise ShapeError(f"stack: {n.label()} has shape {format_shape(n.shape)}, expected {format_shape(shape)}")
    if not -len(shape) - 1 <= axis <= len(shape):
        raise ShapeError(f"stack: axis {axis} out of range")
    axis %= len(shape) + 1
    return Node("stack", tuple(nodes), (("axis", axis),), shape[:axis] + (len(nodes),) + shape[axis:])


def concatenate(items: Sequence[Any], axis: int = -1) -> Node:
    """Join expressions along an existing fixed axis (numpy semantics; not the sample axis)."""
    nodes = [as_node(x, "concatenate") for x in items]
    if not nodes:
        raise ShapeError("concatenate: needs at least one expression")
    ndim = nodes[0].ndim
    if ndim == 0 or any(n.ndim != ndim for n in nodes):
        raise ShapeError("concatenate: expressions must have the same number of dims, at least 1: "
                         + ", ".join(f"{n.label()} {format_shape(n.shape)}" for n in nodes))
    if not -ndim <= axis < ndim:
        raise ShapeError(f"concatenate: axis {axis} out of range for {ndim}-D expressions")
    axis %= ndim
    for n in nodes:
        rest = n.shape[:axis] + n.shape[axis + 1:]
        if rest != nodes[0].shape[:axis] + nodes[0].shape[axis + 1:]:
            raise ShapeError(f"concatenate: {n.label()} {format_shape(n.shape)} does not match "
                             f"{nodes[0].label()} {format_shape(nodes[0].shape)} off axis {axis}")
        if n.shape[axis] is N:
            raise UnsupportedError(f"concatenate: cannot join along the sample dim of {n.label()}")
    if len(nodes) == 1:
        return nodes[0]
    size = builtins.sum(n.shape[axis] for n in nodes)
    shape = nodes[0].shape[:axis] + (size,) + nodes[0].shape[axis + 1:]
    return Node("concatenate", tuple(nodes), (("axis", axis),), shape)


def stop_gradient(e: Any) -> Node:
    """``e`` in the forward pass, a constant for differentiation (``jax.lax.stop_gradient``)."""
    e = as_node(e, "stop_gradient")
    return Node("stop_gradient", (e,), (), e.shape, e.dtype)


def einsum(subscripts: str, *operands: Any) -> Node:
    """General contraction in einsum notation (explicit ``->`` output); sums over samples fuse."""
    nodes = [as_node(x, "einsum") for x in operands]
    if not isinstance(subscripts, str) or "->" not in subscripts:
        raise GraphcError("einsum: subscripts must be explicit, like 'ij,jk->ik'")
    ins, out = subscripts.replace(" ", "").split("->")
    ins = ins.split(",")
    if len(ins) != len(nodes):
        raise GraphcError(f"einsum: {len(ins)} operand subscripts for {len(nodes)} operands")
    sizes: dict[str, Any] = {}
    for sub, n in zip(ins, nodes):
        if len(sub) != n.ndim or not (sub.isalpha() or sub == "") or len(set(sub)) != len(sub):
            raise ShapeError(f"einsum: subscripts {sub!r} do not fit {n.label()} {format_shape(n.shape)}")
        for letter, d in zip(sub, n.shape):
            if sizes.setdefault(letter, d) != d:
                raise ShapeError(f"einsum: index {letter!r} is {sizes[letter]!r} in one operand and {d!r} in {n.label()}")
    if len(set(out)) != len(out) or any(c not in sizes for c in out):
        raise ShapeError(f"einsum: output subscripts {out!r} must be distinct letters of the inputs")
    return Node("einsum", tuple(nodes), (("ins", tuple(ins)), ("out", out)), tuple(sizes[c] for c in out))


def matmul(a: Any, b: Any) -> Node:
    """numpy ``@`` for 1-D and 2-D operands."""
    a, b = as_node(a, "matmul"), as_node(b, "matmul")
    subs = {(1, 1): "j,j->", (2, 1): "ij,j->i", (1, 2): "j,jk->k", (2, 2): "ij,jk->ik"}
    spec = subs.get((a.ndim, b.ndim))
    if spec is None:
        raise ShapeError(f"matmul: operands must be 1-D or 2-D, got {format_shape(a.shape)} @ {format_shape(b.shape)}")
    ka, kb = a.shape[-1], b.shape[0]
    if ka != kb:
        raise ShapeError(f"matmul: {a.label()} {format_shape(a.shape)} @ {b.label()} {format_shape(b.shape)}: inner dims differ")
    return einsum(spec, a, b)


def unindex(g: Node, key: tuple, shape: tuple) -> Node:
    """Adjoint of ``index``: place ``g`` at the selected positions of a zero tensor."""
    return Node("unindex", (g,), (("key", key),), shape)


def derivative_node(node: Node, k: int) -> Node | None:
    """d(node)/d(input k) as an elementwise node over node's inputs (None: zero)."""
    op: Elementwise = node.attr("fn")
    d = op.partial(k)
    if d is None or d == 0:
        return None
    if not d.free_symbols:
        return constant(float(d))
    lam = Elementwise(f"d{op.name}_d{k}", sp.Lambda(op.args, d), nargs=op.nargs, infix=None)
    return Node("elementwise", node.inputs, (("fn", lam),), broadcast_shapes(lam.name, node.inputs))


# ---- the op set ----------------------------------------------------------------------
# Every op a Node can have: the leaves, ``elementwise`` (its formula, an Elementwise, in its
# attrs) and the structural ops, whose shape rules are the builders above. Each later stage
# holds one rule per op, in a table keyed by these names: autodiff.ADJOINTS (not the
# leaves), schedule.RULES (the fused lowering), codegen.blocked.ELEMENT_RULES and ARRAY_RULES
# (the blocked printer), explain.INDEX_RULES (index notation), indexing.VIEWS (the view ops'
# index maps), lsq.tangents.TANGENTS (forward mode, for Jacobians); tests/test_registry.py
# checks that every table covers the set.
LEAVES = ("data", "param", "const", "count")
VIEWS = ("broadcast_to", "transpose", "index", "stop_gradient")  # an element is one input element
STRUCTURAL = VIEWS + ("sum", "mean", "einsum", "reshape", "unindex", "stack", "concatenate")
OPS = LEAVES + ("elementwise",) + STRUCTURAL


# ---- operators on nodes ----------------------------------------------------------------
def _binary(name: str, reflected: bool = False) -> Callable[..., Node]:
    op = ELEMENTWISE[name]
    if reflected:
        return lambda self, other: apply(op, other, self)
    return lambda self, other: apply(op, self, other)


Node.__add__, Node.__radd__ = _binary("add"), _binary("add", True)
Node.__sub__, Node.__rsub__ = _binary("sub"), _binary("sub", True)
Node.__mul__, Node.__rmul__ = _binary("mul"), _binary("mul", True)
Node.__truediv__, Node.__rtruediv__ = _binary("div"), _binary("div", True)
Node.__pow__, Node.__rpow__ = _binary("pow"), _binary("pow", True)
Node.__gt__, Node.__ge__ = _binary("gt"), _binary("ge")
Node.__lt__, Node.__le__ = _binary("lt"), _binary("le")
Node.__neg__ = lambda self: apply(ELEMENTWISE["neg"], self)
Node.__pos__ = lambda self: self
Node.__matmul__ = lambda self, other: matmul(self, other)
Node.__rmatmul__ = lambda self, other: matmul(other, self)
Node.__getitem__ = lambda self, key: index(self, key)
Node.T = property(lambda self: transpose(self))
Node.sum = lambda self, axis=None, keepdims=False: sum(self, axis, keepdims)
Node.mean = lambda self, axis=None, keepdims=False: mean(self, axis, keepdims)
Node.reshape = lambda self, *shape: reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)


# ---- printing expressions ------------------------------------------------------------
_PREC = {"+": 10, "-": 10, "*": 20, "/": 20, "neg": 30, "**": 40, ">": 5, ">=": 5, "<": 5, "<=": 5}


def _key_text(key: tuple) -> str:
    parts = []
    for k in key:
        if k[0] == "new":
            parts.append("None")
        elif k[0] == "int":
            parts.append(str(k[1]))
        else:
            start, stop, step = k[1:]
            bound = "" if stop is None or stop < 0 else stop  # a stop of -1 (step < 0) runs to the start
            parts.append(":" if (start, stop, step) == (0, None, 1) else f"{start}:{bound}:{step}")
    return ", ".join(parts)


def expression_string(node: Node, limit: int = 100_000) -> str:
    """numpy-like text of an expression: ``sum((a + b*x - y)**2)``."""
    text, _ = _expr(node, {})
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _expr(node: Node, memo: dict[int, tuple[str, int]]) -> tuple[str, int]:
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = result = _expr_uncached(node, memo)
    return result


def _expr_uncached(node: Node, memo: dict) -> tuple[str, int]:
    if node.name is not None:
        return node.name, 100
    if node.op == "const":
        v = node.attr("value")
        if v.ndim == 0:
            return _number_text(v.item()), (100 if v.item() >= 0 else 30)
        return (f"array({_list_text(v)})" if v.size <= 8 else f"const{format_shape(v.shape)}"), 100
    args = [_expr(i, memo) for i in node.inputs]

    def wrap(arg: tuple[str, int], prec: int, strict: bool = False) -> str:
        return f"({arg[0]})" if arg[1] < prec or (strict and arg[1] == prec) else arg[0]

    if node.op == "elementwise":
        op: Elementwise = node.attr("fn")
        if op.infix and op.nargs == 1:
            return "-" + wrap(args[0], 30), 30
        if op.infix:
            p = _PREC[op.infix]
            right_strict = op.infix in ("-", "/", "**")
            left = wrap(args[0], p, strict=op.infix == "**")
            return f"{left} {op.infix} {wrap(args[1], p, right_strict)}" if p < 20 else f"{left}{op.infix}{wrap(args[1], p, right_strict)}", p
        return f"{op.name}({', '.join(a[0] for a in args)})", 100
    if node.op in ("sum", "mean"):
        axes = node.attr("axes")
        extra = "" if len(axes) == node.inputs[0].ndim else f", axis={axes[0] if len(axes) == 1 else axes}"
        return f"{node.op}({args[0][0]}{extra})", 100
    if node.op == "index":
        return f"{wrap(args[0], 100)}[{_key_text(node.attr('key'))}]", 100
    if node.op == "transpose":
        return f"{wrap(args[0], 100)}.T", 100
    if node.op == "einsum":
        spec = ",".join(node.attr("ins")) + "->" + node.attr("out")
        return f"einsum({spec!r}, {', '.join(a[0] for a in args)})", 100
    if node.op == "stack":
        return f"stack([{', '.join(a[0] for a in args)}], axis={node.attr('axis')})", 100
    return f"{node.op}({', '.join(a[0] for a in args)})", 100


def _list_text(v: np.ndarray) -> str:
    return "[" + ", ".join(_list_text(r) if r.ndim else _number_text(r.item()) for r in v) + "]"


def _number_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and builtins.abs(v) < 1e15 else repr(v)


def node_line(node: Node, names: dict[int, str]) -> str:
    """One line of ``Graph.__str__``: ``op arg arg [attrs]``."""
    args = " ".join(names.get(id(i), "?") for i in node.inputs)
    if node.op == "elementwise":
        return f"{node.attr('fn').name} {args}"
    if node.op == "const":
        return f"const {node.attr('value').tolist()}"
    attrs = " ".join(f"{k}={v}" for k, v in node.attrs)
    return f"{node.op} {args} {attrs}".rstrip()


def fixed_indices(shape: tuple) -> list[tuple[int, ...]]:
    """All indices of the fixed (non-sample) dims of ``shape``, in C order."""
    return list(itertools.product(*(range(d) for d in shape if d is not N)))


__all__ = [
    "ELEMENTWISE", "Elementwise", "function", "data", "param", "params", "constant", "as_node",
    "sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs", "maximum",
    "minimum", "gelu", "softplus", "where", "sum", "concatenate", "stop_gradient", "mean", "stack", "flatten", "reshape", "transpose", "index",
    "einsum", "matmul", "broadcast_to", "sample_axis",
]
__all__ += [  # numpy's math functions (issue #16)
    "arctan", "arcsin", "arccos", "arctan2", "sinh", "cosh", "arcsinh", "arccosh", "arctanh", "log1p",
    "expm1", "log2", "log10", "exp2", "erf", "erfc", "square", "sign", "floor", "ceil", "round", "clip",
    "hypot", "logaddexp", "atan", "asin", "acos", "atan2", "asinh", "acosh", "atanh",
]


def graph_listing(self: Graph) -> str:
    """jaxpr-style listing: one line per op node (``str(graph)``)."""
    names: dict[int, str] = {}
    for node in self.nodes:
        if node.name is not None:
            names[id(node)] = node.name
    leaves = [f"{n.name}:{format_shape(n.shape)}" for n in self.nodes if n.op in ("data", "param")]
    lines = ["{ lambda " + " ".join(leaves) + " . let"]
    count = 0
    for node in self.nodes:
        if node.op in ("data", "param"):
            continue
        if node.op == "const" and not node.shape:
            names[id(node)] = str(node)
            continue
        names[id(node)] = f"v{count}"
        count += 1
        lines.append(f"    {names[id(node)]}:{format_shape(node.shape)} = {node_line(node, names)}")
    lines.append("  in ( " + " ".join(names[id(o)] for o in self.outputs) + " ) }")
    return "\n".join(lines)


Node.__str__ = expression_string
Graph.__str__ = graph_listing
