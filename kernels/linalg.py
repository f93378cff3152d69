"""np.linalg's inv, solve, det, slogdet, cholesky, eigh, svd, qr and pinv over
a stack of matrices, each a C function compiled once per install and dtype
and called by address (kernels/dispatch.py). Numba's LAPACK wrappers are large: linked
into each model as Numba code, inv, solve and cholesky were about 9,000 of
the 13,800 lines of LLVM IR of examples/06_gaussian_process.py's step, which
LLVM optimized and compiled again for every model using them.

Generated code calls `lapack_rows(LAPACK_INV, a, b, out, flag)` (and so on) on
(batch, n, n) views (b: solve's right-hand sides, else a; flag: slogdet's
`logabs`, or LAPACK_DET; svd, qr and pinv take (batch, m, n) views, m the
flag, and pinv's b holds its rcond), after `build_lapack(kernel, itemsize)`
at its import, and raises NumPy's
LinAlgError, naming the user's line, where the status says LAPACK refused
a matrix: inv and solve of a singular one (det and slogdet give 0 and
-inf), cholesky of one that is not positive definite.
As Numba's wrappers do, a matrix holding nan or inf is refused too (except
by cholesky, and eigh looks at the triangle it reads only), where NumPy's
LAPACK gives nan for some and raises for others. cholesky and eigh read the
lower triangle only, as NumPy's (its default UPLO)."""
import importlib.util

import numpy as np
from numba import carray, njit, types
from numba.extending import overload

from graphc.kernels import blas_library, dispatch

LAPACK_OK, LAPACK_REFUSED, LAPACK_NOT_FINITE = 0, 1, 2      # a kernel's status
LAPACK_NOT_BUILT = 3        # (a kernel it calls by address is not built: lapack_rows raises)
LAPACK_DET = 2                          # slogdet's flag for the determinant
# triangular's flag: which triangle of a it reads, and whether it solves a^T x = b
TRIANGULAR_LOWER, TRIANGULAR_TRANSPOSED = 1, 2

_strsm = types.ExternalFunction(blas_library.STRSM, blas_library.TRSM_SIGNATURE(types.float32))
_dtrsm = types.ExternalFunction(blas_library.DTRSM, blas_library.TRSM_SIGNATURE(types.float64))


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
        return LAPACK_NOT_FINITE
    try:
        for r in range(batch):
            o[r] = np.linalg.inv(x[r])
    except Exception:       # LAPACK's refusal: singular
        return LAPACK_REFUSED
    return LAPACK_OK


def _solve(like, a, b, out, batch, n, k, flag):
    x = carray(dispatch.as_pointer(a, like), (batch, n, n))
    y = carray(dispatch.as_pointer(b, like), (batch, n, k))
    o = carray(dispatch.as_pointer(out, like), (batch, n, k))
    if not _finite(x):
        return LAPACK_NOT_FINITE
    try:
        for r in range(batch):
            o[r] = np.linalg.solve(x[r], y[r])
    except Exception:       # singular
        return LAPACK_REFUSED
    return LAPACK_OK


def _cholesky(like, a, b, out, batch, n, k, flag):
    x = carray(dispatch.as_pointer(a, like), (batch, n, n))
    o = carray(dispatch.as_pointer(out, like), (batch, n, n))
    try:
        for r in range(batch):
            o[r] = np.linalg.cholesky(x[r])
    except Exception:       # not positive definite
        return LAPACK_REFUSED
    return LAPACK_OK


def _trsm(like, lower, transposed, n, k, a, b):
    """b (n, k, at address b) := op(a)^-1 b, a (n, n) at address a."""


@overload(_trsm)
def _trsm_of_dtype(like, lower, transposed, n, k, a, b):
    trsm = _strsm if like is types.float32 else _dtrsm

    def call(like, lower, transposed, n, k, a, b):
        trsm(blas_library.ROW_MAJOR, blas_library.LEFT,
             blas_library.LOWER if lower else blas_library.UPPER,
             blas_library.TRANS if transposed else blas_library.NO_TRANS,
             blas_library.NON_UNIT, n, k, like + 1, a, max(n, 1), b, max(k, 1))
    return call


