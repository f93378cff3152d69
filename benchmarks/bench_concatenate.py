"""How a concatenation copies its pieces: along each row of a piece, or down
its columns. The data behind graphc.kernels.pieces.NARROW_PIECE.

    OMP_NUM_THREADS=1 python benchmarks/bench_concatenate.py [--dtype float64]

Generated code copies a concatenation (and its gradient's pieces) as 2-D
rows: the axes before the concatenated one are the rows, the rest one row
(codegen._as_rows). For three pieces of each width over about 60,000
elements, times both loop orders in Numba loops of many copies, interleaved,
medians of 9 rounds, and prints ns an element of the concatenation.
"""
import argparse
import time

import numpy as np
from numba import njit


@njit(error_model="numpy")
def _along_rows(whole, parts, reps):
    for _ in range(reps):
        offset = 0
        for part in parts:
            for i0 in range(part.shape[0]):
                for i1 in range(part.shape[1]):
                    whole[i0, offset + i1] = part[i0, i1]
            offset += part.shape[1]


@njit(error_model="numpy")
def _down_columns(whole, parts, reps):
    for _ in range(reps):
        offset = 0
        for part in parts:
            for i1 in range(part.shape[1]):
                for i0 in range(part.shape[0]):
                    whole[i0, offset + i1] = part[i0, i1]
            offset += part.shape[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=9)
    dtype = np.dtype(parser.parse_args(argv).dtype)
    rounds = parser.parse_args(argv).rounds
    forms = {"along rows": _along_rows, "down columns": _down_columns}
    print(f"{'width':>5} {'rows':>6}" + "".join(f"{name:>14}" for name in forms) + "   ns an element")
    for width in (1, 2, 3, 4, 6, 8, 16, 32):
        rows = 20000 // width
        parts = tuple(np.random.default_rng(k).random((rows, width)).astype(dtype)
                      for k in range(3))
        whole = np.empty((rows, 3 * width), dtype)
        reps = max(1, 2_000_000 // whole.size)
        times = {name: [] for name in forms}
        for name, form in forms.items():
            form(whole, parts, 1)
            assert np.array_equal(whole, np.concatenate(parts, axis=1))
        for _ in range(rounds):
            for name, form in forms.items():
                start = time.perf_counter()
                form(whole, parts, reps)
                times[name].append((time.perf_counter() - start) / reps / whole.size * 1e9)
        print(f"{width:5d} {rows:6d}" + "".join(f"{np.median(t):14.3f}" for t in times.values()))


if __name__ == "__main__":
    main()
