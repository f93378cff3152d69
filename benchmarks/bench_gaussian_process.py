"""A Gaussian process's negative log likelihood and its three partial
derivatives, graphc against the same by hand in NumPy, interleaved.

    OMP_NUM_THREADS=1 python benchmarks/bench_gaussian_process.py [--reps 40] [--before]

The likelihood is examples/06_gaussian_process.py's, written two ways: with
np.linalg.solve(K, y) beside the Cholesky factor L (as the example), and as
the textbook's alpha = L^T \\ (L \\ y). NumPy's hand-written gradient is the
usual one: (K^-1 - alpha alpha^T) / 2 against each dK/dtheta, K^-1 by
np.linalg.inv. graphc solves with L where it is at hand
(passes/factor_solves.py) and takes cholesky's gradient with two triangular
solves. `--before` turns both off: solves by LU, and cholesky's gradient
through a general inverse and three products. Ratio = graphc / NumPy: below
1 graphc is faster.
"""
import argparse
import dataclasses

import numpy as np

import graphc as gc
from graphc.benchmarks.harness import interleaved_medians_us


def _covariance(p, x):
    lengthscale, signal = np.exp(p["log_lengthscale"]), np.exp(p["log_signal"])
    return signal ** 2 * np.exp(-(x[:, None] - x[None, :]) ** 2 / (2 * lengthscale ** 2)) \
        + np.exp(2 * p["log_noise"]) * np.eye(x.size, dtype=x.dtype)


def likelihood(p, x, y):
    k = _covariance(p, x)
    factor = np.linalg.cholesky(k)
    return 0.5 * y @ np.linalg.solve(k, y) + np.sum(np.log(np.diagonal(factor)))


def textbook_likelihood(p, x, y):
    factor = np.linalg.cholesky(_covariance(p, x))
    alpha = np.linalg.solve(factor.T, np.linalg.solve(factor, y))
    return 0.5 * y @ alpha + np.sum(np.log(np.diagonal(factor)))


def by_hand(p, x, y):
    """The likelihood and its gradient in NumPy."""
    lengthscale, signal = np.exp(p["log_lengthscale"]), np.exp(p["log_signal"])
    noise = np.exp(2 * p["log_noise"])
    squared = (x[:, None] - x[None, :]) ** 2
    e = np.exp(-squared / (2 * lengthscale ** 2))
    k = signal ** 2 * e + noise * np.eye(x.size, dtype=x.dtype)
    factor = np.linalg.cholesky(k)
    alpha = np.linalg.solve(k, y)
    w = 0.5 * (np.linalg.inv(k) - np.outer(alpha, alpha))
    value = 0.5 * y @ alpha + np.sum(np.log(np.diagonal(factor)))
    return value, {"log_lengthscale": np.sum(w * signal ** 2 * e * squared) / lengthscale ** 2,
                   "log_signal": 2 * np.sum(w * signal ** 2 * e),
                   "log_noise": 2 * noise * np.trace(w)}


def _before():
    """graphc as it was: no factor_solves pass, cholesky's gradient by inverse."""
    from graphc import ops, passes
    from graphc import prims as P
    passes.PIPELINE[:] = [f for f in passes.PIPELINE if f.__name__ != "solve_with_factors"]

    def by_inverse(ct, out, a):
        inverse = P.inv(out)
        phi = P.mul(P.matmul(P.swap_last(out), ct),
                    ops._lower_with_half_diagonal(a.shape[-1], a.dtype))
        return [ops._symmetric_part(P.matmul(P.matmul(P.swap_last(inverse), phi), inverse))]
    ops.OPS["cholesky"] = dataclasses.replace(ops.OPS["cholesky"], vjp=by_inverse)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--before", action="store_true", help="graphc without the factor's solves")
    args = ap.parse_args(argv)
    if args.before:
        _before()
    print(f"median of {args.reps} alternating calls, times in us; ratio = graphc / numpy")
    print(f"{'n':>5s} {'dtype':8s} {'form':9s} {'numpy':>9s} {'graphc':>9s} {'ratio':>7s}")
    rng = np.random.default_rng(0)
    for n in (40, 100, 400):
        for dtype in (np.float64, np.float32):
            x = np.sort(rng.uniform(-3, 3, n)).astype(dtype)
            y = (np.sin(2 * x) + 0.1 * rng.normal(size=n)).astype(dtype)
            p = {"log_lengthscale": np.array(0.0, dtype), "log_signal": np.array(0.0, dtype),
                 "log_noise": np.array(-1.0, dtype)}
            want_value, want = by_hand(p, x, y)
            for form, fn in (("solve K", likelihood), ("textbook", textbook_likelihood)):
                f = gc.jit(gc.value_and_grad(fn))
                value, grads = f(p, x, y)
                rtol = 1e-2 if dtype == np.float32 else 1e-7    # K's condition: about 1e3
                np.testing.assert_allclose(value, want_value, rtol=rtol)
                for k in grads:
                    np.testing.assert_allclose(grads[k], want[k], rtol=rtol,
                                               atol=rtol * abs(float(want_value)))
                t_np, t_gc = interleaved_medians_us(
                    [lambda: by_hand(p, x, y), lambda: f(p, x, y)], args.reps)
                print(f"{n:5d} {np.dtype(dtype).name:8s} {form:9s} {t_np:9.1f} {t_gc:9.1f} "
                      f"{t_gc / t_np:7.2f}")


if __name__ == "__main__":
    main()