def _triangular(like, a, b, out, batch, n, k, flag):
    """op(a) x = b for each triangular (n, n) a and (n, k) b, op(a) a or a^T
    by `flag` (TRIANGULAR_TRANSPOSED), a's lower or upper triangle by
    TRIANGULAR_LOWER (the other is not read): BLAS ?trsm. A zero on the
    diagonal is refused (singular), as LAPACK's ?trtrs does, and a triangle
    holding nan or inf, as the other solves."""
    x = carray(dispatch.as_pointer(a, like), (batch, n, n))
    y = carray(dispatch.as_pointer(b, like), (batch, n, k))
    o = carray(dispatch.as_pointer(out, like), (batch, n, k))
    lower = flag & TRIANGULAR_LOWER != 0
    for r in range(batch):
        for i in range(n):
            for j in range(i + 1) if lower else range(i, n):
                if not np.isfinite(x[r, i, j]):
                    return LAPACK_NOT_FINITE
            if x[r, i, i] == 0:
                return LAPACK_REFUSED
    o[:] = y
    if n and k:
        for r in range(batch):
            _trsm(like, lower, flag & TRIANGULAR_TRANSPOSED != 0, n, k, x[r].ctypes.data,
                  o[r].ctypes.data)
    return LAPACK_OK


def _cholesky_solve(like, a, b, out, batch, n, k, flag):
    """solve's, for each a with its Cholesky factor L (its address: `flag`) at
    hand: an a that is symmetric, bit for bit, is L L^T, solved with L and
    then L^T (two ?trsm); any other by _solve's C function, called by its
    address (which generated code builds beside this one: compiled in here,
    Numba's LU solve took 5-8 s more)."""
    x = carray(dispatch.as_pointer(a, like), (batch, n, n))
    y = carray(dispatch.as_pointer(b, like), (batch, n, k))
    o = carray(dispatch.as_pointer(out, like), (batch, n, k))
    factor = carray(dispatch.as_pointer(flag, like), (batch, n, n))
    if not _finite(x):
        return LAPACK_NOT_FINITE
    for r in range(batch):
        symmetric = True
        for i in range(n):
            for j in range(i):
                symmetric &= x[r, i, j] == x[r, j, i]
        if not symmetric:
            solve = _read_lapack(LAPACK_SOLVE + (o.itemsize == 8))
            if solve == 0:
                return LAPACK_NOT_BUILT
            status = dispatch.call_c_kernel(solve, o, x[r].ctypes.data, y[r].ctypes.data,
                                            o[r].ctypes.data, 1, n, k, 0)
            if status != LAPACK_OK:
                return status
        elif n and k:
            o[r] = y[r]
            _trsm(like, True, False, n, k, factor[r].ctypes.data, o[r].ctypes.data)
            _trsm(like, True, True, n, k, factor[r].ctypes.data, o[r].ctypes.data)
    return LAPACK_OK


def _slogdet(like, a, b, out, batch, n, k, flag):
    """log|det| into out when `flag` is 1, the determinant's sign when 0, the
    determinant when LAPACK_DET (as Numba's np.linalg.det: sign * exp(log|det|))."""
    x = carray(dispatch.as_pointer(a, like), (batch, n, n))
    o = carray(dispatch.as_pointer(out, like), (batch,))
    if not _finite(x):
        return LAPACK_NOT_FINITE
    for r in range(batch):
        sign, log = np.linalg.slogdet(x[r]) if n else (1.0, 0.0)    # (0 x 0: NumPy's 1)
        o[r] = sign * np.exp(log) if flag == LAPACK_DET else log if flag else sign
    return LAPACK_OK


def _eigh(like, a, b, out, batch, n, k, flag):
    """Each matrix's eigenvalues (ascending) into out[r, 0] and its eigenvectors,
    as columns, into out[r, 1:]: one (n + 1, n) block a matrix. From the lower
    triangle only, as NumPy's: the upper is set to its mirror first, so that
    a nan there is not seen (LAPACK does not read it)."""
    x = carray(dispatch.as_pointer(a, like), (batch, n, n))
    o = carray(dispatch.as_pointer(out, like), (batch, n + 1, n))
    for r in range(batch):
        m = x[r].copy()
        for i in range(n):
            for j in range(i + 1, n):
                m[i, j] = m[j, i]
        if not _finite(m):
            return LAPACK_NOT_FINITE
        try:
            w, v = np.linalg.eigh(m)
        except Exception:       # no convergence
            return LAPACK_REFUSED
        o[r, 0] = w
        o[r, 1:] = v
    return LAPACK_OK


def _svd(like, a, b, out, batch, n, k, flag):
    """Each (m, n) matrix's reduced SVD (m: `flag`, k = min(m, n)) into one
    (m + 1 + n, k) block: U in its first m rows, the singular values
    (descending) in row m, V (Vh^T) below."""
    m = flag
    x = carray(dispatch.as_pointer(a, like), (batch, m, n))
    o = carray(dispatch.as_pointer(out, like), (batch, m + 1 + n, k))
    if not _finite(x):
        return LAPACK_NOT_FINITE
    if k == 0:      # nothing to write (Numba's svd refuses an empty matrix)
        return LAPACK_OK
    for r in range(batch):
        try:
            u, s, vh = np.linalg.svd(x[r], full_matrices=False)
        except Exception:       # no convergence
            return LAPACK_REFUSED
        o[r, :m] = u
        o[r, m] = s
        o[r, m + 1:] = vh.T
    return LAPACK_OK


