"""Issue 6: the compile cache as imported code, threads, memory, recompiles, interrupts."""
import collections
import hashlib
import importlib.util
import marshal
import os
import pathlib
import py_compile
import stat
import subprocess
import sys
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import runtime
from graphc.api import RecompileWarning


def _fresh_source(tag):
    # a tiny module source unique to the test, so the in-process module table misses
    return f"VALUE = {tag!r}\n"


def test_cache_directory_is_owner_only(private_cache):
    runtime.load(_fresh_source("owner-only"))
    assert stat.S_IMODE(private_cache.stat().st_mode) == 0o700
    for f in private_cache.glob("graphc_*.py"):
        assert stat.S_IMODE(f.stat().st_mode) & 0o022 == 0


def test_a_cache_directory_others_can_write_is_refused(private_cache):
    private_cache.mkdir(mode=0o700)
    private_cache.chmod(0o777)
    with pytest.warns(runtime.CacheWarning, match="can be written by other users"):
        module = runtime.load(_fresh_source("world-writable"))
    assert module.VALUE == "world-writable"
    assert not list(private_cache.glob("graphc_*.py"))      # nothing written there


def test_a_cached_file_others_can_write_is_not_imported(private_cache):
    source = _fresh_source("planted")
    runtime.load(source)
    path = private_cache / f"graphc_{runtime.module_key(source)}.py"
    path.write_text(path.read_text().replace("'planted'", "'evil'"))
    path.chmod(0o666)
    runtime._modules.clear()
    with pytest.warns(runtime.CacheWarning, match="refuses"):
        module = runtime.load(source)
    assert module.VALUE == "planted"


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_a_damaged_entry_is_rebuilt_with_a_warning(private_cache, damage):
    source = _fresh_source(f"damaged-{damage}")
    runtime.load(source)
    path = private_cache / f"graphc_{runtime.module_key(source)}.py"
    text = path.read_text()
    path.write_text(text[: len(text) // 2] if damage == "truncate" else text.replace("VALUE", "VALUX"))
    runtime._modules.clear()
    with pytest.warns(runtime.CacheWarning, match="corrupted"):
        module = runtime.load(source)
    assert module.VALUE == f"damaged-{damage}"
    assert runtime._intact(path)


def _no_compiling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("compiled the module's source again")
    monkeypatch.setattr(runtime, "compile", refuse, raising=False)    # before the builtin


def test_a_module_loaded_again_runs_its_kept_bytecode(private_cache, monkeypatch):
    """Whether or not Python writes .pyc files (PYTHONDONTWRITEBYTECODE), a
    module is compiled once: later loads run graphc's bytecode file."""
    source = _fresh_source("bytecode")
    runtime.load(source)
    path = private_cache / f"graphc_{runtime.module_key(source)}.py"
    assert runtime._bytecode_path(path).is_file()
    runtime._modules.clear()
    _no_compiling(monkeypatch)
    assert runtime.load(source).VALUE == "bytecode"


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_bytecode_is_rebuilt_with_a_warning(private_cache, monkeypatch, damage):
    source = _fresh_source(f"bytecode-{damage}")
    runtime.load(source)
    code = runtime._bytecode_path(private_cache / f"graphc_{runtime.module_key(source)}.py")
    data = code.read_bytes()
    middle = len(data) // 2
    code.write_bytes(data[:len(data) - 7] if damage == "truncate" else
                     data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    runtime._modules.clear()
    with pytest.warns(runtime.CacheWarning, match="corrupted"):
        assert runtime.load(source).VALUE == f"bytecode-{damage}"
    runtime._modules.clear()
    _no_compiling(monkeypatch)      # rebuilt whole
    assert runtime.load(source).VALUE == f"bytecode-{damage}"


def test_a_damaged_pyc_of_pythons_own_does_not_stop_the_load(private_cache):
    """Python's .pyc beside a cache entry (written by the import system where
    PYTHONDONTWRITEBYTECODE is not set) with a valid header and cut marshal
    data made the import raise EOFError in every later process."""
    source = _fresh_source("pyc")
    runtime.load(source)
    path = private_cache / f"graphc_{runtime.module_key(source)}.py"
    pyc = py_compile.compile(str(path), cfile=importlib.util.cache_from_source(str(path)))
    data = pathlib.Path(pyc).read_bytes()
    pathlib.Path(pyc).write_bytes(data[:20])
    runtime._modules.clear()
    assert runtime.load(source).VALUE == "pyc"


def test_bytecode_others_can_write_is_not_run(private_cache):
    source = _fresh_source("kept")
    runtime.load(source)
    path = private_cache / f"graphc_{runtime.module_key(source)}.py"
    code = runtime._bytecode_path(path)
    # valid for the entry, but of other code, and writable by anyone
    body = marshal.dumps(compile("VALUE = 'planted'\n", str(path), "exec"))
    code.write_bytes(runtime._bytecode_header(path, path.read_text(encoding="utf-8"))
                     + hashlib.sha256(body).digest() + body)
    code.chmod(0o666)
    runtime._modules.clear()
    with pytest.warns(runtime.CacheWarning, match="refuses"):
        assert runtime.load(source).VALUE == "kept"
    assert stat.S_IMODE(code.stat().st_mode) & 0o022 == 0       # replaced by graphc's own


def test_a_moved_cache_runs_code_naming_its_new_place(private_cache, tmp_path, monkeypatch):
    """Numba finds a function's cache from the file name compiled into its
    code: bytecode kept from the old place stopped every process (a review's
    finding)."""
    source = _fresh_source("moved") + "def f():\n    return 1\n"
    runtime.load(source)
    moved = tmp_path / "moved"
    private_cache.rename(moved)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(moved))
    runtime._modules.clear()
    module = runtime.load(source)
    assert module.f.__code__.co_filename == str(moved / f"graphc_{runtime.module_key(source)}.py")


def test_a_pycache_the_group_can_write_is_made_private_not_refused(private_cache, monkeypatch):
    """Under umask 002 Numba makes __pycache__ 0775: ours, so only we may write it, and
    its bytecode still runs (every process refused it and compiled again)."""
    source = _fresh_source("umask")
    runtime.load(source)
    pycache = private_cache / "__pycache__"
    pycache.chmod(0o775)
    runtime._modules.clear()
    _no_compiling(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime.load(source).VALUE == "umask"
    assert stat.S_IMODE(pycache.stat().st_mode) == 0o755


def test_bytecode_of_another_source_is_replaced_quietly(private_cache):
    first, second = _fresh_source("first"), _fresh_source("second")
    runtime.load(first)
    runtime.load(second)
    paths = [private_cache / f"graphc_{runtime.module_key(s)}.py" for s in (first, second)]
    codes = [runtime._bytecode_path(p) for p in paths]
    codes[1].write_bytes(codes[0].read_bytes())     # valid bytecode, of the other module
    runtime._modules.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime.load(second).VALUE == "second"


def test_an_unusable_cache_directory_falls_back_with_a_warning(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(runtime, "_fallback_dir", None)
    with pytest.warns(runtime.CacheWarning, match="cannot be created"):
        out = gc.jit(lambda x: x * 3.0 + 0.25)(np.ones(2))
    np.testing.assert_array_equal(out, [3.25, 3.25])


def test_two_processes_compiling_the_same_graph_at_once(tmp_path):
    script = ("import numpy as np, graphc as gc\n"
              "f = gc.jit(lambda x: np.tanh(x) * 2.0 - x)\n"
              "print(float(f(np.full(3, 0.5)).sum()))\n")
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path / "shared")}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    expected = float((np.tanh(np.full(3, 0.5)) * 2.0 - 0.5).sum())
    assert all(abs(float(o[0]) - expected) < 1e-12 for o in outs)
    entries = list((tmp_path / "shared").glob("graphc_*.py"))
    assert len(entries) == 1 and runtime._intact(entries[0])
    assert not list((tmp_path / "shared").glob(".tmp_*"))


def test_two_processes_adding_to_one_numba_cache_index_lose_nothing(tmp_path):
    """Numba's own cache, as graphc's kernels use it: two processes saving
    different signatures of one function at once (unlocked, 96 of 120
    entries survived here and 6 named the other process's data)."""
    script = ("import os, sys\n"
              "import graphc.kernels\n"
              "from numba.core.caching import IndexDataCacheFile\n"
              "f = IndexDataCacheFile(sys.argv[1], 'kernel', 'stamp')\n"
              "print('ready', flush=True)\n"
              "sys.stdin.readline()\n"          # both start saving together
              "for i in range(100):\n"
              "    f.save((os.getpid(), i), ('code', os.getpid(), i))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    assert [p.stdout.readline() for p in procs] == ["ready\n"] * 2, [p.stderr.read() for p in procs]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    import graphc.kernels  # noqa: F401 - the locked load
    from numba.core.caching import IndexDataCacheFile
    cache = IndexDataCacheFile(str(tmp_path), "kernel", "stamp")
    keys = cache._load_index()
    assert len(keys) == 200 and all(cache.load(key) == ("code", *key) for key in keys)


def test_compiled_function_called_from_eight_threads(run_concurrently):
    f = gc.jit(lambda x, w: np.sum(np.tanh(x @ w), axis=1))
    w = np.random.default_rng(0).normal(size=(16, 8))
    inputs = [np.random.default_rng(k).normal(size=(32, 16)) for k in range(8)]
    f(inputs[0], w)
    results = {}

    def work(k):
        for _ in range(50):
            results[k] = f(inputs[k], w)
            np.testing.assert_allclose(results[k], np.tanh(inputs[k] @ w).sum(1), rtol=1e-12)

    run_concurrently(work, 8)
    assert len(results) == 8


def test_first_calls_from_two_threads_at_once(run_concurrently):
    # After its first call a driver compiles nothing more; a second thread's
    # first call that waited for Numba's compile lock meanwhile was refused
    # ("compilation disabled") in 8 of 12 trials until first calls were serialised.
    x, y = np.ones((4, 3)), np.ones((3, 5))
    for trial in range(4):
        scale = 1.0 + trial / 7                     # a new module for every trial
        f = gc.jit(lambda x, y: np.sum(np.tanh(x @ y) ** 2 * scale, axis=1))
        run_concurrently(lambda k: np.testing.assert_allclose(
            f(x, y), np.sum(np.tanh(x @ y) ** 2 * scale, axis=1)), 2)


def test_unaligned_inputs_give_the_same_results():
    # Whether Numba types an unaligned array apart from an aligned one depends
    # on what it has seen (after a byte-swapped one it did, and the driver,
    # compiled for one type, refused them); otherwise it passes them as they
    # are. Either way a step and a function must compute the same results.
    def unaligned(a):
        u = np.frombuffer(bytearray(a.nbytes + 1), a.dtype, offset=1).reshape(a.shape)
        u[...] = a
        return u

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=5)
    params = {"w": np.zeros(3)}
    step = gc.compile_step(lambda p, x, y: np.mean((x @ p["w"] - y) ** 2), gc.optim.SGD(0.1))
    step(params, x, y)
    with pytest.raises(TypeError):
        step(params, x.astype(">f8"), y)        # the fast path hands it to Numba first
    f = gc.jit(lambda x: np.tanh(x) * 2.0)
    np.testing.assert_allclose(f(unaligned(x)), np.tanh(x) * 2.0)
    before = params["w"].copy()
    loss = step(params, unaligned(x), unaligned(y))
    assert loss == pytest.approx(np.mean((x @ before - y) ** 2), rel=1e-12)


def test_jit_hands_arrays_to_the_driver_unconverted_and_converts_what_it_refuses():
    """After its first call a function's driver takes only the type it compiled;
    arrays go to it as they are, and anything it refuses is converted and run
    again: same results, no second compile, nothing of the caller's written."""
    f = gc.jit(lambda x, y: (np.tanh(x) * y).sum(axis=0))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    expected = (np.tanh(x) * y).sum(axis=0)
    np.testing.assert_allclose(f(x, y), expected, rtol=1e-12)
    entry = next(iter(f._cache.values()))
    frozen = x.copy()
    frozen.setflags(write=False)
    unaligned = np.frombuffer(bytearray(x.nbytes + 1), x.dtype, offset=1).reshape(x.shape)
    unaligned[...] = x
    for odd in (frozen, np.asfortranarray(x), unaligned, np.repeat(x, 2, axis=1)[:, ::2]):
        np.testing.assert_allclose(f(odd, y), expected, rtol=1e-12)
        np.testing.assert_array_equal(odd, x)
    np.testing.assert_allclose(f(x.astype(np.float32), y), expected, rtol=1e-6)
    assert len(entry.driver.signatures) == 1
    # what is not a plain array is always converted (a subclass: Numba raises
    # on some once anything else is refused; masked arrays are refused
    # outright); a refused call converts first next time (Numba's refusal
    # costs 30-40 us), until nothing needs converting
    for _ in range(2):
        np.testing.assert_allclose(f(np.asfortranarray(x).view(_Subclass), y), expected,
                                   rtol=1e-12)
        assert gc.jit(lambda a, b: a * b)(1.5, 2.0) == 3.0
    f(x, y)                     # converts first (the strided call was refused), and resets
    tries = []
    real = entry.run_unconverted
    entry.run_unconverted = lambda leaves: tries.append(1) or real(leaves)
    for a in (np.asfortranarray(x),) * 3 + (x,) * 2:
        np.testing.assert_allclose(f(a, y), expected, rtol=1e-12)
    assert len(tries) == 2      # the first F-ordered call, then the second C-ordered one


class _Subclass(np.ndarray):
    """An ndarray subclass that changes nothing (np.memmap, a library's arrays)."""


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_ten_thousand_steps_do_not_grow_memory():
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(32, 16)), "b": np.zeros(16)}
    x, y = rng.normal(size=(64, 32)), rng.integers(0, 16, 64)
    step = gc.compile_step(lambda p, x, y: gc.nn.cross_entropy(x @ p["W"] + p["b"], y),
                           gc.optim.Adam(1e-3))
    for _ in range(200):
        step(params, x, y)
    before = _rss_bytes()
    for _ in range(10_000):
        step(params, x, y)
    grown = _rss_bytes() - before
    assert grown < 20 * 2 ** 20, f"resident memory grew by {grown / 2 ** 20:.1f} MiB"


