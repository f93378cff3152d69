"""Loops split over threads (graphc.threads, codegen's `_par` kernels): the
same results as the serial loop and the interpreter, from any number of
Python threads at once, and in a forked child."""
import os
import subprocess
import sys

import contextlib

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphc as gc
from graphc import codegen, threads

needs_threads = pytest.mark.skipif(
    threads.count() < 2, reason="one thread here (one core, OMP_NUM_THREADS=1, or no "
                                "thread-safe Numba threading layer)")


@contextlib.contextmanager
def _threaded_from(min_work, count=None):
    """Loops of `min_work` or more made threaded (and the thread count set),
    restored after; a context manager, since hypothesis examples cannot use
    function-scoped fixtures."""
    saved = codegen.PARALLEL_MIN_WORK, threads._count
    codegen.PARALLEL_MIN_WORK = min_work
    threads._count = count if count is not None else saved[1]
    try:
        yield
    finally:
        codegen.PARALLEL_MIN_WORK, threads._count = saved


@pytest.fixture
def low_threshold():
    """Thread loops of tens of thousands of elements, so the tests stay small."""
    with _threaded_from(20_000):
        yield


@pytest.fixture
def serial(monkeypatch):
    """Run the same compiled code on one thread (what a forked child does)."""
    def use_one_thread():
        monkeypatch.setattr(threads, "_count", 1)
    return use_one_thread


def mixed(x, b, c, v):
    """A 1-D loss (partial sums per range), 2-D loops with a row and a column
    broadcast, and reductions that finish within each row."""
    h = np.tanh(x * b + c)
    return (np.sum(np.log1p(np.exp(-v * v))), h, np.sum(h * x, axis=-1),
            np.max(x - c, axis=1, keepdims=True))


def _mixed_args(rng, rows, dtype):
    return (rng.standard_normal((rows, 97)).astype(dtype), rng.standard_normal(97).astype(dtype),
            rng.standard_normal((rows, 1)).astype(dtype),
            rng.standard_normal(rows * 151 + 7).astype(dtype))


@needs_threads
def test_threaded_loops_equal_the_serial_loop_and_the_interpreter(low_threshold, serial):
    # float32, whose sums add in blocks; the random-shape test below runs float64
    rng = np.random.default_rng(0)
    f = gc.jit(mixed)
    args = _mixed_args(rng, 331, np.float32)
    assert sum(k.parallel for k in f.inspect(*args).kernels) >= 3
    tol = dict(rtol=2e-5, atol=1e-6)        # x * b + c cancels; the compiled loop uses an FMA
    threaded = f(*args)
    for out, ref in zip(threaded, f.interpret(*args)):
        np.testing.assert_allclose(out, ref, **tol)
    small = _mixed_args(rng, 3, np.float32)     # a new batch below the size: the serial loop
    for out, ref in zip(f(*small), f.interpret(*small)):
        np.testing.assert_allclose(out, ref, **tol)
    serial()
    one_thread = f(*args)
    for a, b in zip(threaded[1:], one_thread[1:]):
        np.testing.assert_array_equal(a, b)         # each element computed the same way
    # ranges start at whole float32 blocks, so only the partials' order differs
    np.testing.assert_allclose(threaded[0], one_thread[0], rtol=1e-7)


def logistic(p, x, y):
    w = p["w"]
    return np.sum(np.log1p(np.exp(-y * (w * x)))) + 0.5e-3 * np.sum(w ** 2)


def _logistic_problem(dtype, n=60_001):
    rng = np.random.default_rng(1)
    return ({"w": rng.standard_normal(n).astype(dtype)}, rng.standard_normal(n).astype(dtype),
            rng.choice(np.array([-1.0, 1.0]), n).astype(dtype))


def _logistic_reference(w, x, y, lr):
    w, x, y = (a.astype(np.float64) for a in (w, x, y))
    z = -y * w * x
    grad = -y * x / (1 + np.exp(-z)) + 1e-3 * w
    return np.sum(np.log1p(np.exp(z))) + 0.5e-3 * np.sum(w ** 2), w - lr * grad


