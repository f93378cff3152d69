"""How close the dense steps (W1-W4) come to the time of their GEMMs alone.

    python benchmarks/bench_gemm_floor.py [--rounds 9] [--dtype float32]

W3's target is stated against the BLAS floor: a step within 10% of the time
its matrix products take. This times, interleaved in rounds:

  GEMMs       - the step's products alone, with NumPy's OpenBLAS: per layer
                h @ W, h.T @ g, and g @ W.T except for the first layer (the
                input needs no gradient); the operands are random arrays of
                the right shapes
  graphc      - one `gc.compile_step(loss, SGD)` step
  NumPy       - the workload's hand-written NumPy step

and prints each median with its ratio to the GEMMs (1.00 is the floor).
Threads are pinned to 1 unless OMP_NUM_THREADS is set. The GEMMs are
called through np.dot from Python, so for W1's and W4's small products the
floor includes NumPy's call cost (about 1 us each).

On 2026-12-02 (float32, one thread), graphc / GEMMs and NumPy / GEMMs were:
W1 3.94 and 10.4 (GEMMs 5 us), W2 1.05 and 1.27, W3 1.05 and 1.09, W4 1.24
and 2.76 (GEMMs 100 us); a later run gave W1 3.64 and 10.3, W2 1.08 and
1.25, W3 1.08 and 1.00, W4 1.17 and 2.49, and in float64 W2 0.99 and 1.92,
W3 1.13 and 1.18, W4 1.31 and 2.55. So W4's 0.25 target (graphc at
0.62-0.69x the time of its GEMMs alone) and W2's 0.60 (0.75x) are below the
BLAS floor here, and W1's 0.20 is below the floor plus Python's per-call
binding of a step. On the AMD EPYC VM of 2026-12-03 evening, after graphc's
GEMMs moved to NumPy's OpenBLAS (before, they ran on SciPy's, a slower
build for small products): W1 1.65 and 9.99 (GEMMs 6 us), W2 0.98 and
1.16, W3 1.02 and 1.07, W4 0.96 and 2.76 (GEMMs 115 us).
"""
import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import numpy as np  # noqa: E402  (after pinning threads)

import graphc as gc  # noqa: E402
from graphc.benchmarks.harness import _timed  # noqa: E402
from graphc.benchmarks.workloads import WORKLOADS  # noqa: E402


def gemms_of(params, x, dtype):
    """A zero-argument function running the step's GEMMs on stand-in operands."""
    rng = np.random.default_rng(0)
    weights = [params[f"W{i}"] for i in range(len(params) // 2)]
    acts = [x] + [rng.random((x.shape[0], w.shape[1])).astype(dtype) for w in weights]

    def run():
        for i, w in enumerate(weights):
            np.dot(acts[i], w)                  # forward
            np.dot(acts[i].T, acts[i + 1])      # weight gradient
            if i:
                np.dot(acts[i + 1], w.T)        # gradient of the layer's input
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = ap.parse_args(argv)
    print(f"threads: {os.environ['OMP_NUM_THREADS']}, {args.dtype}, median of "
          f"{args.rounds} rounds")
    print(f"{'workload':10s}{'GEMMs ms':>10s}{'graphc ms':>11s}{'/ GEMMs':>9s}"
          f"{'NumPy ms':>10s}{'/ GEMMs':>9s}")
    for name, reps in (("W1", 2000), ("W2", 40), ("W3", 3), ("W4", 400)):
        wl = WORKLOADS[name]
        params, (x, y) = wl.make(args.dtype)
        step = gc.compile_step(wl.loss_fn, gc.optim.SGD(wl.lr))
        step(params, x, y)                                  # compile
        by_hand = {k: v.copy() for k, v in params.items()}
        impls = {"GEMMs": gemms_of(params, x, args.dtype),
                 "graphc": lambda: step(params, x, y),
                 "NumPy": lambda: wl.numpy_step(by_hand, x, y, wl.lr)}
        times = {k: [] for k in impls}
        for r in range(args.rounds):
            order = list(impls)[r % 3:] + list(impls)[:r % 3]     # rotate: load hits all alike
            for k in order:
                times[k].append(np.median([_timed(impls[k]) for _ in range(reps)]))
        med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        print(f"{name:10s}{med['GEMMs']:10.3f}{med['graphc']:11.3f}"
              f"{med['graphc'] / med['GEMMs']:9.2f}{med['NumPy']:10.3f}"
              f"{med['NumPy'] / med['GEMMs']:9.2f}")


if __name__ == "__main__":
    main()
