"""The benchmark workloads are right: hand-written NumPy backward vs finite differences."""
import json
import os
import threading

import numba  # noqa: F401  (imported first, so the harness leaves NUMBA_NUM_THREADS alone)
import numpy as np
import pytest

from graphc.benchmarks import harness
from graphc.benchmarks.workloads import WORKLOADS

NAMES = sorted(WORKLOADS)


def _copy(params):
    return {k: v.copy() for k, v in params.items()}


@pytest.mark.parametrize("name", NAMES)
def test_numpy_step_is_sgd_on_loss_fn(name):
    """One hand-written step moves params by -lr * (central-difference gradient)."""
    w = WORKLOADS[name]
    params, batch = w.make("float64", seed=1, size="tiny")
    before = _copy(params)
    lr, eps = 0.1, 1e-6
    loss = w.numpy_step(params, *batch, lr)
    assert isinstance(loss, float)
    assert loss == pytest.approx(float(w.loss_fn(before, *batch)), rel=1e-12)
    rng = np.random.default_rng(0)
    for key, p0 in before.items():
        for flat in rng.choice(p0.size, size=min(p0.size, 4), replace=False):
            idx = np.unravel_index(flat, p0.shape)
            plus, minus = _copy(before), _copy(before)
            plus[key][idx] += eps
            minus[key][idx] -= eps
            numeric = (w.loss_fn(plus, *batch) - w.loss_fn(minus, *batch)) / (2 * eps)
            assert params[key][idx] - p0[idx] == pytest.approx(-lr * numeric, rel=1e-5, abs=1e-9), \
                f"{name} {key}{idx}"


@pytest.mark.parametrize("name", NAMES)
def test_make_is_deterministic_and_typed(name):
    w = WORKLOADS[name]
    (p1, b1), (p2, b2) = w.make("float32", seed=3, size="tiny"), w.make("float32", seed=3, size="tiny")
    for k in p1:
        assert p1[k].dtype == np.float32 and np.array_equal(p1[k], p2[k])
    for a, b in zip(b1, b2):
        assert np.array_equal(a, b)
    assert np.asarray(w.loss_fn(p1, *b1)).dtype == np.float32      # float32 stays float32


@pytest.mark.parametrize("peer", ["torch", "jax"])
@pytest.mark.parametrize("name", NAMES)
def test_peer_matches_numpy(name, peer):
    """The optional PyTorch/JAX steps do the same math (skipped when not installed)."""
    pytest.importorskip(peer)
    w = WORKLOADS[name]
    params, batch = w.make("float64", seed=2, size="tiny")
    ref = _copy(params)
    ref_loss = w.numpy_step(ref, *batch, w.lr)
    step = getattr(w, f"{peer}_step")(_copy(params), batch, w.lr)
    assert step() == pytest.approx(ref_loss, rel=1e-10)
    got = step.read_params()
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-10, atol=1e-12)


def test_quick_run_writes_json(tmp_path):
    path = tmp_path / "bench.json"
    env_before = {v: os.environ.get(v) for v in harness.THREAD_VARS}
    cpus_before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    code = harness.main(["--quick", "--workloads", "W1", "--dtype", "float64", "--json", str(path),
                         "--no-progress"])
    assert code == 0
    data = json.loads(path.read_text())
    impls = data["results"][0]["impls"]
    assert data["results"][0]["workload"] == "W1" and "numpy" in impls and "graphc" in impls
    assert all(r["check"]["ok"] for r in impls.values())
    assert len(impls["numpy"]["seconds"]) >= 5
    assert {v: os.environ.get(v) for v in harness.THREAD_VARS} == env_before   # restored
    if cpus_before:     # one thread: the run was pinned to one CPU (JAX ignores its flag)
        assert os.sched_getaffinity(0) == cpus_before
        assert len(data["meta"]["threads"]["cpus"]) == 1 or len(cpus_before) == 1


def test_check_flags_a_wrong_update():
    w = WORKLOADS["W2"]
    params, batch = w.make("float32", seed=0, size="tiny")
    ref = _copy(params)
    ref_loss = w.numpy_step(ref, *batch, 0.1)
    assert harness.check(ref_loss, ref, ref_loss, ref, params, "float32")["ok"]
    bad = _copy(ref)
    bad["W1"][0, 0] += 1e-3 * np.abs(ref["W1"] - params["W1"]).max()     # 0.1% off in one entry
    result = harness.check(ref_loss, bad, ref_loss, ref, params, "float32")
    assert not result["ok"] and result["worst"] == "W1"
    assert result["worst_off"] == (1, ref["W1"].size)
    bad["W1"][1, :] = np.nan                                           # NaN is past any tolerance
    assert harness.check(ref_loss, bad, ref_loss, ref, params, "float32")["worst_off"] == (
        1 + bad["W1"].shape[1], ref["W1"].size)
    assert not harness.check(ref_loss * (1 + 1e-3), ref, ref_loss, ref, params, "float32")["ok"]


