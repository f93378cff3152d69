"""np.linalg's inv, solve, det, slogdet, cholesky and eigh over a stack of
matrices, each a C function compiled once per install and dtype and called
by address (kernels/dispatch.py). Numba's LAPACK wrappers are large: linked
into each model as Numba code, inv, solve and cholesky were about 9,000 of
the 13,800 lines of LLVM IR of examples/06_gaussian_process.py's step, which
LLVM optimized and compiled again for every model using them.

Generated code calls `inv_rows(a, b, out, flag)` and the others on (batch,
n, n) views (b: solve's right-hand sides, else a; flag: slogdet's `logabs`,
2 for det),
after `build_lapack(kernel, itemsize)` at its import. inv and solve of a singular
matrix raise NumPy's LinAlgError, from compiled code as from NumPy (det and
slogdet give 0 and -inf); cholesky of a matrix that is not positive
definite raises it too. As Numba's wrappers do, a matrix holding nan or inf
raises it (except in cholesky), where NumPy's LAPACK gives nan for some and
raises for others. cholesky and eigh read the lower triangle only, as
NumPy's (its default UPLO)."""
import numpy as np
from numba import carray, njit

from graphc.kernels import dispatch

_OK, _REFUSED, _NOT_FINITE = 0, 1, 2


@njit(inline="always")
def _finite(x):
    for v in x.ravel():
        if not np.isfinite(v):
            return False
    return True


def _inv(like, a, b, out, batch, n, k, flag):
    x = carray(dispatch.as_pointer(a, like), (batch, n, n))
    o = carray(dispatch.as_pointer(out, like), (batch, n, n))
    if not _finite(x):
        return _NOT_FINITE
    try:
        for r in range(batch):
            o[r] = np.linalg.inv(x[r])
    except Exception:       # LAPACK's refusal: singular
        return _REFUSED
    return _OK


def _solve(like, a, b, out, batch, n, k, flag):
    x = carray(dispatch.as_pointer(a, like), (batch, n, n))
    y = carray(dispatch.as_pointer(b, like), (batch, n, k))
    o = carray(dispatch.as_pointer(out, like), (batch, n, k))
    if not _finite(x):
        return _NOT_FINITE
    try:
        for r in range(batch):
            o[r] = np.linalg.solve(x[r], y[r])
    except Exception:       # singular
        return _REFUSED
    return _OK


def _cholesky(like, a, b, out, batch, n, k, flag):
    x = carray(dispatch.as_pointer(a, like), (batch, n, n))
    o = carray(dispatch.as_pointer(out, like), (batch, n, n))
    try:
        for r in range(batch):
            o[r] = np.linalg.cholesky(x[r])
    except Exception:       # not positive definite
        return _REFUSED
    return _OK


def _slogdet(like, a, b, out, batch, n, k, flag):
    """log|det| into out when `flag`, else the determinant's sign; det: flag 2."""
    x = carray(dispatch.as_pointer(a, like), (batch, n, n))
    o = carray(dispatch.as_pointer(out, like), (batch,))
    if not _finite(x):
        return _NOT_FINITE
    for r in range(batch):
        sign, log = np.linalg.slogdet(x[r])
        o[r] = sign * np.exp(log) if flag == 2 else log if flag else sign
    return _OK


def _eigh(like, a, b, out, batch, n, k, flag):
    """Each matrix's eigenvalues (ascending) into out[r, 0] and its eigenvectors,
    as columns, into out[r, 1:]: one (n + 1, n) block a matrix."""
    x = carray(dispatch.as_pointer(a, like), (batch, n, n))
    o = carray(dispatch.as_pointer(out, like), (batch, n + 1, n))
    if not _finite(x):
        return _NOT_FINITE
    try:
        for r in range(batch):
            w, v = np.linalg.eigh(x[r])
            o[r, 0] = w
            o[r, 1:] = v
    except Exception:       # no convergence
        return _REFUSED
    return _OK


# kernel name -> its C function's body (dispatch.C_KERNEL: a, b, out, batch,
# n, k, flag) and the LinAlgError message of its refusal
_REFUSALS = {"inv": "Matrix is singular to machine precision.",
             "solve": "Matrix is singular to machine precision.",
             "cholesky": "Matrix is not positive definite.", "slogdet": "",
             "eigh": "Eigenvalues did not converge."}
# Give the table a new name whenever dispatch.C_KERNEL changes.
_lapack = dispatch.CKernels("graphc_linalg_table_1", {
    "inv": _inv, "solve": _solve, "cholesky": _cholesky, "slogdet": _slogdet, "eigh": _eigh})
_read_lapack = dispatch.address_reader(_lapack.symbol, _lapack.size)
build_lapack = _lapack.build


def _lapack_rows(kernel):
    """The kernel called from compiled code: raises NumPy's LinAlgError where
    LAPACK (or the finiteness check) refused a matrix."""
    slot, refusal = _lapack.slot(kernel), _REFUSALS[kernel]

    @dispatch.unliteral_calls
    @njit(cache=True, nogil=True)
    def rows(a, b, out, flag):
        address = _read_lapack(slot + (out.itemsize == 8))
        if address == 0:
            raise ValueError("np.linalg: its C function is not built in this process "
                             "(graphc.kernels.linalg.build_lapack)")
        status = dispatch.call_c_kernel(address, out,
                                        a.ctypes.data, b.ctypes.data, out.ctypes.data,
                                        a.shape[0], a.shape[-1], out.shape[-1], flag)
        if status == _NOT_FINITE:
            raise np.linalg.LinAlgError("Array must not contain infs or NaNs.")
        if status != _OK:
            raise np.linalg.LinAlgError(refusal)
    return rows


inv_rows, solve_rows, cholesky_rows, slogdet_rows, eigh_rows = map(_lapack_rows, _REFUSALS)