@needs_threads
def test_a_threaded_sgd_step_updates_in_place_like_the_serial_step(low_threshold, serial):
    # float32, whose sums add in blocks; float64 partials are in the Adam test
    params, x, y = _logistic_problem(np.float32)
    step = gc.compile_step(logistic, gc.optim.SGD(0.1))
    assert any(k.parallel for k in step.inspect(params, x, y).kernels)
    start = params["w"].copy()
    loss = step(params, x, y)
    ref_loss, ref_w = _logistic_reference(start, x, y, 0.1)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(params["w"], ref_w, rtol=1e-5, atol=1e-5)
    threaded_w = params["w"].copy()
    serial()
    params["w"][:] = start
    np.testing.assert_allclose(step(params, x, y), loss, rtol=1e-7)
    np.testing.assert_array_equal(params["w"], threaded_w)


@needs_threads
def test_threaded_loops_read_0d_values(low_threshold, serial):
    """Adam's update reads 0-d values (from the step count) inside the loop,
    and x / sum(x) reads a reduction's result: 0-d arrays, which Numba's
    parallel lowering would turn into scalars."""
    params, x, y = _logistic_problem(np.float64)
    step = gc.compile_step(logistic, gc.optim.Adam(1e-2))
    assert any(k.parallel for k in step.inspect(params, x, y).kernels)
    start = params["w"].copy()
    losses = [step(params, x, y) for _ in range(2)]
    threaded_w = params["w"].copy()
    normalized = gc.jit(lambda v: np.exp(v) / np.sum(np.exp(v)) * np.float64(2.0))
    assert any(k.parallel for k in normalized.inspect(x).kernels)
    np.testing.assert_allclose(normalized(x), normalized.interpret(x), rtol=1e-12)
    serial()
    params["w"][:] = start
    again = gc.compile_step(logistic, gc.optim.Adam(1e-2))     # the same module, serially
    np.testing.assert_allclose([again(params, x, y) for _ in range(2)], losses, rtol=1e-12)
    np.testing.assert_allclose(params["w"], threaded_w, rtol=1e-12)


def test_a_loop_that_can_raise_stays_serial(low_threshold):
    # an integer power refuses a negative exponent from inside its loop, and an
    # exception cannot leave a prange loop (it came out as a SystemError, or not at all)
    power = gc.jit(lambda x, k: x ** k)
    x, k = np.full((300, 300), 2), np.ones((300, 300), np.int64)
    assert not any(kernel.parallel for kernel in power.inspect(x, k).kernels)
    # lower: only the kernels of a loop that would be threaded, never run (no compile)
    control = gc.jit(lambda x, k: x * k).lower(x, k).kernels
    assert any(kernel.parallel for kernel in control) == (threads.count() > 1)
    for at in [(0, 0), (-1, -1)]:
        k[at] = -1
        with pytest.raises(ValueError, match="negative integer powers"):
            power(x, k)
        k[at] = 1


_FORK_SCRIPT = """
import multiprocessing, sys
import numpy as np
import graphc as gc
from graphc import codegen
sys.path.insert(0, {tests!r})
from test_threads import _logistic_problem, _logistic_reference, logistic

codegen.PARALLEL_MIN_WORK = 20_000


def child(step, params, x, y, queue):
    queue.put((step(params, x, y), params["w"]))


params, x, y = _logistic_problem(np.float32)
step = gc.compile_step(logistic, gc.optim.SGD(0.1))
start = params["w"].copy()
step(params, x, y)                      # the parent launches the threads
assert any(k.parallel for k in step.inspect(params, x, y).kernels)
params["w"][:] = start
context = multiprocessing.get_context("fork")
queue = context.Queue()
process = context.Process(target=child, args=(step, params, x, y, queue))
process.start()
loss, w = queue.get(timeout=60)
process.join(timeout=60)
assert process.exitcode == 0, process.exitcode
ref_loss, ref_w = _logistic_reference(start, x, y, 0.1)
np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
np.testing.assert_allclose(w, ref_w, rtol=1e-5, atol=1e-5)
"""