def test_first_call_in_a_fresh_process_reports_the_import_and_the_first_step(tmp_path):
    # the session's compile cache (warm once the quick run above compiled W1 float64)
    cache = os.environ.get("GRAPHC_CACHE_DIR", str(tmp_path))
    result = harness.first_call_in_fresh_process("W1", "float64", cache)
    assert "error" not in result, result
    assert 0 < result["import_s"] < 60 and 0 < result["first_call_s"] < 600
    assert result["compile_s"] <= result["first_call_s"] and result["new_batch_s"] > 0
    row = {"workload": "W1", "dtype": "float64",
           "impls": {"numpy": {"median_us": 10.0, "p10_us": 9.0, "p90_us": 11.0},
                     "graphc": {"median_us": 5.0, "p10_us": 4.0, "p90_us": 6.0,
                                "check": {"ok": True}, "first_call_s": 1.0,
                                "cold": result, "warm": result}}}
    table = harness.format_table([row], ["numpy", "graphc"])
    assert "import s" in table and f"{result['import_s']:.2f}" in table


needs_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux CPU affinity and two CPUs")


def _on(cpus, *threads) -> bool:
    """Whether this thread and `threads` may run on exactly `cpus`."""
    return all(os.sched_getaffinity(tid) == set(cpus)
               for tid in [0] + [thread.native_id for thread in threads])


@pytest.fixture
def idle_thread():
    """Starts threads that wait until the test ends (a library's pool)."""
    stop, started = threading.Event(), []

    def start():
        started.append(threading.Thread(target=stop.wait))
        started[-1].start()
        return started[-1]
    yield start
    stop.set()
    for thread in started:
        thread.join()


@needs_affinity
def test_one_thread_pins_every_thread_and_restores_them(idle_thread):
    # Linux affinity is per thread: the pools JAX and PyTorch started before
    # the run must be pinned too, and threads started during it (which inherit
    # the pin) must be released after it
    before = os.sched_getaffinity(0)
    early = idle_thread()
    own = {max(before)}     # a thread bound by its library keeps its binding
    os.sched_setaffinity(early.native_id, own)
    with harness.pinned_threads(1) as env:
        assert len(env["cpus"]) == 1
        assert os.sched_getaffinity(early.native_id) == set(env["cpus"])
        during = idle_thread()
    assert os.sched_getaffinity(early.native_id) == own
    assert _on(before, during)


@needs_affinity
def test_a_thread_started_while_pinning_is_pinned_too(monkeypatch, idle_thread):
    # a thread that an unpinned thread starts while the threads are being
    # pinned misses the first listing: it is listed again, until none is new
    before = os.sched_getaffinity(0)
    late = idle_thread()
    listings = []
    real_threads = harness._threads

    def threads_late_missing_at_first():
        listings.append(1)
        tids = list(real_threads())
        return [t for t in tids if t != late.native_id] if len(listings) == 1 else tids
    monkeypatch.setattr(harness, "_threads", threads_late_missing_at_first)
    with harness.pinned_threads(1) as env:
        assert _on(env["cpus"], late)
    assert _on(before, late)


@needs_affinity
def test_a_failed_pinning_leaves_no_thread_pinned(monkeypatch, idle_thread):
    before = os.sched_getaffinity(0)
    other = idle_thread()
    real_set = os.sched_setaffinity

    def refuse_the_other_thread(tid, cpus):
        if tid == other.native_id and set(cpus) != before:
            raise PermissionError("not allowed")
        real_set(tid, cpus)
    monkeypatch.setattr(os, "sched_setaffinity", refuse_the_other_thread)
    with pytest.raises(PermissionError):
        with harness.pinned_threads(1):
            pass
    assert _on(before, other)


def test_compare_trees_measures_a_tree_in_a_fresh_process_with_its_own_graphc():
    from graphc.benchmarks import compare_trees
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(compare_trees.__file__)))
    times = compare_trees._run(checkout, ["W1"], "float32", max(os.sched_getaffinity(0)), 10)
    assert list(times) == ["W1"] and all(t > 0 for t in times["W1"])   # µs per step (not judged)


def test_compare_trees_alternates_the_trees_and_prints_each_rounds_ratios(monkeypatch, capsys):
    from graphc.benchmarks import compare_trees
    runs = []

    def fake_run(tree, names, dtype, cpu, scale):
        runs.append(os.path.basename(tree))
        return {"W1": (10.0 if tree.endswith("new") else 20.0, 80.0), "W4": (30.0, 120.0)}
    monkeypatch.setattr(compare_trees, "_run", fake_run)
    compare_trees.main(["/x/old", "/x/new", "--workloads", "W1,W4", "--rounds", "2"])
    assert runs == ["old", "new", "old", "new"]
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    medians = {row[1]: row[2:] for row in rows if row[0] == "median"}
    assert medians == {"/x/old": ["0.250", "0.250"], "/x/new": ["0.125", "0.250"]}


