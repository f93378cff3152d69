"""Derive the float32 tanh rational in graphc.kernels.vmath.

    python tools/fit_tanh.py            # print the coefficients as hex floats
    python tools/fit_tanh.py --check    # exit 1 unless vmath holds exactly these

vmath computes float32 tanh(x) as 2t / (1 + t^2), t = tanh(u), u = |x|/2 <= 4.75,
with t = u + u z g(z), z = u^2, and g(z) = (tanh(u)/u - 1)/z approximated by a
rational D(z)/E(z), E(0) = 1 (degrees 3 and 3).

The fit minimizes the largest relative error of D/E against g on a dense grid
(Lawson's iteratively reweighted least squares on the linearized problem
D - g E = 0, each row divided by g times the previous E). The coefficients are
then rounded to float32 one at a time, highest degree first, refitting the
others after each rounding, which keeps what rounding costs small (3.0e-8
relative against 1.1e-9 before rounding; both under float32's 6e-8). The result's accuracy in float32 arithmetic is measured by
tests/test_kernel_math.py (and exhaustively over [0, 20] when this was fitted:
2.45 ulp at most).
"""
import argparse
import sys

import numpy as np

U_MAX = 4.75                 # vmath clamps |x| to tanh_cap = 9.5, where tanh rounds to 1
DEGREES = (3, 3)             # of D and E
GRID = 60000


def _target(u):
    z = u * u
    with np.errstate(all="ignore"):
        g = (np.tanh(u) / u - 1) / z
    # below z = 1e-6 the quotient cancels; the series is exact to float64 there
    return np.where(z < 1e-6, -1 / 3 + 2 * z / 15 - 17 * z * z / 315, g)


def fit(fixed_d=None, fixed_e=None, iterations=300):
    """The minimax D, E (low degree first, scaled variable s = z / U_MAX**2)
    with the coefficients in `fixed_*` (index -> value) held; E[0] = 1."""
    u = np.sort(np.concatenate([np.linspace(0, U_MAX, GRID)[1:], np.geomspace(1e-5, 1, 3000)]))
    g = _target(u)
    s = u * u / U_MAX ** 2
    nd, ne = DEGREES[0] + 1, DEGREES[1] + 1
    vd, ve = np.vander(s, nd, increasing=True), np.vander(s, ne, increasing=True)
    fixed_d = dict(fixed_d or {})
    fixed_e = {0: 1.0, **(fixed_e or {})}
    free_d = [k for k in range(nd) if k not in fixed_d]
    free_e = [k for k in range(ne) if k not in fixed_e]
    held = sum(v * vd[:, k] for k, v in fixed_d.items()) - g * sum(
        v * ve[:, k] for k, v in fixed_e.items())
    a = np.concatenate([vd[:, free_d], -g[:, None] * ve[:, free_e]], axis=1)
    weights, e_prev, best = np.ones_like(u), np.ones_like(u), None
    for _ in range(iterations):
        row_scale = np.sqrt(weights) / (g * e_prev)
        free, *_ = np.linalg.lstsq(a * row_scale[:, None], -held * row_scale, rcond=None)
        d, e = np.zeros(nd), np.zeros(ne)
        for k, v in fixed_d.items():
            d[k] = v
        for k, v in fixed_e.items():
            e[k] = v
        d[free_d], e[free_e] = free[:len(free_d)], free[len(free_d):]
        e_now = ve @ e
        rel = (vd @ d / e_now - g) / g
        worst = float(np.abs(rel).max())
        if best is None or worst < best[0]:
            best = (worst, d, e)
        weights = weights * np.abs(rel)
        weights /= weights.sum()
        e_prev = e_now
    return best


def relative_error(d, e):
    """The largest relative error against g of D/E given by coefficients of z,
    highest degree first (as vmath holds them), on the fit's grid."""
    u = np.sort(np.concatenate([np.linspace(0, U_MAX, GRID)[1:], np.geomspace(1e-5, 1, 3000)]))
    g, z = _target(u), u * u
    return float(np.abs(np.polyval(d, z) / np.polyval(e, z) / g - 1).max())


def rounded_fit():
    """(max relative error, D, E): coefficients of z (not s), float32-exact,
    highest degree first as vmath's _poly takes them."""
    scale = U_MAX ** 2
    held = {"d": {}, "e": {}}
    _, d, e = fit()
    order = [(name, k) for k in range(max(DEGREES), -1, -1) for name, degree in
             (("d", DEGREES[0]), ("e", DEGREES[1])) if k <= degree and (name, k) != ("e", 0)]
    for name, k in order:
        coef = d if name == "d" else e
        held[name][k] = float(np.float32(coef[k] / scale ** k)) * scale ** k
        worst, d, e = fit(held["d"], held["e"], iterations=150)
    powers = scale ** np.arange(max(DEGREES) + 1)
    d_z = [float(np.float32(v)) for v in d / powers[:len(d)]][::-1]
    e_z = [float(np.float32(v)) for v in e / powers[:len(e)]][::-1]
    return worst, d_z, e_z


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the constants in graphc.kernels.vmath")
    args = parser.parse_args(argv)
    worst, d, e = rounded_fit()
    print(f"max relative error of D/E against g: {worst:.3e}")
    print("tanh_d =", tuple(v.hex() for v in d))
    print("tanh_e =", tuple(v.hex() for v in e))
    if args.check:
        from graphc.kernels import vmath
        consts = vmath._C[np.float32]
        held = ([float(v) for v in consts.tanh_d], [float(v) for v in consts.tanh_e])
        if held != (d, e):
            print("vmath's float32 tanh coefficients differ from this fit", file=sys.stderr)
            return 1
        print("vmath holds these coefficients")
    return 0


if __name__ == "__main__":
    sys.exit(main())
