"""NumPy's matrix helpers, written with graphc's functions: diagonal, diag,
trace, kron, cross and atleast_1d/2d/3d, as graphc.composites; and the front
of np.linalg's inv, solve, det, slogdet, cholesky, eigh, svd, qr and pinv, which are
ops of their own (LAPACK per matrix, kernels/linalg.py)."""
from __future__ import annotations

import operator

import numpy as np

from graphc import errors
from graphc import numpy_api as fnp
from graphc import prims as P
from graphc.composites import pad
from graphc.ops import rows


def diagonal(a, offset=0, axis1=0, axis2=1):
    """np.diagonal: a[..., i, i + offset] over the two axes moved last; the
    diagonal is the result's last axis, as NumPy's."""
    a = fnp._as_array(a)
    if a.ndim < 2:
        errors.refuse(errors.ShapeError, "diag requires an array of at least two dimensions")
    offset = operator.index(offset)
    first, second = (fnp._one_axis(x, a.ndim, "diagonal") for x in (axis1, axis2))
    if first == second:
        errors.refuse(errors.ShapeError, "axis1 and axis2 cannot be the same")
    rest = [d for d in range(a.ndim) if d not in (first, second)]
    a = fnp.transpose(a, rest + [first, second])
    rows, cols = a.shape[-2:]
    length = max(0, min(rows, cols - offset) if offset >= 0 else min(rows + offset, cols))
    index = np.arange(length)
    return fnp.getitem(a, (Ellipsis, index + max(0, -offset), index + max(0, offset)))


def diag(v, k=0):
    """np.diag: a 1-d array's square matrix with it on diagonal k, or a 2-d
    array's diagonal k."""
    v = fnp._as_array(v)
    k = operator.index(k)
    if v.ndim == 2:
        return diagonal(v, k)
    if v.ndim != 1:
        errors.refuse(errors.ShapeError, "Input must be 1- or 2-d.")
    n = v.shape[0] + abs(k)
    rows, cols = np.arange(n)[:, None], np.arange(n)[None, :]
    # row i of the matrix holds v[i] (k >= 0) or v[i + k] (k < 0) at column i + k
    column_of = pad(v, (0, abs(k)) if k >= 0 else (abs(k), 0))
    return fnp.where(cols == rows + k, fnp.reshape(column_of, (n, 1)),
                     np.zeros((), fnp.aval_of(v)[1]))


