"""The benchmark harness behind `graphc bench` and `python -m graphc.benchmarks`.

For each workload and dtype it times one SGD step written four ways: by hand
in NumPy (the baseline), compiled by graphc, and, when installed, PyTorch
(eager) and JAX (jit). Method:

1. Check: from identical starting params, every implementation's loss and
   parameter update must match the NumPy step's (rtol 1e-4 float32, 1e-9
   float64); a mismatch is printed loudly and makes `main` exit 1.
2. Warm up (excluded), then time in rounds: each round runs every
   implementation a few steps, in a rotating order, so drift in machine load
   hits all of them alike. Each step is timed alone; we report the median and
   the 10th/90th percentiles of the per-step times.
3. Thread counts are pinned (1 unless you set OMP_NUM_THREADS & co. or pass
   --threads) for BLAS, Numba and PyTorch alike, and printed.
4. graphc's first call (trace + compile + first step) is reported apart:
   "cold" with an empty compile cache and "warm" with the cache filled, each
   measured in a fresh process after `import graphc`, whose time is reported
   as "import" (skipped by --quick, which reports the in-process first call
   instead); "new batch" is then, in the cold process, the median first
   step at five new batch sizes (half the batch and just under): a re-trace
   that re-uses the compiled module (its loop bounds and buffers come from
   the arrays' shapes).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc as pygc
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from graphc import target
from graphc.cli import output_path, positive_int
from graphc import threads as graphc_threads
from graphc.benchmarks.workloads import WORKLOADS

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
RTOL = {"float32": 1e-4, "float64": 1e-9}
IMPLS = ("numpy", "graphc", "torch", "jax")

# time budget per implementation per (workload, dtype), and repetition bounds
FULL = dict(budget=2.0, min_reps=20, max_reps=2000, rounds=10, warmup=0.2)
QUICK = dict(budget=0.15, min_reps=5, max_reps=200, rounds=5, warmup=0.0)


# ---------------------------------------------------------------------------
# Threads

@contextlib.contextmanager
def pinned_threads(threads=None):
    """Pin BLAS, Numba and PyTorch (in `build`) to one thread count; yields what was set.

    Sets the thread env vars the user has not set (child processes and late imports
    such as torch read them) and applies the count to the OpenBLAS builds already
    loaded, which read their env var only at import. For one thread, JAX gets
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false, and on Linux every thread of
    the process is pinned to one CPU until the end (the fresh processes that
    time first calls inherit it): JAX 0.10 runs its GEMMs on a pool sized by
    the CPUs the process may use, whatever that flag says (W3 float32 took 15 ms
    on both cores of this machine against 30 ms for NumPy's one thread, and
    30 ms when pinned). NUMBA_NUM_THREADS is set only
    if Numba is not imported yet: once it is, Numba refuses a changed value at the
    next compile. It is left set afterwards for the same reason; the others are
    restored on exit."""
    restore = {var: os.environ.get(var) for var in THREAD_VARS[:-1]}
    saved_blas = _blas_threads()
    torch = sys.modules.get("torch")
    saved_torch = torch.get_num_threads() if torch else None
    explicit = threads is not None
    if not explicit:
        given = [os.environ[v] for v in THREAD_VARS if os.environ.get(v, "").isdigit()]
        threads = int(given[0]) if given else 1
    for var in THREAD_VARS:
        if var == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
            continue
        if explicit or var not in os.environ:
            os.environ[var] = str(threads)
    if threads == 1 and "XLA_FLAGS" not in os.environ and "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"   # JAX's CPU backend
        restore["XLA_FLAGS"] = None
    numba = sys.modules.get("numba")
    numba_threads = numba.config.NUMBA_NUM_THREADS if numba else os.environ["NUMBA_NUM_THREADS"]
    graphc_threads.reset()      # graphc's big loops follow OMP_NUM_THREADS too
    saved_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    pinned = None
    try:
        if threads == 1 and saved_cpus and len(saved_cpus) > 1:
            pinned = _pin_process({min(saved_cpus)})
        yield {"threads": threads, "blas": _blas_threads(threads),
               "numba": int(numba_threads),
               "cpus": sorted(os.sched_getaffinity(0)) if saved_cpus else None,
               **{var: os.environ.get(var) for var in THREAD_VARS}}
    finally:
        if pinned is not None:
            _unpin_process(pinned, saved_cpus)
        for var, value in restore.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        for n in set(saved_blas.values()):
            _blas_threads(n)
        if saved_torch:
            torch.set_num_threads(saved_torch)
        graphc_threads.reset()


def _threads() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _pin_process(cpus, passes=5) -> dict:
    """Every thread of this process to `cpus`; returns each one's former CPUs.
    Linux sets affinity per thread: pinning only the caller would leave the
    pools JAX and PyTorch already started free. A thread that one of them
    starts while this runs inherits its parent's CPUs, so the threads are
    listed again until a pass finds none new; one already on `cpus` then was
    started by a pinned thread, and is not recorded (it gets the caller's
    former CPUs back, as any thread started while pinned)."""
    saved, seen = {}, set()
    try:
        for attempt in range(passes):
            new = [tid for tid in _threads() if tid not in seen]
            if not new:
                break
            seen.update(new)
            for tid in new:
                try:
                    former = os.sched_getaffinity(tid)
                    if attempt and former == cpus:
                        continue
                    os.sched_setaffinity(tid, cpus)
                    saved[tid] = former
                except ProcessLookupError:      # a thread that has just ended
                    saved.pop(tid, None)
    except BaseException:       # not half-pinned: the ones done so far get theirs back
        for tid, former in saved.items():
            try:
                os.sched_setaffinity(tid, former)
            except OSError:
                pass
        raise
    return saved


def _unpin_process(saved: dict, default):
    """Threads back to their own former CPUs; threads started while pinned
    (they inherited the pin) to the caller's former CPUs."""
    for tid in _threads():
        try:
            os.sched_setaffinity(tid, saved.get(tid, default))
        except ProcessLookupError:
            pass


