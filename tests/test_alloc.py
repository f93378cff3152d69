"""graphc.kernels.alloc: the allocation wrappers generated modules call."""
import numpy as np
import pytest

from graphc.kernels import alloc


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
def test_empty_and_full_make_the_shape_and_dtype_asked_for(dtype):
    assert alloc.empty((2, 3), dtype).shape == (2, 3)
    assert alloc.empty((4,), dtype).dtype == dtype
    filled = alloc.full((3, 2), 1, dtype)
    assert filled.dtype == dtype and filled.shape == (3, 2)
    np.testing.assert_array_equal(filled, np.ones((3, 2), dtype))
    zero_d = alloc.full((), 7, dtype)
    assert zero_d.shape == () and zero_d == np.asarray(7, dtype)


def test_reshape_views_contiguous_arrays_and_copies_strided_ones():
    x = np.arange(6.0).reshape(2, 3)
    view = alloc.reshape(x, (3, 2))
    assert np.shares_memory(view, x)
    np.testing.assert_array_equal(view, x.reshape(3, 2))
    strided = alloc.reshape(x.T, (6,))
    assert not np.shares_memory(strided, x)
    np.testing.assert_array_equal(strided, x.T.reshape(6))


def test_generated_code_allocates_through_the_wrappers():
    import graphc as gc
    source = gc.jit(lambda a, b: np.mean(np.tanh(a @ b), axis=0)).inspect(
        np.ones((3, 4)), np.ones((4, 2))).source
    run = source.split("def run(", 1)[1]
    assert "alloc.empty(" in run and "alloc.full(" in run and "blas.gemm(" in source
    assert "np.empty(" not in run and "np.full(" not in run and "np.dot(" not in source
