"""Steps of one loss function with equal optimizers share their traces (train.py, _SHARED)."""
import gc as garbage
import importlib
import weakref

import numpy as np
import pytest

import graphc as gc
from graphc import api

train_module = importlib.import_module("graphc.train")     # graphc.train is the function

SCALE = 1.0       # read by scaled_loss; changed by a test


def fresh_loss():
    """A new function each call, so no earlier test has traced it."""
    def loss(p, x, y):
        return np.mean((np.tanh(x @ p["w"]) - y) ** 2)
    return loss


def scaled_loss(p, x, y):
    return SCALE * np.mean((x @ p["w"] - y) ** 2)


def _data(seed=0, n=12):
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=3)}, rng.normal(size=(n, 3)), rng.normal(size=n)


@pytest.fixture
def traces(monkeypatch):
    """How many signatures have been traced and compiled since the test began."""
    count = []
    real = api.Compiled._compile

    def counting(*args, **kwargs):
        count.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(api.Compiled, "_compile", counting)
    return count


def _run(step, steps=3, seed=0):
    params, x, y = _data(seed)
    losses = [step(params, x, y) for _ in range(steps)]
    return losses, params


def test_a_second_step_of_the_same_function_traces_nothing_and_starts_afresh(traces):
    loss = fresh_loss()
    first = gc.compile_step(loss, gc.optim.Adam(0.05))
    losses, params = _run(first)
    assert len(traces) == 1
    second = gc.compile_step(loss, gc.optim.Adam(0.05))
    again, params_again = _run(second)
    assert len(traces) == 1
    assert second.state["count"] == 3 and first.state["count"] == 3
    assert again == losses          # its own fresh state: the same three steps
    np.testing.assert_array_equal(params_again["w"], params["w"])


def test_a_second_train_call_traces_nothing(traces):
    loss = fresh_loss()
    params, x, y = _data(n=22)
    gc.train(loss, params, (x, y), gc.optim.SGD(0.1), batch_size=8, epochs=1, progress=False)
    assert len(traces) == 2         # batches of 8, and the last one of 6
    again = {"w": params["w"].copy()}
    h = gc.train(loss, again, (x, y), gc.optim.SGD(0.1), batch_size=8, epochs=3, progress=False)
    assert len(traces) == 2
    assert np.isfinite(h).all()


@pytest.mark.parametrize("other", [gc.optim.Adam(0.01), gc.optim.Adam(0.05, eps=1e-6),
                                   gc.optim.SGD(0.05)])
def test_other_optimizer_settings_trace_again(traces, other):
    loss = fresh_loss()
    reference, _ = _run(gc.compile_step(loss, gc.optim.Adam(0.05)))
    losses, _ = _run(gc.compile_step(loss, other))
    assert len(traces) == 2
    assert losses[1:] != reference[1:]


def test_a_changed_global_number_is_traced_again():
    global SCALE
    try:
        SCALE = 1.0
        one, _ = _run(gc.compile_step(scaled_loss, gc.optim.SGD(0.01)), steps=1)
        SCALE = 3.0
        three, _ = _run(gc.compile_step(scaled_loss, gc.optim.SGD(0.01)), steps=1)
    finally:
        SCALE = 1.0
    assert three[0] == pytest.approx(3 * one[0])


def test_closures_over_other_numbers_are_not_shared():
    def make(scale):
        return lambda p, x, y: scale * np.mean((x @ p["w"] - y) ** 2)
    one, _ = _run(gc.compile_step(make(1.0), gc.optim.SGD(0.01)), steps=1)
    two, _ = _run(gc.compile_step(make(2.0), gc.optim.SGD(0.01)), steps=1)
    assert two[0] == pytest.approx(2 * one[0])


def test_a_step_keeps_the_optimizer_settings_it_was_made_with():
    loss = fresh_loss()
    optimizer = gc.optim.SGD(0.1)
    step = gc.compile_step(loss, optimizer)
    optimizer.lr = 0.5                              # after compile_step: not this step's
    params, x, y = _data()
    start = params["w"].copy()
    step(params, x, y)
    expected = {"w": start.copy()}
    reference = gc.compile_step(lambda p, x, y: loss(p, x, y), gc.optim.SGD(0.1))
    reference(expected, x, y)
    np.testing.assert_array_equal(params["w"], expected["w"])
    assert gc.compile_step(loss, optimizer).optimizer.lr == 0.5


def test_the_shared_cache_does_not_keep_a_loss_function_alive():
    def local_loss(p, x, y):
        return np.sum((x @ p["w"] - y) ** 2)
    step = gc.compile_step(local_loss, gc.optim.SGD(0.01))
    _run(step, steps=1)
    assert local_loss in train_module._SHARED
    alive = weakref.ref(local_loss)
    del step, local_loss
    garbage.collect()
    assert alive() is None


def test_export_writes_only_the_steps_own_signatures(tmp_path):
    loss = fresh_loss()
    first = gc.compile_step(loss, gc.optim.SGD(0.02))
    _run(first)
    params, x, y = _data(n=5)
    second = gc.compile_step(loss, gc.optim.SGD(0.02))
    second(params, x, y)
    assert len(second._compiled._cache) == 2       # both batch sizes, shared
    gc.export(second, tmp_path / "m.py")
    assert (tmp_path / "m.py").read_text().count("def run_") == 1
