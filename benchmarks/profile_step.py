"""Where does a compiled step's time go? Cycles per statement of its `run`.

    OMP_NUM_THREADS=1 python benchmarks/profile_step.py W4 [--dtype float64] [--calls 3000]
    OMP_NUM_THREADS=1 python benchmarks/profile_step.py lstm --unrolled

Compiles a model's SGD step (a workload W1-W5, or compare_first_calls.py's
`lstm` and `attention`, float32), then a copy of its generated module whose
`run` reads the CPU's cycle counter (llvm.readcyclecounter: the TSC on
x86) after every top-level statement: a kernel's loop nest, a GEMM call, a
call of an outlined kernel. It calls that copy with the step's own
arguments (the parameters keep training) and prints each kind of
statement's median cycles per call, summed over the places it occurs,
largest first, with the µs the counter's rate makes of them. The counter
reads cost about 25 cycles a statement, so statements that cheap show only
that. A Python loop over time steps is outlined (graphc/repeats.py): its
statements are then one call a step, `run_part<k>(...)`; `--unrolled`
compiles the step without outlining, so that each kernel is counted where
it runs, at every step (a 16-step LSTM takes about 20 s to compile so).
It is a tool for finding the next thing to speed up, not a benchmark:
compare steps with compare_trees.py.
"""
import argparse
import contextlib
import importlib.util
import os
import re
import sys
import tempfile
import time

import numpy as np

_CYCLE_COUNTER = '''
from numba import types as _types
from numba.extending import intrinsic as _intrinsic
from llvmlite import ir as _ir


@_intrinsic
def _cycles(typingctx):
    def codegen(context, builder, sig, args):
        counter = builder.module.declare_intrinsic(
            "llvm.readcyclecounter", fnty=_ir.FunctionType(_ir.IntType(64), []))
        return builder.call(counter, [])
    return _types.int64(), codegen

'''


def _statements(body: list[str]) -> list[list[str]]:
    """`run`'s body as top-level statements, each with the comment lines and
    nested lines that follow it."""
    statements, pending = [], []     # pending: comments before the first statement
    for line in body:
        top = line.startswith("    ") and not line.startswith("     ")
        code = line.strip()
        if top and code and not code.startswith(("#", "else", "elif")):
            statements.append(pending + [line])
            pending = []
        elif statements:
            statements[-1].append(line)
        else:
            pending.append(line)
    return statements


def instrumented(source: str) -> tuple[str, list[str]]:
    """`source` with its `run` taking one more argument, an int64 array that
    each top-level statement adds its cycles to; and each statement's first
    line of code."""
    lines = source.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("def run("))
    end = next(i for i in range(start + 1, len(lines))
               if lines[i] and not lines[i].startswith((" ", "#")))
    statements = _statements(lines[start + 1:end])
    body, labels = ["    _t = _cycles()"], []
    for k, statement in enumerate(statements):
        body += statement
        first = next((s.strip() for s in statement if s.strip() and not s.strip().startswith("#")), "")
        labels.append(first)
        if not first.startswith(("return", "raise")):
            body += [f"    _spent[{k}] += _cycles() - _t", "    _t = _cycles()"]
    head = re.sub(r"^def run\((.*)\):$", r"def run(\1, _spent):", lines[start])
    text = "\n".join(lines[:start] + [head] + body + lines[end:])
    # a private module: not cached, and the counter declared before the kernels
    text, found = re.subn(r"^FASTMATH = ", lambda m: _CYCLE_COUNTER + m.group(0),
                          text.replace("cache=True", "cache=False"), count=1, flags=re.M)
    if not found:
        raise ValueError("profile_step: no `FASTMATH = ` line to put the cycle counter before")
    return text, labels


def kind_of(label: str) -> str:
    """A statement with its variables' numbers and comments taken out, so the
    same kind of statement at each layer adds up."""
    return re.sub(r"\s+#.*", "", re.sub(r"\b(v|in|ws_o)\d+\b", "_", label))