def test_many_shapes_warn_and_keep_a_bounded_number_of_entries(monkeypatch):
    from graphc import api
    monkeypatch.setattr(api, "MAX_ENTRIES", 5)
    f = gc.jit(lambda x: x + 1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(1, 11):
            f(np.ones(n))
    recompiles = [w for w in caught if issubclass(w.category, RecompileWarning)]
    assert len(recompiles) == 1
    assert recompiles[0].filename == __file__      # the user's call, not graphc's (a review)
    assert len(f._cache) == 5
    np.testing.assert_array_equal(f(np.ones(2)), [2.0, 2.0])     # evicted: compiled again


def test_keyboard_interrupt_in_train_leaves_a_whole_step_state(monkeypatch):
    """Ctrl-C arrives between native calls: params equal the state after some whole step."""
    rng = np.random.default_rng(0)
    start = {"w": rng.normal(size=3)}
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)

    def loss(p, x, y):
        return np.mean((x @ p["w"] - y) ** 2)

    from graphc.train import Step
    real_epoch = Step.epoch
    calls = []

    def interrupted_epoch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(self, *args, **kwargs)

    monkeypatch.setattr(Step, "epoch", interrupted_epoch)
    params = {"w": start["w"].copy()}
    with pytest.raises(KeyboardInterrupt):
        gc.train(loss, params, (X, y), gc.optim.SGD(0.05), batch_size=8, epochs=5,
                 shuffle=False, progress=False)
    monkeypatch.setattr(Step, "epoch", real_epoch)
    # replay by hand: the interrupted run must equal some prefix of whole steps
    replay = {"w": start["w"].copy()}
    step = gc.compile_step(loss, gc.optim.SGD(0.05))
    states = [replay["w"].copy()]
    for _ in range(5):
        for s in range(0, 40, 8):
            step(replay, X[s:s + 8], y[s:s + 8])
            states.append(replay["w"].copy())
    assert any(np.array_equal(params["w"], s) for s in states)
    assert np.array_equal(params["w"], states[10])          # two whole epochs of 5 steps


