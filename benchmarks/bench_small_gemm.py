"""Where graphc's register-blocked small GEMM beats the BLAS call.

    OMP_NUM_THREADS=1 python benchmarks/bench_small_gemm.py [--dtype float64]

For the GEMM shapes of W1-W4 (forward a @ b, weight gradient a.T @ b) and
squares around the crossover, times kernels/small_gemm.gemm_in_registers against the
BLAS call graphc makes otherwise (kernels/blas.blas_gemm), each in a Numba
loop of many products so no Python call is timed, interleaved, medians of
15 rounds. Prints microseconds per product, GFLOP/s and blas / small (>1:
the small kernel is faster). kernels/blas.SMALL_GEMM_MAX was read off it.
Shapes whose rows are not whole vectors (W1's 10 classes, W4's one
output) are left to BLAS and only listed.
"""
import argparse
import time

import numpy as np
from numba import njit

from graphc.kernels import blas, small_gemm

# (m, k, n, a transposed): rows of c, the summed axis, columns of c
SHAPES = [
    (64, 64, 10, False), (64, 64, 10, True),          # W1
    (32, 64, 64, False), (64, 32, 64, True),          # W4 hidden layers
    (32, 64, 1, False), (64, 32, 1, True),            # W4 output layer
    (128, 256, 10, False), (256, 128, 10, True),      # W2 output layer
    (128, 10, 256, False),                            # W2 output layer, input gradient (b copied)
    (64, 64, 64, False), (64, 128, 64, False), (128, 64, 128, False),
    (96, 96, 96, False), (128, 128, 128, False), (128, 256, 256, False),
]


@njit
def _small(a, b, c, reps):
    for _ in range(reps):
        small_gemm.gemm_in_registers(a, b, c, 1.0, 0.0)


@njit
def _blas(a, b, c, transpose_a, reps):
    for _ in range(reps):
        blas.blas_gemm(a, b, c, transpose_a, False, 1.0, 0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=15)
    dtype = np.dtype(parser.parse_args().dtype)
    rounds = parser.parse_args().rounds
    rng = np.random.default_rng(0)
    print(f"{'m x k x n':>16} {'a.T':>4} {'blas us':>9} {'small us':>9} "
          f"{'GFLOP/s':>8} {'blas/small':>10}")
    for m, k, n, transposed in SHAPES:
        if n % (32 // dtype.itemsize):
            print(f"{f'{m}x{k}x{n}':>16} {'T' if transposed else '':>4}   BLAS only: "
                  "rows of c are not whole 256-bit vectors")
            continue
        a = rng.standard_normal((k, m) if transposed else (m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        c = np.zeros((m, n), dtype)
        reps = max(1, int(5e7 // (2 * m * n * k)))
        view = a.T if transposed else a
        _small(view, b, c, 1)
        _blas(a, b, c, transposed, 1)
        times = {"blas": [], "small": []}
        for _ in range(rounds):
            t = time.perf_counter()
            _blas(a, b, c, transposed, reps)
            times["blas"].append((time.perf_counter() - t) / reps)
            t = time.perf_counter()
            _small(view, b, c, reps)
            times["small"].append((time.perf_counter() - t) / reps)
        t_blas, t_small = (np.median(times[key]) for key in ("blas", "small"))
        print(f"{f'{m}x{k}x{n}':>16} {'T' if transposed else '':>4} {t_blas * 1e6:9.2f} "
              f"{t_small * 1e6:9.2f} {2 * m * n * k / t_small / 1e9:8.1f} "
              f"{t_blas / t_small:10.2f}")


if __name__ == "__main__":
    main()
