"""np.linalg's inv, solve, det and slogdet over a stack of matrices,
compiled once per install for each dtype (Numba's LAPACK wrappers take
seconds to compile: written into each model's `run`, every model using them
would pay that). Each works on (batch, n, n) views; singular matrices raise
NumPy's LinAlgError, from compiled code as from NumPy."""
import numpy as np
from numba import njit

from graphc.kernels import dispatch


@dispatch.unliteral_calls
@njit(cache=True, nogil=True, error_model="numpy")
def inv_rows(a, out):
    for r in range(a.shape[0]):
        out[r] = np.linalg.inv(a[r])


@dispatch.unliteral_calls
@njit(cache=True, nogil=True, error_model="numpy")
def solve_rows(a, b, out):
    for r in range(a.shape[0]):
        out[r] = np.linalg.solve(a[r], b[r])


@dispatch.unliteral_calls
@njit(cache=True, nogil=True, error_model="numpy")
def det_rows(a, out):
    for r in range(a.shape[0]):
        out[r] = np.linalg.det(a[r])


@dispatch.unliteral_calls
@njit(cache=True, nogil=True, error_model="numpy")
def slogdet_rows(a, out, logabs):
    """The sign into out, log|det| into `logabs` (or only the log when `logabs` is
    False: then out is the log)."""
    for r in range(a.shape[0]):
        sign, log = np.linalg.slogdet(a[r])
        out[r] = log if logabs else sign
