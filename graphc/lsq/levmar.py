"""Levenberg-Marquardt as MINPACK's ``lmder`` runs it, on the normal equations, compiled once.

A fit (``fit``, below) calls the model's generated ``evaluate`` (``graphc/lsq/build.py``) --
one fused pass over the samples giving the cost ``0.5 * sum(f**2)``, ``g = J^T f`` and the
upper triangle of ``A = J^T J`` -- and hands the result to ``step``, which decides where to
evaluate next:

    loss = evaluate(*data, theta, grad, acc)
    while step(loss, grad, theta, state):
        loss = evaluate(*data, theta, grad, acc)

``step`` is MINPACK's algorithm with the same constants, tests and status codes (More,
"The Levenberg-Marquardt algorithm: implementation and theory", 1978; lmder.f and lmpar.f),
so a fit takes the steps scipy's ``least_squares(method="lm")`` takes. What differs is the
linear algebra: MINPACK factors the N x P Jacobian with a pivoted QR; here only ``A`` and
``g`` exist, and every solve is a Cholesky factorization of the column-scaled matrix
``M = D^-1 A D^-1 + par I`` (D: MINPACK's running maximum of the column norms of J, so M has
a diagonal of 1 or less and the scaling removes the badly scaled parameters' share of the
condition number). Where M itself is singular to working precision (the factorization meets
a pivot that is not positive), the step is taken as infinitely long, as MINPACK does for a
rank-deficient J: the trust region then picks ``par > 0``, where M + par I is positive definite.

With many parameters (the dense path of ``build.py``), ``evaluate`` writes all of ``A`` (the
SQUARE layout: np.dot forms it) and the Cholesky factorizations go by panels, with np.dot
for their O(P^3) part (``factor``); every other step is O(P^2) loops.

Bounds are a change of variables (MINUIT's, as lmfit uses): the algorithm runs on internal
parameters ``u`` and ``theta`` holds ``x(u)``; ``evaluate`` differentiates with respect to x,
and the chain rule ``J_u = J_x diag(dx/du)`` is applied here.

The functions take the solver state as arrays whose slots are named below, so this module has
no per-model code: Numba compiles it once and keeps it in its on-disk cache.
"""

from __future__ import annotations

import math

import numba
import numpy as np

OPTS = dict(cache=True, nogil=True, error_model="numpy")  # IEEE arithmetic as written: no fastmath

# MINPACK's constants
P1, P5, P25, P75, P0001 = 0.1, 0.5, 0.25, 0.75, 1e-4
EPSMCH = 2.220446049250313e-16
DWARF = 2.2250738585072014e-308

# ---- the slots of the state arrays ----------------------------------------------------
# fs: floats
COST, DELTA, PAR, XNORM, FTOL, XTOL, GTOL, FACTOR, GNORM, PNORM, PRERED, DIRDER = range(12)
N_FS = 12
# ints; the bound kind of parameter j is ints[KINDS + j]
PHASE, NFEV, MAXFEV, STATUS, ITER, NPAR, LAYOUT = range(7)
KINDS = 8
# vecs[k, :]: vectors of length P
U, UT, DIAG, LO, HI, G, Y, W, B, GX, TS, ACN = range(12)
N_VECS = 12
# mats[k]: P x P
AX, AU, MS, L = range(4)
N_MATS = 4
# how grad holds A after g: its upper triangle row by row (the fused path), or all of it
# row by row (the dense path, which forms J^T J with np.dot)
TRIANGLE, SQUARE = 0, 1
# bound kinds
FREE, LOWER, UPPER, BOTH = 0, 1, 2, 3
# phases
START, TRIAL, DONE = 0, 1, 2
# status codes: MINPACK's info; scipy's status is STATUS_TO_SCIPY[info]
RUNNING, NOT_FINITE = -1, -2


