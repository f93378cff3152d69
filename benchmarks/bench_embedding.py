"""An SGD step of a model reading rows of a large embedding table, graphc
against the same step by hand in NumPy, interleaved.

    OMP_NUM_THREADS=1 python benchmarks/bench_embedding.py [--reps 200] [--dense]

The model reads `rows` rows of an N x 64 table (E[idx]), scores them with a
vector and takes the mean squared error. NumPy's step updates only the rows
read (np.subtract.at); graphc's does too (codegen._scatter_updates: the
table's gradient is never made dense). `--dense` turns that off, for the
update before it: a dense gradient, and every row updated. Ratio = graphc /
NumPy: below 1 graphc is faster.
"""
import argparse

import numpy as np

import graphc as gc
from graphc.benchmarks.harness import interleaved_medians_us

LR = 0.1


def loss(p, idx, y):
    return np.mean((p["E"][idx] @ p["v"] - y) ** 2)


def numpy_step(p, idx, y):
    """loss's SGD step by hand: the gradient of the rows read, subtracted at them."""
    h = p["E"][idx]
    g = (2 / len(y)) * (h @ p["v"] - y).astype(h.dtype)
    lr = h.dtype.type(LR)
    np.subtract.at(p["E"], idx, lr * np.outer(g, p["v"]))
    p["v"] -= lr * (h.T @ g)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--dense", action="store_true",
                    help="graphc's update as before codegen._scatter_updates")
    args = ap.parse_args(argv)
    if args.dense:
        from graphc import codegen
        codegen._scatter_updates = lambda graph, units, in_place: {}
    rng = np.random.default_rng(0)
    print(f"median of {args.reps} alternating steps, times in us; ratio = graphc / numpy")
    print(f"{'table':>14s} {'rows':>6s} {'dtype':8s} {'numpy':>9s} {'graphc':>9s} {'ratio':>7s}")
    for n, rows in [(50_000, 5120), (500_000, 5120), (500_000, 256)]:
        for dtype in (np.float32, np.float64):
            table = (rng.standard_normal((n, 64)) * 0.01).astype(dtype)
            weights = rng.standard_normal(64).astype(dtype)
            idx = rng.integers(0, n, size=rows)
            y = rng.standard_normal(rows).astype(dtype)
            mine = {"E": table.copy(), "v": weights.copy()}
            theirs = {"E": table.copy(), "v": weights.copy()}
            step = gc.compile_step(loss, gc.optim.SGD(LR))
            step(mine, idx, y)
            numpy_step(theirs, idx, y)
            for k in mine:      # the same update (rows read twice: up to rounding)
                np.testing.assert_allclose(mine[k], theirs[k], rtol=1e-4, atol=1e-6)
            t_np, t_gc = interleaved_medians_us(
                [lambda: numpy_step(theirs, idx, y), lambda: step(mine, idx, y)], args.reps)
            print(f"{n:>8,d} x 64 {rows:6d} {np.dtype(dtype).name:8s} {t_np:9.1f} {t_gc:9.1f} "
                  f"{t_gc / t_np:7.2f}")


if __name__ == "__main__":
    main()