def _blas_threads(n=None) -> dict:
    """Threads of each OpenBLAS loaded in this process (NumPy's, and SciPy's that
    Numba's np.dot calls), after setting them to `n` if given."""
    out = {}
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({line.split()[-1] for line in f if "openblas" in line.lower()
                           and line.split()[-1].startswith("/")})
    except OSError:
        return out           # not Linux: the env vars are all we can do
    for path in libs:
        lib = ctypes.CDLL(path)
        for suffix in ("", "64_"):
            for prefix in ("scipy_openblas", "openblas"):
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    if n is not None:
                        setter(ctypes.c_int(n))
                    out[os.path.basename(path)] = getter()
    return out


# ---------------------------------------------------------------------------
# Implementations: each builder returns a zero-argument step() -> loss, with
# step.read_params() giving the current parameters as NumPy arrays.

def available(impl) -> str | None:
    """None if `impl` can run here, else why not."""
    if impl == "graphc":
        import graphc as gc
        return None if hasattr(gc, "compile_step") else \
            "graphc skipped: gc.compile_step does not exist in this build yet"
    if impl in ("torch", "jax"):
        return None if importlib.util.find_spec(impl) else f"{impl} skipped: not installed"
    return None


def build(impl, workload, params, batch, lr):
    if impl == "numpy":
        def step():
            return workload.numpy_step(params, *batch, lr)
    elif impl == "graphc":
        import graphc as gc
        compiled = gc.compile_step(workload.loss_fn, gc.optim.SGD(lr=lr))

        def step():
            return compiled(params, *batch)
        step.compiled = compiled
    elif impl == "torch":
        import torch
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        return workload.torch_step(params, batch, lr)
    elif impl == "jax":
        return workload.jax_step(params, batch, lr)
    step.read_params = lambda: {k: v.copy() for k, v in params.items()}
    return step