def _qr(like, a, b, out, batch, n, k, flag):
    """Each (m, n) matrix's reduced QR (m: `flag`, k = min(m, n)) into one
    (m + n, k) block: Q in its first m rows, R^T (upper R: zeros above
    the diagonal of R^T) below."""
    m = flag
    x = carray(dispatch.as_pointer(a, like), (batch, m, n))
    o = carray(dispatch.as_pointer(out, like), (batch, m + n, k))
    if not _finite(x):
        return LAPACK_NOT_FINITE
    if k == 0:
        return LAPACK_OK
    for r in range(batch):
        q, upper = np.linalg.qr(x[r])
        o[r, :m] = q
        o[r, m:] = upper.T
    return LAPACK_OK


def _pinv(like, a, b, out, batch, n, k, flag):
    """Each (m, n) matrix's pseudo-inverse (m: `flag`) into out (batch, n, m),
    singular values at most b[0] (rcond) times the largest taken as 0."""
    m = flag
    x = carray(dispatch.as_pointer(a, like), (batch, m, n))
    rcond = carray(dispatch.as_pointer(b, like), (1,))[0]
    o = carray(dispatch.as_pointer(out, like), (batch, n, m))
    if not _finite(x):
        return LAPACK_NOT_FINITE
    if m == 0 or n == 0:
        return LAPACK_OK
    for r in range(batch):
        try:
            o[r] = np.linalg.pinv(x[r], rcond)
        except Exception:       # the SVD did not converge
            return LAPACK_REFUSED
    return LAPACK_OK


# Each kernel's body (its arguments: dispatch.c_kernel_signature's a, b, out,
# batch, n, k, flag); generated code names them by their float32 slots in the
# table (float64's is the next) and raises NumPy's messages for a status.
_lapack = dispatch.CKernels("graphc_linalg", {
    "inv": _inv, "solve": _solve, "cholesky": _cholesky, "slogdet": _slogdet, "eigh": _eigh,
    "svd": _svd, "qr": _qr, "pinv": _pinv, "triangular": _triangular,
    "cholesky_solve": _cholesky_solve})
(LAPACK_INV, LAPACK_SOLVE, LAPACK_CHOLESKY, LAPACK_SLOGDET, LAPACK_EIGH, LAPACK_SVD,
 LAPACK_QR, LAPACK_PINV, LAPACK_TRIANGULAR, LAPACK_CHOLESKY_SOLVE) = map(
    _lapack.slot, _lapack.bodies)
_read_lapack = dispatch.address_reader(_lapack.symbol, _lapack.size)
_CALLING_TRSM = ("triangular", "cholesky_solve")


def build_lapack(name: str, itemsize: int) -> None:
    """Build `name`'s C function for float32 (itemsize 4) or float64 (8):
    CKernels.build, after binding ?trsm's symbols for those that call it."""
    if importlib.util.find_spec("scipy") is None:
        # (Numba would abort the process where a cached kernel's LAPACK is missing)
        raise ImportError("np.linalg in graphc's code calls LAPACK through SciPy, as Numba's "
                          "np.linalg does: pip install scipy")
    if name in _CALLING_TRSM:
        blas_library.bind_trsm()
    _lapack.build(name, itemsize)


@dispatch.unliteral_calls
@njit(cache=True, nogil=True)
def lapack_rows(slot, a, b, out, flag):
    """The status (LAPACK_OK, LAPACK_REFUSED, LAPACK_NOT_FINITE) of the kernel
    at `slot` (LAPACK_INV, ...) on C-contiguous (batch, n, n) a, b and out:
    generated code raises NumPy's LinAlgError for it, naming the user's line."""
    address = _read_lapack(slot + (out.itemsize == 8))
    if address == 0:
        raise ValueError("np.linalg: its C function is not built in this process "
                         "(graphc.kernels.linalg.build_lapack)")
    status = dispatch.call_c_kernel(address, out, a.ctypes.data, b.ctypes.data, out.ctypes.data,
                                    a.shape[0], a.shape[-1], out.shape[-1], flag)
    if status == LAPACK_NOT_BUILT:
        raise ValueError("np.linalg: a C function it calls is not built in this process "
                         "(graphc.kernels.linalg.build_lapack)")
    return status
