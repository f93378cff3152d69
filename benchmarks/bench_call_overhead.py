"""How much of a small step is Python? graphc's steady-state call against its
compiled driver alone.

    OMP_NUM_THREADS=1 python benchmarks/bench_call_overhead.py [--workloads W1,W4]

Per workload (float32), interleaved over many rounds of short batches of
calls (the medians reported): `step(params, *batch)` as a training loop
calls it, and the module's `run` called directly with the same arguments.
The difference is what graphc's Python costs each call (the identity tests,
the workspace taken and given back, Numba's dispatch is in both). The last
column is the same step exported (`gc.export`) and called from its module,
on its own copy of the params.
"""
import argparse
import copy
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import graphc as gc
from graphc import api
from graphc.benchmarks import harness, workloads


def _per_call_us(fn, calls):
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def _exported(step, name):
    """`step` exported to a temporary module, imported."""
    path = Path(tempfile.mkdtemp()) / f"exported_{name}.py"
    gc.export(step, path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = sys.modules[path.stem] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="W1,W4")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    print(f"{'workload':8} {'step us':>8} {'driver us':>9} {'Python us':>9} {'exported us':>11}")
    for name in args.workloads.split(","):
        w = workloads.WORKLOADS[name]
        params, batch = w.make(np.float32)
        step = harness.build("graphc", w, params, batch, w.lr)
        step()
        last = step.compiled._last        # the steady-state call, made by that first call
        entry = last.entry
        count = api.UNREAD if last.count_unread else np.array(1, np.int64)
        run_args = (*last.leaves, count, *batch, *entry.consts,
                    *entry.tail_args(entry.take_workspace()))
        driver = entry.driver
        exported, exported_params = _exported(step.compiled, name), copy.deepcopy(params)
        exported.step(exported_params, *batch)
        calls = max(1, int(2000 / len(run_args)))
        times = {"step": [], "driver": [], "exported": []}
        for _ in range(args.rounds):
            times["step"].append(_per_call_us(step, calls))
            times["driver"].append(_per_call_us(lambda: driver(*run_args), calls))
            times["exported"].append(_per_call_us(
                lambda: exported.step(exported_params, *batch), calls))
        step_us, driver_us, exported_us = (float(np.median(times[k]))
                                           for k in ("step", "driver", "exported"))
        print(f"{name:8} {step_us:8.2f} {driver_us:9.2f} {step_us - driver_us:9.2f} "
              f"{exported_us:11.2f}")


if __name__ == "__main__":
    main()
