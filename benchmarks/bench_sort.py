"""np.sort, np.argsort and np.median along rows, graphc against NumPy, interleaved.

    OMP_NUM_THREADS=1 python benchmarks/bench_sort.py [--reps 100]

graphc's sorts are stable (kernels/order.py: a radix sort of keys made from
the values' bits, an insertion sort for short rows), so its argsort is
compared with both NumPy's default (quicksort; on x86-64 with AVX-512
NumPy's vectorized sorts) and kind="stable"; np.sort and np.median with
NumPy's own. Ratio = graphc / NumPy: below 1 graphc is faster.
"""
import argparse

import numpy as np

import graphc as gc
from graphc.benchmarks.harness import interleaved_medians_us

CASES = {
    "sort": (lambda x: np.sort(x, axis=1), lambda x: np.sort(x, axis=1)),
    "argsort": (lambda x: np.argsort(x, axis=1), lambda x: np.argsort(x, axis=1)),
    "argsort, stable": (lambda x: np.argsort(x, axis=1), lambda x: np.argsort(x, 1, "stable")),
    "median": (lambda x: np.median(x, axis=1), lambda x: np.median(x, axis=1)),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=100)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"median of {args.reps} alternating calls, times in us; ratio = graphc / numpy")
    print(f"{'rows':>12s} {'dtype':8s} {'op':16s} {'numpy':>9s} {'graphc':>9s} {'ratio':>7s}")
    for shape in ((1024, 10), (256, 64), (64, 256), (256, 256), (4, 16384)):
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal(shape).astype(dtype)
            for name, (traced, by_numpy) in CASES.items():
                f = gc.jit(traced)
                got, want = f(x), by_numpy(x)
                if "argsort" in name:   # (float32 draws tie: orders of ties differ by kind)
                    got, want = (np.take_along_axis(x, i, axis=1) for i in (got, want))
                np.testing.assert_array_equal(got, want)
                t_np, t_gc = interleaved_medians_us([lambda: by_numpy(x), lambda: f(x)], args.reps)
                print(f"{str(shape):>12s} {np.dtype(dtype).name:8s} {name:16s} {t_np:9.1f} "
                      f"{t_gc:9.1f} {t_gc / t_np:7.2f}")


if __name__ == "__main__":
    main()
