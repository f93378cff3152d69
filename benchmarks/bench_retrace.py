"""What a training call costs before its first step when the model was
compiled before in the process: a notebook cell with `gc.train` run again.

    OMP_NUM_THREADS=1 python benchmarks/bench_retrace.py [--rounds 15]

Every `gc.train` and `compile_step` traces its loss again (edits to it take
effect: tests/test_fresh_traces.py); graphc.lowering then re-uses the
optimized graph and generated module of an equal earlier trace. For the
demo's model (an MLP 64-128-10 with Adam, the digits data, batches of 64),
interleaved over rounds, medians in ms:

  kept      - a one-epoch `gc.train`, its lowerings kept from earlier calls
  lowered   - the same with graphc.lowering.forget() first: the passes and
              code generation run again (the compiled code still loads
              from memory), as before graphc.lowering
  epoch     - `Step.epoch` alone, for the cost of the epoch itself

On 2026-12-06 (an Intel Xeon with AVX-512, one thread): kept 14.7 ms,
lowered 30.9, the epoch 0.78 (two signatures traced in each call: full
batches and the short last one). So a 30-epoch `gc.train` called again
spends about 37 ms in all where it spent 54. Later that day Adam traced its
bias corrections once a dtype instead of once a parameter: kept 20.0 and
18.1 -> 16.6 and 14.9 ms (two alternating runs each way, a busier machine).
"""
import argparse
import time

import numpy as np

import graphc as gc
from graphc import lowering
from graphc.demo import init_mlp, load_digits, mlp_loss


def _train_ms(x, y, forget: bool) -> float:
    params = init_mlp([64, 128, 10], 0)
    if forget:
        lowering.forget()
    start = time.perf_counter()
    gc.train(mlp_loss, params, (x, y), gc.optim.Adam(lr=3e-3), batch_size=64, epochs=1, seed=0,
             progress=False)
    return (time.perf_counter() - start) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    x, y, _, _ = load_digits(seed=0)
    _train_ms(x, y, forget=False)       # compiled (or loaded) once
    step = gc.compile_step(mlp_loss, gc.optim.Adam(lr=3e-3))
    params = init_mlp([64, 128, 10], 0)
    perm = np.random.default_rng(0).permutation(len(x))
    batches = len(x) // 64
    step.epoch(params, (x, y), perm, 64, batches)
    times = {"kept": [], "lowered": [], "epoch": []}
    for _ in range(rounds):
        times["kept"].append(_train_ms(x, y, forget=False))
        times["lowered"].append(_train_ms(x, y, forget=True))
        start = time.perf_counter()
        step.epoch(params, (x, y), perm, 64, batches)
        times["epoch"].append((time.perf_counter() - start) * 1e3)
    print(f"one-epoch gc.train of the demo's MLP, medians of {rounds} rounds:")
    for name, ts in times.items():
        print(f"  {name:8} {np.median(ts):7.2f} ms")


if __name__ == "__main__":
    main()
