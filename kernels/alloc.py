"""Array allocation for generated modules, compiled once per install (for
each rank, dtype and layout they meet) instead of once per process.

Numba builds the implementations of np.empty, np.full and
np.ascontiguousarray afresh in every process, for every rank and dtype it
meets: in a cold W2 compile that was over a second before any of the
model's own code. These wrappers are ordinary functions cached on disk, so
after their first use anywhere they load in milliseconds.
"""
import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def empty(shape, dtype):
    return np.empty(shape, dtype)


@njit(cache=True, nogil=True)
def full(shape, value, dtype):
    out = np.empty(shape, dtype)
    flat = out.reshape(out.size)
    for k in range(flat.size):
        flat[k] = value
    return out


@njit(cache=True, nogil=True)
def reshape(x, shape):
    """x in `shape`: a view of a C-contiguous x, else of a contiguous copy."""
    return np.ascontiguousarray(x).reshape(shape)