# ---- bounds: MINUIT's transform --------------------------------------------------------
@numba.njit(**OPTS)
def external(u: float, kind: int, lo: float, hi: float) -> float:
    """The parameter x for internal value u (identity without bounds); rounding never takes it
    past a bound (hi + 1 - sqrt(0 + 1) can round above hi)."""
    if kind == BOTH:
        return min(hi, max(lo, lo + (hi - lo) * (math.sin(u) + 1.0) * 0.5))
    if kind == LOWER:
        return max(lo, lo - 1.0 + math.sqrt(u * u + 1.0))
    if kind == UPPER:
        return min(hi, hi + 1.0 - math.sqrt(u * u + 1.0))
    return u


@numba.njit(**OPTS)
def slope(u: float, kind: int, lo: float, hi: float) -> float:
    """dx/du."""
    if kind == BOTH:
        return (hi - lo) * 0.5 * math.cos(u)
    if kind == LOWER:
        return u / math.sqrt(u * u + 1.0)
    if kind == UPPER:
        return -u / math.sqrt(u * u + 1.0)
    return 1.0


@numba.njit(**OPTS)
def internal(x: float, kind: int, lo: float, hi: float) -> float:
    """The internal value u for a parameter x inside its bounds."""
    if kind == BOTH:
        return math.asin(min(1.0, max(-1.0, 2.0 * (x - lo) / (hi - lo) - 1.0)))
    if kind == LOWER:
        return math.sqrt(max(0.0, (x - lo + 1.0) ** 2 - 1.0))
    if kind == UPPER:
        return math.sqrt(max(0.0, (hi - x + 1.0) ** 2 - 1.0))
    return x


@numba.njit(**OPTS)
def write_theta(u: np.ndarray, theta: np.ndarray, ints: np.ndarray, vecs: np.ndarray) -> None:
    for j in range(u.shape[0]):
        theta[j] = external(u[j], ints[KINDS + j], vecs[LO, j], vecs[HI, j])


# ---- dense linear algebra on the scaled normal equations ------------------------------
@numba.njit(**OPTS)
def norm(v: np.ndarray) -> float:
    """Euclidean norm without overflow or underflow (scaled by the largest element)."""
    big = 0.0
    for k in range(v.shape[0]):
        big = max(big, abs(v[k]))
    if big == 0.0 or not big < math.inf:
        return big
    s = 0.0
    for k in range(v.shape[0]):
        s += (v[k] / big) ** 2
    return big * math.sqrt(s)


@numba.njit(**OPTS)
def cholesky(m: np.ndarray, shift: float, lower: np.ndarray) -> bool:
    """lower @ lower.T = m + shift * I; False where a pivot is not positive (singular to
    working precision, or not finite)."""
    n = m.shape[0]
    for j in range(n):
        d = m[j, j] + shift
        for k in range(j):
            d -= lower[j, k] * lower[j, k]
        if not d > 0.0 or not d < math.inf:
            return False
        ljj = math.sqrt(d)
        lower[j, j] = ljj
        for i in range(j + 1, n):
            s = m[i, j]
            for k in range(j):
                s -= lower[i, k] * lower[j, k]
            lower[i, j] = s / ljj
        for i in range(j):
            lower[i, j] = 0.0
    return True


BLOCK = 64  # columns per panel of the blocked Cholesky factorization
BLOCKED_FROM = 400  # parameters: from this many on, factor in panels (np.dot for the updates); below,
# the loops are as fast (and np.dot on small panels suffers most when BLAS threads compete for cores)


