"""What a new batch size costs a compiled step: the re-trace, its passes and
code generation, before the module compiled for the first size runs again.

    OMP_NUM_THREADS=1 python benchmarks/bench_new_batch.py [--workloads W1,W2,W3,W4] [--sizes 15]

Per workload (float32): one step at the workload's batch compiles the model;
then each of `--sizes` smaller batch sizes is a new signature, timed alone as
its first call (what the harness's "new batch" column takes the median of,
over five sizes) and
again as a second call at the same size (the step itself). Medians over the
sizes; the phases are timed by wrapping graphc's own functions (tracing with
the autodiff inside it, the optimizing passes, codegen, loading the module).
"""
import argparse
import statistics
import time
import warnings

import numpy as np

from graphc import api
from graphc.benchmarks import harness, workloads

PHASES = {"trace": (api, "_own_trace"), "passes": (api.passes, "run"),
          "codegen": (api.codegen, "generate"), "load": (api.runtime, "load")}


def _timed(times, label, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times[label] = times.get(label, 0.0) + time.perf_counter() - start
    return wrapper


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="W1,W2,W3,W4")
    parser.add_argument("--sizes", type=int, default=15)
    args = parser.parse_args()
    warnings.simplefilter("ignore", api.RecompileWarning)     # many sizes on purpose
    times: dict = {}
    for label, (module, name) in PHASES.items():
        setattr(module, name, _timed(times, label, getattr(module, name)))
    print(f"{'workload':8} {'new batch ms':>12} {'same again ms':>13} "
          + " ".join(f"{p + ' ms':>10}" for p in PHASES))
    for name in args.workloads.split(","):
        w = workloads.WORKLOADS[name]
        params, batch = w.make(np.float32)
        step = harness.build("graphc", w, params, batch, w.lr)
        step()
        compiled = step.compiled
        rows = {"first": [], "again": [], **{p: [] for p in PHASES}}
        n = len(batch[0])
        # distinct sizes: a size seen before would be a cached entry, not a new one
        for size in sorted(set(np.linspace(n - 1, n // 2, args.sizes).astype(int)), reverse=True):
            part = tuple(b[:size] for b in batch)
            times.clear()
            start = time.perf_counter()
            compiled(params, *part)
            rows["first"].append(time.perf_counter() - start)
            for p in PHASES:
                rows[p].append(times.get(p, 0.0))
            start = time.perf_counter()
            compiled(params, *part)
            rows["again"].append(time.perf_counter() - start)
        med = {k: statistics.median(v) * 1e3 for k, v in rows.items()}
        print(f"{name:8} {med['first']:12.1f} {med['again']:13.1f} "
              + " ".join(f"{med[p]:10.1f}" for p in PHASES))
    print("(passes includes those run inside the trace, on the autodiff's graph)")


if __name__ == "__main__":
    main()
