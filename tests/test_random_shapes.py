"""Hypothesis: random broadcasting shapes and reductions, compiled vs NumPy."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphc as gc

BINARY = {
    "add": np.add, "mul": np.multiply, "sub": np.subtract, "maximum": np.maximum,
    "div": lambda a, b: a / (np.abs(b) + 1.0),
}


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


@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), data=st.data())
def test_reductions_over_random_axes(shape, data):
    axes = data.draw(st.sets(st.integers(-len(shape), len(shape) - 1), max_size=len(shape)))
    axes = tuple(sorted({a % len(shape) for a in axes})) or None
    keepdims = data.draw(st.booleans())
    x = np.random.default_rng(0).normal(size=shape)
    f = lambda x: (np.sum(x, axis=axes, keepdims=keepdims),  # noqa: E731
                   np.max(x, axis=axes, keepdims=keepdims))
    for got, want in zip(gc.jit(f)(x), f(x)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    gc.check_grad(lambda x: np.sum(f(x)[0] ** 2), x)