def _copy(params):
    return {k: v.copy() for k, v in params.items()}


def check(loss, new, ref_loss, ref_new, old, dtype) -> dict:
    """Same loss and same update (new - old) as the NumPy step, to RTOL. The params
    are stored in `dtype`, so an update also carries the rounding of the stored
    value: we allow one ulp of the parameter on top of rtol."""
    rtol, eps = RTOL[dtype], np.finfo(dtype).eps
    worst, ok = {}, abs(loss - ref_loss) <= rtol * max(abs(ref_loss), 1e-30)
    worst["loss"] = abs(loss - ref_loss) / max(abs(ref_loss), 1e-30)
    off = {"loss": (int(not ok), 1)}        # (elements past the tolerance, elements)
    for k, p0 in old.items():
        p0 = p0.astype(np.float64)
        du, dref = new[k] - p0, ref_new[k] - p0
        allowed = rtol * np.max(np.abs(dref)) + 2 * eps * np.max(np.abs(p0)) + 1e-300
        errors = np.abs(du - dref)
        err = float(np.max(errors))
        worst[k] = err / allowed * rtol           # in units of relative error
        off[k] = (int(np.count_nonzero(~(errors <= allowed))), errors.size)   # NaN counts
        ok = ok and err <= allowed
    worst = {k: v if v == v else np.inf for k, v in worst.items()}     # NaN: the worst
    name = max(worst, key=worst.get)
    # how many elements differ tells a wrong gradient (most of them) from a
    # rounding that took the other side of a kink: a ReLU whose input is
    # within float32's rounding of zero flips a unit's row or column
    return {"ok": bool(ok), "loss": float(loss), "ref_loss": float(ref_loss),
            "worst": name, "worst_rel": float(worst[name]), "worst_off": off[name]}


# ---------------------------------------------------------------------------
# graphc's first call in a fresh process (cold / warm compile cache)