@numba.njit(**OPTS)
def cholesky_blocked(m: np.ndarray, shift: float, lower: np.ndarray) -> bool:
    """``cholesky`` for a large matrix, right-looking by panels of BLOCK columns: factor the
    panel's diagonal block and the rows below it with loops, then subtract the panel's outer
    product from the rest of the matrix with np.dot (BLAS: the O(P^3) part)."""
    n = m.shape[0]
    for i in range(n):  # lower's lower triangle <- m + shift I; only it is read below
        for j in range(i + 1):
            lower[i, j] = m[i, j]
        lower[i, i] += shift
    for k0 in range(0, n, BLOCK):
        k1 = min(k0 + BLOCK, n)
        for j in range(k0, k1):  # the diagonal block (earlier panels' updates are in it)
            d = lower[j, j]
            for k in range(k0, j):
                d -= lower[j, k] * lower[j, k]
            if not d > 0.0 or not d < math.inf:
                return False
            ljj = math.sqrt(d)
            lower[j, j] = ljj
            for i in range(j + 1, k1):
                s = lower[i, j]
                for k in range(k0, j):
                    s -= lower[i, k] * lower[j, k]
                lower[i, j] = s / ljj
        if k1 == n:
            break
        for i in range(k1, n):  # the rows below: L21 = A21 L11^-T, row by row
            for j in range(k0, k1):
                s = lower[i, j]
                for k in range(k0, j):
                    s -= lower[i, k] * lower[j, k]
                lower[i, j] = s / lower[j, j]
        panel = np.ascontiguousarray(lower[k1:, k0:k1])
        update = np.dot(panel, panel.T)  # A22 -= L21 L21^T (its lower triangle is what is read)
        for i in range(k1, n):
            for j in range(k1, i + 1):
                lower[i, j] -= update[i - k1, j - k1]
    for i in range(n):
        for j in range(i + 1, n):
            lower[i, j] = 0.0
    return True


@numba.njit(**OPTS)
def factor(m: np.ndarray, shift: float, lower: np.ndarray) -> bool:
    """lower @ lower.T = m + shift * I (False: not positive definite to working precision):
    loops for the fused path's few parameters, panels and BLAS for many."""
    if m.shape[0] >= BLOCKED_FROM:
        return cholesky_blocked(m, shift, lower)
    return cholesky(m, shift, lower)


@numba.njit(**OPTS)
def forward(lower: np.ndarray, v: np.ndarray) -> None:
    """v <- lower^-1 v."""
    for i in range(v.shape[0]):
        s = v[i]
        for k in range(i):
            s -= lower[i, k] * v[k]
        v[i] = s / lower[i, i]


@numba.njit(**OPTS)
def backward(lower: np.ndarray, v: np.ndarray) -> None:
    """v <- lower^-T v."""
    n = v.shape[0]
    for i in range(n - 1, -1, -1):
        s = v[i]
        for k in range(i + 1, n):
            s -= lower[k, i] * v[k]
        v[i] = s / lower[i, i]


@numba.njit(**OPTS)
def solve(lower: np.ndarray, b: np.ndarray, y: np.ndarray) -> float:
    """y = (lower lower^T)^-1 b; returns ||y||."""
    for k in range(b.shape[0]):
        y[k] = b[k]
    forward(lower, y)
    backward(lower, y)
    return norm(y)


@numba.njit(**OPTS)
def newton_denominator(lower: np.ndarray, y: np.ndarray, dxnorm: float, w: np.ndarray) -> float:
    """||lower^-1 y / ||y|| ||: with it, d||y(par)||/d(par) = -||y|| * this**2 (lmpar.f)."""
    for k in range(y.shape[0]):
        w[k] = y[k] / dxnorm
    forward(lower, w)
    return norm(w)