def test_compare_first_calls_times_a_tree_cold_then_warm_in_fresh_processes():
    from graphc.benchmarks import compare_first_calls
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(compare_first_calls.__file__)))
    cold, warm, loss = compare_first_calls._run(checkout, "W1", max(os.sched_getaffinity(0)))
    # _run refuses a cold call that loaded its code or a warm one that compiled
    # it, so this checks the cache is used as it says; the seconds are not judged
    assert cold > 0 and warm > 0 and np.isfinite(float(loss))


@pytest.mark.parametrize("cold_loaded, warm_loaded", [(True, True), (False, False)])
def test_compare_first_calls_refuses_a_cold_call_that_loaded_or_a_warm_one_that_compiled(
        monkeypatch, cold_loaded, warm_loaded):
    from graphc.benchmarks import compare_first_calls
    loaded = iter([cold_loaded, warm_loaded])
    monkeypatch.setattr(compare_first_calls, "_first_call",
                        lambda tree, name, cpu, cache: (1.0, next(loaded), "1.5"))
    with pytest.raises(SystemExit, match="W1's cold call"):
        compare_first_calls._run("/x/tree", "W1", 0)


def test_compare_first_calls_alternates_the_trees_after_each_model_once_and_prints_medians(
        monkeypatch, capsys):
    from graphc.benchmarks import compare_first_calls
    runs = []

    def fake_run(tree, name, cpu):
        runs.append((os.path.basename(tree), name))
        return (2.0 if tree.endswith("new") else 3.0), 0.25, "1.5"
    monkeypatch.setattr(compare_first_calls, "_run", fake_run)
    compare_first_calls.main(["/x/old", "/x/new", "--models", "lstm,W2", "--rounds", "2"])
    # each model once a tree, untimed (its own kernels), then the trees in turn, model by model
    assert runs == [("old", "lstm"), ("old", "W2"), ("new", "lstm"), ("new", "W2")] + [
        (tree, name) for _ in range(2) for name in ("lstm", "W2") for tree in ("old", "new")]
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    medians = {tuple(row[1:3]): row[3:] for row in rows if row[0] == "median"}
    assert medians[("lstm", "/x/old")] == ["3.00", "0.25"]
    assert medians[("W2", "/x/new")] == ["2.00", "0.25"]
    with pytest.raises(SystemExit):
        compare_first_calls.main(["/x/old", "--models", "W9"])


def test_profile_step_counts_every_statement_of_run_and_adds_up_each_kind():
    from graphc.benchmarks import profile_step
    source = '''FASTMATH = False
def run(in0, ws):
    # k0
    v1 = alloc.carve(ws, ws_o0, (3,), np.float32)  # slot 0
    for k0_i in range(3):
        v1[k0_i] = in0[k0_i]
    blas.gemm(v1, in0, v1, False, False, 1.0, 0.0)
    return v1


def new_workspace(in0):
    pass'''
    text, labels = profile_step.instrumented(source)
    assert labels == ["v1 = alloc.carve(ws, ws_o0, (3,), np.float32)  # slot 0",
                      "for k0_i in range(3):", "blas.gemm(v1, in0, v1, False, False, 1.0, 0.0)",
                      "return v1"]
    assert "def run(in0, ws, _spent):" in text and text.count("_spent[") == 3
    assert "def _cycles(" in text and "cache=True" not in text
    assert profile_step.kind_of(labels[0]) == "_ = alloc.carve(ws, _, (3,), np.float32)"
    rows, whole = profile_step.profile("W1", "float64", calls=20)
    kinds = [kind for kind, _, _ in rows]
    assert any(kind.startswith("blas.gemm(") for kind in kinds) and len(set(kinds)) == len(kinds)
    assert whole > 0 and all(cycles >= 0 for _, cycles, _ in rows)


def test_profile_step_unrolled_compiles_every_time_step_into_run_itself():
    """A Python loop over time steps is outlined into one call a step
    (`run_part0`); profile_step's unrolled=True compiles each step's
    statements into `run`, so that each is counted where it runs."""
    import graphc as gc
    from graphc.benchmarks import profile_step
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(6, 6)) / 3, "u": rng.normal(size=(3, 6)) / 3,
              "b": np.zeros(6), "v": rng.normal(size=(6, 3))}
    xs, ys = rng.normal(size=(12, 4, 3)), rng.integers(0, 3, size=(12, 4))

    def loss(p, xs, ys):
        h, total = np.zeros((4, 6)), 0.0
        for x, y in zip(xs, ys):
            h = np.tanh(x @ p["u"] + h @ p["w"] + p["b"])
            total = total + gc.nn.cross_entropy(h @ p["v"], y)
        return total
    outlined = gc.compile_step(loss, gc.optim.SGD(0.1)).lower(params, xs, ys).source
    with profile_step.unrolled_steps():
        unrolled = gc.compile_step(loss, gc.optim.SGD(0.1)).lower(params, xs, ys).source
    assert "def run_part0(" in outlined and "run_part" not in unrolled
    gemms = [source.count("blas.gemm(") for source in (outlined, unrolled)]
    assert gemms[1] > gemms[0] + 10
