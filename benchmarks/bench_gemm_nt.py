"""When does a @ b.T run faster as a copy of b.T and a plain GEMM? The data
behind graphc.kernels.blas._transposing_b_pays.

    OMP_NUM_THREADS=1 python benchmarks/bench_gemm_nt.py [--reps 5]

A dense layer's backward GEMM is `g @ W.T`. For small matrices OpenBLAS's
kernel for that case (row-major a @ b.T, "TN" to column-major BLAS) is
slower than for a @ b, so blas.gemm copies b.T first when the copy costs
less than the difference. This times, per shape (m, k, n) and dtype, the
median of many calls to blas.blas_gemm (BLAS as it is) with:
  NN      a @ b, b already transposed (the floor)
  NT      a @ b.T handed to BLAS as it is
  copy    transpose.transposed(b) (b.T copied in 8x8 tiles), then NN
interleaved over --reps rounds, the best round reported. `rule` is what
_transposing_b_pays decides for the shape with the BLAS of this process
(blas_library): copy when it says so.

On this project's 2-core Xeon VM (2026-12-03, one thread, busy host),
float32 / float64, copy against NT: 0.48 / 0.66 at W4's 32x64 @ 64x64,
0.67 / 0.92 with 16 rows, 0.50 / 0.71 at W2's 128x10 @ 10x256, 0.64 / 1.01
at 32x64 @ 64x128; but 1.02-1.4 from m*n*k = 2**20 up (256x64x64,
128x128x128, 32x256x256) and 1.3 with n = 10, where the NT kernel is as
fast as NN. That was SciPy's OpenBLAS 0.3.30 on SkylakeX kernels. On an
AMD EPYC VM (2026-12-03), whose OpenBLAS (NumPy's 0.3.31, and SciPy's too)
runs Haswell kernels, NT took 1.00-1.13x the time of NN and the copy never
paid: copy / NT 1.00-1.38 over all these shapes, 1.03 / 1.19 at W4's. So
the copy is made only where OpenBLAS has small-matrix kernels.
"""
import argparse

import numpy as np
from numba import njit

from graphc.benchmarks.harness import median_us
from graphc.kernels import blas
from graphc.kernels.transpose import transposed

SHAPES = [(16, 64, 64), (32, 64, 32), (32, 64, 64), (128, 32, 32), (128, 64, 64),
          (256, 64, 64), (64, 10, 64), (128, 10, 16), (128, 10, 256), (256, 10, 256),
          (64, 64, 10), (32, 64, 128), (64, 128, 128), (128, 128, 128), (32, 256, 256)]


@njit(nogil=True)
def _repeat_gemm(a, b, c, transpose_b, times):
    for _ in range(times):
        blas.blas_gemm(a, b, c, False, transpose_b, 1.0, 0.0)


@njit(nogil=True)
def _repeat_copy_then_gemm(a, b, c, times):
    for _ in range(times):
        blas.blas_gemm(a, transposed(b), c, False, False, 1.0, 0.0)


@njit(nogil=True)
def _rule(m, n, k):
    return blas._transposing_b_pays(m, n, k)


def _median_us(run, times):
    """Per product: the median of 5 native loops of `times` products."""
    return median_us(lambda: run(times), 5) / times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="interleaved rounds per shape")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'dtype':8} {'m x k @ k x n':>16} {'NN us':>8} {'NT us':>8} {'copy us':>8} "
          f"{'copy/NT':>8} {'rule':>5}")
    for dtype in (np.float32, np.float64):
        for m, k, n in SHAPES:
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((n, k)).astype(dtype)
            b_t = np.ascontiguousarray(b.T)
            c = np.empty((m, n), dtype)
            times = max(3, int(1e5 / (m * k * n / 1000 + 10)))
            runs = [lambda t: _repeat_gemm(a, b_t, c, False, t),
                    lambda t: _repeat_gemm(a, b, c, True, t),
                    lambda t: _repeat_copy_then_gemm(a, b, c, t)]
            for run in runs:
                run(1)
            best = [min(col) for col in zip(*[[_median_us(run, times) for run in runs]
                                              for _ in range(args.reps)])]
            shape = f"{m}x{k} @ {k}x{n}"
            print(f"{np.dtype(dtype).name:8} {shape:>16} {best[0]:8.1f} {best[1]:8.1f} "
                  f"{best[2]:8.1f} {best[2] / best[1]:8.2f} "
                  f"{'copy' if _rule(m, n, k) else 'NT':>5}")


if __name__ == "__main__":
    main()
