"""graphc's math helpers for float32 modules, compiled once per installation. Generated: do not edit.

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

# _exp's constants, which its callers pass as exp_c, a copy made once per function: a run-
# time value, not a literal LLVM reloads from memory in every iteration (graphc.codegen.mathlib)
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

@numba.njit(forceinline=True, **MATH_OPTS)
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

@numba.njit(forceinline=True, **MATH_OPTS)
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

# _log's constants, which its callers pass as log_c, a copy made once per function: a run-
# time value, not a literal LLVM reloads from memory in every iteration (graphc.codegen.mathlib)
LOG_C = np.array([
    0.5, 2.0,  # 0, 1
    0.693138122558593750,  # 2: ln2_hi, ln2 to 16 significant bits (k*ln2_hi is exact)
    9.05800061445916e-06,  # 3: ln2_lo = ln2 - ln2_hi, rounded
    0.6666666269302368, 0.40000972151756287, 0.2849878668785095, 0.24279078841209412,  # 4-7: R's
    1.0,  # 8
    8388735.0,  # 9: 2**23 + 127 (the biased exponent e, ORed into 2**23's bits: 2**23 + e)
    -np.inf, np.nan, np.inf,  # 10-12
    1.1754943508222875e-38,  # 13: the smallest normal float32
    33554432.0,  # 14: 2**25 (subnormals are scaled up by it)
    8388760.0,  # 15: 2**23 + 127 + 25
], np.float32)

@numba.njit(forceinline=True, **MATH_OPTS)
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

# _log1p's constants, which its callers pass as log1p_c, a copy made once per function: a run-
# time value, not a literal LLVM reloads from memory in every iteration (graphc.codegen.mathlib)
LOG1P_C = np.array([
    0.5, 2.0,  # 0, 1
    0.693138122558593750,  # 2: ln2_hi, ln2 to 16 significant bits (k*ln2_hi is exact)
    9.05800061445916e-06,  # 3: ln2_lo = ln2 - ln2_hi, rounded
    0.6666666269302368, 0.40000972151756287, 0.2849878668785095, 0.24279078841209412,  # 4-7: R's
    1.0,  # 8
    8388735.0,  # 9: 2**23 + 127 (the biased exponent e, ORed into 2**23's bits: 2**23 + e)
    -np.inf, np.nan, np.inf,  # 10-12
    0.41421365737915039,  # 13: below, 1 + x < sqrt(2) (musl's bound, 0x3ed413d0)
    -0.29289323091506958,  # 14: above, 1 + x >= sqrt(2)/2 (0xbe95f619)
    5.9604644775390625e-08,  # 15: 2**-24: below, log1p(x) rounds to x
    25.0,  # 16
], np.float32)

@numba.njit(forceinline=True, **MATH_OPTS)
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
    9.0,  # 0: |x| cap
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,  # 1-7: p
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03,
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03,  # 8-11: q
    1.0,  # 12: the result's cap
    0.0004,  # 13: below this |x|, tanh(x) rounds to x
], np.float32)

@numba.njit(forceinline=True, **MATH_OPTS)
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