def cycles_per_second(seconds=0.2) -> float:
    """The cycle counter's rate, against time.perf_counter."""
    from numba import njit
    namespace = {}
    exec(compile(_CYCLE_COUNTER + "def now():\n    return _cycles()\n", "<cycles>", "exec"), namespace)
    now = njit(namespace["now"])
    now()
    c0, t0 = now(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pass
    return (now() - c0) / (time.perf_counter() - t0)


def profile(name: str, dtype: str, calls: int,
            unrolled: bool = False) -> tuple[list[tuple[str, float, int]], float]:
    """(kind, median cycles per call summed over its places, places) of a model's
    step, largest first; and the median cycles of a whole call."""
    from graphc.benchmarks.compare_first_calls import model
    if name.startswith("W"):
        from graphc.benchmarks.workloads import WORKLOADS
        w = WORKLOADS[name]
        (params, batch), loss, lr = w.make(dtype, seed=0), w.loss_fn, w.lr
    elif dtype != "float32":
        raise SystemExit(f"profile_step: {name} is float32 only")
    else:
        loss, params, batch, lr = model(name)
    return profile_step_of(loss, params, batch, lr, calls, unrolled)


def unrolled_steps():
    """While it lasts, steps compile without graphc/repeats.py's outlining."""
    from unittest import mock

    from graphc import codegen
    return mock.patch.object(codegen, "_outlined_repeats", lambda lines, *a, **k: ([], lines))


def profile_step_of(loss, params, batch, lr, calls: int, unrolled: bool = False):
    """profile's rows and whole call for the SGD step of `loss` at (params, *batch)."""
    import graphc as gc
    step = gc.compile_step(loss, gc.optim.SGD(lr=lr))
    with unrolled_steps() if unrolled else contextlib.nullcontext():
        step(params, *batch)
    entry = step._last.entry
    arguments = {}
    driver = entry.driver

    def spy(*args):
        arguments["args"] = args
        return driver(*args)

    entry.driver, step._last = spy, None     # the next call takes the checked path, through spy
    try:
        step(params, *batch)
    finally:
        entry.driver = driver
    text, labels = instrumented(entry.module.source)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "graphc_profiled_step.py")
        with open(path, "w") as f:
            f.write(text)
        spec = importlib.util.spec_from_file_location("graphc_profiled_step", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        spent = np.zeros(len(labels), np.int64)
        module.run(*arguments["args"], spent)        # compiles
        samples = np.empty((calls, len(labels)), np.int64)
        for k in range(calls):
            spent[:] = 0
            module.run(*arguments["args"], spent)
            samples[k] = spent
    median = np.median(samples, axis=0)
    kinds: dict[str, list] = {}
    for label, cycles in zip(labels, median):
        total = kinds.setdefault(kind_of(label), [0.0, 0])
        total[0] += cycles
        total[1] += 1
    rows = sorted(((kind, c, n) for kind, (c, n) in kinds.items()), key=lambda r: -r[1])
    return rows, float(np.median(samples.sum(axis=1)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", help="W1-W5, lstm or attention")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--unrolled", action="store_true",
                        help="compile without outlining repeated stretches (time steps)")
    args = parser.parse_args(argv)
    rows, whole = profile(args.workload, args.dtype, args.calls, args.unrolled)
    rate = cycles_per_second()
    print(f"{args.workload} {args.dtype}: {whole:,.0f} cycles a call ({whole / rate * 1e6:.1f} us "
          f"at the counter's {rate / 1e9:.2f} GHz), median of {args.calls} calls")
    print(f"{'cycles':>10} {'share':>6} {'us':>7} {'places':>6}  statement")
    for kind, cycles, places in rows[:args.top]:
        print(f"{cycles:10,.0f} {cycles / whole:6.1%} {cycles / rate * 1e6:7.2f} {places:6d}  {kind[:110]}")


if __name__ == "__main__":
    sys.exit(main())
