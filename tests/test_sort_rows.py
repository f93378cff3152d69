"""kernels/order.py's stable argsort of rows against NumPy's kind="stable":
each kind of key (float32, float64, small signed and unsigned ints, int64,
bool), rows either side of the insertion sort's cutoffs and long enough for
every radix pass, ties, both zeros, infinities, subnormals and nans; and
np.sort, np.median and their gradients compiled."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.kernels import order

# each path once (float32's packed keys, float64's paired ones, a signed and an
# unsigned small int, 64-bit ints' mergesort, bool): each dtype compiles the kernel
_DTYPES = [np.float32, np.float64, np.int16, np.uint32, np.int64, np.bool_]


def _values(rng, shape, dtype):
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        # the extremes, and few values so that ties are many
        pool = np.array([info.min, info.max, 0, 1, info.max // 2, info.min // 2 + 1], dtype)
        return np.where(rng.random(shape) < 0.3, rng.choice(pool, shape),
                        rng.integers(0, 50, shape).astype(dtype))
    finfo = np.finfo(dtype)
    special = np.array([np.nan, -np.nan, 0.0, -0.0, np.inf, -np.inf, finfo.tiny / 4,
                        -finfo.tiny / 2, finfo.max, -finfo.max, 1.0, -1.0], dtype)
    x = (rng.normal(size=shape) * 10).astype(dtype)
    x = np.where(rng.random(shape) < 0.2, np.round(x), x)       # ties
    return np.where(rng.random(shape) < 0.2, rng.choice(special, shape), x).astype(dtype)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(_DTYPES), st.integers(0, 4),
       st.sampled_from([0, 1, 2, order.PACKED_INSERTION_MAX, order.PACKED_INSERTION_MAX + 1,
                        order.PAIRS_INSERTION_MAX, order.PAIRS_INSERTION_MAX + 1, 3000]),
       st.integers(0, 2 ** 16))
def test_rows_sort_as_numpys_stable_argsort(dtype, rows, n, seed):
    x = _values(np.random.default_rng(seed), (rows, n), dtype)
    out = np.empty(x.shape, np.int64)
    order.argsort_rows(x, out)
    np.testing.assert_array_equal(out, np.argsort(x, axis=1, kind="stable"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sort_and_median_of_long_rows_compiled_with_their_gradients(dtype):
    x = _values(np.random.default_rng(3), (3, 300), dtype)
    x[np.isnan(x)] = 0.5        # (a nan's gradient is nan)
    x[np.isinf(x)] = -2.0
    f = gc.jit(lambda x: (np.sort(x, axis=1), np.median(x, axis=0), np.argsort(x, axis=None)))
    got, want = f(x), (np.sort(x, axis=1), np.median(x, axis=0), np.argsort(x, None, "stable"))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    weights = np.random.default_rng(4).normal(size=x.shape)
    grad = gc.grad(lambda x: np.sum(np.sort(x, axis=1) * weights))(x)
    # the sorted position's weight goes back to each element
    expected = np.empty_like(weights)
    np.put_along_axis(expected, np.argsort(x, axis=1, kind="stable"), weights, axis=1)
    np.testing.assert_allclose(grad, expected.astype(dtype))
