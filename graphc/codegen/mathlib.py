"""graphc's own ``exp``, ``tanh``, ``log``, ``log1p`` for generated CPU code: text pasted into the module.

(Also here, compiled the same way: ``_maximum``/``_minimum``, and the array helpers
``_dot_into``, ``_dot``, ``_arange``, ``_permutation``: see "array helpers" below.)

Numba compiles ``math.exp``, ``math.tanh``, ``math.log``, ``math.log1p`` to libm calls. Without Intel's SVML
(pip's llvmlite has none) LLVM cannot vectorize a loop that makes such calls: every sample
pays a scalar call (about 20 ns for ``tanh``), and in an MLP that is most of a step. The
helpers here use only arithmetic, comparisons and selects (``a if c else b``), integer
shifts, float conversions and bit views, so once inlined LLVM vectorizes the loop that calls
them (AVX2: four float64 values per instruction, eight float32 in a float32 module's
``_tanh``).

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

Constants: each helper takes its constants as an argument, ``c``: the module's ``EXP_C`` or
``TANH_C``, copied once at the top of each function that calls it (``bindings`` writes that
line; the printer passes the copy, ``exp_c`` or ``tanh_c``). Written as literals, LLVM
keeps few of them in registers across a vectorized loop and rematerializes the others
where they are used, in every iteration: under Numba's large code model two instructions
each (an address, then a broadcast). A run-time value that does not fit in a register is
spilled once and read as the memory operand of an FMA, for free. The copy is what makes
them run-time values: Numba freezes a global array into the compiled code, and LLVM folds
loads from it back into literals. In a loop over 65,536 float64 values: ``_tanh`` 81
instructions per four values with literals, 43 with run-time constants (and the 2**j
below); ``_exp`` 185 with literals (and ``2**k`` from selects), 43 now, 3.2x the throughput.

Every helper computes in float64: other argument types are converted first and the
result converted back (float32: at most 1 ulp of float32). A float32 module
(``source(..., float32=True)``) has its own ``_tanh`` and ``_exp`` that compute in float32,
eight values per AVX2 instruction (``FLOAT32``). 2**k comes from the bits of the sum that rounds x/ln2 to an integer
(y = x/ln2 + 1.5*2**52 + bias holds k + bias in its low bits): AVX2 has no vector
conversion from float64 to int64.

Accuracy (tests/test_mathlib.py: dense random samples over the whole range; zeros,
subnormals, the overflow and underflow limits, infinities and NaN), in ulp of the correctly
rounded result: ``_exp`` at most 1, in float64 and for float32 arguments; ``_tanh`` at
most 2 in float64 (72% of results are the correctly rounded one, 0.2% are 2 ulp away; JAX's
float64 tanh, measured the same way: up to 4) and at most 1 for float32 arguments (computed
in float64). Against glibc's ``math.exp`` / ``math.tanh``, themselves not always correctly
rounded: at most 1 and 3 ulp. ``_tanh`` trades Cephes' 1 ulp (two paths, both computed, 77
instructions per 4 values) for one expm1 path at twice the throughput: in an MLP tanh is
most of a step. A float32 module (``source(..., float32=True)``) takes the rational
``_tanh`` that XLA and Eigen use (max 5.5 ulp), as JAX does for float32 tanh, and an
``_exp`` with the float64 method in float32 (1 ulp of float32): on float32 data 2.2-2.5x
and 2.3-2.7x the throughput of the float64 ones (benchmarks/bench_mathlib.py, two runs).

``_log`` and ``_log1p`` (``sp.log`` and SymPy's ``log1p``, which ``softplus`` writes) are
fdlibm's and musl's method made branch-free (both paths computed, one selected): exponent
and mantissa from the bits, f/(2 + f) and a degree-7 polynomial (``_log_core``, shared);
log1p adds the rounding error of 1 + x back, so tiny x lose nothing. Max error, against
the exact value (mpmath / x87 logl on 10 million points): 0.80 ulp (``_log``) and 0.77 ulp
(``_log1p``) in float64, so at most 1 ulp from the correctly rounded result; float32
arguments in a float64 module: 0.50 ulp, exhaustively over every float32. A float32
module's own (musl's logf / log1pf): 0.84 ulp of float32, exhaustively. Edges exactly as
numpy: log(+-0) = -inf, log(x < 0) = nan, log1p(-1) = -inf, log1p(x < -1) = nan,
log1p(-0) = -0, log1p(x) = x for |x| < 2**-53, inf and nan pass. Throughput on one core
(benchmarks/bench_mathlib.py, AVX-512 machine): ``_log`` 1.0 ns per float64 value
(``math.log`` 3.5), ``_log1p`` 1.2 (``math.log1p`` 10.6); float32 module 0.44 and 0.54.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import sympy as sp
from sympy.codegen.cfunctions import log1p  # what ops.softplus writes

# Numba's options for every generated function. fastmath: reassoc lets LLVM vectorize the sums,
# contract fuses a*b + c into one FMA; nothing else: no nnan/ninf (NaN and inf as IEEE), no nsz
# (signed zeros), no arcp (a/b is never a*(1/b), NaN where 1/b overflows). docs/guarantees.md
# lists what each flag may change.
FASTMATH = '{"reassoc", "contract"}'
MODULE_OPTIONS = f'OPTS = dict(cache=True, nogil=True, error_model="numpy", fastmath={FASTMATH})'
# forceinline: compiled once, inlined by LLVM (see above); MATH_OPTS: no reassoc, keeps -0
OPTIONS = 'MATH_OPTS = dict(OPTS, fastmath={"contract"})  # graphc\'s math helpers: exact as written'
JIT = "@numba.njit(forceinline=True, **MATH_OPTS)"
# printed above each constants array ({comment} in a helper's source; see CONSTANTS)
COMMENT = ("# {helper}'s constants, which its callers pass as {local}, a copy made once per function: a run-\n"
           "# time value, not a literal LLVM reloads from memory in every iteration (graphc.codegen.mathlib)")

_EXP_REDUCE = '''
{jit}
def _exp_reduce(x, c):
    """x = k*ln2 + r with k = round(x/ln2) and |r| <= ln2/2 (Cody-Waite: ln2 = C1 + C2 where
    k*C1 is exact, so x - k*C1 is exact); returns y, the rounding sum whose low bits hold
    k + 2046 (see _exp), and exp(r) from its Taylor series up to r**13 (truncation error
    < 5e-18, relative). x in [-746, 709.8] or NaN; c: EXP_C."""
    y = x * c[2] + c[3]  # rounded: k + 1.5*2**52 + 2046
    k = y - c[3]
    # (no reassoc in MATH_OPTS: it would merge the two products into k*(C1 + C2), which rounds ln2)
    r = (x - k * c[4]) - k * c[5]
    # (exp(r) - 1 - r)/r**2 = sum of c_i r**i, c_i = 1/(i + 2)!, i <= 11, by Estrin's scheme:
    # its dependency chains are shorter than Horner's, so more loop iterations overlap.
    r2 = r * r
    r4 = r2 * r2
    q0 = (c[6] + r * c[7]) + r2 * (c[8] + r * c[9])
    q1 = (c[10] + r * c[11]) + r2 * (c[12] + r * c[13])
    q2 = (c[14] + r * c[15]) + r2 * (c[16] + r * c[17])
    q = q0 + r4 * (q1 + r4 * q2)
    return y, c[18] + r * (c[18] + r * q)
'''

_EXP = '''
{comment}
EXP_C = np.array([
    -746.0,  # 0: exp(x) rounds to 0 below -745.14
    709.8,  # 1: and overflows above 709.79
    1.4426950408889634,  # 2: 1/ln2
    6755399441057790.0,  # 3: 1.5*2**52 + 2046 (rounds to an integer; 2046: twice the exponent bias)
    0.693145751953125,  # 4: C1, ln2 to 15 significant bits (k*C1 is exact)
    1.4286068203094172321e-6,  # 5: C2 = ln2 - C1
    1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040,  # 6-17: 1/(i + 2)!
    1 / 40320, 1 / 362880, 1 / 3628800, 1 / 39916800, 1 / 479001600, 1 / 6227020800,
    1.0,  # 18
])

{jit}
def _exp(x, c):
    """exp(x) = exp(r) * 2**k (see _exp_reduce), c: EXP_C. 2**k is applied as two exact powers
    of two, 2**(k//2) and 2**(k - k//2), each a normal float for every k here (-1076 to
    1024): exp(r) * 2**(k//2) is exact, and the second product rounds the result once, normal
    or subnormal. Their exponent fields come from the bits of the rounding sum y, whose low 12
    bits are K = k + 2046 (970 to 3070): K//2 = k//2 + 1023 and K - K//2 = (k - k//2) + 1023
    are the biased exponents. Max error 1 ulp. exp(inf) = inf, exp(-inf) = 0, exp(nan) = nan;
    overflow gives inf and underflow 0. Computes in float64: other argument types are converted
    and the result converted back (float32: at most 1 ulp of float32)."""
    x = x * np.float32(1.0)  # integers -> float64
    T = type(x)
    v = np.float64(x)
    v = c[0] if v < c[0] else v  # selects: NaN compares False and passes through
    v = c[1] if v > c[1] else v
    y, p = _exp_reduce(v, c)
    bits = np.float64(y).view(np.uint64)
    half = (bits >> np.uint64(1)) << np.uint64(52)  # K//2 in the exponent field: 2**(k//2)
    low = np.uint64(half).view(np.float64)
    high = np.uint64((bits << np.uint64(52)) - half).view(np.float64)  # 2**(k - k//2)
    return T((p * low) * high)
'''

_TANH = '''
{comment}
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
{comment}
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

_EXP_FLOAT32 = '''
{comment}
EXP_C = np.array([
    -104.0,  # 0: exp(x) rounds to 0 below -103.97 (float32)
    88.8,  # 1: and overflows above 88.72
    1.4426950408889634,  # 2: 1/ln2
    12583166.0,  # 3: 1.5*2**23 + 254 (rounds to an integer; 254: twice the exponent bias)
    0.693145751953125,  # 4: C1, ln2 to 15 significant bits (k*C1 is exact)
    1.4286068203094172321e-6,  # 5: C2 = ln2 - C1
    1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040,  # 6-11: 1/(i + 2)!
    1.0,  # 12
], np.float32)

{jit}
def _exp(x, c):
    """exp(x) for float32 models, c: EXP_C: the float64 _exp's method in float32 (eight values
    per AVX2 instruction): x = k*ln2 + r, exp(r) from its Taylor series up to r**7
    (truncation error < 6e-9, relative), 2**k as 2**(k//2) * 2**(k - k//2) from the low bits
    of the rounding sum y (k + 254). Max error 1 ulp of float32. exp(inf) = inf, exp(-inf) = 0,
    exp(nan) = nan; overflow gives inf and underflow 0. Other argument types are converted to
    float32."""
    v = np.float32(x)
    v = c[0] if v < c[0] else v  # selects: NaN compares False and passes through
    v = c[1] if v > c[1] else v
    y = v * c[2] + c[3]  # rounded: k + 1.5*2**23 + 254
    k = y - c[3]
    r = (v - k * c[4]) - k * c[5]
    r2 = r * r
    q = (c[6] + r * c[7]) + r2 * ((c[8] + r * c[9]) + r2 * (c[10] + r * c[11]))
    p = c[12] + (r + r2 * q)
    bits = np.float32(y).view(np.uint32)
    half = np.uint32((bits >> np.uint32(1)) << np.uint32(23))  # 2**(k//2)
    low = np.uint32(half).view(np.float32)
    high = np.uint32(np.uint32(bits << np.uint32(23)) - half).view(np.float32)  # 2**(k - k//2)
    return (p * low) * high
'''

_LOG_CORE = '''
{jit}
def _log_core(f, dk, cc, c):
    """log(1 + f) + cc + dk*ln2, fdlibm's (and musl's) log method, shared by _log and _log1p:
    f in [sqrt(2)/2 - 1, sqrt(2) - 1], cc a small correction (-0.0 for none), c: LOG_C or
    LOG1P_C (the same first eleven constants). With s = f/(2 + f), log(1 + f) = log(1 + s) -
    log(1 - s) = 2s + 2s**3/3 + ... = f - f*f/2 + s*(f*f/2 + R(s*s)), R a minimax polynomial
    of degree 7 in s*s (|s| <= 0.1716: error below 2**-58.45); dk*ln2 is added in two parts,
    ln2_hi (whose product with dk is exact) last, after f: each term is much smaller than the
    next, so the sum rounds about once."""
    hfsq = c[0] * f * f
    s = f / (c[1] + f)
    z = s * s
    w = z * z
    t1 = w * (c[5] + w * (c[7] + w * c[9]))
    t2 = z * (c[4] + w * (c[6] + w * (c[8] + w * c[10])))
    return s * (hfsq + (t2 + t1)) + (dk * c[3] + cc) - hfsq + f + dk * c[2]
'''

# _log_core's constants: indices 0-10 of both LOG_C and LOG1P_C
_LOG_CORE_C = '''    0.5, 2.0,  # 0, 1
    6.93147180369123816490e-01,  # 2: ln2_hi, ln2 to 32 significant bits (k*ln2_hi is exact)
    1.90821492927058770002e-10,  # 3: ln2_lo = ln2 - ln2_hi
    6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,  # 4-10: R's
    2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
    1.479819860511658591e-01,
    1.0,  # 11
    4503599627371519.0,  # 12: 2**52 + 1023 (the biased exponent e, ORed into 2**52's bits: 2**52 + e)
    -np.inf, np.nan, np.inf,  # 13-15'''

_LOG = '''
{comment}
LOG_C = np.array([
''' + _LOG_CORE_C + '''
    2.2250738585072014e-308,  # 16: the smallest normal float
    18014398509481984.0,  # 17: 2**54 (subnormals are scaled up by it)
    4503599627371573.0,  # 18: 2**52 + 1023 + 54
])

{jit}
def _log(x, c):
    """log(x), c: LOG_C. x = 2**k * m with m in [sqrt(2)/2, sqrt(2)) and log(x) = k*ln2 +
    log(1 + f), f = m - 1 (exact), by _log_core. k and m come from the bits: adding
    0x3ff00000 - 0x3fe6a09e to the high word carries into the exponent field exactly when
    the mantissa is at least sqrt(2)'s. k becomes a float with no conversion (AVX2 has none
    from int64): the exponent field ORed into the bits of 2**52 gives 2**52 + k + 1023.
    Subnormals are scaled by 2**54 first. Branch-free; max error 1 ulp (fdlibm: under 1
    ulp). log(+-0) = -inf, log(x < 0) = nan, log(inf) = inf, log(nan) = nan. Computes in
    float64: other argument types are converted and the result converted back."""
    x = x * np.float32(1.0)  # integers -> float64
    T = type(x)
    v = np.float64(x)
    sub = v < c[16]  # subnormal (or zero or negative: replaced below)
    scaled, bias, bias_sub, ninf, nan, inf = v * c[17], c[12], c[18], c[13], c[14], c[15]  # (selects
    w = scaled if sub else v  # between values computed before them: no branches, no conditional loads)
    bits = np.float64(w).view(np.int64) + np.int64(0x00095F6200000000)  # high word + 0x3ff00000 - 0x3fe6a09e
    m = np.int64((bits & np.int64(0x000FFFFFFFFFFFFF)) + np.int64(0x3FE6A09E00000000)).view(np.float64)
    e = np.int64((bits >> np.int64(52)) | np.int64(0x4330000000000000)).view(np.float64)  # 2**52 + k + 1023
    r = _log_core(m - c[11], e - (bias_sub if sub else bias), -0.0, c)
    r = ninf if v == 0.0 else r  # log(+-0) = -inf
    r = nan if v < 0.0 else r  # log(x < 0) = nan, -inf included
    return T(r if v < inf else v)  # inf and nan: themselves
'''

_LOG1P = '''
{comment}
LOG1P_C = np.array([
''' + _LOG_CORE_C + '''
    0.4142136573791504,  # 16: below, 1 + x < sqrt(2) (fdlibm's bound: 0x3fda827a in the high word)
    -0.292893648147583,  # 17: above, 1 + x >= sqrt(2)/2 (0xbfd2bec4)
    1.1102230246251565e-16,  # 18: 2**-53: below, log1p(x) rounds to x
    54.0,  # 19
])

{jit}
def _log1p(x, c):
    """log(1 + x), c: LOG1P_C, fdlibm's (and musl's) method. Where 1 + x is in [sqrt(2)/2,
    sqrt(2)): log(1 + f) with f = x itself (_log_core). Elsewhere u = 1 + x, rounded, is
    reduced as in _log, 2**k * (1 + f), and its rounding error corrected: log(1 + x) =
    log(u) + cc/u, cc = (1 + x) - u, exact as 1 - (u - x) for k >= 2 and x - (u - 1) below
    (0 from k = 54 on, where it no longer counts). Branch-free: both paths are computed and
    one selected. |x| < 2**-53: x itself (log1p(-0) = -0, subnormals exact). Max error 1 ulp
    (fdlibm: under 1 ulp). log1p(-1) = -inf, log1p(x < -1) = nan, log1p(inf) = inf,
    log1p(nan) = nan. Computes in float64: other argument types are converted and the result
    converted back."""
    x = x * np.float32(1.0)  # integers -> float64
    T = type(x)
    v = np.float64(x)
    u = c[11] + v
    bits = np.float64(u).view(np.int64) + np.int64(0x00095F6200000000)  # as in _log
    m = np.int64((bits & np.int64(0x000FFFFFFFFFFFFF)) + np.int64(0x3FE6A09E00000000)).view(np.float64)
    dk = np.int64((bits >> np.int64(52)) | np.int64(0x4330000000000000)).view(np.float64) - c[12]  # k
    one, ninf, nan, inf = c[11], c[13], c[14], c[15]  # (selects between values computed before them)
    c_high, c_low = (one - (u - v)) / u, (v - (u - one)) / u
    cc = c_high if dk >= c[1] else c_low
    cc = cc if dk < c[19] else 0.0
    near = (v < c[16]) & (v > c[17])
    f = m - one
    r = _log_core(v if near else f, 0.0 if near else dk, 0.0 if near else cc, c)
    r = v if abs(v) < c[18] else r
    r = ninf if v == -one else r  # log1p(-1) = -inf
    r = nan if v < -one else r  # log1p(x < -1) = nan, -inf included
    return T(r if v < inf else v)  # inf and nan: themselves
'''

_LOG_CORE_FLOAT32 = '''
{jit}
def _log_core(f, dk, cc, c):
    """log(1 + f) + cc + dk*ln2 in float32 (musl's logf method): f in [sqrt(2)/2 - 1,
    sqrt(2) - 1], s = f/(2 + f), log(1 + f) = f - f*f/2 + s*(f*f/2 + R(s*s)), R of degree 4
    in s*s (error below 2**-34.24); c: a float32 LOG_C or LOG1P_C (the same first eight
    constants)."""
    hfsq = c[0] * f * f
    s = f / (c[1] + f)
    z = s * s
    w = z * z
    t1 = w * (c[5] + w * c[7])
    t2 = z * (c[4] + w * c[6])
    return s * (hfsq + (t2 + t1)) + (dk * c[3] + cc) - hfsq + f + dk * c[2]
'''

_LOG_CORE_C_FLOAT32 = '''    0.5, 2.0,  # 0, 1
    0.693138122558593750,  # 2: ln2_hi, ln2 to 16 significant bits (k*ln2_hi is exact)
    9.05800061445916e-06,  # 3: ln2_lo = ln2 - ln2_hi, rounded
    0.6666666269302368, 0.40000972151756287, 0.2849878668785095, 0.24279078841209412,  # 4-7: R's
    1.0,  # 8
    8388735.0,  # 9: 2**23 + 127 (the biased exponent e, ORed into 2**23's bits: 2**23 + e)
    -np.inf, np.nan, np.inf,  # 10-12'''

_LOG_FLOAT32 = '''
{comment}
LOG_C = np.array([
''' + _LOG_CORE_C_FLOAT32 + '''
    1.1754943508222875e-38,  # 13: the smallest normal float32
    33554432.0,  # 14: 2**25 (subnormals are scaled up by it)
    8388760.0,  # 15: 2**23 + 127 + 25
], np.float32)

{jit}
def _log(x, c):
    """log(x) for float32 models, c: LOG_C: the float64 _log's method in float32 (musl's
    logf; eight values per AVX2 instruction). Max error 1 ulp of float32. log(+-0) = -inf,
    log(x < 0) = nan, log(inf) = inf, log(nan) = nan. Other argument types are converted to
    float32."""
    v = np.float32(x)
    sub = v < c[13]
    scaled, bias, bias_sub, ninf, nan, inf = v * c[14], c[9], c[15], c[10], c[11], c[12]
    w = scaled if sub else v
    bits = np.int32(np.float32(w).view(np.int32) + np.int32(0x004AFB0D))  # + 0x3f800000 - 0x3f3504f3
    m = np.int32((bits & np.int32(0x007FFFFF)) + np.int32(0x3F3504F3)).view(np.float32)
    e = np.int32((bits >> np.int32(23)) | np.int32(0x4B000000)).view(np.float32)  # 2**23 + k + 127
    r = _log_core(m - c[8], e - (bias_sub if sub else bias), np.float32(-0.0), c)
    r = ninf if v == np.float32(0.0) else r
    r = nan if v < np.float32(0.0) else r
    return r if v < inf else v
'''

_LOG1P_FLOAT32 = '''
{comment}
LOG1P_C = np.array([
''' + _LOG_CORE_C_FLOAT32 + '''
    0.41421365737915039,  # 13: below, 1 + x < sqrt(2) (musl's bound, 0x3ed413d0)
    -0.29289323091506958,  # 14: above, 1 + x >= sqrt(2)/2 (0xbe95f619)
    5.9604644775390625e-08,  # 15: 2**-24: below, log1p(x) rounds to x
    25.0,  # 16
], np.float32)

{jit}
def _log1p(x, c):
    """log(1 + x) for float32 models, c: LOG1P_C: the float64 _log1p's method in float32
    (musl's log1pf; eight values per AVX2 instruction). Max error 1 ulp of float32.
    log1p(-1) = -inf, log1p(x < -1) = nan, log1p(-0) = -0, log1p(inf) = inf, log1p(nan) =
    nan. Other argument types are converted to float32."""
    v = np.float32(x)
    u = c[8] + v
    bits = np.int32(np.float32(u).view(np.int32) + np.int32(0x004AFB0D))
    m = np.int32((bits & np.int32(0x007FFFFF)) + np.int32(0x3F3504F3)).view(np.float32)
    dk = np.int32((bits >> np.int32(23)) | np.int32(0x4B000000)).view(np.float32) - c[9]
    one, ninf, nan, inf, zero = c[8], c[10], c[11], c[12], np.float32(0.0)
    c_high, c_low = (one - (u - v)) / u, (v - (u - one)) / u
    cc = c_high if dk >= c[1] else c_low
    cc = cc if dk < c[16] else zero
    near = (v < c[13]) & (v > c[14])
    f = m - one
    r = _log_core(v if near else f, zero if near else dk, zero if near else cc, c)
    r = v if abs(v) < c[15] else r
    r = ninf if v == -one else r
    r = nan if v < -one else r
    return r if v < inf else v
'''

_MAXIMUM = '''
{jit}
def _maximum(a, b):
    """np.maximum(a, b) for two numbers: NaN if either is NaN (Python's max drops a NaN,
    depending on the order), b where they compare equal. Selects, which LLVM vectorizes; a
    max of more values nests calls, _maximum(a, _maximum(b, c)), so code grows linearly."""
    return a if a > b else (b if a <= b else a + b)
'''

_MINIMUM = '''
{jit}
def _minimum(a, b):
    """np.minimum(a, b) for two numbers: NaN if either is NaN, b where they compare equal (see _maximum)."""
    return a if a < b else (b if a >= b else a + b)
'''

# ---- array helpers: numpy calls whose Numba implementations a model would compile again ----
# Numba compiles np.dot, np.arange and np.random.permutation from their Python implementations
# in every process that first types them (type inference and lowering of a few hundred lines
# each, about 1 s of the 2-64-64-3 relu net's first mini-batch fit). Called through these
# helpers, that work is done once per installation and read from Numba's cache afterwards,
# like the math helpers'.
_DOT_INTO = '''
{jit}
def _dot_into(a, b, out):
    """np.dot(a, b, out): out = a @ b for 2-D a, b and out (BLAS, through SciPy)."""
    np.dot(a, b, out)
'''

_DOT = '''
{jit}
def _dot(a, b):
    """np.dot(a, b): a new array a @ b (BLAS, through SciPy)."""
    return np.dot(a, b)
'''

_ARANGE = '''
{jit}
def _arange(n):
    """np.arange(n): the samples in order."""
    return np.arange(n)
'''

_PERMUTATION = '''
{jit}
def _permutation(n, seed):
    """np.random.permutation(n) drawn right after np.random.seed(seed) (Numba's generator,
    shared by every compiled function of the process)."""
    np.random.seed(seed)
    return np.random.permutation(n)
'''

# name -> (source, helpers it calls)
HELPERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "_exp_reduce": (_EXP_REDUCE, ()),
    "_exp": (_EXP, ("_exp_reduce",)),
    "_tanh": (_TANH, ()),
    "_log_core": (_LOG_CORE, ()),
    "_log": (_LOG, ("_log_core",)),
    "_log1p": (_LOG1P, ("_log_core",)),
    "_maximum": (_MAXIMUM, ()),
    "_minimum": (_MINIMUM, ()),
    "_dot_into": (_DOT_INTO, ()),
    "_dot": (_DOT, ()),
    "_arange": (_ARANGE, ()),
    "_permutation": (_PERMUTATION, ()),
}

# float32 modules (dtype="float32") take these instead
FLOAT32: dict[str, tuple[str, tuple[str, ...]]] = {
    "_exp": (_EXP_FLOAT32, ()), "_tanh": (_TANH_FLOAT32, ()), "_log_core": (_LOG_CORE_FLOAT32, ()),
    "_log": (_LOG_FLOAT32, ("_log_core",)), "_log1p": (_LOG1P_FLOAT32, ("_log_core",)),
}

# helpers every target's printer calls (no constants, no bit tricks): the CUDA target defines
# them as device functions (``device_source``)
PORTABLE = ("_maximum", "_minimum")

# SymPy function -> the helper the vector-math printer calls instead of math.<name>
SYMPY: dict[type, str] = {sp.exp: "_exp", sp.tanh: "_tanh", sp.log: "_log", log1p: "_log1p"}

# helper -> (the module's array of its constants, the local its callers pass: a copy of it)
CONSTANTS: dict[str, tuple[str, str]] = {"_exp": ("EXP_C", "exp_c"), "_tanh": ("TANH_C", "tanh_c"),
                                         "_log": ("LOG_C", "log_c"), "_log1p": ("LOG1P_C", "log1p_c")}

# Every identifier the helpers put in a generated module (graph.RESERVED holds them too)
NAMES = frozenset(HELPERS) | {"MATH_OPTS"} | {n for pair in CONSTANTS.values() for n in pair}


def call(helper: str, arg: str) -> str:
    """The text of a call of ``helper`` on ``arg``; a helper with constants takes its local
    copy of them too (``bindings`` makes it)."""
    return f"{helper}({arg}, {CONSTANTS[helper][1]})" if helper in CONSTANTS else f"{helper}({arg})"


def bindings(helpers: Iterable[str], indent: str) -> list[str]:
    """The first lines of a function that calls ``helpers``: each one's constants as a local
    (``tanh_c = TANH_C.copy()``), made once per call of the function, not per sample."""
    called = set(helpers)
    return [f"{indent}{local} = {array}.copy()  # constants as run-time values (see {array})"
            for helper, (array, local) in CONSTANTS.items() if helper in called]


LOOP = '''
@numba.njit(**OPTS)
def loop_{name}(x, out):
{bind}    for i in range(x.shape[0]):
        out[i] = {call}
'''


def loops(calls: Iterable[tuple[str, str]], float32: bool = False) -> str:
    """A module of one-loop functions, ``loop_<name>(x, out)`` computing ``out[i] =
    fn(x[i])`` for each (name, fn) in ``calls``, laid out as a generated one: imports,
    ``OPTS``, the helpers' text, then the loops (a helper called as the printer calls it,
    its constants bound as the emitters bind them; any other fn, e.g. ``math.exp``, as
    written). For tests/test_mathlib.py and benchmarks/bench_mathlib.py: load it with
    ``graphc.runtime.loader.load``."""
    calls = list(calls)
    helpers = {fn for _, fn in calls if fn in HELPERS}
    text = "\n".join([
        "import math", "", "import numba", "import numpy as np", "",
        MODULE_OPTIONS, "", source(helpers, float32=float32), "",
        *(LOOP.format(name=name, call=call(fn, "x[i]") if fn in HELPERS else f"{fn}(x[i])",
                      bind="".join(line + "\n" for line in bindings([fn], "    "))) for name, fn in calls),
    ])
    return text


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


def text(names: Iterable[str], float32: bool = False) -> str:
    """The text of the helpers ``names`` (and of those they call): their options line, then
    the functions, each after those it calls; "" for no names. ``float32``: a float32
    module's versions (``FLOAT32``), where they differ. (The helper modules hold it; see
    ``MODULES``.)"""
    table = _table(float32)
    order = closure(names, float32)
    if not order:
        return ""
    return "\n\n".join([OPTIONS, *(_text(table[name][0], name) for name in order)])


# ---- where the helpers are compiled: once per installation, not once per model ----
# A generated module holds the text of the helpers it calls (readable, and an exported module runs
# without graphc), then imports the same helpers from graphc/codegen/helpers/, where they are
# compiled with cache=True: Numba keeps their machine code (and the bitcode LLVM inlines into each
# caller: the loops are the same code) beside that module, or in its user-wide cache, for every
# later process and model. Compiled from each new model's own text, they cost 0.2-0.8 s apiece in
# a fresh process (the 3-parameter Newton fit's _exp and solve: over half its first compile).
# Each helper module is the text of every helper (``module_text``), written by
# ``python -m graphc.codegen.mathlib``; tests/test_mathlib.py checks it is current. Its name
# carries a digest of that text, so a module generated or exported with other helpers' text
# finds no module of that name and compiles its own (``except ImportError``).
SOLVE = '''
@numba.njit(**OPTS)
def solve(A, b):
    """Solve A x = b in place (b becomes x): Gaussian elimination with partial pivoting."""
    n = b.shape[0]
    for col in range(n):
        piv = col
        for r in range(col + 1, n):
            if abs(A[r, col]) > abs(A[piv, col]):
                piv = r
        for c in range(n):
            A[col, c], A[piv, c] = A[piv, c], A[col, c]
        b[col], b[piv] = b[piv], b[col]
        for r in range(col + 1, n):
            f = A[r, col] / A[col, col]
            for c in range(col, n):
                A[r, c] -= f * A[col, c]
            b[r] -= f * b[col]
    for r in range(n - 1, -1, -1):
        s = b[r]
        for c in range(r + 1, n):
            s -= A[r, c] * b[c]
        b[r] = s / A[r, r]

@numba.njit(**OPTS)
def newton_direction(grad, n, shift):
    """(H + shift*I)^-1 grad[:n], a new array; grad[n:] holds the Hessian H's upper triangle, row by row."""
    hess = np.empty((n, n))
    delta = grad[:n].copy()
    k = n
    for r in range(n):
        for c in range(r, n):
            hess[r, c] = grad[k]
            hess[c, r] = grad[k]
            k += 1
        hess[r, r] += shift
    solve(hess, delta)
    return delta
