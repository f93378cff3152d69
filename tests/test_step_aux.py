"""compile_step(loss_fn, optimizer, has_aux=True): loss_fn returns (loss, aux)
and the step (loss, aux), aux computed before the update, as
value_and_grad(has_aux=True) gives it; through the steady path, the checked
path and an exported module."""
import collections
import numpy as np
import pytest

import graphc as gc

Metrics = collections.namedtuple("Metrics", "accuracy logits")
rng = np.random.default_rng(0)
X = rng.normal(size=(16, 4)).astype(np.float32)
Y = rng.integers(0, 3, 16)


def _params():
    return {"W": rng.normal(size=(4, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}


def loss(p, x, y):
    logits = x @ p["W"] + p["b"]
    accuracy = np.mean(np.argmax(logits, axis=1) == y)
    return gc.nn.cross_entropy(logits, y), Metrics(accuracy, logits)


def _reference(p, steps, x=X, y=Y):
    """value_and_grad(has_aux=True) and Adam's update, one step at a time."""
    p = {k: v.copy() for k, v in p.items()}
    reference = gc.compile_step(lambda p, x, y: loss(p, x, y)[0], gc.optim.Adam(0.01))
    out = []
    for _ in range(steps):
        (value, aux), _ = gc.value_and_grad(loss, has_aux=True)(p, x, y)
        out.append((reference(p, x, y), aux))
        assert float(value) == out[-1][0]
    return out, p


def test_a_step_returns_its_loss_and_aux_from_before_the_update():
    p = _params()
    want, want_p = _reference(p, 4)
    step = gc.compile_step(loss, gc.optim.Adam(0.01), has_aux=True)
    got = [step(p, X, Y) for _ in range(2)]
    got += [step(p, X.copy(), Y) for _ in range(2)]     # a new batch array: the checked path
    kept = got[0][1].logits.copy()
    for (loss_value, aux), (want_loss, want_aux) in zip(got, want):
        assert type(loss_value) is float and loss_value == want_loss
        assert type(aux) is Metrics and type(aux.accuracy) is np.ndarray
        assert aux.accuracy.shape == () and aux.accuracy.dtype == np.float64    # NumPy's mean
        np.testing.assert_array_equal(aux.accuracy, want_aux.accuracy)
        np.testing.assert_allclose(aux.logits, want_aux.logits, rtol=1e-6)
    np.testing.assert_array_equal(got[0][1].logits, kept)   # later steps never write it
    for k in p:
        np.testing.assert_allclose(p[k], want_p[k], rtol=1e-6)


def test_an_exported_aux_step_returns_the_same(import_exported):
    p = _params()
    step = gc.compile_step(loss, gc.optim.Adam(0.01), has_aux=True)
    step(p, X, Y)
    module = import_exported(step, "aux_step")
    exported = {k: v.copy() for k, v in p.items()}
    for _ in range(3):
        (got_loss, got_aux), (want_loss, want_aux) = module.step(exported, X, Y), step(p, X, Y)
        assert got_loss == want_loss and type(got_aux) is tuple       # namedtuples as tuples
        assert got_aux[0].shape == () and got_aux[0].dtype == want_aux.accuracy.dtype
        np.testing.assert_array_equal(got_aux[0], want_aux.accuracy)
        np.testing.assert_array_equal(got_aux[1], want_aux.logits)


def test_an_aux_step_has_no_epoch_loop_and_a_plain_loss_is_refused():
    step = gc.compile_step(loss, gc.optim.SGD(0.1), has_aux=True)
    with pytest.raises(ValueError, match="has_aux=True"):
        step.epoch(_params(), (X, Y), np.arange(16), 8, 2)
    plain = gc.compile_step(lambda p, x, y: loss(p, x, y)[0], gc.optim.SGD(0.1), has_aux=True)
    with pytest.raises(TypeError, match="pair"):
        plain(_params(), X, Y)


def test_an_exported_step_keeps_each_signature_s_aux_and_a_none_aux(import_exported):
    def by_rows(p, x, y):       # a list as long as the batch: its tree differs by signature
        value, metrics = loss(p, x, y)
        return value, ([metrics.logits[i].sum() for i in range(len(x))], None)

    p = _params()
    step = gc.compile_step(by_rows, gc.optim.SGD(0.1), has_aux=True)
    step(p, X[:6], Y[:6])       # (a few rows: each is an output of its own)
    step(p, X[:3], Y[:3])
    module = import_exported(step, "rows_aux_step")
    exported = {k: v.copy() for k, v in p.items()}
    for rows in (6, 3, 6):
        got, want = module.step(exported, X[:rows], Y[:rows]), step(p, X[:rows], Y[:rows])
        assert got[0] == want[0] and len(got[1][0]) == rows and got[1][1] is None
        np.testing.assert_array_equal(got[1][0], want[1][0])
    none_aux = gc.compile_step(lambda p, x, y: (loss(p, x, y)[0], None), gc.optim.SGD(0.1),
                               has_aux=True)
    none_aux(p, X, Y)
    module = import_exported(none_aux, "none_aux_step")
    assert module.step(exported, X, Y)[1] is None
