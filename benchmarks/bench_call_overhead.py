"""How much of a small step is Python? graphc's steady-state call against its
compiled driver alone.

    OMP_NUM_THREADS=1 python benchmarks/bench_call_overhead.py [--workloads W1,W4]

Per workload (float32), interleaved over many rounds of short batches of
calls (the medians reported): `step(params, *batch)` as a training loop
calls it, and the module's `run` called directly with the same arguments.
The difference is what graphc's Python costs each call (the identity tests,
the workspace taken and given back, Numba's dispatch is in both). Then the
same model with its params nested as layers are, `[{"W": ..., "b": ...}]`
(a list of the workload's dict), and the step exported (`gc.export`) and
called from its module, on its own copy of the params. A second table does
the same for `gc.jit(gc.value_and_grad(loss))(params, *batch)`, a call that
flattens its arguments and returns new arrays, and times `gc.grad(loss)`
(compiled the same way) and the jitted value_and_grad with a static train
flag beside it. The last line is a small jitted function,
`argmax(x @ W + b)` over 64 rows of 64 to 10 classes, against NumPy.
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
from graphc import api, pytree
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


def _rounds(fns: dict, rounds: int, calls: int) -> dict:
    """Median µs per call of each of `fns`, interleaved over `rounds`."""
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(_per_call_us(fn, calls))
    return {k: float(np.median(v)) for k, v in times.items()}


def _value_and_grad_calls(w, params, batch, rounds):
    """gc.jit(gc.value_and_grad(loss)) called as a user calls it, and its driver alone."""
    fn = gc.jit(gc.value_and_grad(w.loss_fn))
    fn(params, *batch)
    (entry,) = fn._cache.values()
    leaves = entry.inputs(pytree.flatten((params, *batch))[0])
    run_args = (*leaves, *entry.consts, *entry.tail_args(entry.take_workspace()))
    grad = gc.grad(w.loss_fn)
    grad(params, *batch)
    # with a static train flag, as JAX's users write one
    static = gc.jit(gc.value_and_grad(lambda p, *b_and_train: w.loss_fn(p, *b_and_train[:-1])),
                    static_argnums=len(batch) + 1)
    static(params, *batch, True)
    return _rounds({"call": lambda: fn(params, *batch),
                    "driver": lambda: entry.driver(*run_args),
                    "grad": lambda: grad(params, *batch),
                    "static": lambda: static(params, *batch, True)},
                   rounds, max(1, int(2000 / len(run_args))))


def predict(p, x):
    return np.argmax(x @ p["W"] + p["b"], axis=1)


def _predict_calls(rounds):
    rng = np.random.default_rng(0)
    p = {"W": rng.normal(size=(64, 10)).astype(np.float32), "b": np.zeros(10, np.float32)}
    x = rng.normal(size=(64, 64)).astype(np.float32)
    compiled = gc.jit(predict)
    compiled(p, x)
    return _rounds({"graphc": lambda: compiled(p, x), "numpy": lambda: predict(p, x)},
                   rounds, 500)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="W1,W4")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    print(f"{'workload':8} {'step us':>8} {'driver us':>9} {'Python us':>9} {'nested us':>9} "
          f"{'exported us':>11}")
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
        nested_params = [copy.deepcopy(params)]
        nested = gc.compile_step(lambda p, *b: w.loss_fn(p[0], *b), gc.optim.SGD(lr=w.lr))
        nested(nested_params, *batch)
        t = _rounds({"step": step, "driver": lambda: driver(*run_args),
                     "nested": lambda: nested(nested_params, *batch),
                     "exported": lambda: exported.step(exported_params, *batch)},
                    args.rounds, max(1, int(2000 / len(run_args))))
        print(f"{name:8} {t['step']:8.2f} {t['driver']:9.2f} {t['step'] - t['driver']:9.2f} "
              f"{t['nested']:9.2f} {t['exported']:11.2f}")
    print(f"\n{'workload':8} {'value_and_grad us':>17} {'driver us':>9} {'Python us':>9} "
          f"{'grad us':>8} {'static flag us':>14}")
    for name in args.workloads.split(","):
        w = workloads.WORKLOADS[name]
        params, batch = w.make(np.float32)
        t = _value_and_grad_calls(w, params, batch, args.rounds)
        print(f"{name:8} {t['call']:17.2f} {t['driver']:9.2f} {t['call'] - t['driver']:9.2f} "
              f"{t['grad']:8.2f} {t['static']:14.2f}")
    t = _predict_calls(args.rounds)
    print(f"\ngc.jit(predict) {t['graphc']:.2f} us, NumPy {t['numpy']:.2f} us")

if __name__ == "__main__":
    main()
