"""A jitted function called with arguments that change from call to call.

A call goes one of three ways: the last signature's written-out flattener
(Compiled._hot), the look-up by its arrays' signature, or the general path
(conversion, tracing, compiling). Whichever it takes, its result must be what
the same function computes in NumPy, and a call must never take a compiled
signature that is not its own.
"""
import collections

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc import api, pytree

Params = collections.namedtuple("Params", "W b")


def model(p, x):
    """A 0-d loss and a dict: both kinds of output the outputs function builds."""
    h = np.tanh(x @ p["W"] + p["b"]) if isinstance(p, dict) else np.tanh(x @ p.W + p.b)
    return (h ** 2).sum(), {"h": h, "twice": 2 * h}


COMPILED = gc.jit(model)
W = np.linspace(-1, 1, 6).reshape(3, 2)
B = np.array([0.5, -0.25])


def _params(kind, dtype):
    W_, b = W.astype(dtype), B.astype(dtype)
    return {"dict": {"W": W_, "b": b},
            "reordered": {"b": b, "W": W_},
            "extra key": {"W": W_, "b": b, "unused": b},
            "namedtuple": Params(W_, b),
            "float bias": {"W": W_, "b": 0.5}}[kind]


def _batch(rows, layout, dtype):
    x = np.cos(np.arange(rows * 3.0)).reshape(rows, 3).astype(dtype)
    return {"C": x, "Fortran": np.asfortranarray(x), "strided": np.repeat(x, 2, axis=1)[:, ::2],
            "read-only": x.copy()}[layout]


calls = st.tuples(st.sampled_from(["dict", "reordered", "extra key", "namedtuple", "float bias"]),
                  st.sampled_from([4, 5]),
                  st.sampled_from(["C", "Fortran", "strided", "read-only"]),
                  st.sampled_from([np.float64, np.float32]))


@pytest.mark.filterwarnings("ignore::graphc.api.RecompileWarning")
@settings(max_examples=25, deadline=None)
@given(st.lists(calls, min_size=2, max_size=8))
def test_each_call_equals_numpy_whichever_way_it_goes(sequence):
    for kind, rows, layout, dtype in sequence:
        p, x = _params(kind, dtype), _batch(rows, layout, dtype)
        if layout == "read-only":
            x.setflags(write=False)
        loss, outs = COMPILED(p, x)
        want_loss, want = model(p, x)
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12)
        assert type(loss) is np.ndarray and loss.shape == ()
        assert loss.dtype == np.result_type(want_loss)
        np.testing.assert_allclose(loss, want_loss, **tol)
        assert sorted(outs) == ["h", "twice"]
        for name in outs:
            assert outs[name].shape == want[name].shape
            assert outs[name].dtype == want[name].dtype
            np.testing.assert_allclose(outs[name], want[name], **tol)


def moded(p, x, mode):
    """Static values equal across types (1, True, 1.0) trace apart."""
    scale = {bool: 2.0, int: 3.0, float: 4.0, str: 5.0}[type(mode)]
    return (x @ p["W"] + p["b"]) * scale * (1.0 if mode in ("train", 1) else -1.0)


STATIC = gc.jit(moded, static_argnums=2)


@pytest.mark.filterwarnings("ignore::graphc.api.RecompileWarning")
@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([True, False, 1, 1.0, "train", "eval"]),
                          st.sampled_from([4, 5]), st.sampled_from(["dict", "float bias"])),
                min_size=2, max_size=8))
def test_calls_with_static_arguments_take_their_own_signature(sequence):
    # the last static values' entry (Compiled._hot_static) only for equal ones of one type
    for mode, rows, kind in sequence:
        p, x = _params(kind, np.float64), _batch(rows, "C", np.float64)
        np.testing.assert_allclose(STATIC(p, x, mode), moded(p, x, mode), rtol=1e-12)
    assert STATIC._hot_static is None or STATIC._hot_static[2] in STATIC._cache.values()