def _first_call(name, dtype) -> dict:
    """Runs in a child process: time graphc's first step (trace, compile or load, run)."""
    import graphc as gc
    w = WORKLOADS[name]
    params, batch = w.make(dtype, seed=0)
    step = gc.compile_step(w.loss_fn, gc.optim.SGD(lr=w.lr))
    start = time.perf_counter()
    step(params, *batch)
    first = time.perf_counter() - start
    result = {"first_call_s": first, "compile_s": step.inspect(params, *batch).compile_seconds}
    # New batch sizes for the compiled model: half the rows and just under (W5's
    # data is tied to the shape of w, so it has no batch size to change). Each
    # is a first call, timed once: the median of NEW_BATCHES of them.
    times = []
    for size in range(len(batch[0]) // 2, max(len(batch[0]) // 2 - NEW_BATCHES, 0), -1):
        part = tuple(b[:size] for b in batch)
        start = time.perf_counter()
        try:
            step(params, *part)
        except gc.ShapeError:
            break
        times.append(time.perf_counter() - start)
    if times:
        result["new_batch_s"], result["new_batches_s"] = float(np.median(times)), times
    return result


NEW_BATCHES = 5


# The child times `import graphc` first: a new process pays for it before any result.
_FIRST_CALL_CHILD = """\
import time
start = time.perf_counter()
import graphc
import_s = time.perf_counter() - start
import json, sys
from graphc.benchmarks.harness import _first_call
print(json.dumps(dict(_first_call(sys.argv[1], sys.argv[2]), import_s=import_s)))
"""


def first_call_in_fresh_process(name, dtype, cache_dir) -> dict:
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache_dir,
               NUMBA_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    out = subprocess.run([sys.executable, "-c", _FIRST_CALL_CHILD, name, dtype],
                         env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------

def _timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def interleaved_medians_us(calls, reps) -> list[float]:
    """Each call's median time in µs over `reps` rounds in which every call
    runs once in turn (drift in the machine's speed hits all of them alike),
    after one untimed call each."""
    for call in calls:
        call()
    times = [[] for _ in calls]
    for _ in range(reps):
        for k, call in enumerate(calls):
            times[k].append(_timed(call))
    return [1e6 * float(np.median(t)) for t in times]


def median_us(call, reps) -> float:
    return interleaved_medians_us([call], reps)[0]


def race_sgd_steps(loss, params, batch, numpy_step, torch_step, lr, reps,
                   loss_rtol=1e-5, params_atol=1e-6):
    """One model's SGD step three ways, for the models of benchmarks/bench_*.py:
    graphc's compile_step of `loss` on `params` itself, `numpy_step(params,
    *batch)` by hand (forward, backward and update in place, returning the
    loss before it) and `torch_step(params, *batch)`, PyTorch's step (None
    where it is not installed), each on a copy of the parameters. Their
    first steps' losses must agree with NumPy's (loss_rtol), and graphc's
    parameters after it with NumPy's (rtol 1e-4); then interleaved medians.
    Returns (graphc's first call in s: trace, compile or load, first step;
    its first loss; {name: median us a step})."""
    import graphc as gc
    mine, theirs = ({k: v.copy() for k, v in params.items()} for _ in range(2))
    step = gc.compile_step(loss, gc.optim.SGD(lr=lr))
    steps = {"graphc": lambda: step(params, *batch),
             "NumPy": lambda: numpy_step(mine, *batch)}
    torch_call = torch_step(theirs, *batch)
    if torch_call is not None:
        steps["PyTorch"] = torch_call
    start = time.perf_counter()
    first = {"graphc": steps["graphc"]()}          # trace, compile (or load), first step
    compile_s = time.perf_counter() - start
    first.update({name: call() for name, call in steps.items() if name != "graphc"})
    for name in first:
        np.testing.assert_allclose(first[name], first["NumPy"], rtol=loss_rtol, err_msg=name)
    for name in params:
        np.testing.assert_allclose(params[name], mine[name], rtol=1e-4, atol=params_atol,
                                   err_msg=name)
    times = dict(zip(steps, interleaved_medians_us(list(steps.values()), reps)))
    return compile_s, float(first["graphc"]), times


def torch_sgd(params, lr):
    """(torch, `params` as PyTorch leaf tensors, SGD over them) for a
    benchmark's PyTorch step, on OMP_NUM_THREADS threads; None where PyTorch
    is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    return torch, p, torch.optim.SGD(p.values(), lr=lr)


def print_race(model: str, race: tuple, reps: int) -> None:
    """race_sgd_steps' result for `model` (its description): graphc's first
    call and loss, each step's median, NumPy's time over each, and
    PyTorch's time over NumPy's where it ran."""
    compile_s, first, times = race
    print(f"{model}: graphc's first call {compile_s:.2f} s, loss {first:.6f}; "
          f"µs per step (median of {reps}), and NumPy's time / its")
    for name, us in times.items():
        print(f"  {name:8s} {us:9.1f}  {times['NumPy'] / us:5.2f}x")
    if "PyTorch" in times:
        print(f"  PyTorch / NumPy {times['PyTorch'] / times['NumPy']:.2f}")


def bench_one(workload, dtype, impls, cfg, cold_cache=None, log=print) -> dict:
    """Check and time every implementation on one workload and dtype."""
    params0, batch = workload.make(dtype, seed=0)
    lr = workload.lr
    ref = _copy(params0)
    ref_loss = workload.numpy_step(ref, *batch, lr)
    result = {"workload": workload.name, "title": workload.title, "dtype": dtype, "impls": {}}
    steps = {}
    for impl in impls:
        try:
            start = time.perf_counter()
            step = build(impl, workload, _copy(params0), batch, lr)
            loss = step()                                 # the checked step
            first = time.perf_counter() - start
        except Exception as e:                            # a peer failing must not stop the run
            log(f"!! {impl} failed on {workload.name} {dtype}: {type(e).__name__}: {e}")
            result["impls"][impl] = {"error": f"{type(e).__name__}: {e}"}
            continue
        r = result["impls"][impl] = {"check": check(loss, step.read_params(), ref_loss, ref,
                                                    params0, dtype)}
        if not r["check"]["ok"]:
            c = r["check"]
            log(f"\n!!!!! MISMATCH: {impl} on {workload.name} {dtype} differs from the NumPy step: "
                f"worst {c['worst']} relative error {c['worst_rel']:.3g} (rtol {RTOL[dtype]:g}) "
                f"in {c['worst_off'][0]:,} of its {c['worst_off'][1]:,} elements; "
                f"loss {c['loss']!r} vs {c['ref_loss']!r}\n")
        if impl == "graphc":
            r["first_call_s"] = first
            r["compile_s"] = _compile_seconds(step, batch)
        steps[impl] = step
    if "graphc" in steps and cold_cache is not None:
        # cold: an empty compile cache; warm: the same cache, now filled, in a new process
        cache = tempfile.mkdtemp(prefix="graphc-bench-", dir=cold_cache)
        r = result["impls"]["graphc"]
        for kind in ("cold", "warm"):
            r[kind] = first_call_in_fresh_process(workload.name, dtype, cache)
            if "error" in r[kind]:
                log(f"!! graphc {kind} first call failed on {workload.name} {dtype}: "
                    f"{r[kind]['error']}")

    # warm-up, then estimate a step's time to size the repetitions
    est = {}
    for impl, step in steps.items():
        t_end, times = time.perf_counter() + cfg["warmup"], [_timed(step)]
        while time.perf_counter() < t_end:
            times.append(_timed(step))
        est[impl] = min(times)
    per_round = {impl: max(1, min(cfg["max_reps"], max(cfg["min_reps"], int(cfg["budget"] / t)))
                           // cfg["rounds"]) for impl, t in est.items()}
    times = {impl: [] for impl in steps}
    order = list(steps)
    for k in range(cfg["rounds"]):
        pygc.collect()
        pygc.disable()                       # no GC pauses inside a timed step
        try:
            for impl in order[k % len(order):] + order[:k % len(order)]:
                step = steps[impl]
                for _ in range(per_round[impl]):
                    times[impl].append(_timed(step))
        finally:
            pygc.enable()
    for impl, t in times.items():
        t = np.array(t)
        result["impls"][impl].update(
            median_us=float(np.median(t) * 1e6), p10_us=float(np.percentile(t, 10) * 1e6),
            p90_us=float(np.percentile(t, 90) * 1e6), seconds=t.tolist())
    return result


def _compile_seconds(step, batch):
    """graphc's own trace+compile time for this signature, if it reports it."""
    inspect = getattr(step.compiled, "inspect", None)
    return inspect(step.read_params(), *batch).compile_seconds if inspect else None


# ---------------------------------------------------------------------------

def run(workloads=None, dtypes=("float32", "float64"), quick=False, json_path=None,
        plot_path=None, progress=True, impls=IMPLS, threads=None, cold=None) -> list[dict]:
    """Run the benchmark; print the table; return one result dict per (workload, dtype).

    `cold` (default: not quick) also measures graphc's first call with an empty and
    with a filled compile cache, each in a fresh process.
    """
    names = list(workloads or WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workloads {unknown}; choose from {sorted(WORKLOADS)}")
    if set(impls) - set(IMPLS):
        raise ValueError(f"unknown implementations {sorted(set(impls) - set(IMPLS))}; "
                         f"choose from {list(IMPLS)}")
    cfg = QUICK if quick else FULL
    cold = (not quick) if cold is None else cold
    usable = []
    for impl in impls:
        why = available(impl)
        if why:
            print(why)
        else:
            usable.append(impl)
    if "numpy" not in usable:
        usable.insert(0, "numpy")

    from tqdm.auto import tqdm
    jobs = [(WORKLOADS[n], d) for n in names for d in dtypes]
    results = []
    with pinned_threads(threads) as env, tempfile.TemporaryDirectory(prefix="graphc-bench-") as tmp:
        print(f"threads: {env['threads']} (" + ", ".join(f"{v}={env[v]}" for v in THREAD_VARS)
              + f"; OpenBLAS {env['blas'] or 'unknown'}; numba {env['numba']}"
              + (f"; on CPU {env['cpus'][0]} only" if env["cpus"] and len(env["cpus"]) == 1
                 else "") + ")")
        bar = tqdm(jobs, desc="bench", unit="case", disable=not progress, leave=False)
        for w, dtype in bar:
            bar.set_description(f"bench {w.name} {dtype}")
            results.append(bench_one(w, dtype, usable, cfg, cold_cache=tmp if cold else None,
                                     log=bar.write if progress else print))
    bar.close()
    print(format_table(results, usable))
    wide = target.host_has_avx512() and target.full_width()
    if "graphc" in usable and target.host_has_avx512():
        print("graphc's loops: 512-bit vectors" if wide else
              "graphc's loops: 256-bit vectors (GRAPHC_VECTOR_WIDTH=256)")
    gemm_blas = None
    if "graphc" in usable:
        from graphc.kernels import blas
        gemm_blas = blas.BLAS
        print(f"graphc's GEMMs: {gemm_blas}")
    if json_path:
        meta = {"threads": env, "graphc_512_bit_vectors": wide, "graphc_blas": gemm_blas,
                "quick": quick,
                "config": cfg, "python": sys.version.split()[0],
                "numpy": np.__version__, "machine": platform.platform(),
                "cpus": os.cpu_count(), "versions": _versions(usable)}
        with open(json_path, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
        print(f"raw timings written to {json_path}")
    if plot_path:
        plot(results, usable, plot_path)
    return results


def _versions(impls):
    out = {}
    for impl in impls:
        try:
            out[impl] = __import__(impl).__version__
        except (ImportError, AttributeError):
            pass
    return out


def mismatches(results) -> list[str]:
    return [f"{r['workload']} {r['dtype']} {impl}" for r in results
            for impl, x in r["impls"].items() if "error" in x or not x["check"]["ok"]]


def format_table(results, impls) -> str:
    """µs per step, median [p10-p90], and speedup over NumPy (>1: faster than NumPy)."""
    peers = [i for i in impls if i != "numpy"]
    head = ["workload", "dtype", "numpy µs/step"]
    for impl in peers:
        head += [f"{impl} µs/step", "vs numpy"]
    has_first = any("first_call_s" in r["impls"].get("graphc", {}) for r in results)
    if has_first:
        head += ["graphc 1st call s", "import s", "cold s", "warm s", "new batch s"]
    rows = []
    for r in results:
        base = r["impls"]["numpy"]["median_us"]
        row = [r["workload"], r["dtype"], _cell(r["impls"]["numpy"])]
        for impl in peers:
            x = r["impls"].get(impl, {})
            if "median_us" not in x:
                row += ["error" if "error" in x else "-", ""]
            else:
                row += [_cell(x), f"{base / x['median_us']:.2f}x"
                        + ("" if x["check"]["ok"] else " MISMATCH")]
        if has_first:
            g = r["impls"].get("graphc", {})
            row += [_seconds(g.get("first_call_s")), _seconds(g.get("warm", {}).get("import_s"))] + \
                [_seconds(g.get(k, {}).get("first_call_s")) for k in ("cold", "warm")] + \
                [_seconds(g.get("cold", {}).get("new_batch_s"))]
        rows.append(row)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    fmt = lambda row: "  ".join(c.ljust(w) if k < 2 else c.rjust(w)   # noqa: E731
                                for k, (c, w) in enumerate(zip(row, widths))).rstrip()
    lines = [fmt(head), "-" * len(fmt(head))] + [fmt(row) for row in rows]
    lines.append("µs/step: median [p10-p90] of per-step times; vs numpy: NumPy's time / its time "
                 "(>1 is faster)")
    if has_first:
        lines.append("graphc 1st call: trace + compile (or cache load) + first step in this "
                     "process; import: `import graphc` in a fresh process (warm); cold / warm: "
                     "the first call in a fresh process, after that import, with an empty / filled "
                     "compile cache; new batch: then, in the cold process, the median first step "
                     "at five new batch sizes from half the batch down (re-traced; the compiled "
                     "module is re-used)")
    return "\n".join(lines)


def _cell(x) -> str:
    return f"{_us(x['median_us'])} [{_us(x['p10_us'])}-{_us(x['p90_us'])}]"


def _seconds(v) -> str:
    return f"{v:.2f}" if v is not None else "-"


def _us(v) -> str:
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def plot(results, impls, path):
    """Bar chart of speedups over NumPy, one group per (workload, dtype)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"--plot needs matplotlib, which is not installed (pip install matplotlib); "
              f"no plot written to {path}")
        return
    peers = [i for i in impls if i != "numpy"]
    labels = [f"{r['workload']}\n{r['dtype']}" for r in results]
    x = np.arange(len(results))
    width = 0.8 / max(len(peers), 1)
    fig, ax = plt.subplots(figsize=(max(6, len(results) * 0.9), 4))
    for k, impl in enumerate(peers):
        ratios = [r["impls"]["numpy"]["median_us"] / r["impls"][impl]["median_us"]
                  if "median_us" in r["impls"].get(impl, {}) else 0 for r in results]
        ax.bar(x + (k - (len(peers) - 1) / 2) * width, ratios, width, label=impl)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set(xticks=x, yscale="log", ylabel="speedup over NumPy (median, log scale)",
           title="one SGD step: NumPy time / implementation time")
    ax.set_xticklabels(labels)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="graphc bench", description="Time one SGD step of "
                                "workloads W1-W5: graphc (and PyTorch/JAX if installed) "
                                "against hand-written NumPy.")
    p.add_argument("--quick", action="store_true", help="short run (under a minute once "
                   "graphc's compile cache is warm); skips the cold/warm compile measurement")
    p.add_argument("--workloads", help="comma-separated, e.g. W1,W3 (default: all)")
    p.add_argument("--dtype", choices=["float32", "float64"], help="default: both")
    p.add_argument("--impls", default=",".join(IMPLS), help=f"default: {','.join(IMPLS)}")
    p.add_argument("--threads", type=positive_int, help="threads for BLAS/Numba/PyTorch "
                   "(default: OMP_NUM_THREADS & co. if set, else 1)")
    p.add_argument("--json", metavar="PATH", type=output_path,
                   help="write every raw timing as JSON")
    p.add_argument("--plot", metavar="PATH", type=output_path,
                   help="bar chart of speedups as a PNG (matplotlib)")
    p.add_argument("--no-cold", action="store_true", help="skip graphc's cold/warm first call")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    args = p.parse_args(argv)
    if args.list:
        for w in WORKLOADS.values():
            print(f"{w.name}  {w.title}  (SGD lr={w.lr})")
        return 0
    names = args.workloads.split(",") if args.workloads else None
    dtypes = (args.dtype,) if args.dtype else ("float32", "float64")
    try:
        results = run(names, dtypes, quick=args.quick, json_path=args.json, plot_path=args.plot,
                      progress=not args.no_progress, impls=args.impls.split(","),
                      threads=args.threads, cold=False if args.no_cold else None)
    except ValueError as e:
        p.error(str(e))
    bad = mismatches(results)
    if bad:
        print(f"\n!!!!! {len(bad)} implementation(s) disagree with the NumPy step or failed: "
              + ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
