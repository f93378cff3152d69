"""The workspace: intermediates carved from one buffer kept across calls
(graphc/workspace.py, graphc.kernels.alloc.carve, graphc.api._Entry)."""
import re
import uuid

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


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
def test_a_carved_array_is_a_c_ordered_view_of_the_workspace_bytes(shape, dtype):
    from numba import njit

    from graphc.kernels import alloc

    @njit
    def carve_and_fill(ws, offset, shape, value):
        out = alloc.carve(ws, offset, shape, value.dtype)
        out[...] = value
        return out, out.size, out.strides
    ws = np.zeros(512, np.uint8)
    value = (np.arange(int(np.prod(shape))) % 3 + 1).astype(dtype).reshape(shape)    # no zeros
    out, size, strides = carve_and_fill(ws, 64, shape, value)
    itemsize = np.dtype(dtype).itemsize
    assert out.shape == shape and out.dtype == dtype and out.flags.c_contiguous
    assert size == value.size and strides == value.strides
    assert out.ctypes.data == ws.ctypes.data + 64
    np.testing.assert_array_equal(ws[64:64 + value.nbytes].view(dtype).reshape(shape), value)
    assert not ws[:64].any() and not ws[64 + value.size * itemsize:].any()


def test_a_slot_offset_is_read_from_the_header_workspace_header_returns():
    from numba import njit

    from graphc.kernels import alloc

    @njit
    def offsets(ws, n, m):
        header = alloc.workspace_header(ws, n, m)
        return [alloc.header_item(header, k) for k in range(n + m)]
    ws = alloc.make_workspace([100, 3, 70], [7, 9])
    header = ws[:8 * 9].view(np.int64)
    assert offsets(ws, 3, 2) == list(header[3:8])       # the shape entries, then the offsets


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
    # the source only: lower(), no Numba compile (an MLP's carved gradient
    # compiles and runs in test_the_workspace_is_sized_from_the_shapes_...)
    info = gc.jit(gc.value_and_grad(lambda p, x: np.sum(_mlp(p, x) ** 2))).lower(params, x)
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


def test_a_workspace_not_made_for_the_call_is_refused_not_written_past(rng):
    f = gc.jit(lambda x: np.tanh(x @ x.T) * 2.0)     # the product is an intermediate
    g = gc.jit(lambda x: np.tanh(np.tanh(x @ x.T) @ x) @ x.T * 2.0)     # more slots
    x = rng.normal(size=(50, 3))
    f(x), g(x)
    entry = _entry(f)
    truncated = entry.new_workspace()[:entry.workspace_size // 2]   # its header, half its slots
    for ws in (truncated, np.zeros(entry.workspace_size, np.uint8), _entry(g).new_workspace(),
               np.zeros(3, np.uint8)):
        before = ws.copy()
        with pytest.raises(ValueError, match="workspace passed was not made for this function"):
            entry.driver(x, *entry.consts, *entry.tail_args(ws))
        np.testing.assert_array_equal(ws, before)
    # one made by the same module for a smaller batch: its slots are too small
    f(x[:4])
    smaller = next(e for e in f._cache.values() if e is not entry).new_workspace()
    room = np.zeros(smaller.size + 4096, np.uint8)     # with bytes after it that must stay 0
    room[:smaller.size] = smaller
    with pytest.raises(ValueError, match="no longer match each other or the workspace's"):
        entry.driver(x, *entry.consts, *entry.tail_args(room[:smaller.size]))
    assert not room[smaller.size:].any()


def test_models_with_different_numbers_of_shape_entries_share_one_header_reader(rng):
    """workspace_header is compiled once per install: its arguments' types do
    not depend on how many shape entries a model's workspace records."""
    from graphc.kernels import alloc, shapes
    scale = 1.0 + uuid.uuid4().int % 10_000     # new modules: compiled, not loaded from disk
    f1 = gc.jit(lambda x: np.exp(np.tanh(x) * scale))   # one entry: its staged tanh's scratch
    f3 = gc.jit(lambda x, y, z: np.tanh(x @ y) @ z + scale)
    f1(rng.normal(size=5000))
    f3(rng.normal(size=(4, 6)), rng.normal(size=(6, 7)), rng.normal(size=(7, 2)))
    # the header items each model's shape test compares (kernels.shapes.differ)
    counts = [sum(left[0] == "item" for spec in re.findall(r"shapes\.differ\('([^']*)'", source)
                  for left, _ in shapes.parse(spec))
              for source in (_entry(f).module.source for f in (f1, f3))]
    assert 0 < counts[0] < counts[1], counts
    assert len(alloc.workspace_header.signatures) == 1


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
    # W1: a dozen kernels and a 33 KB workspace; W4's eight layers took twice
    # the compile time (13 s against 7) for the same check
    w = workloads.WORKLOADS["W1"]
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
    # The driver takes an int for an input it never reads (api.UNREAD): the
    # plain-array fast path must pass that too, not fall back to converting.
    jf = gc.jit(lambda x, unused: np.exp(x) + 1.0)
    x, u = rng.normal(size=(2, 9))
    for _ in range(3):
        np.testing.assert_allclose(jf(x, u), np.exp(x) + 1.0, rtol=1e-15)
        assert not _entry(jf).convert_next
    assert len(_entry(jf).driver.signatures) == 1


def test_a_step_whose_loss_ignores_a_batch_array_keeps_its_fast_path(rng):
    params = {"w": rng.normal(size=3)}
    x, y, unused = rng.normal(size=(3, 4, 3))
    by_hand = params["w"].copy()
    step = gc.compile_step(lambda p, x, y, unused: np.sum((x * p["w"] - y) ** 2),
                           gc.optim.SGD(0.1))
    for _ in range(3):
        loss = step(params, x, y, unused)
        assert step._last is not None
        assert loss == pytest.approx(np.sum((x * by_hand - y) ** 2), rel=1e-12)
        by_hand -= 0.1 * np.sum(2 * (x * by_hand - y) * x, axis=0)
        np.testing.assert_allclose(params["w"], by_hand, rtol=1e-12)


def test_a_large_workspace_is_not_held_between_calls(kept_workspaces, monkeypatch, rng):
    from graphc import api
    jf = gc.jit(lambda x: np.sum(np.tanh(x @ x.T) * 2.0, axis=1))
    small, large = rng.normal(size=(4, 3)), rng.normal(size=(300, 3))
    monkeypatch.setattr(api, "KEEP_WORKSPACE_BYTES", 300 * 300 * 8 - 1)
    for x in (small, large, large):
        np.testing.assert_allclose(jf(x), np.sum(np.tanh(x @ x.T) * 2.0, axis=1), rtol=1e-12)
    kept = {e.workspace_size: len(e.workspaces) for e in jf._cache.values()}
    assert sorted(kept.values()) == [0, 1] and kept[max(kept)] == 0