'''.strip()  # the Newton step (codegen/cpu.py's update calls newton_direction); in the float64 module


def source(names: Iterable[str], float32: bool = False) -> str:
    """The text of the helpers ``names`` (and of those they call), ready to paste into a
    module after its ``OPTS`` line: their options line, then the functions, then the import
    that rebinds ``names`` and their constants to the same helpers compiled once per
    installation (``MODULES``); "" for no names. ``float32``: a float32 module's versions
    (``FLOAT32``), where they differ."""
    names = set(names)
    body = text(names, float32)
    if not body:
        return ""
    return body + "\n\n" + _imports(names | {CONSTANTS[n][0] for n in names if n in CONSTANTS}, float32)


def device_source(names: Iterable[str], jit: str) -> str:
    """The text of the PORTABLE helpers among ``names`` under the decorator ``jit`` (the CUDA
    target's ``@cuda.jit(device=True)``); "" for none."""
    names = set(names)
    return "\n\n".join(_text(HELPERS[n][0], n, jit) for n in PORTABLE if n in names)


def newton_source() -> str:
    """The text of ``newton_direction`` and the ``solve`` it calls, then the import of their
    compiled copies (see MODULES): a Newton step's update calls it. Compiled with each model,
    the array allocations, copy and solve took about 0.25 s of a 3-parameter fit's first compile."""
    return SOLVE + "\n\n" + _imports(["newton_direction", "solve"], False)


def module_text(float32: bool = False) -> str:
    """The text of a helper module: every helper (float64: and the Newton step's), after the options."""
    kind = "float32" if float32 else "float64"
    doc = (f'"""graphc\'s math helpers for {kind} modules, compiled once per installation. Generated: do not edit.\n\n'
           "Written by ``python -m graphc.codegen.mathlib`` from the templates in graphc/codegen/mathlib.py,\n"
           "which document each helper (see its MODULES). Generated modules import what they call from\n"
           "here, so Numba compiles each helper once (cache=True), not once per model.\n"
           '"""')
    parts = [doc, "import math\n\nimport numba\nimport numpy as np", MODULE_OPTIONS, text(_table(float32), float32)]
    return "\n\n".join(parts + ([] if float32 else [SOLVE])) + "\n"


def _module_name(float32: bool) -> str:
    digest = hashlib.sha256(module_text(float32).encode()).hexdigest()[:10]
    return f"graphc.codegen.helpers.{'f32' if float32 else 'f64'}_{digest}"


def _imports(names: Iterable[str], float32: bool) -> str:
    """The lines that rebind ``names`` to their compiled copies (see MODULES) where graphc is installed."""
    home = MODULES[float32]
    return "\n".join([
        f"try:  # with graphc installed: this text compiled once per installation ({home.replace('.', '/')}.py)",
        f"    from {home} import {', '.join(sorted(names))}",
        "except ImportError:  # without graphc (an exported module), or with other helpers: the definitions above",
        "    pass",
    ])


def write_modules() -> list[str]:
    """(Re)write the helper modules (graphc/codegen/helpers/), removing stale ones; returns their paths."""
    folder = Path(__file__).with_name("helpers")
    folder.mkdir(exist_ok=True)
    init = folder / "__init__.py"
    if not init.exists():
        init.write_text('"""graphc\'s math helpers, compiled once per installation (graphc/codegen/mathlib.py)."""\n')
    current = {folder / (MODULES[f32].rsplit(".", 1)[1] + ".py"): module_text(f32) for f32 in (False, True)}
    for stale in folder.glob("f[36][24]_*.py"):
        if stale not in current:
            stale.unlink()
    for path, body in current.items():
        path.write_text(body, encoding="utf-8")
    return [str(p) for p in current]


def drop_compiled() -> int:
    """Delete the machine code Numba keeps for the helper modules (a machine's first model
    compiles them again: benchmarks/bench_latency.py --fresh-helpers); returns how many files went."""
    import importlib

    import numba

    gone = 0
    for name in MODULES.values():
        module = importlib.import_module(name)
        cache = next(v for v in vars(module).values() if isinstance(v, numba.core.dispatcher.Dispatcher))._cache
        stem = Path(module.__file__).stem
        for path in Path(cache._cache_path).glob(stem + ".*"):
            if path.suffix in (".nbi", ".nbc"):
                path.unlink(missing_ok=True)
                gone += 1
    return gone


def _text(template: str, name: str, jit: str = JIT) -> str:
    comment = COMMENT.format(helper=name, local=CONSTANTS[name][1]) if name in CONSTANTS else ""
    return template.format(jit=jit, comment=comment).strip()


MODULES = {False: _module_name(False), True: _module_name(True)}  # the compiled homes (above)

if __name__ == "__main__":
    print("\n".join(write_modules()))
