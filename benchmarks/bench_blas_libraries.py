"""Which BLAS should graphc's GEMMs call? NumPy's own against SciPy's (and
Intel's MKL where its wheel is installed), the data behind
graphc.kernels.blas_library.

    OMP_NUM_THREADS=1 python benchmarks/bench_blas_libraries.py [--reps 15]

A NumPy wheel and a SciPy wheel bundle different OpenBLAS builds. This
times, per shape (the GEMMs of W1-W4's steps, and W3's largest) and dtype,
a native loop of row-major CBLAS GEMMs through each library, called the same
way (a ctypes function pointer from Numba code): NumPy's, and the cfunc
over SciPy's cython_blas that graphc falls back to (GRAPHC_BLAS=scipy),
and MKL's CBLAS with 64-bit integers (cblas_sgemm_64, from `pip install
mkl`; graphc's large products with GRAPHC_BLAS=mkl). The loops alternate
over --reps rounds; the medians are reported, with the others' times as
multiples of NumPy's.

On 2026-12-06 (an Intel Xeon with AVX-512, one thread, MKL 2026.2), MKL /
NumPy's OpenBLAS: W2's and W3's products 0.73-0.95 (float32) and 0.74-0.92
(float64); W4's 32x64 @ 64x64 products 0.65-1.15 by their transpose flags;
W1's 64x64 @ 64x10 0.93 and its (64x64).T @ 64x10 1.6-1.8: hence
blas_library.LARGE_GEMM_MIN, the size from which GRAPHC_BLAS=mkl calls MKL.
"""
import argparse
import ctypes
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")     # before NumPy loads its BLAS

import numpy as np  # noqa: E402
from numba import njit, types  # noqa: E402

from graphc.benchmarks.harness import interleaved_medians_us  # noqa: E402
from graphc.kernels import blas_library, mkl_library  # noqa: E402

# (m, k, n, form) of c[m, n] = op(a) @ op(b) with k the inner size; `form`
# says which operand is read transposed ("a.T @ b": a is stored k x m), as
# in a layer's forward (NN), input gradient (NT) and weight gradient (TN):
# W1's layer, W4's layers, W2's first and second layers, W3's first layer
SHAPES = [(64, 64, 10, "NN"), (64, 64, 10, "TN"),
          (32, 64, 64, "NN"), (32, 64, 64, "NT"), (64, 32, 64, "TN"),
          (128, 784, 256, "NN"), (784, 128, 256, "TN"), (128, 256, 256, "NT"),
          (512, 784, 1024, "NN")]
_LABELS = {"NN": "{m}x{k} @ {k}x{n}", "NT": "{m}x{k} @ ({n}x{k}).T", "TN": "({k}x{m}).T @ {k}x{n}"}


def _loop(address, real):
    """A Numba loop of `times` GEMMs through the CBLAS function at `address`."""
    sig = blas_library.CBLAS_SIGNATURE(real)
    proto = blas_library.cblas_ctypes(ctypes.c_float if real == types.float32
                                      else ctypes.c_double)
    assert len(sig.args) == len(proto._argtypes_)
    gemm = proto(address)
    row_major = blas_library.ROW_MAJOR

    @njit(nogil=True)
    def run(a, b, c, trans_a, trans_b, times):
        m, n = c.shape
        k = a.shape[0] if trans_a != blas_library.NO_TRANS else a.shape[1]
        for _ in range(times):
            gemm(row_major, trans_a, trans_b, m, n, k, 1.0, a.ctypes.data, a.shape[1],
                 b.ctypes.data, b.shape[1], 0.0, c.ctypes.data, n)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=15, help="alternating rounds per shape")
    args = parser.parse_args()
    found = blas_library.numpy_gemms()
    if found is None:
        raise SystemExit("NumPy's CBLAS GEMMs with 64-bit integers were not found: "
                         "graphc uses SciPy's BLAS here, there is nothing to compare")
    numpy_s, numpy_d, name = found
    scipy_s, scipy_d = blas_library.scipy_gemms()
    libraries = {"NumPy": (numpy_s, numpy_d), "SciPy": (scipy_s, scipy_d)}
    mkl = mkl_library.gemms()       # what GRAPHC_BLAS=mkl binds, or why it cannot
    if not isinstance(mkl, str):
        libraries["MKL"] = mkl[:2]
    print(f"NumPy's: {name}; SciPy's: scipy.linalg.cython_blas through Numba; MKL: "
          + (mkl if isinstance(mkl, str) else f"{mkl[2]}, cblas_?gemm_64"))
    others = list(libraries)[1:]
    print(f"{'dtype':8} {'product':>22} " + " ".join(f"{lib + ' us':>10}" for lib in libraries)
          + "".join(f" {lib + '/NumPy':>12}" for lib in others))
    rng = np.random.default_rng(0)
    for index, (dtype, real) in enumerate(((np.float32, types.float32),
                                           (np.float64, types.float64))):
        loops = [_loop(pair[index], real) for pair in libraries.values()]
        for m, k, n, form in SHAPES:
            ta, tb = (blas_library.TRANS if f == "T" else blas_library.NO_TRANS for f in form)
            a = rng.standard_normal((k, m) if form[0] == "T" else (m, k)).astype(dtype)
            b = rng.standard_normal((n, k) if form[1] == "T" else (k, n)).astype(dtype)
            outs = [np.empty((m, n), dtype) for _ in loops]
            times = max(1, int(2e7 / (m * k * n)))
            medians = interleaved_medians_us(
                [lambda run=run, c=c: run(a, b, c, ta, tb, times) for run, c in zip(loops, outs)],
                args.reps)
            for out in outs[1:]:
                np.testing.assert_allclose(outs[0], out, rtol=1e-3, atol=1e-3)
            per_call = [t / times for t in medians]
            shape = _LABELS[form].format(m=m, k=k, n=n)
            print(f"{np.dtype(dtype).name:8} {shape:>22} "
                  + " ".join(f"{t:10.2f}" for t in per_call)
                  + "".join(f" {t / per_call[0]:12.2f}" for t in per_call[1:]))

if __name__ == "__main__":
    main()
