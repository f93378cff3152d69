"""Each compile_step and gc.train traces the loss as it is now.

Guards against caching traces by function identity (commit 96e2ce2, reverted):
a notebook that edits a helper or a setting and trains again must get the
new model, as in NumPy, where every call runs the current code.
"""
import numpy as np

import graphc as gc

WEIGHT = 0.0
CONFIG = {"scale": 1.0}


def _data():
    rng = np.random.default_rng(0)
    return {"w": rng.normal(size=3)}, rng.normal(size=(8, 3)), rng.normal(size=8)


def _first_losses(loss, change):
    """The first step's loss before and after `change()`, from two new steps."""
    params, x, y = _data()
    before = gc.compile_step(loss, gc.optim.SGD(0.01))({"w": params["w"].copy()}, x, y)
    change()
    after = gc.compile_step(loss, gc.optim.SGD(0.01))({"w": params["w"].copy()}, x, y)
    return before, after, float(loss(params, x, y))


def test_a_redefined_helper_is_traced_again():
    helpers = {"forward": lambda p, x: x @ p["w"]}

    def loss(p, x, y):
        return np.mean((helpers["forward"](p, x) - y) ** 2)

    def redefine():
        helpers["forward"] = lambda p, x: np.tanh(x @ p["w"])
    before, after, expected = _first_losses(loss, redefine)
    assert after != before
    np.testing.assert_allclose(after, expected, rtol=1e-12)


def test_a_global_read_in_a_generator_is_traced_again():
    def loss(p, x, y):
        return np.mean((x @ p["w"] - y) ** 2) + sum(WEIGHT * np.sum(v ** 2) for v in p.values())

    def change():
        global WEIGHT
        WEIGHT = 10.0
    try:
        before, after, expected = _first_losses(loss, change)
    finally:
        globals()["WEIGHT"] = 0.0
    assert after != before
    np.testing.assert_allclose(after, expected, rtol=1e-12)


def test_changed_defaults_and_config_are_traced_again():
    def loss(p, x, y, scale=1.0):
        return scale * CONFIG["scale"] * np.mean((x @ p["w"] - y) ** 2)

    def change():
        loss.__defaults__ = (2.0,)
        CONFIG["scale"] = 3.0
    try:
        before, after, expected = _first_losses(loss, change)
    finally:
        CONFIG["scale"] = 1.0
    np.testing.assert_allclose(after, 6 * before, rtol=1e-12)
    np.testing.assert_allclose(after, expected, rtol=1e-12)


def test_a_second_train_call_sees_an_edited_helper():
    params, x, y = _data()
    helpers = {"scale": lambda v: v}

    def loss(p, x, y):
        return helpers["scale"](np.mean((x @ p["w"] - y) ** 2))

    start = params["w"].copy()
    one = gc.train(loss, {"w": start.copy()}, (x, y), gc.optim.SGD(0.01), batch_size=8,
                   epochs=1, shuffle=False, progress=False)
    helpers["scale"] = lambda v: 4.0 * v
    four = gc.train(loss, {"w": start.copy()}, (x, y), gc.optim.SGD(0.01), batch_size=8,
                    epochs=1, shuffle=False, progress=False)
    np.testing.assert_allclose(four, 4 * one, rtol=1e-12)
