"""graphc's own ``exp`` and ``tanh`` for generated CPU code: source text pasted into the module.

Numba compiles ``math.exp`` and ``math.tanh`` to calls into libm. Without Intel's SVML
(pip's llvmlite has none) LLVM cannot vectorize a loop that makes such calls: every sample
pays a scalar call (about 20 ns for ``tanh``), and in an MLP that is most of a step. The
helpers here use only arithmetic, comparisons and selects (``a if c else b``), ``np.floor``,
integer shifts, int/float conversions and bit views, so once inlined LLVM vectorizes the loop
that calls them (AVX2: four float64 or eight float32 per instruction).

``source(names)`` gives the text of the named helpers and of the helpers they call (each
defined before its callers), to paste after the module's ``OPTS`` line: it needs ``numba``,
``numpy as np`` and ``OPTS``. ``SYMPY`` says which SymPy function each public helper
replaces; ``printer(vector_math=True)`` prints those as helper calls and records the names
in ``.used``.

The helpers are ``@numba.njit(forceinline=True)``: each compiles once, with its own fastmath
flags (``MATH_OPTS``: contraction into FMAs only), and LLVM inlines it into every caller.
Numba's ``inline="always"`` would re-type and re-lower the body at every call site (an MLP
with 32 tanh calls compiled for minutes) and give it the caller's ``reassoc``, under which
LLVM rewrites the Cody-Waite reduction (x - k*C1) - k*C2 into x - k*(C1 + C2): up to 200 ulp.
No nnan/ninf either: NaN and infinity follow ``math``'s semantics.

Constants: ``_tanh`` takes its constants as an argument, ``c``, the module's ``TANH_C``
copied once at the top of each function that calls it (``bind`` writes that line; the
printer passes ``tanh_c``). Written as literals, LLVM keeps none of them in a register
across the vectorized loop (too many) and rematerializes each from the constant pool where
it is used: under Numba's large code model that is two instructions (an address, then a
broadcast) per constant per iteration, 81 instructions per four values instead of 43. A run-
time value that does not fit in a register is spilled once and read as the memory operand of
an FMA instead, for free. The copy is what makes them run-time values: LLVM folds loads from
the array itself, a compile-time constant. (``_exp`` keeps literals: it is not in the hot
loop of any benchmark yet.)

The code is generic in the float type: Numba compiles one copy per argument type and every
constant is cast to it (``T = type(x)``), so float32 arguments compute in float32 (integers
are promoted to float64 first).

Accuracy (tests/test_mathlib.py: dense random samples over the whole range; zeros,
subnormals, the overflow and underflow limits, infinities and NaN), in ulp of the correctly
rounded result: ``_exp`` at most 1, for float64 and for float32 arguments; ``_tanh`` at
most 2 in float64 (72% of results are the correctly rounded one, 0.2% are 2 ulp away; JAX's
float64 tanh, measured the same way: up to 4) and at most 1 for float32 arguments (computed
in float64). Against glibc's ``math.exp`` / ``math.tanh``, themselves not always correctly
rounded: at most 1 and 3 ulp. ``_tanh`` trades Cephes' 1 ulp (two paths, both computed, 77
instructions per 4 values) for one expm1 path at twice the throughput: in an MLP tanh is
most of a step. A float32 module (``source(..., float32=True)``) takes the rational
``_tanh`` that XLA and Eigen use (max 5.5 ulp, about 3x the throughput), as JAX does for
float32 tanh.
"""

from __future__ import annotations

import ast
from typing import Iterable

import sympy as sp

# forceinline: compiled once, inlined by LLVM (see above); MATH_OPTS: no reassoc, keeps -0
OPTIONS = 'MATH_OPTS = dict(OPTS, fastmath={"contract"})  # graphc\'s math helpers: exact as written'
JIT = "@numba.njit(forceinline=True, **MATH_OPTS)"

