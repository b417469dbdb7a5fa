"""graphc's math helpers for float64 modules, compiled once per installation. Generated: do not edit.

Written by ``python -m graphc.codegen.mathlib`` from the templates in graphc/codegen/mathlib.py,
which document each helper (see its MODULES). Generated modules import what they call from
here, so Numba compiles each helper once (cache=True), not once per model.
"""

import math

import numba
import numpy as np

OPTS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})

MATH_OPTS = dict(OPTS, fastmath={"contract"})  # graphc's math helpers: exact as written

@numba.njit(forceinline=True, **MATH_OPTS)
def _arange(n):
    """np.arange(n): the samples in order."""
    return np.arange(n)

@numba.njit(forceinline=True, **MATH_OPTS)
def _dot(a, b):
    """np.dot(a, b): a new array a @ b (BLAS, through SciPy)."""
    return np.dot(a, b)

@numba.njit(forceinline=True, **MATH_OPTS)
def _dot_into(a, b, out):
    """np.dot(a, b, out): out = a @ b for 2-D a, b and out (BLAS, through SciPy)."""
    np.dot(a, b, out)

@numba.njit(forceinline=True, **MATH_OPTS)
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

# _exp's constants, which its callers pass as exp_c, a copy made once per function: a run-
# time value, not a literal LLVM reloads from memory in every iteration (graphc.codegen.mathlib)
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

@numba.njit(forceinline=True, **MATH_OPTS)
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

@numba.njit(forceinline=True, **MATH_OPTS)
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

# _log's constants, which its callers pass as log_c, a copy made once per function: a run-
# time value, not a literal LLVM reloads from memory in every iteration (graphc.codegen.mathlib)
LOG_C = np.array([
    0.5, 2.0,  # 0, 1
    6.93147180369123816490e-01,  # 2: ln2_hi, ln2 to 32 significant bits (k*ln2_hi is exact)
    1.90821492927058770002e-10,  # 3: ln2_lo = ln2 - ln2_hi
    6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,  # 4-10: R's
    2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
    1.479819860511658591e-01,
    1.0,  # 11
    4503599627371519.0,  # 12: 2**52 + 1023 (the biased exponent e, ORed into 2**52's bits: 2**52 + e)
    -np.inf, np.nan, np.inf,  # 13-15
    2.2250738585072014e-308,  # 16: the smallest normal float
    18014398509481984.0,  # 17: 2**54 (subnormals are scaled up by it)
    4503599627371573.0,  # 18: 2**52 + 1023 + 54
])

@numba.njit(forceinline=True, **MATH_OPTS)
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

# _log1p's constants, which its callers pass as log1p_c, a copy made once per function: a run-
# time value, not a literal LLVM reloads from memory in every iteration (graphc.codegen.mathlib)
LOG1P_C = np.array([
    0.5, 2.0,  # 0, 1
    6.93147180369123816490e-01,  # 2: ln2_hi, ln2 to 32 significant bits (k*ln2_hi is exact)
    1.90821492927058770002e-10,  # 3: ln2_lo = ln2 - ln2_hi
    6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,  # 4-10: R's
    2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
    1.479819860511658591e-01,
    1.0,  # 11
    4503599627371519.0,  # 12: 2**52 + 1023 (the biased exponent e, ORed into 2**52's bits: 2**52 + e)
    -np.inf, np.nan, np.inf,  # 13-15
    0.4142136573791504,  # 16: below, 1 + x < sqrt(2) (fdlibm's bound: 0x3fda827a in the high word)
    -0.292893648147583,  # 17: above, 1 + x >= sqrt(2)/2 (0xbfd2bec4)
    1.1102230246251565e-16,  # 18: 2**-53: below, log1p(x) rounds to x
    54.0,  # 19
])

@numba.njit(forceinline=True, **MATH_OPTS)
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

@numba.njit(forceinline=True, **MATH_OPTS)
def _maximum(a, b):
    """np.maximum(a, b) for two numbers: NaN if either is NaN (Python's max drops a NaN,
    depending on the order), b where they compare equal. Selects, which LLVM vectorizes; a
    max of more values nests calls, _maximum(a, _maximum(b, c)), so code grows linearly."""
    return a if a > b else (b if a <= b else a + b)

@numba.njit(forceinline=True, **MATH_OPTS)
def _minimum(a, b):
    """np.minimum(a, b) for two numbers: NaN if either is NaN, b where they compare equal (see _maximum)."""
    return a if a < b else (b if a >= b else a + b)

@numba.njit(forceinline=True, **MATH_OPTS)
def _permutation(n, seed):
    """np.random.permutation(n) drawn right after np.random.seed(seed) (Numba's generator,
    shared by every compiled function of the process)."""
    np.random.seed(seed)
    return np.random.permutation(n)

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

@numba.njit(forceinline=True, **MATH_OPTS)
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
