"""Is a change's first call faster? Cold and warm first calls in two source trees, alternately.

    git worktree add /tmp/parent HEAD~1
    python benchmarks/compare_first_calls.py /tmp/parent . --models lstm,attention,W2

A first call is `gc.compile_step(loss, gc.optim.SGD(lr))` and its first step:
the trace, Numba's compile (or its load from the compile cache) and the
step. Each is timed in a fresh process on one thread pinned to one CPU:
cold with an empty compile cache (GRAPHC_CACHE_DIR: a NUMBA_CACHE_DIR you
set keeps Numba's code of each module in a folder named after its path,
new too), then warm, a second process on the cache the first one filled.
The trees take turns, model by model, `--rounds` times: one cold time says
little on a shared machine, where the load moves from minute to minute.

Models: the workloads W1-W5 (float32), `lstm` (benchmarks/bench_lstm.py: a
character LSTM unrolled over 16 steps, batch 32) and `attention`
(benchmarks/bench_attention.py: a transformer block, batch 16). Both trees
run this checkout's models (graphc.benchmarks), so only graphc differs; a
tree is a checkout of this repository, imported as compare_trees.py does.

graphc's own kernels compile once per checkout, into its kernels/__pycache__,
on their first use there (a second or more): each tree runs each model once,
untimed, before the rounds, so that a new worktree's first round is not
charged for them. Each row prints the first loss too: the trees must agree
on it.
"""
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

MODELS = ("W1", "W2", "W3", "W4", "W5", "lstm", "attention")
_BATCH = {"lstm": 32, "attention": 16}      # the benchmark scripts' defaults


def model(name: str):
    """(loss, params, batch, lr) of a workload or of a benchmark script's model."""
    if name in _BATCH:
        module = importlib.import_module(f"graphc.benchmarks.bench_{name}")
        params, *batch = module.make(_BATCH[name])
        return module.loss, params, tuple(batch), module.LR
    from graphc.benchmarks import workloads
    w = workloads.WORKLOADS[name]
    params, batch = w.make(np.float32)
    return w.loss_fn, params, tuple(batch), w.lr


def _child(tree: str, name: str, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})      # before any library starts a thread
    # this script's directory is sys.path[0]: graphc must come from `tree` first
    from compare_trees import import_tree
    gc = import_tree(tree)
    loss, params, batch, lr = model(name)
    start = time.perf_counter()
    step = gc.compile_step(loss, gc.optim.SGD(lr))
    value = step(params, *batch)
    seconds = time.perf_counter() - start
    stats = next(iter(step._entries.values())).driver.stats     # Numba's, of `run`
    print(f"{seconds:.4f} {sum(stats.cache_hits.values())} {value!r}", flush=True)


def _first_call(tree: str, name: str, cpu: int, cache: str) -> tuple[float, bool, str]:
    """(seconds, whether `run` was loaded from the cache, the loss as printed)
    of one first call in a fresh process on `cache`."""
    from graphc.benchmarks.compare_trees import one_thread_env     # (not in --child)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", tree, name,
                          str(cpu)], env=one_thread_env(GRAPHC_CACHE_DIR=cache),
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{tree}: the process timing {name} failed:\n{out.stderr}")
    seconds, hits, loss = out.stdout.split()[-3:]
    return float(seconds), int(hits) > 0, loss


def _run(tree: str, name: str, cpu: int) -> tuple[float, float, str]:
    """(cold s, warm s, loss) of `name` in `tree`, on a compile cache of their
    own; refused unless the cold call compiled `run` and the warm one loaded it."""
    cache = tempfile.mkdtemp(prefix="graphc_first_calls_")
    try:
        cold, cold_loaded, loss = _first_call(tree, name, cpu, cache)
        warm, warm_loaded, _ = _first_call(tree, name, cpu, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if cold_loaded or not warm_loaded:
        raise SystemExit(f"{tree}: {name}'s cold call {'loaded' if cold_loaded else 'compiled'} "
                         f"its code and its warm call {'loaded' if warm_loaded else 'compiled'} it")
    return cold, warm, loss


def main(argv=None) -> None:
    if argv is None and sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    from graphc.benchmarks.compare_trees import chosen, two_trees_parser   # (not in --child)
    p = two_trees_parser(__doc__)
    p.add_argument("--models", default="W2,lstm",
                   help=f"comma-separated, of {', '.join(MODELS)} (default: W2,lstm)")
    args = p.parse_args(argv)
    names = chosen(p, args.models, MODELS, "models")
    trees = [os.path.abspath(args.base), os.path.abspath(args.other)]
    for tree in trees:          # graphc's own kernels each model uses, compiled once per checkout
        for n in names:
            _run(tree, n, args.cpu)
    print(f"first calls (trace, compile or cache load, first step), seconds, one thread "
          f"on CPU {args.cpu}; cold: an empty compile cache, warm: the one it filled")
    print(f"{'round':6} {'model':10} {'tree':40} {'cold':>7} {'warm':>7}  first loss")
    times = {(tree, n): [] for tree in trees for n in names}
    for r in range(args.rounds):
        for n in names:
            for tree in trees:
                cold, warm, loss = _run(tree, n, args.cpu)
                times[tree, n].append((cold, warm))
                print(f"{r + 1:<6} {n:10} {tree[-40:]:40} {cold:7.2f} {warm:7.2f}  {loss}",
                      flush=True)
    for n in names:
        for tree in trees:
            cold, warm = np.median(times[tree, n], axis=0)
            print(f"{'median':6} {n:10} {tree[-40:]:40} {cold:7.2f} {warm:7.2f}")


if __name__ == "__main__":
    main()
