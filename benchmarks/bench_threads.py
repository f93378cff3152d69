"""When is a fused loop worth splitting over threads? The data behind
graphc.codegen.PARALLEL_MIN_WORK.

    python benchmarks/bench_threads.py [--reps 400]

Three float32 loops as graphc compiles them (`gc.jit`, every loop made
threaded for the test), timed serial (threads=1) against threaded (all of
graphc.threads.count()), interleaved, median of --reps calls per size:
  cheap    x * y + x                     work 2 per element
  relu     maximum(x + b, 0) (b a row)   work 2 per element
  loss     sum(log1p(exp(-x * y)))       work 23 per element (2 transcendentals)
`work` is what codegen estimates (elements x ops, a transcendental counting
TRANSCENDENTAL_WORK ops); the last column is the threaded speed-up.

On this project's 2-core Xeon VM (2026-12-02, 2 threads, omp layer) the
threaded loop broke even at 0.1-0.2 M work units (cheap and relu near 2^16
elements, loss near 2^13) and ran 1.7-2.5x faster from 1 M on (2-4x for the
memory-bound loops between 2^18 and 2^21 elements, where two cores' caches
hold what one core's cannot). A launch costs about 4 us. Speed alone would
put PARALLEL_MIN_WORK near 1 M; the comment there says why it is 8 M (each
threaded kernel's cold compile). Run this with OMP_NUM_THREADS unset: that
variable pins graphc to one thread.
"""
import argparse

import numpy as np

import graphc as gc
from graphc import codegen, threads
from graphc.benchmarks.harness import median_us


def _entry(fn, *args):
    jitted = gc.jit(fn)
    jitted(*args)
    return next(iter(jitted._cache.values()))


CASES = {
    "cheap": (2, lambda x, y: x * y + x, lambda n, rng: (rng.standard_normal(n),
                                                        rng.standard_normal(n))),
    "relu": (2, lambda x, b: np.maximum(x + b, 0),
             lambda n, rng: (rng.standard_normal((n // 1024, 1024)),
                             rng.standard_normal(1024))),
    "loss": (23, lambda x, y: np.sum(np.log1p(np.exp(-x * y))),
             lambda n, rng: (rng.standard_normal(n), rng.standard_normal(n))),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=400)
    args = parser.parse_args()
    n_threads = threads.count()
    if n_threads < 2:
        raise SystemExit("graphc.threads.count() is 1 here (one core, OMP_NUM_THREADS=1, "
                         "GRAPHC_NUM_THREADS=1 or no thread-safe Numba threading layer)")
    codegen.PARALLEL_MIN_WORK = 1       # every loop threaded; the driver picks by `threads`
    rng = np.random.default_rng(0)
    print(f"threads: {n_threads}; median of {args.reps} calls, interleaved")
    print(f"{'loop':6} {'elements':>9} {'work':>8} {'serial us':>10} {'threaded us':>12} {'x':>5}")
    for name, (work, fn, make) in CASES.items():
        for log2 in range(12, 23, 1):
            n = 2 ** log2
            data = [a.astype(np.float32) for a in make(n, rng)]
            entry = _entry(fn, *data)
            reps = max(20, args.reps >> max(0, log2 - 16))
            serial, threaded = [], []
            ws = entry.take_workspace()
            for _ in range(5):
                serial.append(median_us(
                    lambda: entry.driver(*data, *entry.consts, *entry.tail_args(ws, 1)), reps))
                threaded.append(median_us(
                    lambda: entry.driver(*data, *entry.consts, *entry.tail_args(ws, n_threads)),
                    reps))
            s, t = np.median(serial), np.median(threaded)
            print(f"{name:6} {n:9d} {n * work / 1e6:7.2f}M {s:10.1f} {t:12.1f} {s / t:5.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
