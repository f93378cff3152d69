"""Is a change faster? Time one SGD step of W1-W5 in two source trees, alternately.

    git worktree add /tmp/parent HEAD~1
    OMP_NUM_THREADS=1 python benchmarks/compare_trees.py /tmp/parent . --workloads W1,W4

On a shared machine one timing of each tree says little: the load moves
while they run. This runs the trees in turn, each in a fresh process on
one thread pinned to one CPU, `--rounds` times; each process times graphc's
step and the hand-written NumPy step interleaved (the median of many short
batches of steps) and prints the ratio graphc / NumPy, which moves much
less with the load than either time. Read the rounds side by side.

Both trees run the workloads and timer of the installed graphc.benchmarks
(this checkout's, for its .venv), so only graphc differs. A tree is a
checkout of this repository (a `git worktree` is cheapest): its graphc, and
its kernels as graphc.kernels, are imported in place of the installed ones.
"""
import argparse
import importlib.util
import os
import subprocess
import sys

import numpy as np

# steps per timed batch, and batches, so each workload takes a few seconds
_STEPS = {"W1": 200, "W2": 2, "W3": 1, "W4": 25, "W5": 2}
_BATCHES = {"W1": 300, "W2": 60, "W3": 20, "W4": 300, "W5": 60}


def import_tree(tree: str):
    """Import graphc from `tree`, with `tree`/kernels as graphc.kernels (the
    installed package maps it there; a bare checkout has no graphc/kernels)."""
    tree = os.path.abspath(tree)
    sys.path.insert(0, tree)
    import graphc
    if not graphc.__file__.startswith(tree + os.sep):
        raise SystemExit(f"graphc imported from {graphc.__file__}, not from {tree}")
    kernels = os.path.join(tree, "kernels")
    spec = importlib.util.spec_from_file_location(
        "graphc.kernels", os.path.join(kernels, "__init__.py"), submodule_search_locations=[kernels])
    module = importlib.util.module_from_spec(spec)
    sys.modules["graphc.kernels"] = module
    spec.loader.exec_module(module)
    graphc.kernels = module
    return graphc


def measure(name: str, dtype: str, steps: int, batches: int) -> tuple[float, float]:
    """Median µs per step of graphc and of the NumPy step, in alternate batches
    of `steps` steps (the harness's step builders and interleaved timer)."""
    from graphc.benchmarks import harness       # after import_tree: it imports graphc
    w = harness.WORKLOADS[name]
    params, batch = w.make(dtype)
    steps_of = [harness.build(impl, w, harness._copy(params), batch, w.lr)
                for impl in ("graphc", "numpy")]

    def batch_of(step):
        def run_batch():
            for _ in range(steps):
                step()
        return run_batch
    ours, numpy = harness.interleaved_medians_us([batch_of(s) for s in steps_of], batches)
    return ours / steps, numpy / steps


def _child(tree: str, names: list[str], dtype: str, scale: int, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})      # before any library starts a thread
    import_tree(tree)
    for name in names:
        ours, numpy = measure(name, dtype, max(1, _STEPS[name] // scale),
                              max(3, _BATCHES[name] // scale))
        print(f"{name} {ours:.2f} {numpy:.2f}", flush=True)


def one_thread_env(**more) -> dict:
    """This process's environment, with every library on one thread (and `more`)."""
    return dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1", GRAPHC_NUM_THREADS="1", **more)


def _run(tree: str, names: list[str], dtype: str, cpu: int, scale: int) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", tree,
                          ",".join(names), dtype, str(scale), str(cpu)], env=one_thread_env(),
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{tree}: the measuring process failed:\n{out.stderr}")
    times = {}
    for line in out.stdout.splitlines():
        name, ours, numpy = line.split()
        times[name] = (float(ours), float(numpy))
    return times


def two_trees_parser(doc: str) -> argparse.ArgumentParser:
    """The command line this script and compare_first_calls.py share: the
    two trees, --rounds and --cpu."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("base", help="the tree to compare against (say, a worktree of the parent)")
    p.add_argument("other", nargs="?", default=".", help="the tree with the change (default: .)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)),
                   help="the CPU both run on (default: the highest this process may use)")
    return p


def chosen(p: argparse.ArgumentParser, text: str, known, what: str) -> list[str]:
    """The comma-separated names of `text`, each one of `known` (else p's usage error)."""
    names = text.split(",")
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"unknown {what} {unknown}; choose from {', '.join(sorted(known))}")
    return names


def main(argv=None) -> None:
    if argv is None and sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2], sys.argv[3].split(","), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
        return
    p = two_trees_parser(__doc__)
    p.add_argument("--workloads", default="W1,W4", help="comma-separated (default: W1,W4)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--quick", action="store_true", help="a tenth of the steps (a smoke test)")
    args = p.parse_args(argv)
    names = chosen(p, args.workloads, _STEPS, "workloads")
    trees = [os.path.abspath(args.base), os.path.abspath(args.other)]
    print(f"graphc / NumPy per step, {args.dtype}, one thread on CPU {args.cpu}; "
          f"graphc µs and NumPy µs in brackets")
    print(f"{'round':6} {'tree':40} " + " ".join(f"{n:>24}" for n in names))
    ratios = {tree: {n: [] for n in names} for tree in trees}
    for r in range(args.rounds):
        for tree in trees:
            times = _run(tree, names, args.dtype, args.cpu, 10 if args.quick else 1)
            cells = []
            for n in names:
                ours, numpy = times[n]
                ratios[tree][n].append(ours / numpy)
                cells.append(f"{ours / numpy:6.3f} [{ours:7.1f} {numpy:7.1f}]")
            print(f"{r + 1:<6} {tree[-40:]:40} " + " ".join(f"{c:>24}" for c in cells), flush=True)
    for tree in trees:
        print(f"{'median':6} {tree[-40:]:40} "
              + " ".join(f"{np.median(ratios[tree][n]):>24.3f}" for n in names))


if __name__ == "__main__":
    main()