_EXP_REDUCE = '''
{jit}
def _exp_reduce(x, kmin):
    """x = k*ln2 + r with |r| <= ln2/2 (Cody-Waite: ln2 = C1 + C2 where k*C1 is exact, so
    x - k*C1 is exact); returns k (at least kmin) and exp(r) from its Taylor series up to
    r**13 (truncation error < 5e-18, relative). x must be finite or NaN. A k raised to kmin
    makes r < -ln2/2: only where the result is far below the smallest subnormal."""
    T = type(x)
    k = np.floor(x * T(1.4426950408889634) + T(0.5))  # round(x / ln2)
    k = kmin if k < kmin else k
    # C1 has 15 significant bits, so k*C1 and x - k*C1 are exact (no reassoc in MATH_OPTS: it
    # would merge the two products into k*(C1 + C2), which rounds ln2)
    r = (x - k * T(0.693145751953125)) - k * T(1.4286068203094172321e-6)  # C2 = ln2 - C1
    # (exp(r) - 1 - r)/r**2 = sum of c_i r**i, c_i = 1/(i + 2)!, i <= 11, by Estrin's scheme:
    # its dependency chains are shorter than Horner's, so more loop iterations overlap.
    r2 = r * r
    r4 = r2 * r2
    q0 = (T(1 / 2) + r * T(1 / 6)) + r2 * (T(1 / 24) + r * T(1 / 120))
    q1 = (T(1 / 720) + r * T(1 / 5040)) + r2 * (T(1 / 40320) + r * T(1 / 362880))
    q2 = (T(1 / 3628800) + r * T(1 / 39916800)) + r2 * (T(1 / 479001600) + r * T(1 / 6227020800))
    q = q0 + r4 * (q1 + r4 * q2)
    return k, T(1.0) + r * (T(1.0) + r * q)
'''

_POW2 = '''
{jit}
def _pow2(m):
    """2.0**m, exactly, for an integer-valued m in [-1074, 1023] (float32: [-149, 127]), from
    comparisons and selects (no bit casts): |m| = 256*c + 16*h + l with c < 5 and h, l < 16,
    and 2**-|m| is the product of the powers 2**-(256*j), 2**-(16*j), 2**-j (j = 4, 2, 1 or 8,
    4, 2, 1) that make up each digit. Three short chains: more loop iterations overlap than
    with one long one. Every partial product is a power of two between 2**-|m| and 1, so
    every multiplication is exact; for m >= 0 the result is 1/2**-m, exact too."""
    T = type(m)
    a = abs(m)
    c = np.floor(a * T(1 / 256))
    a = a - T(256.0) * c
    h = np.floor(a * T(1 / 16))
    low = a - T(16.0) * h
    s_c = T(1.0)
    for j in (4.0, 2.0, 1.0):
        take = c >= T(j)
        s_c = s_c * (T(2.0 ** (-256 * j)) if take else T(1.0))
        c = c - T(j) if take else c
    s_h = T(1.0)
    s_low = T(1.0)
    for j in (8.0, 4.0, 2.0, 1.0):
        take = h >= T(j)
        s_h = s_h * (T(2.0 ** (-16 * j)) if take else T(1.0))
        h = h - T(j) if take else h
        take = low >= T(j)
        s_low = s_low * (T(2.0 ** -j) if take else T(1.0))
        low = low - T(j) if take else low
    s = s_c * (s_h * s_low)
    return s if m < T(0.0) else T(1.0) / s
'''


_EXP = '''
{jit}
def _exp(x):
    """exp(x): Cody-Waite range reduction, Taylor polynomial, exact scaling by a power of two
    (see _exp_reduce and _pow2). Max error 1 ulp in float64 and float32. exp(inf) = inf,
    exp(-inf) = 0, exp(nan) = nan; overflow gives inf and underflow 0, subnormals are exact
    to the last bit."""
    x = x * np.float32(1.0)  # integers -> float64; float32 stays float32
    T = type(x)
    double = T(1e-300) != T(0.0)  # float64 (float32 rounds 1e-300 to 0); a constant
    lo, hi = (T(-746.0), T(710.0)) if double else (T(-104.0), T(89.0))  # exp(lo) -> 0, exp(hi) -> inf
    x = lo if x < lo else x  # selects: NaN compares False and passes through
    x = hi if x > hi else x
    k, p = _exp_reduce(x, T(-1075.0) if double else T(-150.0))
    # exp(x) = (p * 2**j) * 2**(k - j) with j = 1 for k > 0, else -1: 2**(k - j) is then a
    # float for every k here (k runs from -1075 to 1024), p * 2**j is exact, and the last
    # multiplication rounds the result once, subnormal or not.
    up = k > T(0.0)
    return (p * (T(2.0) if up else T(0.5))) * _pow2(k - (T(1.0) if up else T(-1.0)))
'''

