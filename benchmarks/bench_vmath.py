"""Time graphc's math kernels (vmath; trig's sin, cos) against NumPy ufuncs and naive Numba loops.

    python benchmarks/bench_vmath.py [--n 1000000] [--reps 60]

For each function and dtype, over n elements (output preallocated, one
thread), the median time of:
  vmath  - @njit loop `out[i] = vmath.f(x[i])` (trig.sin, trig.cos: what graphc generates)
  numpy  - the NumPy/SciPy ufunc with out= (np.exp, scipy.special.expit, ...)
  naive  - @njit loop calling np.exp/np.log/math.erf per element (libm, no SVML)
Ratios > 1 mean vmath is faster.
"""
import argparse
import ast
import math

import numpy as np
import scipy.special
from numba import njit

from graphc import codegen
from graphc.benchmarks.harness import median_us
from graphc.kernels import trig, vmath

FASTMATH = ast.literal_eval(codegen.FASTMATH)   # graphc's generated-code flags

# name -> (input range, NumPy reference, naive scalar expression for a Numba loop)
CASES = {
    "exp": ((-10, 10), np.exp, lambda v: np.exp(v)),
    "log": ((1e-3, 1e3), np.log, lambda v: np.log(v)),
    "log1p": ((-0.9, 10), np.log1p, lambda v: np.log1p(v)),
    "expm1": ((-10, 10), np.expm1, lambda v: np.expm1(v)),
    "tanh": ((-5, 5), np.tanh, lambda v: np.tanh(v)),
    "sigmoid": ((-10, 10), scipy.special.expit, lambda v: 1 / (1 + np.exp(-v))),
    "softplus": ((-10, 10), lambda x, out: np.logaddexp(0, x, out=out),
                 lambda v: max(v, 0) + np.log1p(np.exp(-abs(v)))),
    "erf": ((-3, 3), scipy.special.erf, lambda v: math.erf(v)),
    "sin": ((-100, 100), np.sin, lambda v: np.sin(v)),
    "cos": ((-100, 100), np.cos, lambda v: np.cos(v)),
}
KERNELS = dict(vmath.FUNCTIONS, sin=trig.sin, cos=trig.cos)


def _loop(f):
    f = f if hasattr(f, "py_func") else njit(f)

    @njit(fastmath=FASTMATH)
    def loop(x, out):
        vmath.full_width_vectors()      # as graphc's generated functions do
        for i in range(x.size):
            out[i] = f(x[i])
    return loop


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=60)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"n = {args.n:,}, median of {args.reps} runs, times in ms; ratio = other / vmath")
    print(f"{'function':10s} {'dtype':8s} {'vmath':>8s} {'numpy':>8s} {'naive':>8s}"
          f" {'numpy/vmath':>12s} {'naive/vmath':>12s}")
    for name, ((lo, hi), ufunc, naive) in CASES.items():
        fast, slow = _loop(KERNELS[name]), _loop(naive)
        for dtype in (np.float32, np.float64):
            x = rng.uniform(lo, hi, args.n).astype(dtype)
            out = np.empty_like(x)
            t_v = median_us(lambda: fast(x, out), args.reps) / 1e3
            t_np = median_us(lambda: ufunc(x, out=out), args.reps) / 1e3
            t_nv = median_us(lambda: slow(x, out), args.reps) / 1e3
            print(f"{name:10s} {np.dtype(dtype).name:8s} {t_v:8.3f} {t_np:8.3f} {t_nv:8.3f}"
                  f" {t_np / t_v:12.2f} {t_nv / t_v:12.2f}")


if __name__ == "__main__":
    main()
