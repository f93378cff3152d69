"""Derive the float32 exp polynomial in graphc.kernels.vmath.

    python tools/fit_exp.py            # print the coefficients as hex floats
    python tools/fit_exp.py --check    # exit 1 unless vmath holds exactly these

vmath computes float32 exp(x) as 2^k (1 + r + r^2 Q(r)), k = rint(x/ln2),
r = x - k ln2 in [-ln2/2, ln2/2], with Q a polynomial of degree 4 (degree 3
would be 1.0e-7 relative: about 1.3 ulp more).

The fit minimizes the largest relative error of 1 + r + r^2 Q against exp(r)
on a dense grid of r a hair wider than [-ln2/2, ln2/2] (k comes from an fma
with float32(1/ln2), so |r| can pass ln2/2 by a few 1e-6 near overflow);
Lawson's iteratively reweighted least squares in long double (tools/minimax.py). The
coefficients are then rounded to float32 one at a time, lowest degree first,
refitting the others after each rounding: 3.1e-9 relative (as before
rounding), 0.05 float32 ulp. The result's accuracy in float32 arithmetic is
measured by tests/test_kernel_math.py, and was exhaustively over all 2^32
inputs when this was fitted: 0.891 ulp at most.
"""
import sys

import numpy as np

import minimax

LD = np.longdouble
HALF_LN2 = 0.34657359027997264
HIGH = HALF_LN2 + 2e-5               # |r|'s range, a hair wider
DEGREE = 4
GRID = 12000


def _grid():
    r = np.linspace(LD(-HIGH), LD(HIGH), GRID)
    tiny = np.geomspace(LD(1e-6), LD(0.05), 400)
    r = np.concatenate([r, tiny, -tiny])
    return np.sort(r[r != 0])


def _target(r):
    """(Q's target (exp(r) - 1 - r) / r^2, exp(r)); a series where the quotient cancels."""
    with np.errstate(all="ignore"):
        q = (np.expm1(r) - r) / (r * r)
    factorial, series = LD(2), np.zeros_like(r)
    for n in range(2, 16):
        series = series + r ** (n - 2) / factorial
        factorial *= n + 1
    return np.where(np.abs(r) < LD(1e-2), series, q), np.exp(r)


def fit(fixed=None, iterations=200):
    """(max relative error of 1 + r + r^2 Q, Q's coefficients, low degree first)."""
    r = _grid()
    q, e = _target(r)
    return minimax.fit_polynomial(r, q, r * r / e, DEGREE, fixed, iterations)


def relative_error(coefs):
    """The largest relative error against exp(r) of 1 + r + r^2 Q(r), Q given
    as vmath holds it (highest degree first), on the grid."""
    r = _grid()
    _, e = _target(r)
    return float(np.abs((1 + r + r * r * np.polyval(np.array(coefs, LD), r)) / e - 1).max())


def rounded_fit():
    """(max relative error, Q's coefficients, float32-exact, highest degree first)."""
    coefs = minimax.rounded_to_float32(fit, DEGREE)[::-1]
    return relative_error(coefs), coefs


if __name__ == "__main__":
    sys.exit(minimax.main(__doc__, rounded_fit, "exp_q", "1 + r + r^2 Q against exp(r)"))
