"""Learning-rate schedules: `lr` a function of the steps taken before this one,
traced into the compiled update. Checked against NumPy replays of SGD and
Adam with the same rates, through compile_step, gc.train and gc.export."""
import numpy as np
import pytest

import graphc as gc

rng = np.random.default_rng(0)
X = rng.normal(size=(32, 4))
Y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=32)


def loss(p, x, y):
    return np.mean((x @ p["w"] + p["b"] - y) ** 2)


def _grads(w, b, x, y):
    r = 2 * (x @ w + b - y) / len(y)
    return x.T @ r, np.sum(r)


def warmup(t):
    return 0.05 * np.minimum(1.0, (t + 1) / 4)


def decay(t):
    return 0.1 / (1 + t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_with_a_decaying_rate_equals_numpy_step_by_step(dtype):
    p = {"w": np.zeros(4, dtype), "b": np.zeros((), dtype)}
    step = gc.compile_step(loss, gc.optim.SGD(decay, momentum=0.5))
    w, b, bw, bb = np.zeros(4), 0.0, np.zeros(4), 0.0
    x, y = X.astype(dtype), Y.astype(dtype)
    for t in range(6):
        step(p, x, y)
        gw, gb = _grads(w, b, x.astype(np.float64), y.astype(np.float64))
        bw, bb = (gw, gb) if t == 0 else (0.5 * bw + gw, 0.5 * bb + gb)
        w, b = w - decay(t) * bw, b - decay(t) * bb
        np.testing.assert_allclose(p["w"], w, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert step.state["count"] == 6
    # the rate is cast to the params' dtype: a float32 model's update stays float32
    graph = step.inspect(p, x, y).optimized
    assert {n.dtype for n in graph.topo() if n.size > 1 and n.dtype.kind == "f"} == {
        np.dtype(dtype)}


def test_adamw_with_warmup_equals_numpy():
    p = {"w": np.zeros(4), "b": np.zeros(())}
    step = gc.compile_step(loss, gc.optim.AdamW(warmup, weight_decay=0.1))
    w, b = np.zeros(4), 0.0
    m = v = np.zeros(5)
    for t in range(7):
        step(p, X, Y)
        gw, gb = _grads(w, b, X, Y)
        g, theta = np.append(gw, gb), np.append(w, b) * (1 - warmup(t) * 0.1)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        mhat, vhat = m / (1 - 0.9 ** (t + 1)), v / (1 - 0.999 ** (t + 1))
        theta = theta - warmup(t) * mhat / (np.sqrt(vhat) + 1e-8)
        w, b = theta[:4], theta[4]
        np.testing.assert_allclose(np.append(p["w"], p["b"]), theta, rtol=1e-10, atol=1e-12)


def test_train_counts_the_steps_for_the_schedule_as_the_steps_do():
    p1 = {"w": np.zeros(4), "b": np.zeros(())}
    p2 = {k: v.copy() for k, v in p1.items()}
    opt = gc.optim.Adam(warmup)
    history = gc.train(loss, p1, (X, Y), opt, batch_size=8, epochs=3, shuffle=False)
    step = gc.compile_step(loss, opt)
    losses = [step(p2, X[i:i + 8], Y[i:i + 8]) for _ in range(3) for i in range(0, 32, 8)]
    np.testing.assert_allclose(history, np.mean(np.reshape(losses, (3, 4)), axis=1), rtol=1e-12)
    for k in p1:
        np.testing.assert_allclose(p1[k], p2[k], rtol=1e-12)


def test_an_exported_step_continues_the_schedule(import_exported):
    p = {"w": np.zeros(4), "b": np.zeros(())}
    step = gc.compile_step(loss, gc.optim.SGD(decay))
    for _ in range(3):
        step(p, X, Y)
    module = import_exported(step, "scheduled_step")
    exported = {k: v.copy() for k, v in p.items()}
    for _ in range(3):
        assert module.step(exported, X, Y) == step(p, X, Y)
    np.testing.assert_array_equal(exported["w"], p["w"])


def test_a_rate_is_a_number_at_least_zero_or_a_schedule():
    with pytest.raises(ValueError, match="invalid lr"):
        gc.optim.Adam(-0.1)
    for bad, kind in (("1e-3", "a str"), (None, "a NoneType"), (True, "a bool"),
                      (np.ones(2), "a ndarray")):
        with pytest.raises(gc.GraphcError, match=f"invalid lr: .* is {kind}; it must be a number"):
            gc.optim.SGD(bad)
    with pytest.raises(TypeError, match="invalid eps: .* is a list"):
        gc.optim.Adam(0.1, eps=[1e-8])
    assert gc.optim.SGD(np.array(0.5)).lr == 0.5 and gc.optim.Adam(np.float32(0.25)).lr == 0.25
    opt = gc.optim.SGD(decay)
    assert opt.lr is decay and "decay" in repr(opt)
    with pytest.raises(ValueError, match="cannot change"):
        opt.lr = warmup


@pytest.mark.parametrize("schedule, what", [
    (lambda t: None, "a NoneType"), (lambda t: "0.1", "a str"),
    (lambda t: np.full((1, 1), 0.1), r"an array of shape \(1, 1\)"),
    (lambda t: np.ones((2, 1)) * t, r"an array of shape \(2, 1\)")])
def test_a_schedule_returns_one_number_or_is_refused_before_anything_runs(schedule, what):
    p = {"w": np.zeros(4), "b": np.zeros(())}
    with pytest.raises(ValueError, match=f"schedule returned {what}; it must return one number.*"
                                         f"test_schedules.py"):
        gc.compile_step(loss, gc.optim.SGD(schedule))(p, X, Y)
    assert not p["w"].any() and not p["b"].any()
