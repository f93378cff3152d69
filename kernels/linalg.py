"""np.linalg's inv, solve, det and slogdet over a stack of matrices,
compiled once per install for each dtype (Numba's LAPACK wrappers take
seconds to compile: written into each model's `run`, every model using them
would pay that). Each works on (batch, n, n) views. inv and solve of a
singular matrix raise NumPy's LinAlgError, from compiled code as from NumPy
(det and slogdet give 0 and -inf). Numba's wrappers also raise on a matrix
holding nan or inf, where NumPy's LAPACK gives nan for some and raises for
others."""
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
    """log|det| into out when `logabs`, else the determinant's sign."""
    for r in range(a.shape[0]):
        sign, log = np.linalg.slogdet(a[r])
        out[r] = log if logabs else sign