@needs_threads
@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_child_forked_after_threads_ran_steps_serially():
    """GNU OpenMP cannot run in a child forked after its parent used it: Numba
    would terminate the child. graphc's child runs the same code serially.
    (In a fresh process: forking the test process, which may hold JAX's
    threads, could deadlock.)"""
    script = _FORK_SCRIPT.format(tests=os.path.dirname(__file__))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr


@needs_threads
def test_threaded_loops_called_from_several_python_threads_at_once(low_threshold,
                                                                  run_concurrently):
    rng = np.random.default_rng(2)
    f = gc.jit(mixed)
    # float32, the first test's signature: its module, not a threaded compile of its own
    inputs = [_mixed_args(rng, 331, np.float32) for _ in range(4)]
    assert any(k.parallel for k in f.inspect(*inputs[0]).kernels)
    expected = [f(*args) for args in inputs]       # one caller at a time

    def work(k):
        for _ in range(15):
            for out, ref in zip(f(*inputs[k]), expected[k]):
                np.testing.assert_array_equal(out, ref)

    run_concurrently(work, 4)


@pytest.mark.parametrize("env, expected", [
    ({"GRAPHC_NUM_THREADS": "1"}, 1),
    ({"OMP_NUM_THREADS": "1"}, 1),
    ({"GRAPHC_NUM_THREADS": "1", "OMP_NUM_THREADS": "8"}, 1),
    ({"GRAPHC_NUM_THREADS": "two"}, 1),
    ({"OMP_NUM_THREADS": "1,4"}, 1),        # OpenMP's per-level list: the first
])
def test_the_thread_count_follows_graphc_then_omp_variables(monkeypatch, env, expected):
    for name in ("GRAPHC_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(threads, "_count", None)
    assert threads.count() == expected


@needs_threads
def test_more_threads_than_numba_has_are_capped(monkeypatch):
    import numba
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "1000")
    monkeypatch.setattr(threads, "_count", None)
    assert threads.count() == numba.config.NUMBA_NUM_THREADS


@needs_threads
def test_one_thread_emits_no_threaded_kernels(low_threshold, monkeypatch):
    monkeypatch.setattr(threads, "_count", 1)
    args = _mixed_args(np.random.default_rng(3), 331, np.float64)
    # lower: the kernels only; the serial loops of `mixed` run in the first test
    assert not any(k.parallel for k in gc.jit(mixed).lower(*args).kernels)


def test_an_exported_step_is_serial(low_threshold, tmp_path, monkeypatch):
    """A standalone module cannot tell when threads are safe (fork, layer), so
    gc.export writes the serial code even for a step that runs on threads."""
    monkeypatch.setattr(threads, "_count", 2)   # as on a machine with threads
    params, x, y = _logistic_problem(np.float32, n=30_001)
    step = gc.compile_step(logistic, gc.optim.SGD(0.1))
    assert any(k.parallel for k in step.inspect(params, x, y).kernels)
    step(params, x, y)
    gc.export(step, tmp_path / "exported.py")
    source = (tmp_path / "exported.py").read_text()
    assert "prange" not in source and "parallel=True" not in source
    signature = re.search(r"def run_0\((.*)\):", source)[1]
    assert "threads" not in signature     # serial code takes no thread count


def test_no_threads_on_a_layer_that_is_not_threadsafe(monkeypatch):
    """Numba's default layer is the first of its priority list that loads;
    workqueue aborts the process when launched from two threads at once."""
    import numba

    def not_launched():
        raise ValueError("Threading layer is not initialized.")
    monkeypatch.setattr(numba, "threading_layer", not_launched)
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "default")
    monkeypatch.setattr(numba.config, "THREADING_LAYER_PRIORITY", ["workqueue", "tbb", "omp"])
    assert not threads._layer_is_threadsafe()
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "workqueue")
    assert not threads._layer_is_threadsafe()


