"""Hypothesis: random broadcasting shapes and reductions, compiled vs NumPy."""
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphc as gc
from graphc import api

# Most examples compile a module of their own (~1-2 s): few in the normal
# suite, which must stay near 10 minutes in CI, and many under `make fuzz`.
EXAMPLES = int(os.environ.get("GRAPHC_FUZZ_EXAMPLES", "10"))

BINARY = {
    "add": np.add, "mul": np.multiply, "sub": np.subtract, "maximum": np.maximum,
    "div": lambda a, b: a / (np.abs(b) + 1.0),
}


@settings(max_examples=EXAMPLES)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4),
       op=st.sampled_from(sorted(BINARY)), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2 ** 16))
def test_broadcasting_binary_ops(shapes, op, dtype, seed):
    rng = np.random.default_rng(seed)
    a, b = (rng.normal(size=s).astype(dtype) for s in shapes.input_shapes)
    fn = BINARY[op]
    f = gc.jit(fn)
    out = f(a, b)
    expected = fn(a, b)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(out, f.interpret(a, b), rtol=1e-6)


@settings(max_examples=EXAMPLES)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), data=st.data())
def test_reductions_over_random_axes(shape, data):
    axes = data.draw(st.sets(st.integers(-len(shape), len(shape) - 1), max_size=len(shape)))
    axes = tuple(sorted({a % len(shape) for a in axes})) or None
    keepdims = data.draw(st.booleans())
    x = np.random.default_rng(0).normal(size=shape)
    f = lambda x: (np.sum(x, axis=axes, keepdims=keepdims),  # noqa: E731
                   np.max(x, axis=axes, keepdims=keepdims))
    loss = lambda x: np.sum(f(x)[0] ** 2)  # noqa: E731
    # the values and the gradient from one module: one compile, not two
    values, grad = gc.jit(lambda x: (f(x), gc.grad(loss)(x)))(x)
    for got, want in zip(values, f(x)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    api.check_grad_values(loss, (x,), (grad,), (0,))


@settings(max_examples=int(os.environ.get("GRAPHC_FUZZ_EXAMPLES", "3")))  # a module each (~3-6 s);
# test_tracing checks the fixed forms
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), data=st.data())
def test_take_and_take_along_axis_match_numpy_with_gradients(shape, data):
    """np.take and np.take_along_axis (how a cross-entropy picks each row's label)
    at random shapes, axes and in-range indices, negative ones included."""
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    x = rng.normal(size=shape)
    # take_along_axis: indices of x's rank, any length along `axis`, 1 or x's size elsewhere
    idx_shape = tuple(data.draw(st.integers(1, 3)) if d == axis % len(shape) else
                      data.draw(st.sampled_from([1, shape[d]])) for d in range(len(shape)))
    along = rng.integers(-n, n, size=idx_shape)
    flat = rng.integers(-x.size, x.size, size=data.draw(hnp.array_shapes(max_dims=2, max_side=3)))
    cases = [(lambda x, i: np.take_along_axis(x, i, axis=axis), along),
             (lambda x, i: np.take(x, i, axis=axis), along.ravel()),
             (lambda x, i: np.take(x, i), flat)]
    losses = [lambda x, fn=fn, idx=idx: np.sum(fn(x, idx) ** 2) for fn, idx in cases]
    # every form's value and gradient from one module: one compile, not six
    together = gc.jit(lambda x, idxs: [(fn(x, i), gc.grad(loss)(x))
                                       for (fn, _), i, loss in zip(cases, idxs, losses)])
    results = together(x, [idx for _, idx in cases])
    for (fn, idx), loss, (value, grad) in zip(cases, losses, results):
        np.testing.assert_array_equal(value, fn(x, idx))
        np.testing.assert_array_equal(gc.jit(fn).interpret(x, idx), fn(x, idx))
        api.check_grad_values(loss, (x,), (grad,), (0,))


def _max_and_min(axis):
    return lambda x: (np.max(np.abs(x) - 1, axis=axis), np.min(x, axis=axis))


# one function per rank and axis, compiled once per dtype: new lengths reuse it
_MAX_OF = {(r, a): (_max_and_min(a), gc.jit(_max_and_min(a)))
           for r, a in [(1, None), (2, -1), (3, (1, 2))]}


@pytest.mark.filterwarnings("ignore::graphc.api.RecompileWarning")   # new lengths, on purpose
# rows from 2: a single row is a size-1 axis, which compiles modules of its
# own (the suite's time) and is not what this test is about
@given(rows=st.integers(2, 3), length=st.integers(1, 300), rank_axis=st.sampled_from(
    sorted(_MAX_OF, key=str)), dtype=st.sampled_from([np.float32, np.int32]),
    specials=st.lists(st.tuples(st.integers(0, 10 ** 6), st.sampled_from(
        [np.nan, np.inf, -np.inf, -0.0, 0.0])), max_size=4), seed=st.integers(0, 2 ** 16))
def test_max_and_min_over_long_rows_with_special_values(rows, length, rank_axis, dtype,
                                                        specials, seed):
    # rows of MAX_LANES (64) or more run in lanes folded at the end of the row:
    # lengths around it, and NaN (which must win) in the blocks and the rest
    r, axis = rank_axis
    shape = {1: (length,), 2: (rows, length), 3: (rows, 2, length)}[r]
    x = np.random.default_rng(seed).normal(size=shape) * 100
    if np.dtype(dtype).kind == "f":
        flat = x.reshape(-1)
        for pos, value in specials:
            flat[pos % flat.size] = value
    x = x.astype(dtype)
    fn, compiled = _MAX_OF[rank_axis]
    for got, want in zip(compiled(x), fn(x)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.filterwarnings("ignore::graphc.api.RecompileWarning")   # new lengths, on purpose
def test_a_float32_sum_and_max_of_one_loop_share_its_lanes():
    # a float32 sum over a 1-D loop adds in blocks of SUM_BLOCK; with a max
    # in the same loop it folds them inside the max's lanes
    fn = lambda x: (np.sum(x * 2), np.max(x * 2), np.min(x))     # noqa: E731
    compiled = gc.jit(fn)
    rng = np.random.default_rng(0)
    for n in (1, 63, 64, 65, 4095, 4096, 4097, 10_000, 262_145):
        x = rng.standard_normal(n).astype(np.float32)
        got, want = compiled(x), fn(x)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-4)
        assert got[1:] == want[1:]
        x[n // 2] = np.nan
        assert all(np.isnan(v) for v in compiled(x))
    x = rng.random(1_000_000).astype(np.float32)
    assert abs(compiled(x)[0] / (2 * x.astype(np.float64).sum()) - 1) < 2e-7
