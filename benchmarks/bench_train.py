"""Time one training epoch three ways: what `gc.train` runs, a Python loop of
compiled steps, and the same training written by hand in NumPy.

    python benchmarks/bench_train.py [--rounds 15] [--batch-size 64] [--hidden 128]

The model is `graphc demo`'s: an MLP 64-hidden-10 (relu) with softmax
cross-entropy and Adam on the bundled digits, float32, full batches only.

  gc.train    - `step.epoch(...)`: the whole minibatch loop (gather the batch
                rows, forward, backward, Adam) is one native call; this is
                exactly what `gc.train` does per epoch
  step loop   - `for idx in batches: step(params, X[idx], y[idx])` from Python
  NumPy       - `graphc.demo.numpy_train` for one epoch: forward, manual
                backward and Adam in NumPy

Rounds interleave the three (rotating order) so load changes hit all alike;
the table shows the median and p10/p90 epoch time and NumPy's time divided
by each one (> 1 is faster than NumPy). Threads are pinned to 1 unless
OMP_NUM_THREADS is set.
"""
import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import numpy as np  # noqa: E402  (after pinning threads)

import graphc as gc  # noqa: E402
from graphc.benchmarks.harness import _timed  # noqa: E402
from graphc.datasets import load_digits  # noqa: E402
from graphc.demo import init_mlp, mlp_loss, numpy_train  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args(argv)

    X, y, _, _ = load_digits()
    bs = args.batch_size
    full = len(X) // bs
    X, y = X[:full * bs], y[:full * bs]          # full batches only, for all three
    perm = np.random.default_rng(0).permutation(len(X))
    batches = [perm[k * bs:(k + 1) * bs] for k in range(full)]
    sizes = [X.shape[1], args.hidden, 10]

    step = gc.compile_step(mlp_loss, gc.optim.Adam(lr=args.lr))
    params = {"graphc": init_mlp(sizes), "loop": init_mlp(sizes), "numpy": init_mlp(sizes)}
    start = time.perf_counter()
    step.epoch(params["graphc"], (X, y), perm, bs, full)       # trace + compile, not timed
    step(params["loop"], X[batches[0]], y[batches[0]])
    print(f"compile (first epoch + first step): {time.perf_counter() - start:.2f} s")

    runs = {
        "gc.train": lambda: step.epoch(params["graphc"], (X, y), perm, bs, full),
        "step loop": lambda: [step(params["loop"], X[i], y[i]) for i in batches],
        "NumPy": lambda: numpy_train(params["numpy"], X, y, args.lr, bs, 1, 0),
    }
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(args.rounds):
        for name in names[r % 3:] + names[:r % 3]:
            times[name] += [_timed(runs[name]) for _ in range(3)]

    print(f"digits MLP {'-'.join(map(str, sizes))}, Adam, batch {bs}, {full} steps/epoch, "
          f"float32, {os.environ['OMP_NUM_THREADS']} thread(s), {3 * args.rounds} epochs each")
    base = np.median(times["NumPy"])
    print(f"{'':10}{'ms/epoch':>10}{'p10':>8}{'p90':>8}{'us/step':>9}{'vs NumPy':>10}")
    for name, ts in times.items():
        med, p10, p90 = np.median(ts), np.percentile(ts, 10), np.percentile(ts, 90)
        print(f"{name:10}{med * 1e3:>10.3f}{p10 * 1e3:>8.3f}{p90 * 1e3:>8.3f}"
              f"{med / full * 1e6:>9.1f}{base / med:>9.2f}x")


if __name__ == "__main__":
    main()