@numba.njit(**OPTS)
def lmpar(m: np.ndarray, b: np.ndarray, delta: float, par: float, lower: np.ndarray,
          y: np.ndarray, w: np.ndarray) -> float:
    """MINPACK's lmpar in scaled variables: the par >= 0 whose y = (m + par I)^-1 b has
    ||y|| within 10% of delta (par = 0 if the Gauss-Newton step is shorter); y is left
    holding that step. m: D^-1 A D^-1, b: D^-1 g; the step in parameters is -D^-1 y."""
    full_rank = factor(m, 0.0, lower)
    dxnorm = solve(lower, b, y) if full_rank else math.inf
    if not dxnorm < math.inf:
        full_rank = False
        dxnorm = math.inf
    fp = dxnorm - delta
    if fp <= P1 * delta:
        return 0.0
    parl = 0.0
    if full_rank:
        temp = newton_denominator(lower, y, dxnorm, w)
        parl = ((fp / delta) / temp) / temp
    gnorm = norm(b)
    paru = gnorm / delta
    if paru == 0.0:
        paru = DWARF / min(delta, P1)
    par = min(max(par, parl), paru)
    if par == 0.0:
        par = gnorm / dxnorm
    for it in range(1, 11):
        if par == 0.0:
            par = max(DWARF, 0.001 * paru)
        while not factor(m, par, lower):  # m is positive semi-definite up to rounding
            par = max(2.0 * par, EPSMCH)
        dxnorm = solve(lower, b, y)
        temp = fp
        fp = dxnorm - delta
        if abs(fp) <= P1 * delta or (parl == 0.0 and fp <= temp and temp < 0.0) or it == 10:
            break
        temp = newton_denominator(lower, y, dxnorm, w)
        parc = ((fp / delta) / temp) / temp
        if fp > 0.0:
            parl = max(parl, par)
        if fp < 0.0:
            paru = min(paru, par)
        par = max(parl, par + parc)
    return par


@numba.njit(**OPTS)
def quadratic(m: np.ndarray, y: np.ndarray) -> float:
    """y^T m y (= ||J p||^2 for the step p = -D^-1 y)."""
    s = 0.0
    n = y.shape[0]
    for i in range(n):
        t = 0.0
        for k in range(n):
            t += m[i, k] * y[k]
        s += y[i] * t
    return s


# ---- the algorithm ----------------------------------------------------------------------
@numba.njit(**OPTS)
def accept(cost: float, grad: np.ndarray, fs: np.ndarray, ints: np.ndarray, vecs: np.ndarray,
           mats: np.ndarray) -> None:
    """Make the point just evaluated (internal vecs[UT]) the current one: its cost, its
    gradient and J^T J (grad: g, then A's upper triangle row by row, or with ints[LAYOUT] ==
    SQUARE all of A row by row, of which the upper triangle is read)."""
    n = ints[NPAR]
    fs[COST] = cost
    for j in range(n):
        vecs[U, j] = vecs[UT, j]
    k = n
    square = ints[LAYOUT] == SQUARE
    for i in range(n):
        vecs[GX, i] = grad[i]
        if square:  # the upper triangle of the whole matrix (np.dot's is symmetric up to rounding)
            k = n + i * n + i
        for j in range(i, n):
            mats[AX, i, j] = grad[k]
            mats[AX, j, i] = grad[k]
            k += 1
    for j in range(n):
        vecs[TS, j] = slope(vecs[U, j], ints[KINDS + j], vecs[LO, j], vecs[HI, j])
    for i in range(n):
        vecs[G, i] = vecs[TS, i] * vecs[GX, i]
        for j in range(n):
            mats[AU, i, j] = vecs[TS, i] * mats[AX, i, j] * vecs[TS, j]
        vecs[ACN, i] = math.sqrt(max(0.0, mats[AU, i, i]))  # ||column i of J_u||


@numba.njit(**OPTS)
def outer(fs: np.ndarray, ints: np.ndarray, vecs: np.ndarray, mats: np.ndarray) -> bool:
    """The start of an outer iteration of lmder at the current point: scaling, the gtol
    test, the scaled system. False if the gtol test stops the fit."""
    n = ints[NPAR]
    if ints[ITER] == 1:
        for j in range(n):
            vecs[DIAG, j] = vecs[ACN, j] if vecs[ACN, j] != 0.0 else 1.0
            vecs[W, j] = vecs[DIAG, j] * vecs[U, j]
        fs[XNORM] = norm(vecs[W])
        fs[DELTA] = fs[FACTOR] * fs[XNORM] if fs[XNORM] != 0.0 else fs[FACTOR]
    fnorm = math.sqrt(2.0 * fs[COST])
    gnorm = 0.0
    if fnorm != 0.0:
        for j in range(n):
            if vecs[ACN, j] != 0.0:
                gnorm = max(gnorm, abs(vecs[G, j] / fnorm / vecs[ACN, j]))
    fs[GNORM] = gnorm
    if gnorm <= fs[GTOL]:
        ints[STATUS] = 4
        return False
    for j in range(n):
        vecs[DIAG, j] = max(vecs[DIAG, j], vecs[ACN, j])
    for i in range(n):
        vecs[B, i] = vecs[G, i] / vecs[DIAG, i]
        for j in range(n):
            mats[MS, i, j] = mats[AU, i, j] / (vecs[DIAG, i] * vecs[DIAG, j])
    return True