_SIGINT_SCRIPT = """
import faulthandler
import signal
import sys
import numpy as np, graphc as gc
faulthandler.dump_traceback_later(240, exit=True)       # a hang prints every thread's stack
# pytest-xdist workers ignore SIGINT, and an ignored signal stays ignored in
# a child: give Python's KeyboardInterrupt handler back
signal.signal(signal.SIGINT, signal.default_int_handler)
rng = np.random.default_rng(0)
start = rng.normal(size=3)
X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
loss = lambda p, x, y: np.mean((x @ p["w"] - y) ** 2)
opt = lambda: gc.optim.SGD(0.01, momentum=0.9)
gc.train(loss, {"w": start.copy()}, (X, y), opt(), batch_size=8, epochs=1, shuffle=False,
         progress=False)                                      # compile before the signal
params = {"w": start.copy()}
print("ready", flush=True)
try:
    gc.train(loss, params, (X, y), opt(), batch_size=8, epochs=10**7, shuffle=False,
             progress=False)
except KeyboardInterrupt:
    pass
step, replay = gc.compile_step(loss, opt()), {"w": start.copy()}
closest = np.inf
for n in range(2 * 10**6):       # far more steps than 0.5 s of training makes
    # a stop inside a step would be off by about lr * gradient; the epoch loop
    # and single steps may differ in the last bit (LLVM optimizes run inlined)
    closest = min(closest, np.max(np.abs(replay["w"] - params["w"])))
    if np.allclose(replay["w"], params["w"], rtol=1e-13, atol=0):
        print("whole", n)
        break
    s = (n % 5) * 8
    step(replay, X[s:s + 8], y[s:s + 8])
else:
    print("no whole step matches: closest", closest, params["w"], replay["w"])
"""