def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    """np.trace: the sum of the diagonal (np.sum's accumulator: integers in int64)."""
    if out is not None:
        errors.refuse(errors.UnsupportedOpError, "np.trace(out=) is not supported")
    return fnp.sum(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


def kron(a, b):
    """np.kron: every product a[i...] * b[j...], at index i * b.shape + j."""
    a, b = fnp._as_array(a), fnp._as_array(b)
    nd = max(a.ndim, b.ndim)
    a = fnp.reshape(a, (1,) * (nd - a.ndim) + a.shape)
    b = fnp.reshape(b, (1,) * (nd - b.ndim) + b.shape)
    # axes interleaved: a's as (n, 1), b's as (1, m), so the product is (n, m) per axis
    spread_a = fnp.reshape(a, tuple(x for n in a.shape for x in (n, 1)))
    spread_b = fnp.reshape(b, tuple(x for m in b.shape for x in (1, m)))
    return fnp.reshape(fnp.multiply(spread_a, spread_b),
                       tuple(n * m for n, m in zip(a.shape, b.shape)))


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """np.cross of 3-vectors (or 2-vectors, whose z is a scalar) along the last axis."""
    if (axisa, axisb, axisc, axis) != (-1, -1, -1, None):
        errors.refuse(errors.UnsupportedOpError, "np.cross over an axis other than the last is not "
                                          "supported; move it last with np.moveaxis")
    a, b = fnp._as_array(a), fnp._as_array(b)
    sizes = (a.shape[-1] if a.ndim else 0, b.shape[-1] if b.ndim else 0)
    if not set(sizes) <= {2, 3}:
        errors.refuse(errors.ShapeError, "incompatible dimensions for cross product\n(dimension must "
                                  "be 2 or 3)")
    if 2 in sizes and 3 in sizes:
        errors.refuse(errors.UnsupportedOpError, "np.cross of a 2-vector with a 3-vector is not "
                                          "supported; pad the 2-vector with a zero")

    def part(x, i):
        return fnp.getitem(x, (Ellipsis, i))

    def minor(i, j):
        return fnp.subtract(fnp.multiply(part(a, i), part(b, j)),
                            fnp.multiply(part(a, j), part(b, i)))

    if sizes == (2, 2):
        return minor(0, 1)
    return fnp.stack([minor(1, 2), minor(2, 0), minor(0, 1)], axis=-1)


def _at_least(ndim):
    """np.atleast_1d/2d/3d: NumPy's placement of the new axes of 1."""
    def at_least(*arrays):
        out = []
        for x in arrays:
            x = fnp._as_array(x)
            if x.ndim < ndim:
                shape = {0: (1,) * ndim, 1: (1,) + x.shape + (1,) * (ndim - 2)}.get(
                    x.ndim, x.shape + (1,) * (ndim - x.ndim))
                x = fnp.reshape(x, shape)
            out.append(x)
        return out[0] if len(out) == 1 else tuple(out)
    return at_least


atleast_1d, atleast_2d, atleast_3d = _at_least(1), _at_least(2), _at_least(3)

# ------------------------------------------------------------ np.linalg
def _matrices(a, name):
    """a as a stack of float matrices: integers in float64, as NumPy's."""
    a = fnp._as_array(a)
    if a.ndim < 2:
        errors.refuse(errors.GraphcLinAlgError, f"np.linalg.{name}: {a.ndim}-dimensional array "
                                                f"given. Array must be at least two-dimensional")
    return fnp.astype(a, fnp._float_dtype(a))


def _square_matrices(a, name):
    """a as a stack of square float matrices: integers in float64, as NumPy's."""
    a = _matrices(a, name)
    if a.shape[-1] != a.shape[-2]:
        errors.refuse(errors.GraphcLinAlgError, f"np.linalg.{name}: Last 2 dimensions of the "
                                                f"array must be square")
    return a


# NumPy computes float32 linear algebra in float64 and rounds the results to
# float32 (numpy.linalg's _commonType): so does graphc. In float32, a solve
# next to a Cholesky factor of a matrix of condition 4e7 was off by 0.41,
# NumPy's by 2e-8 (a user review). The float32 LAPACK kernels go unused.
def _in_double(a):
    return fnp.astype(a, np.float64)


def _as(x, like):
    """x (computed in float64) in the float type of `like`, as NumPy returns it."""
    return fnp.astype(x, fnp.aval_of(like)[1])


def inv(a):
    a = _square_matrices(a, "inv")
    return _as(P.inv(_in_double(a)), a)


def det(a):
    a = _square_matrices(a, "det")
    return _as(P.det(_in_double(a)), a)


def slogdet(a):
    """(sign, log|det|) as NumPy's SlogdetResult; the log's gradient is inv(a)^T."""
    a = _square_matrices(a, "slogdet")
    double = _in_double(a)
    return np.linalg._linalg.SlogdetResult(_as(P.slogdet(double, False), a),
                                           _as(P.slogdet(double, True), a))


def solve(a, b):
    """x with a @ x = b: b a vector (n,), or a stack (..., n, k) whose stack
    broadcasts with a's (NumPy 2's rule)."""
    a = _square_matrices(a, "solve")
    b = fnp._as_array(b)
    dtype = np.result_type(fnp.aval_of(a)[1], fnp._float_dtype(b))
    a, b = fnp.astype(a, dtype), fnp.astype(b, dtype)
    n = a.shape[-1]
    vector = b.ndim == 1
    if b.ndim == 0:
        errors.refuse(errors.ShapeError, "np.linalg.solve: b is 0-dimensional; it is a vector "
                                         "(n,) or a stack of matrices (..., n, k)")
    if b.shape[-1 if vector else -2] != n:
        errors.refuse(errors.ShapeError, f"np.linalg.solve: a is {a.shape} and b {b.shape}: b's "
                                         f"{'length' if vector else 'second to last axis'} must "
                                         f"be {n}")
    if vector:
        b = fnp.reshape(b, (n, 1))
    try:
        stack = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    except ValueError:
        errors.refuse(errors.ShapeError, f"np.linalg.solve: a is {a.shape} and b {b.shape}: "
                                         f"their stacks {a.shape[:-2]} and {b.shape[:-2]} do "
                                         f"not broadcast together")
    x = _as(P.solve(fnp.broadcast_to(_in_double(a), stack + (n, n)),
                    fnp.broadcast_to(_in_double(b), stack + b.shape[-2:])), a)
    return fnp.reshape(x, stack + (n,)) if vector else x


def cholesky(a, *, upper=False):
    """L (lower) with a = L L^T, from a's lower triangle; `upper=True`: L^T,
    from a's upper triangle (NumPy's). Not positive definite: LinAlgError."""
    a = _square_matrices(a, "cholesky")
    double = _in_double(a)
    return _as(P.swap_last(P.cholesky(P.swap_last(double))) if upper else P.cholesky(double), a)


def _eigh_blocks(a, UPLO, name):
    """eigh's (n + 1, n) blocks: eigenvalues in row 0, eigenvectors below."""
    UPLO = UPLO.upper() if isinstance(UPLO, str) else UPLO      # as NumPy's
    if UPLO not in ("L", "U"):
        errors.refuse(ValueError, "UPLO argument must be 'L' or 'U'")
    a = _square_matrices(a, name)
    double = _in_double(a)
    return _as(P.eigh(double if UPLO == "L" else P.swap_last(double)), a)


def eigh(a, UPLO="L"):
    """NumPy's EighResult (eigenvalues ascending, eigenvectors as columns) from
    the triangle UPLO names. Gradients assume a symmetric a (see ops.py).
    UPLO="U" reads a's upper triangle as the lower one of a^T, so an
    eigenvector's sign may differ from NumPy's, which asks LAPACK for "U"."""
    blocks = _eigh_blocks(a, UPLO, "eigh")
    return np.linalg._linalg.EighResult(fnp.getitem(blocks, (Ellipsis, 0, slice(None))),
                                        fnp.getitem(blocks, (Ellipsis, slice(1, None), slice(None))))


def eigvalsh(a, UPLO="L"):
    return fnp.getitem(_eigh_blocks(a, UPLO, "eigvalsh"), (Ellipsis, 0, slice(None)))


def _svd_parts(a, name):
    """(U, s, Vh) of a's reduced SVD, from one (m + 1 + n, k) block a matrix."""
    a = _matrices(a, name)
    m = a.shape[-2]
    blocks = _as(P.svd(_in_double(a)), a)
    return (rows(blocks, 0, m), fnp.getitem(blocks, (Ellipsis, m, slice(None))),
            P.swap_last(rows(blocks, m + 1, None)))


def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """NumPy's SVDResult (U, S descending, Vh) with a = (U * S) @ Vh, or S alone
    (`compute_uv=False`). U and Vh of a matrix that is not square are the
    reduced ones (`full_matrices=False`, as a model asks for): the columns
    the full ones add are not unique, and have no gradient. A singular
    vector's sign is LAPACK's choice, as NumPy's (the same LAPACK routine)."""
    if hermitian:
        errors.refuse(errors.UnsupportedOpError,
                      "np.linalg.svd(hermitian=True) is not supported: pass hermitian=False "
                      "(the same singular values; the vectors' signs may differ)")
    u, s, vh = _svd_parts(a, "svd")
    if not compute_uv:
        return s
    if full_matrices and u.shape[-2] != vh.shape[-1]:
        errors.refuse(errors.UnsupportedOpError,
                      f"np.linalg.svd(full_matrices=True) of {u.shape[-2]} x {vh.shape[-1]} "
                      f"matrices is not supported: pass full_matrices=False (the full U or Vh's "
                      f"extra columns are not unique, and have no gradient)")
    return np.linalg._linalg.SVDResult(u, s, vh)


def svdvals(x, /):
    """np.linalg.svdvals: the singular values, descending. Their gradient is
    U diag(s') V^T, also where some are 0 or equal."""
    return _svd_parts(x, "svdvals")[1]


def qr(a, mode="reduced"):
    """NumPy's QRResult (Q, R), or R alone (mode "r"), of the reduced QR
    (mode "complete" where it is the same: a with no more rows than
    columns). The gradient needs R invertible (a of full rank)."""
    if mode not in ("reduced", "complete", "r", "raw"):
        errors.refuse(ValueError, f"Unrecognized mode '{mode}'")
    a = _matrices(a, "qr")
    m, n = a.shape[-2:]
    if mode == "raw" or (mode == "complete" and m > n):
        errors.refuse(errors.UnsupportedOpError,
                      f"np.linalg.qr(mode={mode!r}) is not supported" + (
                          f" for {m} x {n} matrices (more rows than columns): pass "
                          f"mode='reduced'" if mode == "complete" else
                          ": pass mode='reduced' (Q and R) or 'r'"))
    blocks = _as(P.qr(_in_double(a)), a)
    r = P.swap_last(rows(blocks, m, None))
    return r if mode == "r" else np.linalg._linalg.QRResult(rows(blocks, 0, m), r)


def pinv(a, rcond=None, hermitian=False, *, rtol=np._NoValue):
    """np.linalg.pinv (NumPy's cutoff: rcond, else rtol, times the largest
    singular value; hermitian=True gives the same matrix). Its gradient holds
    at any rank, as long as the rank does not change (see ops.py)."""
    a = _matrices(a, "pinv")
    if rcond is None:
        rcond = (1e-15 if rtol is np._NoValue else
                 max(a.shape[-2:]) * float(np.finfo(fnp.aval_of(a)[1]).eps) if rtol is None
                 else rtol)
    elif rtol is not np._NoValue:
        errors.refuse(errors.GraphcValueError, "`rtol` and `rcond` can't be both set.")
    if isinstance(rcond, fnp.Tracer) or np.ndim(rcond) != 0:
        errors.refuse(errors.UnsupportedOpError, "np.linalg.pinv: rcond (or rtol) must be one "
                                                 "number known when tracing")
    return _as(P.pinv(_in_double(a), float(rcond)), a)


def lstsq(a, b, rcond=None):
    """np.linalg.lstsq: (x, residuals, rank, s), x the least-squares solution
    of least norm, pinv(a, rcond) @ b (rcond: eps times max(m, n) by
    default, as NumPy's), differentiable in a and b. The residuals (the
    squared norm of each column of a @ x - b) are given whenever a has more
    rows than columns; NumPy gives none when a's rank is lower than its
    columns, a number known only when the code runs."""
    a, b = _matrices(a, "lstsq"), fnp._as_array(b)
    if a.ndim != 2 or b.ndim not in (1, 2):
        errors.refuse(errors.GraphcLinAlgError, f"np.linalg.lstsq: a is 2-d and b 1-d or 2-d, "
                                                f"got {a.ndim}-d and {b.ndim}-d")
    m, n = a.shape
    if b.shape[0] != m:
        errors.refuse(errors.GraphcLinAlgError, "Incompatible dimensions")
    dtype = np.result_type(fnp.aval_of(a)[1], fnp._float_dtype(b))
    # in float64 throughout, float32's results rounded (_in_double), and
    # NumPy's default cutoff with float64's eps: float32's picked another
    # rank, and another x, for a singular value of 3e-7 (a review)
    a, b = _in_double(a), _in_double(b)
    if rcond is None:
        rcond = float(np.finfo(np.float64).eps) * max(m, n)
    x = fnp.matmul(pinv(a, rcond), b)
    s = svdvals(a)
    rank = fnp.astype(_rank(s, rcond), np.int32)
    if m > n:
        misfit = fnp.subtract(fnp.matmul(a, x), b)
        residuals = fnp.sum(fnp.square(fnp.reshape(misfit, (m, -1))), axis=0)
    else:
        residuals = np.zeros(0, np.float64)
    return (fnp.astype(x, dtype), fnp.astype(residuals, dtype), rank,
            fnp.astype(s, dtype))


def matrix_rank(A, tol=None, hermitian=False, *, rtol=None):
    """np.linalg.matrix_rank: the singular values above tol (by default the
    largest times max(m, n) times eps, or times rtol), counted (int64)."""
    from graphc.composites import any_
    A = fnp._as_array(A)
    if A.ndim < 2:
        return fnp.astype(any_(A), np.int64)
    s = svdvals(A)
    if tol is not None:
        return _count_above(s, fnp.expand_dims(fnp._as_array(tol), -1))
    return _rank(s, max(A.shape[-2:]) * float(np.finfo(fnp.aval_of(s)[1]).eps) if rtol is None
                 else fnp.expand_dims(fnp._as_array(rtol), -1))


def _rank(s, rtol):
    """How many singular values (descending, on the last axis) are above rtol
    times the largest (matrix_rank's and lstsq's rank)."""
    return _count_above(s, fnp.multiply(fnp.max(s, axis=-1, keepdims=True, initial=0.0), rtol))


def _count_above(s, tol):
    return fnp.sum(fnp.astype(fnp.greater(s, tol), np.int64), axis=-1)


def cond(x, p=None):
    """np.linalg.cond: the ratio of the extreme singular values (p None, 2 or
    -2: inf for a singular matrix, as NumPy's), else norm(x, p) times
    norm(inv(x), p) (a singular matrix raises LinAlgError there, where
    NumPy's gives inf)."""
    x = _matrices(x, "cond")
    if p is None or p in (2, -2):
        s = svdvals(x)
        largest, smallest = (fnp.getitem(s, (Ellipsis, k)) for k in (0, -1))
        ratio = fnp.true_divide(*((smallest, largest) if p == -2 else (largest, smallest)))
        # 0 / 0 (a zero matrix) is inf, as NumPy's, unless x holds a nan
        from graphc.composites import any_, isnan
        return fnp.where(fnp.logical_and(isnan(ratio), fnp.logical_not(any_(isnan(x), (-2, -1)))),
                         np.inf, ratio)
    from graphc.composites import norm
    return fnp.multiply(norm(x, p, axis=(-2, -1)), norm(inv(x), p, axis=(-2, -1)))


# NumPy 2's array-API names in np.linalg: the functions above over the last
# axes (the matrices of a stack), and a few compositions
def _vectors_only(name, *arrays):
    for x in arrays:
        if fnp._as_array(x).ndim != 1:
            errors.refuse(errors.ShapeError, f"np.linalg.{name}: both arguments must be 1-d "
                                             f"vectors, got {fnp._as_array(x).ndim}-d")


def linalg_outer(x1, x2, /):
    from graphc.composites import outer
    _vectors_only("outer", x1, x2)
    return outer(x1, x2)


def vecdot(x1, x2, /, *, axis=-1):
    """np.linalg.vecdot (and the np.vecdot ufunc): sum(x1 * x2) over `axis`, broadcast."""
    product = fnp.multiply(x1, x2)
    if fnp.ndim(product) == 0:
        errors.refuse(errors.ShapeError, "vecdot: the arguments need at least one axis")
    if fnp.aval_of(product)[1] == np.bool_:     # NumPy's: any of the ands, a bool
        from graphc.composites import any_
        return any_(product, axis)
    return fnp.sum(product, axis=axis)


def matrix_transpose(x, /):
    x = fnp._as_array(x)
    if x.ndim < 2:
        errors.refuse(errors.ShapeError, f"matrix_transpose: the array must be at least 2-d, "
                                         f"got {x.ndim}-d")
    return fnp.swapaxes(x, -1, -2)


def linalg_trace(x, /, *, offset=0, dtype=None):
    return trace(x, offset, -2, -1, dtype)


def linalg_diagonal(x, /, *, offset=0):
    return diagonal(x, offset, -2, -1)


def linalg_cross(x1, x2, /, *, axis=-1):
    x1, x2 = fnp._as_array(x1), fnp._as_array(x2)
    if any(x.ndim and x.shape[axis] != 3 for x in (x1, x2)):
        errors.refuse(errors.ShapeError, "np.linalg.cross: both arguments need 3 elements "
                                         "along the axis")
    if axis not in (-1, max(x1.ndim, x2.ndim) - 1):
        x1, x2 = (fnp.moveaxis(x, axis, -1) for x in (x1, x2))
        return fnp.moveaxis(cross(x1, x2), -1, axis)
    return cross(x1, x2)


def multi_dot(arrays, *, out=None):
    """np.linalg.multi_dot: the products in order, left to right (NumPy picks
    the cheapest order; the result is the same up to rounding). A first 1-d
    array is a row, a last one a column, as np.matmul takes them."""
    if out is not None:
        errors.refuse(errors.UnsupportedOpError, "np.linalg.multi_dot(out=) is not supported")
    arrays = [fnp._as_array(x) for x in arrays]
    if len(arrays) < 2:
        errors.refuse(errors.GraphcValueError, "Expecting at least two arrays.")
    if len(arrays) == 2:        # NumPy's: np.dot of the two
        return fnp.dot(*arrays)
    for k, x in enumerate(arrays):      # matrices, but for a first or last vector
        if x.ndim != 2 and not (x.ndim == 1 and k in (0, len(arrays) - 1)):
            errors.refuse(errors.GraphcLinAlgError, f"{x.ndim}-dimensional array given. Array "
                                                    f"must be two-dimensional")
    result = arrays[0]
    for x in arrays[1:]:
        result = fnp.matmul(result, x)
    return result


def matrix_power(a, n):
    """np.linalg.matrix_power: products of squares of a (n >= 0), or of inv(a) (n < 0)."""
    a = fnp._as_array(a)
    try:
        n = operator.index(n)
    except TypeError:
        errors.refuse(errors.GraphcTypeError, "exponent must be an integer")
    _square_matrices(a, "matrix_power")
    if n == 0:
        return fnp.broadcast_to(np.eye(a.shape[-1], dtype=fnp.aval_of(a)[1]), a.shape)
    base, result = (inv(a) if n < 0 else a), None
    n = abs(n)
    while n:        # binary powering: one product a bit
        if n & 1:
            result = base if result is None else fnp.matmul(result, base)
        n >>= 1
        if n:
            base = fnp.matmul(base, base)
    return result


def fill_diagonal(a, val, wrap=False):
    """np.fill_diagonal into a traced array: an assignment (a[i, i, ...] = val),
    which every name bound to `a` then stands for. 2-d arrays of any shape
    (without wrap) and arrays whose axes are all as long."""
    a = fnp._as_array(a)
    if a.ndim < 2:
        errors.refuse(errors.GraphcValueError, "array must be at least 2-d")
    if a.ndim > 2 and len(set(a.shape)) != 1:
        errors.refuse(errors.GraphcValueError, "All dimensions of input must be of equal length")
    if wrap and a.ndim == 2 and a.shape[0] > a.shape[1] + 1:
        errors.refuse(errors.UnsupportedOpError, "np.fill_diagonal(wrap=True) of a tall "
                                                 "matrix is not supported")
    index = np.arange(min(a.shape))
    value = fnp._as_array(val)
    if fnp.ndim(value) > 0:     # NumPy repeats a sequence of values along the diagonal
        value = fnp.reshape(value, (-1,))
        value = fnp.getitem(value, np.arange(len(index)) % fnp.size(value))
    a[(index,) * a.ndim] = value


LINALG = {np.linalg.inv: inv, np.linalg.det: det, np.linalg.slogdet: slogdet,
          np.linalg.solve: solve, np.linalg.cholesky: cholesky, np.linalg.eigh: eigh,
          np.linalg.eigvalsh: eigvalsh, np.linalg.svd: svd, np.linalg.svdvals: svdvals,
          np.linalg.qr: qr, np.linalg.matmul: fnp.matmul, np.linalg.outer: linalg_outer,
          np.linalg.vecdot: vecdot, np.linalg.matrix_transpose: matrix_transpose,
          np.linalg.trace: linalg_trace, np.linalg.diagonal: linalg_diagonal,
          np.linalg.cross: linalg_cross, np.linalg.multi_dot: multi_dot,
          np.linalg.matrix_power: matrix_power, np.linalg.pinv: pinv, np.linalg.lstsq: lstsq,
          np.linalg.matrix_rank: matrix_rank, np.linalg.cond: cond}

FUNCTIONS = {
    np.diagonal: diagonal, np.diag: diag, np.trace: trace, np.kron: kron, np.cross: cross,
    np.atleast_1d: atleast_1d, np.atleast_2d: atleast_2d, np.atleast_3d: atleast_3d, **LINALG,
    np.matrix_transpose: matrix_transpose, np.fill_diagonal: fill_diagonal,
}
