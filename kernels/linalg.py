"""np.linalg's inv, solve, det, slogdet, cholesky and eigh over a stack of matrices,
compiled once per install for each dtype (Numba's LAPACK wrappers take
seconds to compile: written into each model's `run`, every model using them
would pay that). Each works on (batch, n, n) views. inv and solve of a
singular matrix raise NumPy's LinAlgError, from compiled code as from NumPy
(det and slogdet give 0 and -inf); cholesky of a matrix that is not positive
definite raises it too. Numba's wrappers also raise on a matrix holding nan
or inf (inv, solve, det, slogdet, eigh), where NumPy's LAPACK gives nan for
some and raises for others. cholesky and eigh read the lower triangle only,
as NumPy's (its default UPLO)."""
import numpy as np
from numba import njit

from graphc.kernels import dispatch


def _each_matrix(function):
    """A kernel writing function(a[r]) into out[r] for each matrix r."""
    @dispatch.unliteral_calls
    @njit(cache=True, nogil=True, error_model="numpy")
    def rows(a, out):
        for r in range(a.shape[0]):
            out[r] = function(a[r])
    return rows


inv_rows = _each_matrix(np.linalg.inv)
det_rows = _each_matrix(np.linalg.det)
cholesky_rows = _each_matrix(np.linalg.cholesky)


@dispatch.unliteral_calls
@njit(cache=True, nogil=True, error_model="numpy")
def solve_rows(a, b, out):
    for r in range(a.shape[0]):
        out[r] = np.linalg.solve(a[r], b[r])


@dispatch.unliteral_calls
@njit(cache=True, nogil=True, error_model="numpy")
def slogdet_rows(a, out, logabs):
    """log|det| into out when `logabs`, else the determinant's sign."""
    for r in range(a.shape[0]):
        sign, log = np.linalg.slogdet(a[r])
        out[r] = log if logabs else sign


@dispatch.unliteral_calls
@njit(cache=True, nogil=True, error_model="numpy")
def eigh_rows(a, out):
    """Each matrix's eigenvalues (ascending) into out[r, 0] and its eigenvectors,
    as columns, into out[r, 1:]: one (n + 1, n) block a matrix."""
    for r in range(a.shape[0]):
        w, v = np.linalg.eigh(a[r])
        out[r, 0] = w
        out[r, 1:] = v