@needs_threads
def test_gc_train_runs_threaded_loops_inside_its_native_epoch(low_threshold, serial):
    """The epoch loop passes the thread count on to each step it runs."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((6, 12_000))
    Y = rng.choice(np.array([-1.0, 1.0]), (6, 12_000))

    def loss(p, x, y):
        return np.mean(np.log1p(np.exp(-y * (p["w"] * x)))) + 1e-3 * np.sum(p["w"] ** 2)

    w0 = rng.standard_normal(12_000)
    probe = gc.compile_step(loss, gc.optim.SGD(0.5))      # the module gc.train will use
    # lower: gc.train compiles and runs its train_epoch; the probe's `run` never runs
    assert any(k.parallel for k in probe.lower({"w": w0}, X[:2], Y[:2]).kernels)
    runs = []
    for threaded in (True, False):
        if not threaded:
            serial()
        params = {"w": w0.copy()}
        history = gc.train(loss, params, (X, Y), gc.optim.SGD(0.5), batch_size=2, epochs=3,
                           progress=False)
        runs.append((history, params["w"]))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-12)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-12)
    assert runs[0][0][-1] < runs[0][0][0]


@needs_threads
def test_threaded_short_rows_compute_their_transcendentals_first(low_threshold, serial):
    # each range runs the flat loop over its own rows (codegen._flat_block)
    rng = np.random.default_rng(2)
    x, r = rng.standard_normal((3001, 13)), rng.standard_normal((3001, 1))   # not whole vectors
    f = gc.jit(lambda x, r: (np.exp(x) * r, np.sum(np.tanh(x) * r, axis=1)))
    info = f.inspect(x, r)
    assert any(k.parallel for k in info.kernels) and "_blk[" in info.source
    threaded = f(x, r)
    for got, ref in zip(threaded, f.interpret(x, r)):
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)
    serial()
    for got, ref in zip(threaded, f(x, r)):
        np.testing.assert_array_equal(got, ref)


@needs_threads
@settings(max_examples=3)       # each example compiles a threaded kernel (~3-5 s)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=3,
                                                min_side=1, max_side=5),
       rows=st.integers(8, 40), keepdims=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_threaded_loops_at_random_shapes_and_broadcasts(shapes, rows, keepdims, seed):
    """Random ranks and broadcast patterns (operands that span axis 0 are
    sliced into ranges, the others read whole) and a sum within rows."""
    rng = np.random.default_rng(seed)
    space = (rows,) + shapes.result_shape[1:]
    other = shapes.input_shapes[1]      # spans axis 0, or is read whole by every range
    other = (rows,) + other[1:] if len(other) == len(space) and other[0] != 1 else other
    args = [rng.standard_normal(space), rng.standard_normal(other)]

    def f(a, b):
        h = np.tanh(a * b + a)
        return h, np.sum(h, axis=-1, keepdims=keepdims) if h.ndim > 1 else np.sum(h)

    with _threaded_from(64):
        jitted = gc.jit(f)
        assert any(k.parallel for k in jitted.inspect(*args).kernels)
        threaded = jitted(*args)
        expected = jitted.interpret(*args)
    with _threaded_from(64, count=1):
        one_thread = jitted(*args)
    for got, ref, serial_out in zip(threaded, expected, one_thread):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got, serial_out, rtol=1e-13, atol=1e-15)


@needs_threads
def test_threaded_loops_read_a_range_constant_at_its_own_positions(low_threshold):
    """0, 1, ..., n - 1 over one axis is passed in, as any constant: the loop
    index of a thread's range counts from the range's start (over the last of
    two axes it is read as the loop index: the last axis is never split)."""
    n = 60_000
    x = np.arange(n)
    f = gc.jit(lambda v: np.where(v == np.arange(n), 1.0, 0.0))
    g = gc.jit(lambda v: np.sum(np.where(v == np.arange(n), 2.0, 0.0)))
    assert any(k.parallel for k in f.inspect(x).kernels)
    assert any(k.parallel for k in g.inspect(x).kernels)
    np.testing.assert_array_equal(f(x), np.ones(n))
    assert g(x) == 2.0 * n