@numba.njit(**OPTS)
def propose(theta: np.ndarray, fs: np.ndarray, ints: np.ndarray, vecs: np.ndarray, mats: np.ndarray) -> None:
    """The inner iteration's step: par from lmpar, the trial point into vecs[UT] and theta."""
    n = ints[NPAR]
    fs[PAR] = lmpar(mats[MS], vecs[B], fs[DELTA], fs[PAR], mats[L], vecs[Y], vecs[W])
    for j in range(n):
        vecs[UT, j] = vecs[U, j] - vecs[Y, j] / vecs[DIAG, j]
    pnorm = norm(vecs[Y])
    if ints[ITER] == 1:
        fs[DELTA] = min(fs[DELTA], pnorm)
    # predicted reduction, relative to the cost (lmder's prered and dirder)
    jp2 = quadratic(mats[MS], vecs[Y]) / (2.0 * fs[COST])
    damp2 = fs[PAR] * pnorm * pnorm / (2.0 * fs[COST])
    fs[PNORM] = pnorm
    fs[PRERED] = jp2 + damp2 / P5
    fs[DIRDER] = -(jp2 + damp2)
    write_theta(vecs[UT], theta, ints, vecs)


@numba.njit(**OPTS)
def judge(cost: float, grad: np.ndarray, fs: np.ndarray, ints: np.ndarray, vecs: np.ndarray,
          mats: np.ndarray, hist: np.ndarray) -> bool:
    """The rest of lmder's inner iteration for the trial point just evaluated: update the
    trust region, accept the point if it reduced the cost enough, run the convergence
    tests. Returns whether the trial was accepted; a test that stops sets ints[STATUS]."""
    fnorm2, fnorm12 = 2.0 * fs[COST], 2.0 * cost  # squared norms of f now and at the trial
    actred = -1.0
    if P1 * P1 * fnorm12 < fnorm2:  # 0.1 * fnorm1 < fnorm (NaN: not)
        actred = 1.0 - cost / fs[COST]
    prered, dirder, pnorm = fs[PRERED], fs[DIRDER], fs[PNORM]
    ratio = actred / prered if prered != 0.0 else 0.0
    if ratio <= P25:
        temp = P5 if actred >= 0.0 else P5 * dirder / (dirder + P5 * actred)
        if not P1 * P1 * fnorm12 < fnorm2 or temp < P1:
            temp = P1
        fs[DELTA] = temp * min(fs[DELTA], pnorm / P1)
        fs[PAR] = fs[PAR] / temp
    elif fs[PAR] == 0.0 or ratio >= P75:
        fs[DELTA] = pnorm / P5
        fs[PAR] = P5 * fs[PAR]
    accepted = ratio >= P0001
    if accepted:
        accept(cost, grad, fs, ints, vecs, mats)
        n = ints[NPAR]
        for j in range(n):
            vecs[W, j] = vecs[DIAG, j] * vecs[U, j]
        fs[XNORM] = norm(vecs[W])
        ints[ITER] += 1
    ftol_met = abs(actred) <= fs[FTOL] and prered <= fs[FTOL] and P5 * ratio <= 1.0
    xtol_met = fs[DELTA] <= fs[XTOL] * fs[XNORM]
    if ftol_met or xtol_met:
        ints[STATUS] = 3 if ftol_met and xtol_met else 1 if ftol_met else 2
    elif ints[NFEV] >= ints[MAXFEV]:
        ints[STATUS] = 5
    elif abs(actred) <= EPSMCH and prered <= EPSMCH and P5 * ratio <= 1.0:
        ints[STATUS] = 6
    elif fs[DELTA] <= EPSMCH * fs[XNORM]:
        ints[STATUS] = 7
    elif fs[GNORM] <= EPSMCH:
        ints[STATUS] = 8
    return accepted