_TANH = '''
# _tanh's constants, which its callers pass as tanh_c, a copy made once per function: a run-
# time value, not a literal LLVM reloads from memory in every iteration (graphc.codegen.mathlib)
TANH_C = np.array([
    20.0,  # 0: |x| cap (tanh rounds to 1 from 19.1 on; keeps 2**j a normal float)
    2.8853900817779268,  # 1: 2/ln2
    6755399441056767.0,  # 2: 1.5*2**52 + 1023 (rounds to an integer; 1023: the exponent bias)
    0.693145751953125,  # 3: C1, ln2 to 15 significant bits (j*C1 is exact)
    1.4286068203094172321e-6,  # 4: C2 = ln2 - C1
    0.5000000000000006, 0.16666666666666588, 0.04166666666657682, 0.008333333333389509,  # 5-14: q
    0.0013888888931540297, 0.0001984126971907887, 2.480150530553317e-05, 2.755740750709753e-06,
    2.7626024518665314e-07, 2.5053775072479526e-08,
    1.0,  # 15
])

{jit}
def _tanh(x, c):
    """tanh(x) = (1 - e)/(1 + e), e = exp(-2|x|), then given the sign of x; c: TANH_C.
    One path for every x, branch-free: 2|x| = j*ln2 - r with j = round(2|x|/ln2) and
    |r| <= ln2/2 (Cody-Waite, as in _exp_reduce), so e = exp(r)/u with u = 2**j, and
    tanh|x| = ((u - 1) - m)/((u + 1) + m), m = expm1(r) = r + r*r*q(r), q of degree 9 (a
    weighted minimax fit: relative error of m below 2e-17; the Taylor series needs degree
    11). u - 1 and u + 1 are exact, so the numerator (which cancels for small |x|) and the
    denominator are each rounded once. u comes from the bits of the rounding sum: y = 2|x|/ln2
    + 1.5*2**52 + 1023 holds j + 1023 in its low bits, and bits(y) << 52 puts them in the
    exponent field. Max error 2 ulp (float64); tanh(+-inf) = +-1, tanh(-0) = -0,
    tanh(nan) = nan. Computes in float64: other argument types are converted and the result
    converted back."""
    x = x * np.float32(1.0)  # integers -> float64
    T = type(x)
    a = abs(np.float64(x))
    a = c[0] if a > c[0] else a  # a select: NaN passes
    y = a * c[1] + c[2]  # rounded: j + 1.5*2**52 + 1023
    j = y - c[2]
    r = (j * c[3] - (a + a)) + j * c[4]  # j*ln2 - 2|x|: the first difference is exact
    r2 = r * r
    r4 = r2 * r2
    q0 = (c[5] + r * c[6]) + r2 * (c[7] + r * c[8])
    q1 = (c[9] + r * c[10]) + r2 * (c[11] + r * c[12])
    q2 = c[13] + r * c[14]
    m = r + r2 * (q0 + r4 * (q1 + r4 * q2))  # expm1(r), Estrin's scheme (see _exp_reduce)
    u = np.int64(np.float64(y).view(np.int64) << np.int64(52)).view(np.float64)  # 2**j
    return T(math.copysign(((u - c[15]) - m) / ((u + c[15]) + m), x))
'''

