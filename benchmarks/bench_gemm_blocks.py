"""Products past OpenBLAS's small-matrix kernels: one BLAS call against
blas.gemm's blocks of rows. The data behind kernels/blas._block_rows.

    OMP_NUM_THREADS=1 python benchmarks/bench_gemm_blocks.py [--dtype float64] [--rounds 11]

Where OpenBLAS has small-matrix kernels (its SkylakeX, Cooperlake and
SapphireRapids cores) they take products of up to about 1e6 multiply-adds
and run them faster than its packing GEMM: a transformer's 512 token rows
times a 64x64 weight is past that bound, its blocks of 240 rows are not.
For a @ b, a @ b.T (blocked once b.T is copied, as gemm does for b up to
TRANSPOSED_MAX) and the weight gradient a.T @ g summing the m rows
(blocks of them), each shape is timed as one
blas_gemm call and through gemm, each in a Numba loop of many products so
no Python call is timed, interleaved, medians of `--rounds`; "blocks" is
the rows gemm gives each call (blas._plan; 0: one call, as the BLAS is,
or blocks would be too few rows). Where the BLAS has no small kernels both columns are the
same call.
"""
import argparse
import time

import numpy as np
from numba import njit

from graphc.kernels import blas

# (m, k, n): rows of a @ b, the summed axis, columns
SHAPES = [(512, 64, 64), (2048, 64, 64), (512, 64, 128), (512, 128, 64), (4096, 32, 32),
          (1024, 100, 100), (512, 784, 16), (2048, 128, 128), (512, 256, 64)]


@njit
def _one_call(a, b, c, transpose_a, transpose_b, reps):
    for _ in range(reps):
        blas.blas_gemm(a, b, c, transpose_a, transpose_b, 1.0, 0.0)


@njit
def _gemm(a, b, c, transpose_a, transpose_b, scratch, reps):
    for _ in range(reps):
        blas.gemm(a, b, c, transpose_a, transpose_b, 1.0, 0.0, scratch)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    print(f"{blas.BLAS}\n{'m x k x n':>14} {'form':>6} {'blocks':>6} {'one call us':>11} "
          f"{'gemm us':>8} {'one / gemm':>10}")
    for m, k, n in SHAPES:
        reps = max(3, int(5e7 // (m * n * k)))
        for form in ("a@b", "a@b.T", "a.T@g"):
            transpose_a, transpose_b = form == "a.T@g", form == "a@b.T"
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((m, n) if transpose_a else (n, k) if transpose_b
                                    else (k, n)).astype(dtype)
            c = np.zeros((k, n) if transpose_a else (m, n), dtype)
            scratch = np.empty(b.size if b.size <= blas.TRANSPOSED_MAX else 1, dtype)
            rows, cols = c.shape
            blocks = blas._plan(rows, cols, m if transpose_a else k, transpose_a, transpose_b,
                                scratch.size, dtype.itemsize)[2]
            _one_call(a, b, c, transpose_a, transpose_b, 1)
            _gemm(a, b, c, transpose_a, transpose_b, scratch, 1)
            times = {"one": [], "gemm": []}
            for _ in range(args.rounds):
                t = time.perf_counter()
                _one_call(a, b, c, transpose_a, transpose_b, reps)
                times["one"].append((time.perf_counter() - t) / reps)
                t = time.perf_counter()
                _gemm(a, b, c, transpose_a, transpose_b, scratch, reps)
                times["gemm"].append((time.perf_counter() - t) / reps)
            one, through = (np.median(times[key]) * 1e6 for key in ("one", "gemm"))
            print(f"{f'{m}x{k}x{n}':>14} {form:>6} {blocks:>6} {one:11.1f} {through:8.1f} "
                  f"{one / through:10.2f}", flush=True)


if __name__ == "__main__":
    main()