@numba.njit(**OPTS)
def step(cost: float, grad: np.ndarray, theta: np.ndarray, state: tuple) -> bool:
    """Take in the evaluation at theta (its cost and grad); True: theta now holds the next
    point to evaluate; False: the fit has stopped (ints[STATUS]) and theta holds its result.
    ``state``: (fs, ints, vecs, mats, hist) from ``new_state``."""
    fs, ints, vecs, mats, hist = state
    k = ints[NFEV]
    ints[NFEV] = k + 1
    hist[k, 0] = cost
    if ints[PHASE] == START:
        if not abs(cost) < math.inf:
            ints[STATUS] = NOT_FINITE
            ints[PHASE] = DONE
            return False
        hist[k, 1] = 1.0
        accept(cost, grad, fs, ints, vecs, mats)
        ints[ITER] = 1
        ints[PHASE] = TRIAL
        fs[PAR] = 0.0
        moving = outer(fs, ints, vecs, mats)
    else:
        accepted = judge(cost, grad, fs, ints, vecs, mats, hist)
        hist[k, 1] = 1.0 if accepted else 0.0
        moving = ints[STATUS] == RUNNING and (not accepted or outer(fs, ints, vecs, mats))
    if not moving:
        ints[PHASE] = DONE
        write_theta(vecs[U], theta, ints, vecs)
        return False
    propose(theta, fs, ints, vecs, mats)
    return True


@numba.njit(**OPTS)
def fit(data: tuple, theta: np.ndarray, grad: np.ndarray, acc: np.ndarray, state: tuple,
        evaluate, step) -> float:
    """The whole fit: ``evaluate`` (a model's generated function: one pass over ``data``
    giving the cost, J^T f and J^T J in grad), then ``step``, until it stops; returns the last
    cost. evaluate and step arrive as first-class functions (build.Pointer): the calls are
    indirect, so this loop is compiled once per data layout, not per model, and Numba's
    cache keeps it."""
    loss = evaluate(*data, theta, grad, acc)
    while step(loss, grad, theta, state):
        loss = evaluate(*data, theta, grad, acc)
    return loss


def new_state(x0: np.ndarray, kinds: np.ndarray, lo: np.ndarray, hi: np.ndarray, ftol: float,
              xtol: float, gtol: float, max_nfev: int, factor: float = 100.0, square: bool = False) -> tuple:
    """Fresh state for a fit from x0 (each parameter inside its bounds), and the x the first
    evaluation is at: x(u(x0)), x0 up to rounding. ``square``: grad holds all of A (SQUARE)."""
    p = x0.shape[0]
    fs = np.zeros(N_FS)
    fs[FTOL], fs[XTOL], fs[GTOL], fs[FACTOR] = ftol, xtol, gtol, factor
    ints = np.zeros(KINDS + p, dtype=np.int64)
    ints[PHASE], ints[MAXFEV], ints[STATUS], ints[NPAR] = START, max_nfev, RUNNING, p
    ints[LAYOUT] = SQUARE if square else TRIANGLE
    ints[KINDS:] = kinds
    vecs = np.zeros((N_VECS, p))
    vecs[LO], vecs[HI] = lo, hi
    x = np.array(x0, dtype=np.float64)
    for j in range(p):
        if kinds[j] != FREE:
            u = internal.py_func(x0[j], int(kinds[j]), lo[j], hi[j])
            vecs[UT, j] = u
            x[j] = external.py_func(u, int(kinds[j]), lo[j], hi[j])
        else:
            vecs[UT, j] = x0[j]
    mats = np.zeros((N_MATS, p, p))
    hist = np.zeros((max_nfev + 1, 2))
    return (fs, ints, vecs, mats, hist), x
