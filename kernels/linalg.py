"""np.linalg's inv, solve, det, slogdet, cholesky and eigh over a stack of
matrices, each a C function compiled once per install and dtype and called
by address (kernels/dispatch.py). Numba's LAPACK wrappers are large: linked
into each model as Numba code, inv, solve and cholesky were about 11,000 of
the 13,800 lines of LLVM IR of examples/06_gaussian_process.py's step, which
LLVM optimized and compiled again for every model using them.

Generated code calls `inv_rows(a, b, out, flag)` and the others on (batch,
n, n) views (b: solve's right-hand sides, else a; flag: slogdet's `logabs`),
after `build(kernel, itemsize)` at its import. inv and solve of a singular
matrix raise NumPy's LinAlgError, from compiled code as from NumPy (det and
slogdet give 0 and -inf); cholesky of a matrix that is not positive
definite raises it too. As Numba's wrappers do, a matrix holding nan or inf
raises it (except in cholesky), where NumPy's LAPACK gives nan for some and
raises for others. cholesky and eigh read the lower triangle only, as
NumPy's (its default UPLO)."""
import llvmlite.ir as llvm_ir
import numpy as np
from numba import carray, njit, types
from numba.core import sigutils
from numba.core.ccallback import CFunc
from numba.core.compiler_lock import global_compiler_lock
from numba.extending import intrinsic

from graphc.kernels import dispatch

_OK, _REFUSED, _NOT_FINITE = 0, 1, 2


def C_SIGNATURE(real):
    """status = kernel(like, a, b, out, batch, n, k, flag): a, b and out by
    address, `like` a zero of their dtype (it picks the dtype)."""
    return types.int32(real, types.intp, types.intp, types.intp, types.intp, types.intp,
                       types.intp, types.intp)


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


# kernel name -> (C function's body, the LinAlgError message of its refusal)
KERNELS = {"inv": (_inv, "Matrix is singular to machine precision."),
           "solve": (_solve, "Matrix is singular to machine precision."),
           "cholesky": (_cholesky, "Matrix is not positive definite."),
           "slogdet": (_slogdet, ""),
           "eigh": (_eigh, "Eigenvalues did not converge.")}
_SLOTS = {(name, size): 2 * k + (size == 8) for k, name in enumerate(KERNELS) for size in (4, 8)}

# Give the table a new name whenever C_SIGNATURE changes (see dispatch).
LINALG_TABLE = "graphc_linalg_table_1"
_lapack_table = dispatch.shared_address_table(LINALG_TABLE, len(_SLOTS))
_read = dispatch.address_reader(LINALG_TABLE, len(_SLOTS))
_compiled = []          # their code lives as long as these objects


def build(kernel: str, itemsize: int) -> None:
    """Compile (or load from disk) `kernel`'s C function for float32
    (itemsize 4) or float64 (8) into the table, once per process. Under
    Numba's compiler lock, as blas.build_gemm."""
    slot = _SLOTS[kernel, itemsize]
    if _lapack_table[slot]:
        return
    with global_compiler_lock:
        if not _lapack_table[slot]:
            real = types.float32 if itemsize == 4 else types.float64
            compiled = dispatch.load_without_refresh(
                CFunc(KERNELS[kernel][0], sigutils.normalize_signature(C_SIGNATURE(real)),
                      locals={}, options={"nopython": True}))
            compiled.compile()
            _compiled.append(compiled)
            _lapack_table[slot] = compiled.address


@intrinsic
def _call(typingctx, address, out, a, b, batch, n, k, flag):
    """C_SIGNATURE's function at `address` for out's dtype (a zero of it as `like`)."""
    sig = types.int32(address, out, a, b, batch, n, k, flag)

    def codegen(context, builder, sig, args):
        real = sig.args[1].dtype
        target = C_SIGNATURE(real)
        like = context.get_constant(real, 0)
        out_address = context.make_array(sig.args[1])(context, builder, args[1]).data
        values = [like, context.cast(builder, args[2], sig.args[2], types.intp),
                  context.cast(builder, args[3], sig.args[3], types.intp),
                  builder.ptrtoint(out_address, context.get_value_type(types.intp))]
        values += [context.cast(builder, v, t, types.intp) for v, t in zip(args[4:], sig.args[4:])]
        fnty = llvm_ir.FunctionType(context.get_value_type(types.int32),
                                    [context.get_value_type(t) for t in target.args])
        return builder.call(builder.inttoptr(args[0], fnty.as_pointer()), values)

    return sig, codegen


def _rows(kernel):
    """The kernel called from compiled code: raises NumPy's LinAlgError where
    LAPACK (or the finiteness check) refused a matrix."""
    base, refusal = 2 * list(KERNELS).index(kernel), KERNELS[kernel][1]

    @dispatch.unliteral_calls
    @njit(cache=True, nogil=True)
    def rows(a, b, out, flag):
        address = _read(base + (out.itemsize == 8))
        status = _call(address, out, a.ctypes.data, b.ctypes.data, a.shape[0], a.shape[-1],
                       out.shape[-1], flag)
        if status == _NOT_FINITE:
            raise np.linalg.LinAlgError("Array must not contain infs or NaNs.")
        if status != _OK:
            raise np.linalg.LinAlgError(refusal)
    return rows


inv_rows, solve_rows, cholesky_rows, slogdet_rows, eigh_rows = map(_rows, KERNELS)