def test_the_last_signature_s_flattener_is_taken_and_left_for_another():
    f = gc.jit(lambda p, x: x @ p["W"] + p["b"])
    p, x = {"W": W, "b": B}, np.ones((4, 3))
    f(p, x)
    f(p, x)         # found by its signature: its flattener is made now
    flatten_arguments, entry = f._hot
    assert flatten_arguments((p, x)) is not None
    wider = np.ones((5, 3))
    np.testing.assert_allclose(f(p, wider), wider @ W + B)
    f(p, wider)
    assert f._hot[1] is not entry and len(f._cache) == 2
    np.testing.assert_allclose(f(p, x), x @ W + B)
    np.testing.assert_allclose(f({"W": W, "b": np.float64(0.5)}, x), x @ W + 0.5)


def test_outputs_are_built_the_same_by_a_walk(monkeypatch):
    """Past pytree.WRITTEN_OUT_AT_MOST outputs they are built by a walk, not
    one written-out expression: the same results, and a step's inspect (whose
    outputs include those written back) runs."""
    monkeypatch.setattr(pytree, "WRITTEN_OUT_AT_MOST", 0)
    p, x = {"W": W, "b": B}, np.ones((4, 3))
    loss, outs = gc.jit(model)(p, x)
    want_loss, want = model(p, x)
    assert type(loss) is np.ndarray and loss.shape == () and loss == pytest.approx(want_loss)
    np.testing.assert_allclose(outs["twice"], want["twice"])
    step = gc.compile_step(lambda p, x: np.sum((x @ p["W"] + p["b"]) ** 2), gc.optim.SGD(0.1))
    params = {"W": W.copy(), "b": B.copy()}
    lowered = step.inspect(params, x)
    assert lowered.compile_seconds is not None
    np.testing.assert_array_equal(params["W"], W)     # inspect never updates the caller's


def test_keys_equal_to_strings_are_not_taken_for_them():
    # np.str_("a") == "a", with the same hash: the TreeDefs differ by key type
    f = gc.jit(lambda d: {k: v * 2.0 for k, v in d.items()})
    a = np.ones(2)
    for key in [np.str_("a"), "a", "a", np.str_("a"), np.str_("a"), "a"]:
        (out_key,) = f({key: a})
        assert type(out_key) is type(key)


@pytest.mark.filterwarnings("ignore::graphc.api.RecompileWarning")
def test_an_entry_dropped_from_the_cache_is_not_called_any_more():
    f = gc.jit(lambda x: x + 1.0)
    x = np.zeros(1)
    f(x)
    f(x)                # found by its signature: the hot entry
    for n in range(2, api.MAX_ENTRIES + 3):
        f(np.zeros(n))
    assert all(k[1] != api._array_signature_key([x]) for k in f._cache)    # x's dropped
    np.testing.assert_array_equal(f(x), x + 1.0)
    f(x)
    assert f._hot[1] is f._cache[next(reversed(f._cache))]
    assert len(f._cache) == api.MAX_ENTRIES


@pytest.mark.filterwarnings("ignore::graphc.api.RecompileWarning")
def test_a_python_float_takes_the_fast_paths_and_keeps_its_weak_type():
    # a functional update with its learning rate a Python float: NumPy keeps
    # float32 params float32 with it, and promotes them with an np.float64 or
    # a 0-d float64 array, which must not take the float's compiled signature
    def update(p, lr):
        return {k: v - lr * 2 * v for k, v in p.items()}

    f = gc.jit(update)
    p = {"w": np.ones(3, np.float32), "b": np.ones((), np.float32)}
    for lr in [0.1, 0.1, 0.25, np.float64(0.1), 0.1, np.array(0.1), 0.5, 0.5, np.float32(0.1),
               0.1, 1, 0.1]:
        got, want = f(p, lr), update(p, lr)
        for k in p:
            assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, (lr, k)
            np.testing.assert_allclose(got[k], want[k], rtol=1e-6)
    hot_entry = f._hot[1]
    f._hot = None               # the look-up by signature, which converts the float too
    f(p, 0.1)
    assert f._hot[1] is hot_entry and not hot_entry.convert_next   # (not refused by Numba)
