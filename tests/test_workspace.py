"""The workspace: intermediates carved from one buffer kept across calls
(graphc/workspace.py, graphc.kernels.alloc.carve, graphc.api._Entry)."""
import re

import numpy as np
import pytest

import graphc as gc
from benchmarks import workloads


def _entry(f):
    return next(iter(f._cache.values()))


def _mlp(params, x):
    for w, b in params:
        x = np.tanh(x @ w + b)
    return x


def _mlp_params(rng, sizes):
    return [(rng.normal(size=(m, n)) / np.sqrt(m), rng.normal(size=n))
            for m, n in zip(sizes, sizes[1:])]


def _flat(layers):
    return np.concatenate([np.ravel(a) for layer in layers for a in layer])


def _carved_slots(source):
    """Per carved intermediate of `run`, the slot it takes."""
    run = source[source.index("def run("):]
    return re.findall(r"= alloc\.carve\(ws, ws_o(\d+),", run)


def test_calls_reuse_one_workspace_and_never_overwrite_earlier_results(kept_workspaces, rng):
    def f(x, y):
        h = np.tanh(x) * y + 1.0
        return h, (h * 3.0).reshape(-1), np.sum(h ** 2)

    jf = gc.jit(f)
    x1, y1, x2, y2 = rng.normal(size=(4, 37, 5))
    first = jf(x1, y1)
    kept = [np.array(r) for r in first]
    second = jf(x2, y2)
    entry = _entry(jf)
    assert entry.workspace_size is not None and len(entry.workspaces) == 1
    ws = entry.workspaces[0]
    jf(x1, y1)
    assert entry.workspaces == [ws]          # the same buffer, not a new one per call
    for got, want in zip(first, kept):      # results handed out stay as they were
        np.testing.assert_array_equal(got, want)
    for got, want in zip(second, f(x2, y2)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_intermediates_whose_lives_do_not_overlap_share_a_slot(rng):
    params = _mlp_params(rng, [8, 16, 16, 16, 16, 4])
    x = rng.normal(size=(32, 8))
    info = gc.jit(gc.value_and_grad(lambda p, x: np.sum(_mlp(p, x) ** 2))).inspect(params, x)
    slots = _carved_slots(info.source)
    assert len(slots) >= 15 and len(set(slots)) <= len(slots) // 2


def test_the_workspace_is_sized_from_the_shapes_so_a_new_batch_size_reuses_the_module(rng):
    params = _mlp_params(rng, [6, 12, 3])
    loss = lambda p, x: np.mean(_mlp(p, x) ** 2)  # noqa: E731
    f = gc.jit(gc.grad(loss))
    small, large = rng.normal(size=(5, 6)), rng.normal(size=(700, 6))
    assert f.inspect(params, small).source == f.inspect(params, large).source
    sizes = sorted(e.workspace_size for e in f._cache.values())
    assert sizes[0] < sizes[1]
    for x in (small, large, small):
        np.testing.assert_allclose(_flat(f(params, x)), _flat(f.interpret(params, x)),
                                   rtol=1e-10, atol=1e-14)


def test_a_workspace_too_small_is_refused_not_written_past(rng):
    f = gc.jit(lambda x: np.tanh(x @ x.T) * 2.0)     # the product is an intermediate
    x = rng.normal(size=(50, 3))
    f(x)
    entry = _entry(f)
    too_small = np.zeros(entry.workspace_size // 2, np.uint8)
    with pytest.raises(ValueError, match="workspace"):
        entry.driver(x, *entry.consts, *entry.tail_args(too_small))
    assert not too_small.any()


def test_calls_on_several_threads_at_once_each_take_their_own_workspace(
        kept_workspaces, run_concurrently, rng):
    jf = gc.jit(lambda x: np.sum(np.tanh(x @ x.T) * 2.0, axis=1) + 1.0)
    xs = rng.normal(size=(8, 64, 48))
    jf(xs[0])
    want = [np.sum(np.tanh(x @ x.T) * 2.0, axis=1) + 1.0 for x in xs]

    def work(k):
        for _ in range(30):
            np.testing.assert_allclose(jf(xs[k]), want[k], rtol=1e-12)

    run_concurrently(work, 8)
    assert 1 <= len(_entry(jf).workspaces) <= 8


def test_a_training_step_and_its_epochs_reuse_their_workspace(kept_workspaces):
    w = workloads.WORKLOADS["W4"]
    params, (x, y) = w.make(np.float64, seed=1, size="tiny")
    by_hand = {k: v.copy() for k, v in params.items()}
    step = gc.compile_step(w.loss_fn, gc.optim.SGD(w.lr))
    reference = gc.compile_step(w.loss_fn, gc.optim.SGD(w.lr))
    n = len(x) // 2
    losses = step.epoch(params, (x, y), np.arange(2 * n), n, 2)
    for k, loss in enumerate(losses):
        assert loss == reference(by_hand, x[k * n:(k + 1) * n], y[k * n:(k + 1) * n])
    for k in params:
        np.testing.assert_array_equal(params[k], by_hand[k])
    entry = next(iter(step._entries.values()))
    ws = entry.workspaces[0]
    step(params, x[:n], y[:n])
    step.epoch(params, (x, y), np.arange(2 * n), n, 2)
    assert entry.workspaces == [ws]


def test_a_function_that_ignores_an_argument_still_runs_fast_and_right(rng):
    jf = gc.jit(lambda x, unused: np.exp(x) + 1.0)
    x, u = rng.normal(size=(2, 9))
    for _ in range(3):
        np.testing.assert_allclose(jf(x, u), np.exp(x) + 1.0, rtol=1e-15)
    assert len(_entry(jf).driver.signatures) == 1