def test_sigint_during_train_stops_between_whole_steps(tmp_path):
    import signal
    import time
    proc = subprocess.Popen([sys.executable, "-c", _SIGINT_SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out.startswith("whole ") and int(out.split()[1]) > 0, out


def _in_two_processes(script, tmp_path):
    """`script`'s printed words in each of two processes run in turn, sharing
    one graphc cache (empty for the first)."""
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(tmp_path / "c")}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    return [r.stdout.split() for r in runs]


def test_a_second_process_loads_compiled_code_from_the_disk_cache(tmp_path):
    """Counted, not timed: Numba's own cache-hit counter in each process."""
    script = ("import numpy as np, graphc as gc\n"
              "f = gc.jit(lambda x, w: np.sum(np.tanh(x @ w) ** 2))\n"
              "x, w = np.ones((4, 3)), np.ones((3, 2))\n"
              "f(x, w)\n"
              "stats = next(iter(f._cache.values())).driver.stats\n"
              "print(stats.cache_hits.__len__() and sum(stats.cache_hits.values()),"
              " sum(stats.cache_misses.values()))\n")
    (hits1, misses1), (hits2, misses2) = [map(int, out) for out in _in_two_processes(script, tmp_path)]
    assert (hits1, misses1) == (0, 1)       # first process compiles
    assert (hits2, misses2) == (1, 0)       # second process loads from disk


def test_a_second_process_loads_without_refreshing_numbas_registries(tmp_path):
    """Loading compiled code (a step's `run`, gemm's C functions) needs Numba's
    runtime, not its typing and lowering registries, which only compiling
    uses: a warm first call that refreshed them took 0.2 s longer. Counted in
    the second process: no refresh, and the result is still right."""
    script = ("import numba.core.base, numpy as np, graphc as gc\n"
              "refreshes = []\n"
              "refresh = numba.core.base.BaseContext.refresh\n"
              "numba.core.base.BaseContext.refresh = lambda self: (refreshes.append(1), refresh(self))\n"
              "params = {'w': np.ones((3, 2), np.float32)}\n"
              "step = gc.compile_step(lambda p, x: np.sum(np.tanh(x @ p['w']) ** 2), "
              "gc.optim.SGD(lr=0.1))\n"
              "x = np.arange(12, dtype=np.float32).reshape(4, 3) / 10\n"
              "loss = step(params, x)\n"
              "want = np.sum(np.tanh(x @ np.ones((3, 2))) ** 2)\n"
              "print(len(refreshes), abs(loss - want) < 1e-5 * want)\n")
    (refreshes1, right1), (refreshes2, right2) = _in_two_processes(script, tmp_path)
    assert int(refreshes1) > 0 and right1 == right2 == "True"     # the first compiled
    assert int(refreshes2) == 0


class _FakeDispatcher:
    """Numba's dispatcher as gc_paused sees it: counters of compiled signatures."""
    def __init__(self):
        self.stats = type("Stats", (), {"cache_misses": collections.Counter()})()


def test_gc_is_paused_while_compiling_and_collected_after_the_first_compile(monkeypatch):
    import gc as pygc
    full_passes = []

    def count_full_passes(phase, info):
        if phase == "start" and info["generation"] == 2:
            full_passes.append(info)

    monkeypatch.setattr(runtime, "_heap_settled", False)
    dispatcher = _FakeDispatcher()
    assert pygc.isenabled()
    pygc.callbacks.append(count_full_passes)
    try:
        with runtime.gc_paused(dispatcher):         # loaded from disk: no pass
            assert not pygc.isenabled()
        assert pygc.isenabled() and not full_passes
        for _ in range(2):                          # compiled: one pass, the first time
            with runtime.gc_paused(dispatcher):
                assert not pygc.isenabled()
                dispatcher.stats.cache_misses[("float64",)] += 1
        assert pygc.isenabled()
    finally:
        pygc.callbacks.remove(count_full_passes)
    assert len(full_passes) == 1


def test_gc_paused_leaves_a_disabled_gc_disabled():
    import gc as pygc
    pygc.disable()
    try:
        with runtime.gc_paused(_FakeDispatcher()):
            pass
        assert not pygc.isenabled()
    finally:
        pygc.enable()


def test_numbas_jit_turned_off_is_named_as_the_cause():
    script = ("import numpy as np, graphc as gc\n"
              "gc.jit(lambda x: np.sum(x * 2.0))(np.ones(3))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "NUMBA_DISABLE_JIT": "1"}, timeout=300)
    assert result.returncode != 0
    assert "NUMBA_DISABLE_JIT is set" in result.stderr.strip().splitlines()[-1], result.stderr
