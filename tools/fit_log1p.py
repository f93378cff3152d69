"""Derive the float32 log1p polynomial in graphc.kernels.vmath.

    python tools/fit_log1p.py            # print the coefficients as hex floats
    python tools/fit_log1p.py --check    # exit 1 unless vmath holds exactly these

vmath computes float32 log1p(x) from 1 + x = 2^k (1 + f), 1 + f in [3/4, 3/2),
as k ln2 + f + f^2 Q(f), with Q a polynomial of degree 9 that it evaluates in
F = 4f (so its coefficients are those of Q(F/4)/16: powers of two apart, the
same float32 roundings).

The fit minimizes the largest relative error of f + f^2 Q against log1p(f) on
a dense grid of f in [-1/4, 1/2] (Lawson's iteratively reweighted least
squares, in long double: tools/minimax.py). The coefficients are then rounded to float32 one at
a time, lowest degree first (the constant term matters most; highest first
lost 5x), refitting the others after each rounding: 1.0e-9 relative against
7.0e-10 before rounding, far under float32's 6e-8. The result's accuracy in
float32 arithmetic is measured by tests/test_kernel_math.py, and was
exhaustively over all 2^32 inputs when this was fitted: 0.957 ulp at most.
"""
import sys

import numpy as np

import minimax

LD = np.longdouble
LOW, HIGH = -0.2500001, 0.5000002      # f's range, a hair wider
DEGREE = 9
GRID = 12000


def _grid():
    tiny = np.geomspace(LD(1e-6), LD(0.25), 600)     # relative error near 0 too
    f = np.concatenate([np.linspace(LD(LOW), LD(HIGH), GRID), tiny, -tiny])
    return np.sort(f[f != 0])


def _target(f):
    """(Q's target (log1p(f) - f) / f^2, log1p(f)); a series where the quotient cancels."""
    with np.errstate(all="ignore"):
        q = (np.log1p(f) - f) / (f * f)
    series = sum((-1) ** (n + 1) * f ** (n - 2) / LD(n) for n in range(2, 14))
    return np.where(np.abs(f) < LD(1e-3), series, q), np.log1p(f)


def fit(fixed=None, iterations=200):
    """(max relative error of f + f^2 Q, Q's coefficients of f, low degree first)."""
    f = _grid()
    q, log1p = _target(f)
    # the result's relative error per unit of Q's
    return minimax.fit_polynomial(f, q, f * f / np.abs(log1p), DEGREE, fixed, iterations)


def in_F(coef_f):
    """Coefficients of f (low degree first) as vmath holds them: Q(F/4)/16, highest first."""
    return [float(np.float32(c / LD(4) ** i / 16)) for i, c in enumerate(coef_f)][::-1]


def relative_error(q_F):
    """The largest relative error against log1p(f) of f + f^2 Q(f), Q given as
    vmath holds it (coefficients in F = 4f, highest degree first), on the grid."""
    f = _grid()
    coef_f = np.array(q_F[::-1], LD) * 16 * LD(4) ** np.arange(len(q_F))
    _, log1p = _target(f)
    return float(np.abs((f + f * f * np.polyval(coef_f[::-1], f)) / log1p - 1).max())


def rounded_fit():
    """(max relative error, Q's coefficients in F, float32-exact, highest degree first)."""
    q_F = in_F(minimax.rounded_to_float32(fit, DEGREE))
    return relative_error(q_F), q_F


if __name__ == "__main__":
    sys.exit(minimax.main(__doc__, rounded_fit, "log1p_q", "f + f^2 Q against log1p"))
