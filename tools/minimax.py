"""What tools/fit_log1p.py and tools/fit_exp.py share: a minimax polynomial fit
(Lawson's iteratively reweighted least squares, in long double) and its
rounding to float32 one coefficient at a time."""
import argparse
import sys

import numpy as np

LD = np.longdouble


def fit_polynomial(x, target, scale, degree, fixed=None, iterations=200):
    """(max error, coefficients low degree first) of the polynomial P minimizing
    max |(P(x) - target) * scale| on the grid x, with the coefficients in
    `fixed` (index -> value) held. Least squares in float64, refined once in
    long double, reweighted by each point's error (Lawson)."""
    powers = np.vander(x, degree + 1, increasing=True)
    fixed = dict(fixed or {})
    free = [i for i in range(degree + 1) if i not in fixed]
    held = sum((LD(v) * powers[:, i] for i, v in fixed.items()), np.zeros_like(x))
    a = powers[:, free] * scale[:, None]
    b = (target - held) * scale
    weights, best = np.ones(x.size), None
    for _ in range(iterations):
        rows = np.sqrt(weights)
        c = np.linalg.lstsq((a * rows[:, None]).astype(np.float64),
                            (b * rows).astype(np.float64), rcond=None)[0].astype(LD)
        residual = b - a @ c
        c = c + np.linalg.lstsq((a * rows[:, None]).astype(np.float64),
                                (residual * rows).astype(np.float64), rcond=None)[0].astype(LD)
        coef = np.zeros(degree + 1, LD)
        coef[list(fixed)] = [LD(v) for v in fixed.values()]
        coef[free] = c
        error = (powers @ coef - target) * scale
        worst = float(np.abs(error).max())
        if best is None or worst < best[0]:
            best = (worst, coef.copy())
        weights = weights * np.abs(error).astype(np.float64)
        weights /= weights.sum()
    return best


def rounded_to_float32(fit, degree):
    """The coefficients (low degree first, float32-exact) of `fit(fixed,
    iterations)`, rounded one at a time, lowest degree first, the others
    refitted after each rounding (what rounding costs stays small)."""
    _, coef = fit({}, 200)
    fixed = {}
    for i in range(degree + 1):
        fixed[i] = float(np.float32(coef[i]))
        if len(fixed) <= degree:
            _, coef = fit(fixed, 120)
    return [fixed[i] for i in range(degree + 1)]


def main(doc, rounded_fit, constant, what, argv=None):
    """The fitting scripts' command line: print the fit; --check compares it
    with vmath's float32 constant `constant`."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the constants in graphc.kernels.vmath")
    args = parser.parse_args(argv)
    worst, coefs = rounded_fit()
    print(f"max relative error of {what}: {worst:.3e}")
    print(f"{constant} =", tuple(v.hex() for v in coefs))
    if args.check:
        from graphc.kernels import vmath
        if [float(v) for v in getattr(vmath._C[np.float32], constant)] != coefs:
            print(f"vmath's float32 {constant} differs from this fit", file=sys.stderr)
            return 1
        print("vmath holds these coefficients")
    return 0