_TANH_FLOAT32 = '''
# _tanh's constants, which its callers pass as tanh_c, a copy made once per function: a run-
# time value, not a literal LLVM reloads from memory in every iteration (graphc.codegen.mathlib)
TANH_C = np.array([
    9.0,  # 0: |x| cap
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,  # 1-7: p
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03,
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03,  # 8-11: q
    1.0,  # 12: the result's cap
    0.0004,  # 13: below this |x|, tanh(x) rounds to x
], np.float32)

{jit}
def _tanh(x, c):
    """tanh(x) for float32 models, c: TANH_C: the odd rational p(z)/q(z) of degrees 13/6 that
    XLA (so JAX), Eigen and ONNX Runtime use, z = x clamped to [-9, 9]; x itself where
    |x| < 0.0004; the result capped at +-1. Max error 5.5 ulp of float32 (1 ulp: about 6e-8
    near 1), a third of the instructions of the float64 method; tanh(+-inf) = +-1,
    tanh(-0) = -0, tanh(nan) = nan."""
    z = c[0] if x > c[0] else x
    z = -c[0] if z < -c[0] else z
    z2 = z * z
    p = ((((((c[1] * z2 + c[2]) * z2 + c[3]) * z2 + c[4]) * z2 + c[5]) * z2 + c[6]) * z2 + c[7])
    q = ((c[8] * z2 + c[9]) * z2 + c[10]) * z2 + c[11]
    r = z * p / q
    r = c[12] if r > c[12] else r
    r = -c[12] if r < -c[12] else r
    return x if abs(x) < c[13] else r
'''

# name -> (source, helpers it calls)
HELPERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "_exp_reduce": (_EXP_REDUCE, ()),
    "_pow2": (_POW2, ()),
    "_exp": (_EXP, ("_exp_reduce", "_pow2")),
    "_tanh": (_TANH, ()),
}

# float32 modules (dtype="float32") take these instead
FLOAT32: dict[str, tuple[str, tuple[str, ...]]] = {"_tanh": (_TANH_FLOAT32, ())}

# SymPy function -> the helper the vector-math printer calls instead of math.<name>
SYMPY: dict[type, str] = {sp.exp: "_exp", sp.tanh: "_tanh"}

# helper -> (the module's array of its constants, the local its callers pass: a copy of it)
CONSTANTS: dict[str, tuple[str, str]] = {"_tanh": ("TANH_C", "tanh_c")}

# Every identifier the helpers put in a generated module (graph.RESERVED holds them too)
NAMES = frozenset(HELPERS) | {"MATH_OPTS"} | {n for pair in CONSTANTS.values() for n in pair}


def call(helper: str, arg: str) -> str:
    """The text of a call of ``helper`` on ``arg``; a helper with constants takes its local
    copy of them too (``bind`` makes it)."""
    return f"{helper}({arg}, {CONSTANTS[helper][1]})" if helper in CONSTANTS else f"{helper}({arg})"


def bind(module: str) -> str:
    """``module`` with a first line in each function that passes a helper's constants (reads
    its local, ``tanh_c``): ``tanh_c = TANH_C.copy()``, after the docstring. Once per call of
    the function, not per sample."""
    tree = ast.parse(module)
    lines = module.split("\n")
    inserts = []
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef) or fn.name in HELPERS:
            continue
        read = {node.id for node in ast.walk(fn) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
        wanted = [(array, local) for array, local in CONSTANTS.values() if local in read]
        if not wanted:
            continue
        first = fn.body[0]
        docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
        at = first.end_lineno if docstring else first.lineno - 1  # 0-based index of the new line
        indent = " " * first.col_offset
        inserts.append((at, [f"{indent}{local} = {array}.copy()  # constants as run-time values (see {array})"
                             for array, local in wanted]))
    for at, new in sorted(inserts, reverse=True):
        lines[at:at] = new
    return "\n".join(lines)


def _table(float32: bool) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {**HELPERS, **FLOAT32} if float32 else HELPERS


def closure(names: Iterable[str], float32: bool = False) -> list[str]:
    """``names`` and the helpers they call, each after the helpers it calls (a stable order)."""
    table = _table(float32)
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name not in table:
            raise KeyError(f"graphc.codegen.mathlib: no helper {name!r}; have {', '.join(table)}")
        for dep in table[name][1]:
            visit(dep)
        order.append(name)

    for name in sorted(names):
        visit(name)
    return order


def source(names: Iterable[str], float32: bool = False) -> str:
    """The text of the helpers ``names`` (and of those they call), ready to paste into a
    module after its ``OPTS`` line: their options line, then the functions; "" for no names.
    ``float32``: a float32 module's versions (``FLOAT32``), where they differ."""
    table = _table(float32)
    order = closure(names, float32)
    if not order:
        return ""
    return "\n\n".join([OPTIONS, *(table[name][0].format(jit=JIT).strip() for name in order)])
