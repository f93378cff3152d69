"""Time graphc's compiled reductions against NumPy's, interleaved.

    python benchmarks/bench_reductions.py [--reps 200]

For each reduction and dtype, the median time of `gc.jit(f)(x)` and of
`f(x)` over `--reps` alternating calls (one thread). Ratio = graphc / NumPy:
below 1 graphc is faster. Sums vectorize through vmath.radd; maxima run in
lanes (codegen.MAX_LANES); column reductions accumulate row by row.
"""
import argparse

import numpy as np

import graphc as gc
from graphc.benchmarks.harness import interleaved_medians_us

# name -> (shape, function)
CASES = {
    "sum 1e6": ((1_000_000,), lambda x: np.sum(x)),
    "max 1e6": ((1_000_000,), lambda x: np.max(x)),
    "min 1e6": ((1_000_000,), lambda x: np.min(x)),
    "max |x| 1e6": ((1_000_000,), lambda x: np.max(np.abs(x))),
    "sum and max 1e6": ((1_000_000,), lambda x: (np.sum(x * 2), np.max(x * 2))),
    "max rows 1000x1000": ((1000, 1000), lambda x: np.max(x, axis=1)),
    "max cols 1000x1000": ((1000, 1000), lambda x: np.max(x, axis=0)),
    "max rows 256x10": ((256, 10), lambda x: np.max(x, axis=1)),
    "logsumexp rows 512x300": ((512, 300), lambda x: np.log(np.sum(
        np.exp(x - np.max(x, axis=1, keepdims=True)), axis=1))),
    "log_softmax rows 512x1000": ((512, 1000), lambda x: _log_softmax(x)),
    "log_softmax rows 64x30000": ((64, 30000), lambda x: _log_softmax(x)),
}


def _log_softmax(x):
    """As users write it; graphc makes it its log_softmax op."""
    z = x - np.max(x, axis=1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"median of {args.reps} alternating runs, times in us; ratio = graphc / numpy")
    print(f"{'reduction':26s} {'dtype':8s} {'numpy':>9s} {'graphc':>9s} {'ratio':>7s}")
    for name, (shape, fn) in CASES.items():
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal(shape).astype(dtype)
            compiled = gc.jit(fn)
            np.testing.assert_allclose(compiled(x), fn(x), rtol=1e-5)
            t_np, t_gc = interleaved_medians_us([lambda: fn(x), lambda: compiled(x)], args.reps)
            print(f"{name:26s} {np.dtype(dtype).name:8s} {t_np:9.1f} {t_gc:9.1f} "
                  f"{t_gc / t_np:7.2f}")


if __name__ == "__main__":
    main()
