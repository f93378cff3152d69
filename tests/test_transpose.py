"""graphc.kernels.transpose: b.T copied in 8x8 tiles of vector shuffles, exactly."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphc.kernels.transpose import transpose_into, transposed


@given(m=st.integers(0, 41), n=st.integers(0, 41), offset=st.integers(0, 3),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_transposed_equals_numpy_on_random_shapes(m, n, offset, dtype):
    """Whole tiles, partial ones on either edge, empty arrays, and rows that
    start anywhere in a wider array (only the elements within a row need be
    contiguous). Every value is distinct, so a misplaced one shows."""
    wide = np.arange(m * (n + 3), dtype=dtype).reshape(m, n + 3) * dtype(-0.5)
    b = wide[:, offset:offset + n]
    got = transposed(b)
    assert got.dtype == dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got, b.T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_and_strided_rows(dtype):
    b = np.array([[np.nan, -0.0, np.inf, -np.inf, 1e-45 if dtype == np.float32 else 5e-324,
                   1.0, 2.0, 3.0, 4.0]] * 9, dtype) * np.arange(1, 10, dtype=dtype)[:, None]
    np.testing.assert_array_equal(transposed(b), b.T)
    assert np.signbit(transposed(b)[1, 0])
    every_other = np.arange(16 * 18, dtype=dtype).reshape(16, 18)[:, ::2]    # rows not contiguous
    np.testing.assert_array_equal(transposed(every_other), every_other.T)


def test_out_must_have_the_transposed_shape_and_be_contiguous():
    b = np.ones((8, 16), np.float32)
    out = np.zeros((16, 8), np.float32)
    transpose_into(b, out)
    np.testing.assert_array_equal(out, b.T)
    with pytest.raises(ValueError, match="shape b.shape"):
        transpose_into(b, np.zeros((8, 16), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        transpose_into(b, np.zeros((16, 16), np.float32)[:, :8])
