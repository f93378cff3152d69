"""Optimizers against PyTorch's update equations, compile_step, train, atomicity."""
import collections
import copy
import importlib
import re

import numpy as np
import pytest

import graphc as gc
from graphc import errors


def loss_fn(p, x, y):
    h = np.tanh(x @ p["W"] + p["b"])
    return np.mean((h @ p["v"] - y) ** 2)


def make(dtype=np.float64, seed=0, n=24):
    rng = np.random.default_rng(seed)
    params = {"W": rng.normal(size=(3, 4)).astype(dtype), "b": np.zeros(4, dtype),
              "v": rng.normal(size=4).astype(dtype)}
    x = rng.normal(size=(n, 3)).astype(dtype)
    y = rng.normal(size=n).astype(dtype)
    return params, x, y


# ---- NumPy references of torch.optim's update equations (per parameter) ----
def ref_sgd(p, g, st, t, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    g = g + weight_decay * p
    if momentum:
        st["buf"] = g.copy() if t == 0 else momentum * st["buf"] + (1 - dampening) * g
        g = g + momentum * st["buf"] if nesterov else st["buf"]
    return p - lr * g


def ref_adam(p, g, st, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    b1, b2 = betas
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    st.setdefault("m", np.zeros_like(p))
    st.setdefault("v", np.zeros_like(p))
    st["m"] = b1 * st["m"] + (1 - b1) * g
    st["v"] = b2 * st["v"] + (1 - b2) * g * g
    bc1, bc2 = 1 - b1 ** (t + 1), 1 - b2 ** (t + 1)
    return p - lr / bc1 * st["m"] / (np.sqrt(st["v"]) / np.sqrt(bc2) + eps)


OPTIMIZERS = [
    ("sgd", lambda: gc.optim.SGD(lr=0.1), lambda *a: ref_sgd(*a, lr=0.1)),
    ("sgd_wd", lambda: gc.optim.SGD(lr=0.1, weight_decay=0.01),
     lambda *a: ref_sgd(*a, lr=0.1, weight_decay=0.01)),
    ("momentum", lambda: gc.optim.SGD(lr=0.05, momentum=0.9, dampening=0.1),
     lambda *a: ref_sgd(*a, lr=0.05, momentum=0.9, dampening=0.1)),
    ("nesterov", lambda: gc.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.001),
     lambda *a: ref_sgd(*a, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.001)),
    ("adam", lambda: gc.optim.Adam(lr=0.01), lambda *a: ref_adam(*a, lr=0.01)),
    ("adam_l2", lambda: gc.optim.Adam(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
     lambda *a: ref_adam(*a, lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
    ("adamw", lambda: gc.optim.AdamW(lr=0.01), lambda *a: ref_adam(*a, lr=0.01, weight_decay=1e-2,
                                                                  decoupled=True)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, make_opt, ref", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_optimizer_matches_pytorch_equations(name, make_opt, ref, dtype):
    params, x, y = make(dtype)
    expected = {k: v.astype(np.float64) for k, v in params.items()}
    ref_state = {k: {} for k in params}
    step = gc.compile_step(loss_fn, make_opt())
    grad = gc.grad(loss_fn)
    ids = {k: id(v) for k, v in params.items()}
    for t in range(5):
        # the reference gradient on the NumPy interpreter (no compile of its own)
        g = grad.interpret(expected, x.astype(np.float64), y.astype(np.float64))
        ref_loss = loss_fn(expected, x.astype(np.float64), y.astype(np.float64))
        loss = step(params, x, y)
        assert isinstance(loss, float)
        assert loss == pytest.approx(ref_loss, rel=1e-4 if dtype == np.float32 else 1e-10)
        expected = {k: ref(expected[k], g[k], ref_state[k], t) for k in params}
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for k in params:
        assert id(params[k]) == ids[k] and params[k].dtype == dtype      # in place, same dtype
        np.testing.assert_allclose(params[k], expected[k], **tol)
    assert step.state["count"] == 5
    for slot in step.optimizer.slots:
        assert set(step.state[slot]) == set(params)
        assert all(step.state[slot][k].dtype == dtype for k in params)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make_opt, flushed_in", [
    (lambda: gc.optim.Adam(lr=0.01), "fd"),
    (lambda: gc.optim.AdamW(lr=0.01), "fd"),
    (lambda: gc.optim.SGD(lr=0.05, momentum=0.9, nesterov=True), "fd"),
    # eps 0, or below sqrt(tiny) in the dtype: m / sqrt(v) of subnormals is a
    # full step, so Adam flushes nothing
    (lambda: gc.optim.Adam(lr=0.01, eps=0.0), ""),
    (lambda: gc.optim.Adam(lr=0.01, eps=1e-50), "d")],
    ids=["adam", "adamw", "nesterov", "adam_eps0", "adam_eps_tiny"])
def test_moment_buffers_flush_subnormals(make_opt, flushed_in, dtype):
    flushed = np.dtype(dtype).char in flushed_in
    # "dead" becomes a dead ReLU unit after the first step: from then on its
    # gradient is exactly zero, so its buffers only decay, and beta * (a
    # subnormal) would stay subnormal for good.
    def loss(p, x):
        return np.sum((x @ p["w"]) ** 2) + np.sum(np.maximum(p["dead"], 0.0))

    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=3).astype(dtype), "dead": np.ones(4, dtype)}
    x = rng.normal(size=(5, 3)).astype(dtype)
    step = gc.compile_step(loss, make_opt())
    step(params, x)
    params["dead"][:] = -1
    tiny = np.finfo(dtype).tiny
    for slot in step.optimizer.slots:
        step.state[slot]["dead"][:] = tiny / 4
        step.state[slot]["w"][:] = tiny / 4
    step(params, x)
    for slot in step.optimizer.slots:
        dead = step.state[slot]["dead"]
        assert np.all(dead == 0) if flushed else np.all((dead > 0) & (dead < tiny)), slot
        # a live parameter's buffer takes its gradient as usual
        assert np.all(np.abs(step.state[slot]["w"]) >= tiny), slot
    if flushed:     # a zero moment: no update (AdamW's decay aside)
        decay = 1 - 0.01 * 1e-2 if isinstance(step.optimizer, gc.optim.AdamW) else 1
        np.testing.assert_array_equal(params["dead"], np.full(4, -decay, dtype))


def test_state_slots_follow_pytorch_names():
    params, x, y = make()
    for opt, slots in [(gc.optim.SGD(0.1), set()), (gc.optim.SGD(0.1, momentum=0.9), {"momentum"}),
                       (gc.optim.Adam(), {"m", "v"}), (gc.optim.AdamW(), {"m", "v"})]:
        step = gc.compile_step(loss_fn, opt)
        step({k: v.copy() for k, v in params.items()}, x, y)
        assert set(step.state) == {"count"} | slots


def test_a_state_set_before_the_first_call_is_continued_from():
    # a new step (new settings, a schedule) continuing another's run: its
    # moments and count, not fresh ones
    params, x, y = make()
    first = gc.compile_step(loss_fn, gc.optim.Adam(0.01))
    for _ in range(3):
        first(params, x, y)
    copied = {k: v.copy() for k, v in params.items()}
    second = gc.compile_step(loss_fn, gc.optim.Adam(0.01))
    second.state = copy.deepcopy(first.state)
    for _ in range(2):
        assert second(copied, x, y) == first(params, x, y)
    assert second.state["count"] == first.state["count"] == 5
    for k in params:
        np.testing.assert_array_equal(copied[k], params[k])
    for state, error in [({"count": 3, "m": first.state["m"]}, "has no v"),
                         ({**first.state, "v": {k: v[:1] for k, v in first.state["v"].items()}},
                          "step.state\\['v'\\]")]:
        third = gc.compile_step(loss_fn, gc.optim.Adam(0.01))
        third.state = state
        before = {k: v.copy() for k, v in copied.items()}
        with pytest.raises((ValueError, TypeError), match=error):
            third(copied, x, y)
        for k in copied:
            np.testing.assert_array_equal(copied[k], before[k])
        third.state = None      # a fresh state after all
        third(copied, x, y)
        assert third.state["count"] == 1
    not_a_dict = gc.compile_step(loss_fn, gc.optim.Adam(0.01))
    not_a_dict.state = [first.state]
    with pytest.raises(TypeError, match="step.state is a list"):
        not_a_dict(copied, x, y)
    for opt in (gc.optim.SGD(0.1), gc.optim.Adam(0.01)):   # after steady calls too
        step = gc.compile_step(loss_fn, opt)
        for _ in range(3):
            step(copied, x, y)
        step.state = None
        step(copied, x, y)
        assert step.state["count"] == 1
        step.state = [1]
        with pytest.raises(TypeError, match="step.state is a list"):
            step(copied, x, y)


def test_a_state_set_is_copied_so_one_checkpoint_restores_two_runs_alike():
    # as PyTorch's load_state_dict: the step writes into its own arrays, and
    # the checkpoint (its count too: np.load gives a 0-d array) stays as saved
    params, x, y = make()
    base = gc.compile_step(loss_fn, gc.optim.Adam(0.01))
    for _ in range(3):
        base(params, x, y)
    saved_params, saved = copy.deepcopy(params), copy.deepcopy(base.state)
    saved["count"] = np.array(saved["count"])
    snapshot = copy.deepcopy(saved)
    runs = []
    for _ in range(2):
        step, p = gc.compile_step(loss_fn, gc.optim.Adam(0.01)), copy.deepcopy(saved_params)
        step.state = saved
        for _ in range(3):
            step(p, x, y)
        assert step.state["count"] == 6 and type(step.state["count"]) is int
        runs.append(p)
    for k in params:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    assert saved["count"] == 3
    for slot in ("m", "v"):
        for k in params:
            np.testing.assert_array_equal(saved[slot][k], snapshot[slot][k])


def test_a_fresh_step_s_state_is_a_dict_and_a_float64_checkpoint_fits_a_float32_model():
    params, x, y = make()
    step = gc.compile_step(loss_fn, gc.optim.Adam(0.01))
    held = step.state                       # a dict before the first call, as API.md has it
    assert held == {"count": 0}
    step(params, x, y)
    assert held is step.state and set(held) == {"count", "m", "v"} and held["count"] == 1
    # moments of float64 restored into float32 params are cast (as PyTorch's)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    reference = gc.compile_step(loss_fn, gc.optim.Adam(0.01))
    reference.state = {"count": held["count"],
                       **{s: {k: v.astype(np.float32) for k, v in held[s].items()} for s in "mv"}}
    restored = gc.compile_step(loss_fn, gc.optim.Adam(0.01))
    restored.state = held
    q32 = copy.deepcopy(p32)
    assert restored(q32, x32, y32) == reference(p32, x32, y32)
    assert all(restored.state[s][k].dtype == np.float32 for s in "mv" for k in params)
    for k in params:
        np.testing.assert_array_equal(q32[k], p32[k])


def test_optimizer_settings_cannot_change_under_a_compiled_step():
    # they are compiled in: a changed lr would reach only steps traced later
    # (a new batch shape), so the step would run with two rates
    p, x, y = make()
    sgd = gc.optim.SGD(lr=0.1)
    step = gc.compile_step(loss_fn, sgd)
    step(p, x, y)

    class Custom(gc.optim.SGD):     # subclasses, with or without an __init__ of their own
        def __init__(self, lr):
            super().__init__(lr, momentum=0.5)
            self.note = "set in __init__"
    for opt in (sgd, gc.optim.Adam(), gc.optim.AdamW(), Custom(0.1)):
        with pytest.raises(errors.GraphcValueError, match=rf"{type(opt).__name__}.lr cannot "
                                                          r"change: .* make a new optimizer"):
            opt.lr = 0.0
        with pytest.raises(errors.GraphcValueError, match="cannot change"):
            del opt.lr
        assert opt.lr != 0.0 and "_frozen" not in repr(opt)
    assert Custom(0.1).note == "set in __init__"
    expected = copy.deepcopy(p)     # a new shape, traced now: still lr 0.1
    gc.compile_step(loss_fn, gc.optim.SGD(lr=0.1))(expected, x[:12], y[:12])
    step(p, x[:12], y[:12])
    for k in p:
        np.testing.assert_array_equal(p[k], expected[k])


def test_optimizer_argument_checks():
    with pytest.raises(ValueError, match="Nesterov"):
        gc.optim.SGD(lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Nesterov"):
        gc.optim.SGD(lr=0.1, momentum=0.9, dampening=0.5, nesterov=True)
    with pytest.raises(ValueError, match="lr"):
        gc.optim.Adam(lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        gc.optim.Adam(betas=(1.0, 0.9))
    for betas in (0.9, (0.9,), ("a", 0.9)):
        with pytest.raises(TypeError, match=r"betas must be a pair of numbers"):
            gc.optim.Adam(betas=betas)
    assert gc.optim.AdamW().weight_decay == 1e-2 and gc.optim.Adam().lr == 1e-3
    with pytest.raises(TypeError, match="ClipGradNorm wraps a gc.optim optimizer, got float"):
        gc.optim.ClipGradNorm(0.1, 1.0)
    with pytest.raises(ValueError, match="invalid max_norm"):
        gc.optim.ClipGradNorm(gc.optim.SGD(0.1), -1.0)
    with pytest.raises(ValueError, match="norm_type is a number > 0 or inf, not 0"):
        gc.optim.ClipGradNorm(gc.optim.SGD(0.1), 1.0, norm_type=0)
    assert gc.optim.ClipGradNorm(gc.optim.SGD(0.1), 1.0, "inf").norm_type == np.inf


@pytest.mark.parametrize("norm_type", [2.0, np.inf, 3.0])
def test_clip_grad_norm_scales_every_gradient_as_pytorch_before_the_step(norm_type):
    # steps with large gradients (clipped) and a small one (left as it is)
    params, x, y = make()
    y = y * 10
    expected, buf = copy.deepcopy(params), None
    step = gc.compile_step(loss_fn, gc.optim.ClipGradNorm(gc.optim.SGD(0.1, momentum=0.9), 0.5,
                                                          norm_type))
    for batch in (slice(None), slice(None), slice(0, 1)):
        step(params, x[batch], y[batch] / (100 if batch.stop == 1 else 1))
        g = gc.grad(loss_fn)(expected, x[batch], y[batch] / (100 if batch.stop == 1 else 1))
        flat = np.concatenate([v.ravel() for v in g.values()])
        norm = (np.max(np.abs(flat)) if norm_type == np.inf
                else np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type))
        g = {k: v * min(0.5 / (norm + 1e-6), 1.0) for k, v in g.items()}
        buf = g if buf is None else {k: 0.9 * buf[k] + g[k] for k in g}
        expected = {k: expected[k] - 0.1 * buf[k] for k in expected}
        for k in params:
            np.testing.assert_allclose(params[k], expected[k], rtol=1e-12)
    assert set(step.state) == {"count", "momentum"}


def test_train_argument_checks_come_before_any_compile():
    p, x, y = make()
    sgd = gc.optim.SGD(lr=0.1)
    for data in ((x[:0], y[:0]),):          # no rows: no batch, whatever batch_size
        with pytest.raises(errors.GraphcValueError, match="0 rows .* leave no batch"):
            gc.train(loss_fn, p, data, sgd, progress=False)
    for sizes in (dict(batch_size=2.7), dict(epochs=1.5), dict(batch_size="8")):
        with pytest.raises(errors.GraphcTypeError, match="batch_size and epochs must be integers"):
            gc.train(loss_fn, p, (x, y), sgd, progress=False, **sizes)
    with pytest.raises(errors.GraphcValueError, match="batch_size must be >= 1"):
        gc.train(loss_fn, p, (x, y), sgd, batch_size=0, progress=False)
    for data in ({"x": x, "y": y}, ((x, y[:3]), y), [{"x": x}, y]):
        with pytest.raises(TypeError, match=r"data is an array or a tuple of arrays, .* not a"):
            gc.train(loss_fn, p, data, sgd, progress=False)
    for data in (x.tolist(), (x,), (x, y, y), ()):     # x's rows as arrays; too few, too many
        with pytest.raises(TypeError, match=r"train: data holds (24 arrays|1 array|3 arrays|0 "
                                            r"arrays), but the loss takes 2 batch arguments "
                                            r"after the params \(x, y\)"):
            gc.train(loss_fn, p, data, sgd, progress=False)
    for rows in ([x.tolist(), y.tolist()], (list(x), y), (tuple(map(tuple, x)), list(y))):
        as_rows = copy.deepcopy(p)          # what NumPy makes an array of is data
        gc.train(loss_fn, as_rows, rows, sgd, epochs=1, progress=False, shuffle=False)
        as_arrays = copy.deepcopy(p)
        gc.train(loss_fn, as_arrays, (x, y), sgd, epochs=1, progress=False, shuffle=False)
        for k in p:
            np.testing.assert_array_equal(as_rows[k], as_arrays[k])


@pytest.mark.parametrize("drop_last", [False, True])
def test_train_without_shuffle_equals_calling_step_by_hand(drop_last):
    params, x, y = make(n=22)
    replay = {k: v.copy() for k, v in params.items()}
    history = gc.train(loss_fn, params, (x, y), gc.optim.Adam(lr=0.01), batch_size=8, epochs=3,
                       shuffle=False, drop_last=drop_last, progress=False)
    assert history.shape == (3,)
    # replay the three epochs by hand with one step object (optimizer state carries over)
    step = gc.compile_step(loss_fn, gc.optim.Adam(lr=0.01))
    expected_history = []
    for epoch in range(3):
        losses = []
        for start in range(0, 22, 8):
            if start + 8 > 22 and drop_last:
                break
            losses.append(step(replay, x[start:start + 8], y[start:start + 8]))
        expected_history.append(np.mean(losses))
    np.testing.assert_allclose(history, expected_history, rtol=1e-12)
    for k in params:
        np.testing.assert_allclose(params[k], replay[k], rtol=1e-12)


@pytest.mark.parametrize("loss, name", [(lambda p, x: p["s"] + 0.0 * x.sum(), "s"),
                                        (lambda p, x: p["s"], "s"),
                                        (lambda p, x: p["w"][0], "w"),
                                        (lambda p, x: p["w"].reshape(()), "w"),
                                        (lambda p, x: p["w"], "w")],
                         ids=["computed", "param", "index", "view", "size-1"])
def test_the_loss_is_the_value_before_the_update(loss, name):
    # a loss that is a parameter, or a view of one, is read before the step
    # writes the parameter's new value (found in review: it returned 2.5);
    # a size-1 loss that is not 0-d works too (it raised TypeError)
    params = {"s": np.array(3.0), "w": np.array([3.0])}
    assert gc.compile_step(loss, gc.optim.SGD(lr=0.5))(params, np.ones(2)) == 3.0
    history = gc.train(loss, params, (np.ones((4, 2)),), gc.optim.SGD(lr=0.5), batch_size=3,
                       epochs=1, shuffle=False, progress=False)
    assert history[0] == (2.5 + 2.0) / 2        # the batch of 3 rows, then the last row
    assert params[name].item() == 1.5


def test_train_compiles_only_the_epoch_loop(monkeypatch):
    # the short last batch runs through train_epoch too: calling the step for it
    # would compile `run` as well, a second compile as long as the first
    train_module = importlib.import_module("graphc.train")     # graphc.train is the function
    steps = []
    monkeypatch.setattr(train_module, "compile_step",
                        lambda *a: steps.append(gc.compile_step(*a)) or steps[-1])
    params, x, y = make(n=22, seed=5)
    gc.train(loss_fn, params, (x, y), gc.optim.SGD(lr=0.01), batch_size=8, epochs=2,
             progress=False)
    entries = list(steps[0]._entries.values())
    assert len(entries) == 2        # the batches of 8 and the last one of 6
    assert all(e.driver.signatures == [] for e in entries)
    assert sum(len(e.train_epoch.signatures) for e in entries) >= 1


def test_train_gathers_shuffled_batches_of_any_rank():
    """The native epoch loop copies each batch's rows through the permutation,
    for rank-3 strided images and 2-D targets (rank 1 is the labels of the test above)."""
    def loss(p, img, target):
        return np.mean((np.tanh(img.reshape(img.shape[0], 6) @ p["W"]) - target) ** 2)

    rng = np.random.default_rng(1)
    params = {"W": rng.normal(size=(6, 2))}
    images = rng.normal(size=(3, 2, 21)).transpose(2, 0, 1)       # (21, 3, 2), strided
    targets = rng.normal(size=(21, 2))
    replay = {k: v.copy() for k, v in params.items()}
    history = gc.train(loss, params, (images, targets), gc.optim.SGD(lr=0.1, momentum=0.9),
                       batch_size=4, epochs=2, seed=7, progress=False)
    step, order = gc.compile_step(loss, gc.optim.SGD(lr=0.1, momentum=0.9)), np.random.default_rng(7)
    for epoch in range(2):
        perm = order.permutation(21)
        losses = [step(replay, images[perm[s:s + 4]], targets[perm[s:s + 4]])
                  for s in range(0, 21, 4)]
        np.testing.assert_allclose(history[epoch], np.mean(losses), rtol=1e-12)
    np.testing.assert_allclose(params["W"], replay["W"], rtol=1e-12)


def test_train_is_deterministic_per_seed_and_shuffles():
    runs = []
    for seed in (0, 0, 1):
        params, x, y = make()
        runs.append(gc.train(loss_fn, params, (x, y), gc.optim.SGD(0.1), batch_size=5, epochs=2,
                             seed=seed, progress=False))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_train_shows_a_progress_bar(capsys):
    params, x, y = make()
    gc.train(loss_fn, params, (x, y), gc.optim.SGD(0.1), batch_size=8, epochs=2, progress=True)
    assert "loss=" in capsys.readouterr().err
    gc.train(loss_fn, params, (x, y), gc.optim.SGD(0.1), batch_size=8, epochs=2, progress=False)
    assert capsys.readouterr().err == ""


def _snapshot(params, step):
    return ({k: v.copy() for k, v in params.items()},
            {k: (v if k == "count" else {n: a.copy() for n, a in v.items()})
             for k, v in step.state.items()})


def _assert_unchanged(before, params, step):
    params_before, state_before = before
    for k in params:
        assert params[k].tobytes() == params_before[k].tobytes()
    assert step.state["count"] == state_before["count"]
    for slot in step.optimizer.slots:
        for k in params:
            assert step.state[slot][k].tobytes() == state_before[slot][k].tobytes()


def test_a_failing_step_leaves_params_and_state_bitwise_unchanged():
    def ce(p, x, y):
        return gc.nn.cross_entropy(x @ p["W"], y)

    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(3, 4))}
    x = rng.normal(size=(5, 3))
    step = gc.compile_step(ce, gc.optim.Adam(lr=0.1))
    step(params, x, np.array([0, 1, 2, 3, 0]))
    before = _snapshot(params, step)
    with pytest.raises(IndexError, match=r"\[0, 4\)"):
        step(params, x, np.array([0, 1, 4, 3, 0]))
    _assert_unchanged(before, params, step)
    with pytest.raises(IndexError):
        step(params, x, np.array([0, -1, 2, 3, 0]))
    _assert_unchanged(before, params, step)
    with pytest.raises(TypeError, match=r"\['W'\]"):
        step({"W": params["W"].astype(np.float32)}, x, np.array([0, 1, 2, 3, 0]))
    with pytest.raises(TypeError, match="structure"):
        step({"W": params["W"], "b": np.zeros(4)}, x, np.array([0, 1, 2, 3, 0]))
    with pytest.raises(gc.ShapeError):
        step(params, x, np.array([0, 1]))
    _assert_unchanged(before, params, step)


@pytest.mark.parametrize("rows", [24, 12], ids=["fast_path", "checked_path"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_bad_step_count_is_refused_before_any_write(rows, optimizer):
    # "4" used to run the whole update and fail only at count += 1, and
    # 2**64 - 1 became -1 (Adam's bias correction then divided by zero).
    # SGD's update never reads the count (its fast path passes a stand-in).
    params, x, y = make(n=24)
    step = gc.compile_step(loss_fn, gc.optim.Adam(1e-2) if optimizer == "adam"
                           else gc.optim.SGD(0.1))
    step(params, x, y)
    if rows == 24:
        assert step._last.count_unread == (optimizer == "sgd")
    x, y = x[:rows], y[:rows]       # the last call's batch shape, or a new one
    for bad, error in [("4", TypeError), (2.7, TypeError), (None, TypeError), (True, TypeError),
                       (-1, ValueError),
                       (np.uint64(2 ** 64 - 1), ValueError), (2 ** 63, ValueError)]:
        good = step.state["count"]
        step.state["count"] = bad
        before = _snapshot(params, step)
        with pytest.raises(error, match=r"step\.state\['count'\].*an int >= 0"):
            step(params, x, y)
        _assert_unchanged(before, params, step)
        with pytest.raises(error, match="count"):
            step.epoch(params, (x, y), np.arange(len(x)), 8, 1)
        _assert_unchanged(before, params, step)
        step.state["count"] = good
    step.state["count"] = np.int32(3)       # any integer type counts
    step(params, x, y)
    assert step.state["count"] == 4


def test_nan_in_data_propagates_to_the_loss():
    params, x, y = make()
    x[0, 0] = np.nan
    step = gc.compile_step(loss_fn, gc.optim.SGD(0.1))
    assert np.isnan(step(params, x, y))


def test_bad_params():
    params, x, y = make()
    step = gc.compile_step(loss_fn, gc.optim.SGD(0.1))
    with pytest.raises(TypeError, match=r"\['W'\].*int64"):
        step({**params, "W": np.ones((3, 4), int)}, x, y)
    frozen = params["W"].copy()
    frozen.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        gc.compile_step(loss_fn, gc.optim.SGD(0.1))({**params, "W": frozen}, x, y)
    with pytest.raises(ValueError, match="same array"):
        gc.compile_step(lambda p, x, y: np.sum(p["a"] * p["b"]), gc.optim.SGD(0.1))(
            {"a": params["b"], "b": params["b"]}, x, y)


Affine = collections.namedtuple("Affine", "w b")


def test_namedtuple_params_are_a_structure_of_their_own():
    """namedtuple params are updated in place like a dict's; errors name their fields,
    and a plain tuple or another namedtuple class is another structure (as in JAX)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=8)
    params = Affine(rng.normal(size=3), np.zeros(()))
    w0 = params.w.copy()
    step = gc.compile_step(lambda p, x, y: np.mean((x @ p.w + p.b - y) ** 2), gc.optim.SGD(0.1))
    step(params, x, y)
    grad_w = 2 * x.T @ (x @ w0 - y) / len(y)
    np.testing.assert_allclose(params.w, w0 - 0.1 * grad_w, rtol=1e-12)
    Other = collections.namedtuple("Other", "w b")
    for wrong, shown in ((tuple(params), "(*, *)"), (Other(*params), "Other(w=*, b=*)")):
        with pytest.raises(TypeError, match=re.escape(
                f"params have structure {shown}, but this step was built for Affine(w=*, b=*)")):
            step(wrong, x, y)
    with pytest.raises(TypeError, match=r"params\.w is float32\[3\]"):
        step(Affine(params.w.astype(np.float32), params.b), x, y)
    # a class defined again (a notebook cell run twice) is another class
    Again = collections.namedtuple("Affine", "w b")
    with pytest.raises(TypeError, match="a different class of the same name"):
        step(Again(*params), x, y)
    # steady steps take the fast path (as a dict's); a new array in a field is
    # checked again, and both follow SGD
    for k in range(3):
        if k == 2:
            assert step._last is not None
            params = params._replace(w=params.w.copy())
        w0, b0 = params.w.copy(), params.b.copy()
        step(params, x, y)
        np.testing.assert_allclose(params.w, w0 - 0.1 * 2 * x.T @ (x @ w0 + b0 - y) / len(y),
                                   rtol=1e-10)


def test_a_namedtuple_inside_a_dict_keeps_its_class_in_gradients():
    # the structure is built while tracing: the interpreter shows it (no compile)
    params = {"layer": Affine(np.array([1.0, -2.0]), np.array(0.5)), "scale": np.array(2.0)}
    grads = gc.grad(lambda p: p["scale"] * np.sum(p["layer"].w ** 2) + p["layer"].b).interpret(
        params)
    assert type(grads["layer"]) is Affine
    np.testing.assert_array_equal(grads["layer"].w, [4.0, -8.0])
    np.testing.assert_array_equal(grads["layer"].b, 1.0)
    np.testing.assert_array_equal(grads["scale"], 5.0)


def test_checks_follow_arrays_changed_between_steps():
    # the fast path skips re-checking the same arrays; anything swapped or changed
    # in place since the last step is still caught before a write
    params, x, y = make()
    step = gc.compile_step(loss_fn, gc.optim.Adam(1e-2))
    step(params, x, y)
    before = {k: v.copy() for k, v in params.items()}
    moments = {k: v.copy() for k, v in step.state["m"].items()}
    step.state["m"]["W"] = np.zeros((4, 3))
    with pytest.raises(TypeError, match=r"step\.state\['m'\]\['W'\].*float64\[4, 3\]"):
        step(params, x, y)
    step.state["m"]["W"] = moments["W"]
    step.state["m"]["b"] = step.state["v"]["b"]
    with pytest.raises(ValueError, match="share memory"):
        step(params, x, y)
    step.state["m"]["b"] = moments["b"]
    params["v"].setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        step(params, x, y)
    params["v"].setflags(write=True)
    params["b"].shape = (1, 4)
    with pytest.raises(TypeError, match=r"\['b'\] is float64\[1, 4\]"):
        step(params, x, y)
    params["b"].shape = (4,)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert step.state["count"] == 1
    step(params, x, y)
    assert step.state["count"] == 2


def test_steady_state_steps_skip_the_checks_and_any_change_is_checked_again(monkeypatch):
    """The same arrays as the last step take the fast path (no flatten, no checks);
    every change a user can make between steps leaves it, and each step still
    equals a fresh step on copies of the same state."""
    params, x, y = make()
    step = gc.compile_step(loss_fn, gc.optim.Adam(1e-2))
    step(params, x, y)
    checked = []
    real_bind = step._bind
    monkeypatch.setattr(step, "_bind", lambda p: checked.append(1) or real_bind(p))

    def same_as_fresh(*batch):
        ref = gc.compile_step(loss_fn, gc.optim.Adam(1e-2))
        ref(copy.deepcopy(params), *batch)                      # makes ref.state
        ref.state, ref_params = copy.deepcopy(step.state), copy.deepcopy(params)
        expected = ref(ref_params, *batch)
        assert step(params, *batch) == expected
        for k in params:
            np.testing.assert_array_equal(params[k], ref_params[k])

    same_as_fresh(x, y)
    assert checked == []                                        # the fast path
    same_as_fresh(x, y.astype(np.float32))                      # a new batch dtype
    assert len(checked) == 1
    same_as_fresh(np.asfortranarray(x), y)                      # copied to C order
    same_as_fresh(x[:10], y[:10])                               # a new batch size
    params["W"] = params["W"].copy()                            # a new array, same shape
    same_as_fresh(x, y)
    step.state["m"]["b"] = step.state["m"]["b"].copy()          # a new moment array
    same_as_fresh(x, y)
    step.state["count"] = 0                                     # bias correction restarts
    same_as_fresh(x, y)
    n = len(checked)
    same_as_fresh(x, y)
    assert len(checked) == n                                    # fast again
    params["b"].dtype = np.int64                                # reinterpreted in place
    with pytest.raises(TypeError, match=r"\['b'\] is int64"):
        step(params, x, y)
    params["b"].dtype = np.float64
    same_as_fresh(x, y)                                         # each error below follows
    v = params["v"]                                             # a fast step
    params["v"] = params["b"]                                   # the same shape, one array
    with pytest.raises(ValueError, match="same array"):
        step(params, x, y)
    params["v"] = v
    same_as_fresh(x, y)
    params["v"] = 1.0
    with pytest.raises(TypeError, match=r"\['v'\] is float"):
        step(params, x, y)
    params["v"] = v
    same_as_fresh(x, y)
    v.setflags(write=False)                                     # frozen in place
    with pytest.raises(ValueError, match="read-only"):
        step(params, x, y)
    v.setflags(write=True)
    same_as_fresh(x, y)
    with pytest.raises(TypeError, match="structure"):
        step({**params, "extra": np.zeros(2)}, x, y)
    same_as_fresh(x, y)
    with pytest.raises(TypeError, match="structure"):
        step({"W": params["W"], "b": params["b"]}, x, y)
    same_as_fresh(x, y)
    renamed = {("u" if k == "v" else k): a for k, a in params.items()}    # same size, new key
    with pytest.raises(TypeError, match="structure"):
        step(renamed, x, y)
    same_as_fresh(x, y)
    w_shape = params["W"].shape
    params["W"].shape = w_shape[::-1]                           # reshaped in place
    with pytest.raises(TypeError, match=r"\['W'\] is float64\[4, 3\]"):
        step(params, x, y)
    params["W"].shape = w_shape
    same_as_fresh(x, y)
    moments = step.state["m"]
    step.state["m"] = {("u" if k == "v" else k): a for k, a in moments.items()}
    with pytest.raises(TypeError, match=r"step.state\['m'\] does not have the structure"):
        step(params, x, y)
    step.state["m"] = moments
    same_as_fresh(x, y)
    assert len(checked) > n


def test_a_larger_batch_after_a_fast_step_gets_its_own_constants():
    # np.arange(len(y)) is a constant of the batch size: the last entry's would be short
    def picked(p, x, y):
        return -np.mean((x @ p["W"])[np.arange(len(y)), y])

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 3)), rng.integers(0, 4, 16)
    step = gc.compile_step(picked, gc.optim.SGD(0.1))
    params = {"W": np.ones((3, 4))}
    for n in (8, 8, 16):
        expected = picked(params, x[:n], y[:n])                # before the update
        assert step(params, x[:n], y[:n]) == pytest.approx(expected)


def test_a_nested_batch_with_new_shapes_or_keys_is_traced_again():
    """A batch of dicts is keyed by its structure and every leaf's shape: a new
    inner shape or key never reuses the entry traced for another one."""
    def loss(p, b, y):
        return np.mean((b["x"] @ p["W"] - y) ** 2)

    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(3, 2))}
    step = gc.compile_step(loss, gc.optim.SGD(0.1))
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    expected = np.mean((x @ params["W"] - y) ** 2)
    assert step(params, {"x": x}, y) == pytest.approx(expected, rel=1e-12)
    before = params["W"].copy()
    with pytest.raises(gc.ShapeError, match=r"\(4, 5\) and \(3, 2\)"):
        step(params, {"x": rng.normal(size=(4, 5))}, y)
    with pytest.raises(KeyError, match="x"):
        step(params, {"z": x}, y)
    np.testing.assert_array_equal(params["W"], before)
    x2 = rng.normal(size=(6, 3))
    y2 = rng.normal(size=(6, 2))
    expected = np.mean((x2 @ params["W"] - y2) ** 2)
    assert step(params, {"x": x2}, y2) == pytest.approx(expected, rel=1e-12)


def test_an_epoch_with_bad_row_indices_is_refused_before_any_write():
    params, x, y = make(n=10)
    step = gc.compile_step(loss_fn, gc.optim.SGD(0.1))
    before = {k: v.copy() for k, v in params.items()}
    for perm, batch_size, num_batches in [(np.arange(10) + 1, 5, 2), (np.arange(10) - 1, 5, 2),
                                          (np.arange(9), 5, 2), (np.arange(10), 0, 1)]:
        with pytest.raises(IndexError, match=r"epoch: .*\[0, 10\).*test_train\.py"):
            step.epoch(params, (x, y), perm, batch_size, num_batches)
    for data in [(), (x, np.float64(1.0))]:
        with pytest.raises(ValueError, match="epoch: data must be arrays with a first axis"):
            step.epoch(params, data, np.arange(10), 5, 2)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert step.state is None or step.state["count"] == 0
    # no batches: nothing runs, even when perm holds less than a batch
    assert step.epoch(params, (x, y), np.arange(3), 5, 0).shape == (0,)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    assert step.epoch(params, (x, y), np.arange(10)[::-1], 5, 2).shape == (2,)


def test_train_that_raises_in_a_later_batch_leaves_the_params_as_they_were():
    """A bad label in the first epoch's last batch: the native epoch loop ran
    the batches before it; train puts the params back, and says so."""
    params, x, _ = make(n=40)
    labels = np.arange(40) % 3
    labels[37] = 3
    before = copy.deepcopy(params)

    def classify(p, x, y):
        return gc.nn.cross_entropy(np.tanh(x @ p["W"] + p["b"])[:, :3], y) + np.sum(p["v"] ** 2)

    with pytest.raises(IndexError, match="label out of range") as e:
        gc.train(classify, params, (x[:, :3], labels), gc.optim.Adam(0.1), batch_size=10,
                 epochs=3, shuffle=False, progress=False)
    assert e.value.__notes__ == ["gc.train: raised in epoch 1 of 3; the params are as they "
                                 "were before train"]
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_a_step_takes_its_batch_by_the_loss_s_parameter_names():
    def loss(p, x, y, lam=0.5):
        return loss_fn(p, x, y) + lam * np.sum(p["v"] ** 2)

    params, x, y = make()
    by_place = copy.deepcopy(params)
    step, ref = gc.compile_step(loss, gc.optim.Adam(0.1)), gc.compile_step(loss, gc.optim.Adam(0.1))
    for given, kwargs, args in [((), dict(x=x, y=y), (x, y)),
                                ((x,), dict(y=y, lam=0.0), (x, y, 0.0)),
                                ((), dict(y=y, x=x), (x, y, 0.5))]:
        assert step(params, *given, **kwargs) == ref(by_place, *args)
        for k in params:
            np.testing.assert_array_equal(params[k], by_place[k])
    with pytest.raises(TypeError, match=r"step\(loss\): got an unexpected keyword argument 'z'"):
        step(params, x, y, z=1.0)


def test_train_rejects_mismatched_data_lengths():
    params, x, y = make()
    with pytest.raises(ValueError, match="same length"):
        gc.train(loss_fn, params, (x, y[:-1]), gc.optim.SGD(0.1), progress=False)


def test_a_lowered_step_shows_one_module_with_the_update_fused_in():
    params, x, y = make()
    step = gc.compile_step(loss_fn, gc.optim.Adam())
    # lower: inspect's stages without the compile (this Adam step runs in the optimizer tests)
    info = step.lower(params, x, y)
    assert "def run(" in info.source
    ops = {n["node"].op for n in info.optimized.nx.nodes.values()}
    assert {"tanh", "matmul", "sqrt", "pow"} <= ops         # forward, backward and Adam in one graph


def test_update_kernels_write_new_params_in_place_without_a_copy_pass():
    # W5's shape: loss and update are one loop whose sum is the loss; the new w
    # goes straight into the user's array (no buffer, no write-back copy).
    def loss(p, x, y):
        return np.sum(np.log1p(np.exp(-y * (p["w"] * x))) + 0.5e-3 * p["w"] ** 2)

    rng = np.random.default_rng(0)
    w, x = rng.normal(size=(2, 50))
    y = np.sign(x)
    params, expected = {"w": w.copy()}, {"w": w.copy()}
    step = gc.compile_step(loss, gc.optim.SGD(lr=0.1))
    info = step.inspect(params, x, y)
    assert "write back" not in info.source and len(info.kernels) == 1
    np.testing.assert_array_equal(params["w"], expected["w"])   # inspect updates nothing
    before = step(params, x, y)
    g = gc.grad(loss)(expected, x, y)["w"]
    np.testing.assert_allclose(before, loss(expected, x, y), rtol=1e-12)
    np.testing.assert_allclose(params["w"], expected["w"] - 0.1 * g, rtol=1e-12)


def _sgd_by_hand(loss, params, lr, *batch):
    grads = gc.grad(loss)(params, *batch)
    return {k: params[k] - lr * grads[k] for k in params}


def _accumulating_gemms(source):
    """The driver's GEMMs that accumulate into a weight (beta = 1); `run` only
    (train_epoch inlines the same step)."""
    run = source.split("def run(", 1)[1].split("def train_epoch(", 1)[0]
    return [line for line in run.splitlines() if "blas.gemm(" in line and " += " in line]


def test_sgd_weight_updates_accumulate_in_the_weight_gradient_gemm():
    # W -= lr * h.T @ g is one BLAS call into W: no gradient buffer, no update pass
    params, x, y = make()
    expected = _sgd_by_hand(loss_fn, params, 0.1, x, y)
    step = gc.compile_step(loss_fn, gc.optim.SGD(lr=0.1))
    info = step.inspect(params, x, y)
    weights = [k for k in params if params[k].ndim == 2]
    assert sum(k.ops == ["matmul", "mul", "sub"] for k in info.kernels) == len(weights)
    assert len(_accumulating_gemms(info.source)) == len(weights)
    step(params, x, y)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12, atol=1e-14)


def test_layers_written_x_at_w_transposed_update_in_one_gemm_without_copies():
    # PyTorch's layout, W of (out, in): dW = (x.T @ g).T is computed as g.T @ x
    # and accumulated into W by one BLAS call; no kernel copies a transpose
    def loss(p, x, t):
        h = np.tanh(x @ p["W"].T + p["b"])
        return np.mean((h @ p["V"].T - t) ** 2)

    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(6, 5)), "b": rng.normal(size=6),
              "V": rng.normal(size=(2, 6))}
    x, t = rng.normal(size=(7, 5)), rng.normal(size=(7, 2))
    # the backward pass by hand in NumPy: gc.grad would share the rewrite tested
    h = np.tanh(x @ params["W"].T + params["b"])
    d_out = 2 * (h @ params["V"].T - t) / t.size
    d_z = (d_out @ params["V"]) * (1 - h ** 2)
    grads = {"W": d_z.T @ x, "b": d_z.sum(axis=0), "V": d_out.T @ h}
    expected = {k: params[k] - 0.1 * grads[k] for k in params}
    step = gc.compile_step(loss, gc.optim.SGD(lr=0.1))
    info = step.inspect(params, x, t)
    assert not any("transpose" in k.ops for k in info.kernels)
    assert len(_accumulating_gemms(info.source)) == 2
    step(params, x, t)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12)


def test_a_gradient_gemm_that_reads_an_updated_weight_is_not_folded():
    # dW = g @ V.T reads V and dV = W.T @ g reads W: a GEMM writing one while
    # the other still has to be read would use a half-updated step
    def loss(p, t):
        return np.sum((p["W"] @ p["V"] - t) ** 2)

    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(4, 3)), "V": rng.normal(size=(3, 2))}
    t = rng.normal(size=(4, 2))
    expected = _sgd_by_hand(loss, params, 0.01, t)
    step = gc.compile_step(loss, gc.optim.SGD(lr=0.01))
    assert not _accumulating_gemms(step.inspect(params, t).source)
    step(params, t)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12)


def matrix_head_loss(p, x, y):
    h = np.tanh(x @ p["W"] + p["b"])
    return np.mean((h @ p["V"] - y) ** 2)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_param_reshaped_in_place_between_steady_calls_is_refused_before_any_write(optimizer):
    # The steady-state call tests identities only; the compiled step tests
    # that the shapes still fit together before it reads or writes anything.
    # W (3, 4) as (4, 3) still fits the workspace (sized by V's and the
    # batch's dims), so only that test stops it.
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(3, 4)), "b": np.zeros(4), "V": rng.normal(size=(4, 2))}
    reference = {k: v.copy() for k, v in params.items()}
    x, y = rng.normal(size=(24, 3)), rng.normal(size=(24, 2))

    def new_step():
        return gc.compile_step(matrix_head_loss, gc.optim.SGD(0.1) if optimizer == "sgd"
                               else gc.optim.Adam(1e-2))
    step = new_step()
    step(params, x, y)
    step(params, x, y)
    assert step._last is not None
    for name, shape in [("W", (4, 3)), ("W", (2, 6)), ("V", (2, 4)), ("b", (2, 2))]:
        old = params[name].shape
        params[name].shape = shape
        before = _snapshot(params, step)
        with pytest.raises(TypeError, match=rf"\['{name}'\] is float64\[{shape[0]}, "):
            step(params, x, y)
        _assert_unchanged(before, params, step)
        params[name].shape = old
    step(params, x, y)
    fresh = new_step()
    for _ in range(3):     # the refused calls changed nothing: as a fresh step, call for call
        fresh(reference, x, y)
    for k in params:
        np.testing.assert_allclose(params[k], reference[k], rtol=1e-12)


def test_a_param_tied_only_to_a_constant_is_refused_when_reshaped_in_place():
    # No workspace slot is sized by W's dims, which only a captured constant
    # shares: `run` tests them against the constant's own (fixed) sizes.
    rng = np.random.default_rng(0)
    M = rng.normal(size=(3, 4))
    params = {"W": rng.normal(size=(3, 4))}
    x = np.ones(5)
    step = gc.compile_step(lambda p, x: np.sum(p["W"] * M) * np.mean(x), gc.optim.SGD(0.5))
    step(params, x)
    step(params, x)
    assert step._last is not None
    params["W"].shape = (6, 2)
    before = _snapshot(params, step)
    with pytest.raises(TypeError, match=r"\['W'\] is float64\[6, 2\]"):
        step(params, x)
    _assert_unchanged(before, params, step)


# ---- a batch that shares memory with the state the step writes in place ----
def elementwise_tie_loss(p, x):
    return np.sum(x * p["A"]) + np.sum(p["B"] ** 2)


def gemm_tie_loss(p, x):
    return np.sum(np.tanh(x @ p["A"])) + np.sum(p["B"] ** 2)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("loss, a_shape, b_shape, view", [
    (elementwise_tie_loss, (6,), (6,), lambda b: b),
    (elementwise_tie_loss, (6,), (6,), lambda b: b[::-1]),
    (elementwise_tie_loss, (5,), (6,), lambda b: b[1:]),
    (gemm_tie_loss, (6, 6), (6, 6), lambda b: b),
    (gemm_tie_loss, (6, 6), (6, 6), lambda b: b.T),
], ids=["itself", "reversed", "shifted", "gemm-itself", "gemm-transposed"])
def test_a_batch_sharing_memory_with_a_param_is_read_as_it_was_when_called(
        loss, a_shape, b_shape, view, optimizer):
    # The step writes params in place; a batch that is (a view of) one is read
    # as if copied at the call, as gc.grad and PyTorch read it. In place, the
    # update of B overwrote x before A's update read it (itself, shifted, gemm).
    rng = np.random.default_rng(0)
    params = {"A": rng.normal(size=a_shape), "B": rng.normal(size=b_shape)}
    reference = copy.deepcopy(params)

    def new_step():
        return gc.compile_step(loss, gc.optim.SGD(0.1) if optimizer == "sgd"
                               else gc.optim.Adam(0.05))
    step, fresh = new_step(), new_step()
    plain = view(rng.normal(size=b_shape))
    tied = view(params["B"])
    # plain calls first: the steady-state path must not pass a tied batch either
    for x, ref_x in [(plain, plain), (plain, plain), (tied, None), (tied, None),
                     (view(params["B"]), None), (plain, plain)]:
        ref_x = view(reference["B"]).copy() if ref_x is None else ref_x
        assert step(params, x) == fresh(reference, ref_x)
        for k in params:
            np.testing.assert_array_equal(params[k], reference[k])


def test_a_batch_that_is_an_optimizer_slot_is_read_as_it_was():
    params = {"A": np.linspace(-1, 1, 6), "B": np.linspace(2, 3, 6)}
    reference = copy.deepcopy(params)
    step, fresh = (gc.compile_step(elementwise_tie_loss, gc.optim.Adam(0.1)) for _ in range(2))
    step(params, np.ones(6))
    fresh(reference, np.ones(6))
    for _ in range(3):
        moment = step.state["m"]["A"]
        assert step(params, moment) == fresh(reference, fresh.state["m"]["A"].copy())
        for k in params:
            np.testing.assert_array_equal(params[k], reference[k])
            np.testing.assert_array_equal(step.state["m"][k], fresh.state["m"][k])


def test_memory_mapped_batches_keep_the_fast_path_unless_they_map_a_param(tmp_path):
    mapped = np.memmap(tmp_path / "rows.bin", dtype=np.float64, mode="w+", shape=(3, 6))
    mapped[:] = np.arange(18.0).reshape(3, 6) / 18
    rows = np.asarray(mapped)       # ndarrays whose memory a file mapping owns
    params = {"A": np.linspace(-1, 1, 6), "B": np.linspace(2, 3, 6)}
    step = gc.compile_step(elementwise_tie_loss, gc.optim.SGD(0.1))
    step(params, rows[0])
    step(params, rows[1])
    assert step._last is not None and step._last.memory.all_owned
    # a param in the same file as the batch: the batch is copied
    tied = {"A": rows[2], "B": np.linspace(2, 3, 6)}
    reference = copy.deepcopy(tied)
    for _ in range(3):
        x = rows[2][::-1]
        expected = elementwise_tie_loss(reference, x.copy())
        reference = {"A": reference["A"] - 0.1 * x, "B": 0.8 * reference["B"]}
        assert step(tied, x) == pytest.approx(expected, rel=1e-15)
        for k in tied:
            np.testing.assert_allclose(tied[k], reference[k], rtol=1e-15)
