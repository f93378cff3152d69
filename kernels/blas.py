"""BLAS GEMM with alpha and beta, callable from Numba code.

`np.dot(a, b, out)` in Numba always computes out = a @ b. A plain SGD
update of a weight, W - lr * (h.T @ g), is one BLAS call when the GEMM
accumulates into W itself: W = (-lr) * h.T @ g + 1 * W. That skips the
gradient buffer and a separate pass over the weights (read dW, read W,
write W), which is most of what a GEMM-bound step spends outside its GEMMs.

The GEMM is a CBLAS ?gemm of the library kernels/blas_library.py binds
(NumPy's own BLAS where it can be found), declared by symbol name, so
functions calling it can be cached on disk like any other.
"""
import platform

import llvmlite.binding as llvm_binding
import llvmlite.ir as llvm_ir
import numpy as np
from numba import carray, njit, types
from numba.core import sigutils
from numba.core.ccallback import CFunc
from numba.core.compiler_lock import global_compiler_lock
from numba.core.errors import TypingError
from numba.extending import intrinsic

from graphc.kernels import blas_library, dispatch, small_gemm, transpose


BLAS = blas_library.bind()     # which library: before any caller is compiled or loaded
_sgemm = types.ExternalFunction(blas_library.SGEMM, blas_library.CBLAS_SIGNATURE(types.float32))
_dgemm = types.ExternalFunction(blas_library.DGEMM, blas_library.CBLAS_SIGNATURE(types.float64))
_sgemm_large = types.ExternalFunction(blas_library.SGEMM_LARGE,
                                      blas_library.CBLAS_SIGNATURE(types.float32))
_dgemm_large = types.ExternalFunction(blas_library.DGEMM_LARGE,
                                      blas_library.CBLAS_SIGNATURE(types.float64))
_LARGE_GEMM_MIN = blas_library.LARGE_GEMM_MIN
_ROW_MAJOR, _NO_TRANS, _TRANS = (blas_library.ROW_MAJOR, blas_library.NO_TRANS,
                                 blas_library.TRANS)


# b.T is copied for a @ b.T only up to this many elements (see _transposing_b_pays):
# generated code sizes gemm's scratch by it
TRANSPOSED_MAX = 8192
# products of at most this many multiply-adds, summing over at most
# SMALL_GEMM_K, run in small_gemm (see _small_pays)
SMALL_GEMM_MAX = 1 << 19
SMALL_GEMM_K = 64


def _host_has_avx2_fma() -> bool:
    """Whether small_gemm's FMAs on 256-bit vectors are instructions here
    (without AVX2 and FMA LLVM would call fmaf per lane). As
    graphc.target.host_has_avx512, which kernels cannot import: an
    exported step embeds them without graphc."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        features = llvm_binding.get_host_cpu_features()
    except RuntimeError:        # llvmlite cannot read them here
        return False
    return bool(features.get("avx2") and features.get("fma"))


_AVX2_FMA = _host_has_avx2_fma()


def _blas_flag(name: str, bit: int, doc: str):
    """An intrinsic `name`: whether `bit` of blas_library.COPY_TRANSPOSED_B is
    set, read at run time (cached code follows the BLAS of the process running it)."""
    def flag_set(typingctx):
        def codegen(context, builder, sig, args):
            flag = context.get_c_value(builder, llvm_ir.IntType(32), blas_library.COPY_TRANSPOSED_B)
            value = builder.and_(builder.load(flag), llvm_ir.Constant(flag.type.pointee, bit))
            return builder.icmp_unsigned("!=", value, llvm_ir.Constant(flag.type.pointee, 0))

        return types.boolean(), codegen

    flag_set.__name__ = flag_set.__qualname__ = name
    flag_set.__doc__ = doc
    return intrinsic(flag_set)


_copying_transposed_b_may_pay = _blas_flag(
    "_copying_transposed_b_may_pay", blas_library.SMALL_KERNELS,
    """Whether the BLAS in use has small-matrix kernels that make a copy of b.T pay.""")
# (SGEMM_LARGE's address against SGEMM's would be no test: LLVM takes two
# symbols for two addresses)
_large_products_elsewhere = _blas_flag(
    "_large_products_elsewhere", blas_library.LARGE_TO_MKL,
    """Whether products of LARGE_GEMM_MIN or more go to MKL's GEMMs (GRAPHC_BLAS=mkl).""")


@njit(cache=True, nogil=True, inline="always")
def _transposing_b_pays(m, n, k):
    """Whether a @ b.T runs faster as a copy of b.T and a plain a @ b.

    Where OpenBLAS has small-matrix kernels (its SkylakeX, Cooperlake and
    SapphireRapids cores, which Intel and AMD CPUs with AVX-512 get; see
    blas_library), the one for a @ b.T (row-major; "TN" to the column-major
    BLAS) takes up to twice as long as for a @ b: 6.5 against 2.7 us (3.1
    with the copy) for 32x64 @ 64x64 float32, the backward GEMM of each of
    W4's layers. Copying b.T (k*n elements, transpose.transpose_into) first pays
    while that kernel is in use (m*n*k under 2**20) and at least 16 rows of
    a share the copy, for b up to the 8192 elements measured; with n under
    16 the two kernels take the same time. Elsewhere (OpenBLAS's Haswell
    kernels) both take the same time and the copy never pays.
    benchmarks/bench_gemm_nt.py measures both ways.
    """
    return (m >= 16 and n >= 16 and k * n <= TRANSPOSED_MAX and m * n * k < 1 << 20
            and _copying_transposed_b_may_pay())


# OpenBLAS's small-matrix kernels take products of up to this many
# multiply-adds (its bound, 100**3, as measured: 12 against 16 ps a
# multiply-add for float32 64 x 64 columns at 786432 and 1044480)
SMALL_KERNELS_MAX = 1_000_000
# and a product past it runs faster in blocks they take, of at least this
# many rows (see _block_rows)
BLOCK_ROWS_MIN = 64


@njit(cache=True, nogil=True, inline="always")
def _block_rows(rows, per_row):
    """How many rows (of a, for a @ b; of the summed axis, for a.T @ b) each
    BLAS call of a product takes, `per_row` multiply-adds a row: all of
    them (0) unless OpenBLAS's small-matrix kernels are in use
    (_copying_transposed_b_may_pay) and blocks under SMALL_KERNELS_MAX have
    BLOCK_ROWS_MIN rows or more. On this project's Xeon (OpenBLAS SkylakeX,
    one thread, benchmarks/bench_gemm_blocks.py), one call's time against
    the blocks', float32 and float64: 512x64 @ 64x64 1.30 and 1.35 (its
    weight gradient, summing the 512 rows: 1.21 and 1.45), 4096x32 @ 32x32
    1.53 and 1.52, 1024x100 @ 100x100 1.19 and 1.47, 512x784 @ 784x16 1.43
    and 1.86; 512x64 @ 64x128 1.20 and 0.99. Blocks of 56 rows lost
    (2048x128 @ 128x128: 461 against 548 us). a @ b.T in blocks lost
    everywhere (its small kernel is the slow one: see _transposing_b_pays),
    so it is blocked only as a copy of b.T.
    Not where products past LARGE_GEMM_MIN go to MKL (GRAPHC_BLAS=mkl):
    blocks would go to OpenBLAS instead."""
    if (rows * per_row <= SMALL_KERNELS_MAX or not _copying_transposed_b_may_pay()
            or _large_products_elsewhere()):
        return 0
    block = SMALL_KERNELS_MAX // per_row // 8 * 8
    return block if block >= BLOCK_ROWS_MIN else 0


@njit(cache=True, nogil=True, inline="always")
def _small_pays(m, n, k, itemsize):
    """Whether small_gemm beats the BLAS call: on x86-64 with AVX2 and FMA, a BLAS
    without small-matrix kernels (OpenBLAS's Haswell and Zen cores, which
    pack both operands for any size), for up to SMALL_GEMM_MAX multiply-adds
    over at most SMALL_GEMM_K, and whole 256-bit vectors of columns
    (small_gemm's condition). On the AMD EPYC VM (quiet,
    benchmarks/bench_small_gemm.py), BLAS time / small_gemm's, float32 and
    float64: 32x64 @ 64x64 1.21 and 1.09, (64x32).T @ 32x64 1.22 and 1.14,
    64x64 @ 64x64 1.16 and 1.15, 128x10 @ 10x256 1.18 and 1.17; with more
    to sum the operands outgrow L1 and the unblocked kernel loses: 64x128 @
    128x64 0.98 and 0.89, 128x128 @ 128x128 0.97 and 0.93. Not measured
    where OpenBLAS has small-matrix kernels (AVX-512 cores), nor off x86."""
    return (_AVX2_FMA and k <= SMALL_GEMM_K and m * n * k <= SMALL_GEMM_MAX
            and n % (32 // itemsize) == 0 and not _copying_transposed_b_may_pay())


@njit(cache=True, nogil=True, inline="always")
def _copy_for_small_pays(n, k, itemsize):
    """Whether a small a @ b.T (_small_pays) runs faster as a copy of b.T
    (into gemm's scratch) and small_gemm than as the BLAS call: for
    float32 summing over 32 or more. Measured (a Numba loop of 2000
    products each, AMD VM), BLAS against copy + small_gemm: 32x64 @
    (64x64).T float32 4.35 against 3.88 us (the copy 0.44), float64 7.56
    against 8.52 (the copy 1.33); 128x10 @ (256x10).T float32 18.5 against
    19.6."""
    return itemsize == 4 and k >= 32 and k * n <= TRANSPOSED_MAX


def _building_its_c_function(dispatcher):
    """Have gemm's dispatcher build the C function for c's dtype before it
    compiles or loads a version: a call from Python and the compile of a
    function calling gemm both go through its compile()."""
    compile_version = dispatcher.compile

    def compile(sig):
        c = (sig.args if hasattr(sig, "args") else tuple(sig))[2]
        if isinstance(c, types.Array) and c.dtype in (types.float32, types.float64):
            build_gemm(c.dtype.bitwidth // 8)
        return compile_version(sig)

    dispatcher.compile = compile
    return dispatcher


@dispatch.unliteral_calls
@dispatch.called_by_symbol
@njit(cache=True, nogil=True)
def mirror_lower(c):
    """c's upper triangle := its lower one's mirror, for a square 2-D c: a
    product of an array with its own transpose (x @ x.T), which GEMM
    computes with its two triangles' sums in different orders, is then
    symmetric bit for bit, as NumPy's (BLAS ?syrk) is. A Gaussian process's
    K = f(x @ x.T) then passes cholesky_solve's test for symmetry
    (graphc/passes/factor_solves.py marks such products)."""
    for i in range(c.shape[0]):
        for j in range(i):
            c[j, i] = c[i, j]


@_building_its_c_function
@dispatch.unliteral_calls
@dispatch.called_by_symbol
@njit(cache=True, nogil=True)
def gemm(a, b, c, transpose_a, transpose_b, alpha, beta, scratch=None):
    """c = alpha * op(a) @ op(b) + beta * c, in place, for 2-D float32/float64 arrays.

    op(x) is x.T when its flag is set. Each array is read with its rows as
    they lie when BLAS can (the elements of a row adjacent, rows evenly
    spaced forward: a C-contiguous array, or a view of a block of one, such
    as one head's matrix of a (batch, tokens, heads, width) array); `a` and
    `b` are copied first where it cannot, and `c` must be so. `c` shares no
    memory with `a` or `b`. b.T is copied too when that is faster (never
    past TRANSPOSED_MAX elements), into `scratch` (1-D, C-contiguous, c's
    dtype, at least b.size elements: generated code passes a workspace
    slot); without room there BLAS reads b.T as it is. Small products run
    in small_gemm instead of the BLAS where that is faster (_small_pays,
    _copy_for_small_pays).

    The choice and the work run in a C function compiled once per install
    and dtype (_gemm_by_address, build_gemm), called by its address from
    GEMM_TABLE: Numba links an njit callee's code into every caller's module
    and has LLVM optimize and compile it again there, so this wrapper is all
    of gemm that each model's module holds. A C function cannot raise, so
    everything it relies on is checked here first, and it allocates nothing.
    """
    if not _rows_as_they_lie(c):
        raise ValueError("gemm: the output's rows must be contiguous and evenly spaced")
    _checked_gemm(_rows_readable(a), _rows_readable(b), c,
                  transpose_a, transpose_b, alpha, beta, scratch)


@njit(cache=True, nogil=True, inline="always")
def _rows_as_they_lie(x):
    """Whether BLAS reads 2-D `x` in place, by a leading dimension: the
    elements of each row adjacent, the rows a whole number of elements
    apart, forward, and no closer than a row's length (any empty array:
    NumPy gives some zero strides)."""
    rows, cols = x.shape
    return x.size == 0 or ((cols <= 1 or x.strides[1] == x.itemsize)
            and (rows <= 1 or (x.strides[0] % x.itemsize == 0
                               and x.strides[0] >= max(cols, 1) * x.itemsize)))


@njit(cache=True, nogil=True, inline="always")
def _rows_readable(x):
    """x, or a C-contiguous copy of it where BLAS cannot read it in place."""
    return x if _rows_as_they_lie(x) else np.ascontiguousarray(x)


@njit(cache=True, nogil=True, inline="always")
def _leading_dimension(x):
    """BLAS's lda of a row-major x that _rows_as_they_lie: the distance
    between its rows in elements, at least its row's length and 1 (BLAS
    refuses less, and computes nothing)."""
    rows, cols = x.shape
    return max(x.strides[0] // x.itemsize, cols, 1) if rows > 1 else max(cols, 1)


@njit(cache=True, nogil=True)
def _checked_gemm(a, b, c, transpose_a, transpose_b, alpha, beta, scratch):
    """gemm's call of its C function. A function of its own so that `a` and
    `b`, copies gemm may have made, outlive the call that reads them by address."""
    m, n = c.shape
    k = a.shape[0] if transpose_a else a.shape[1]
    # the C function reads the operands by address with these shapes: checked
    # here, since it cannot raise (generated code passes shapes that fit)
    if (a.shape[1] if transpose_a else a.shape[0]) != m or b.shape != ((n, k) if transpose_b else (k, n)):
        raise ValueError("gemm: the shapes of a, b and c do not fit together")
    if not (a.dtype == c.dtype and b.dtype == c.dtype):     # (Numba has no != for dtypes)
        raise ValueError("gemm: a, b and c must have one dtype")
    if scratch is not None and not (scratch.dtype == c.dtype and scratch.flags.c_contiguous):
        raise ValueError("gemm: scratch must be C-contiguous, of c's dtype")
    if m == 0 or n == 0:
        return
    address = _built_gemm(c)
    if address == 0:
        raise ValueError("gemm: its C function for this dtype is not built in this process "
                         "(graphc.kernels.blas.build_gemm)")
    scratch_at, scratch_size = (0, 0) if scratch is None else (scratch.ctypes.data, scratch.size)
    flags = (1 if transpose_a else 0) | (2 if transpose_b else 0)
    _call_gemm(address, flags, m, n, k, alpha, a.ctypes.data, b.ctypes.data, beta,
               c.ctypes.data, scratch_at, scratch_size, _leading_dimension(a),
               _leading_dimension(b), _leading_dimension(c), c)


def GEMM_SIGNATURE(real):
    """c = alpha * op(a) @ op(b) + beta * c for row-major a, b and c given by
    address: (flags: 1 transposes a, 2 transposes b; m, n, k, alpha, a, b,
    beta, c, scratch's address and size in elements, 0 and 0 for none, then
    the leading dimensions of a, b and c: BLAS's lda, ldb and ldc)."""
    return types.void(types.intp, types.intp, types.intp, types.intp, real, types.intp,
                      types.intp, real, types.intp, types.intp, types.intp,
                      types.intp, types.intp, types.intp)


# The addresses of gemm's C functions, float32's then float64's (0 until
# built), in a table compiled code finds by this symbol name, so code loaded
# from disk calls whichever this process has built. Built on first use: a
# float32 model never builds the float64 one (2.8 s on a new install).
# Exported steps embed this module, and one process may hold several copies:
# give the table a new name whenever GEMM_SIGNATURE changes.
GEMM_TABLE = "graphc_gemm_table_2"
_table = dispatch.shared_address_table(GEMM_TABLE, 2)


@intrinsic
def _built_gemm(typingctx, c):
    """The address of the C function for c's dtype from GEMM_TABLE (0: not built)."""
    if c.dtype not in (types.float32, types.float64):
        raise TypingError(f"gemm: float32 or float64 arrays only, not {c.dtype}")
    index = 0 if c.dtype == types.float32 else 1

    def codegen(context, builder, sig, args):
        entry = context.get_value_type(types.intp)
        table = context.get_c_value(builder, llvm_ir.ArrayType(entry, 2), GEMM_TABLE)
        i32 = llvm_ir.IntType(32)
        return builder.load(builder.gep(table, [i32(0), i32(index)]))

    return types.intp(c), codegen


@intrinsic
def _call_gemm(typingctx, address, flags, m, n, k, alpha, a, b, beta, c, scratch, scratch_size,
               lda, ldb, ldc, like):
    """Call the GEMM_SIGNATURE C function at `address` for `like`'s dtype,
    each argument converted to the signature's type."""
    target = GEMM_SIGNATURE(like.dtype)
    sig = types.void(address, flags, m, n, k, alpha, a, b, beta, c, scratch, scratch_size,
                     lda, ldb, ldc, like)

    def codegen(context, builder, sig, args):
        values = [context.cast(builder, v, t, want)
                  for v, t, want in zip(args[1:-1], sig.args[1:-1], target.args)]
        fnty = llvm_ir.FunctionType(llvm_ir.VoidType(),
                                    [context.get_value_type(t) for t in target.args])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), values)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _plan(m, n, k, transpose_a, transpose_b, scratch_size, itemsize):
    """How gemm runs c = op(a) @ op(b), m x n summing k: (small_gemm's
    kernel instead of the BLAS, b.T copied into the scratch first, rows
    each BLAS call takes: of a, or of the summed axis for a.T @ b; 0 for
    one call). a @ b.T is blocked only once b.T is copied, and a product
    with both operands transposed never."""
    small = _small_pays(m, n, k, itemsize)
    rows = 0 if small or (transpose_a and transpose_b) else (
        _block_rows(k, m * n) if transpose_a else _block_rows(m, n * k))
    copy_b = transpose_b and not transpose_a and k * n <= scratch_size and (
        _transposing_b_pays(rows if rows else m, n, k)
        or small and _copy_for_small_pays(n, k, itemsize))
    return small, copy_b, rows if copy_b or not transpose_b else 0


def _gemm_by_address(flags, m, n, k, alpha, a, b, beta, c, scratch, scratch_size, lda, ldb, ldc):
    """GEMM_SIGNATURE's C function (m, n > 0): small_gemm, or BLAS (on a copy
    of b.T, in blocks of rows) as _plan says (see gemm), each array the
    block of rows its leading dimension spaces. The BLAS calls take the
    addresses as they are: through views of the blocks, a product of 4x4
    took 25 ns longer."""
    transpose_a, transpose_b = (flags & 1) != 0, (flags & 2) != 0
    c_ = _rows_at(c, alpha, (m, n), ldc)
    small, copy_b, rows = _plan(m, n, k, transpose_a, transpose_b, scratch_size, c_.itemsize)
    if copy_b:
        transpose.transpose_into(_rows_at(b, alpha, (n, k), ldb),
                                 _rows_at(scratch, alpha, (k, n), max(n, 1)))
        b, ldb, transpose_b = scratch, max(n, 1), False
    size = c_.itemsize
    if small and not transpose_b:
        # a or a.T as one array type of any layout (a step in the slice makes
        # it 'A'): small_gemm reads a by its strides whatever its layout, and
        # one type is one compile of it instead of two (0.6 s each, once per
        # install and dtype: about a tenth of a new install's first model)
        a_ = _rows_at(a, alpha, (k, m) if transpose_a else (m, k), lda)
        a_any = a_.T[::1] if transpose_a else a_[::1]
        small_gemm.gemm_in_registers(a_any, _rows_at(b, alpha, (k, n), ldb), c_, alpha, beta)
    elif rows and transpose_a:      # c = beta c + alpha sum of a[s:].T @ b[s:] block by block
        for s in range(0, k, rows):
            _blas_call(c_, True, False, m, n, min(rows, k - s), alpha, a + s * lda * size, lda,
                       b + s * ldb * size, ldb, beta if s == 0 else 1.0, c, ldc)
    elif rows:
        for s in range(0, m, rows):
            _blas_call(c_, False, False, min(rows, m - s), n, k, alpha, a + s * lda * size, lda,
                       b, ldb, beta, c + s * ldc * size, ldc)
    else:
        _blas_call(c_, transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


@njit(cache=True, nogil=True, inline="always")
def _rows_at(address, like, shape, ld):
    """The (rows, cols) array of like's dtype at `address` whose rows are `ld`
    elements apart: a view of the (rows, ld) block they lie in (read no
    further than its rows' ends)."""
    rows, cols = shape
    return carray(dispatch.as_pointer(address, like), (rows, ld))[:, :cols]


@dispatch.unliteral_calls
@njit(cache=True, nogil=True)
def blas_gemm(a, b, c, transpose_a, transpose_b, alpha, beta):
    """gemm's BLAS call as it is, for a, b and c whose rows BLAS reads in
    place (_rows_as_they_lie), with m, n > 0."""
    m, n = c.shape
    k = a.shape[0] if transpose_a else a.shape[1]
    _blas_call(c, transpose_a, transpose_b, m, n, k, alpha, a.ctypes.data, _leading_dimension(a),
               b.ctypes.data, _leading_dimension(b), beta, c.ctypes.data, _leading_dimension(c))


@njit(cache=True, nogil=True, inline="always")
def _blas_call(like, transpose_a, transpose_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """The row-major ?gemm of like's dtype on a, b and c given by address,
    with their leading dimensions (m, n > 0)."""
    ta = _TRANS if transpose_a else _NO_TRANS
    tb = _TRANS if transpose_b else _NO_TRANS
    large = m * n * k >= _LARGE_GEMM_MIN     # MKL's with GRAPHC_BLAS=mkl
    if like.itemsize == 4:
        alpha32, beta32 = np.float32(alpha), np.float32(beta)
        if large:
            _sgemm_large(_ROW_MAJOR, ta, tb, m, n, k, alpha32, a, lda, b, ldb, beta32, c, ldc)
        else:
            _sgemm(_ROW_MAJOR, ta, tb, m, n, k, alpha32, a, lda, b, ldb, beta32, c, ldc)
    elif large:
        _dgemm_large(_ROW_MAJOR, ta, tb, m, n, k, np.float64(alpha), a, lda, b, ldb,
                     np.float64(beta), c, ldc)
    else:
        _dgemm(_ROW_MAJOR, ta, tb, m, n, k, np.float64(alpha), a, lda, b, ldb,
               np.float64(beta), c, ldc)


_gemm_cfuncs = []       # their code lives as long as these objects


def build_gemm(itemsize: int) -> None:
    """Compile (or load from disk) gemm's C function for float32 (itemsize 4)
    or float64 (8) and put its address in GEMM_TABLE, once per process.
    Generated modules call it at import for the dtypes they multiply, since
    their `run` loaded from disk never compiles gemm; blas_library.bind() has
    run by then (it must load SciPy's cython_blas first, else Numba's
    start-up imports all of scipy.linalg). Under Numba's compiler lock, which
    a compile calling gemm already holds (another lock taken inside it
    could deadlock against a thread importing a module)."""
    if itemsize not in (4, 8):
        raise ValueError(f"gemm: float32 (4) or float64 (8) only, not itemsize {itemsize}")
    index = 0 if itemsize == 4 else 1
    if _table[index]:
        return
    with global_compiler_lock:
        if not _table[index]:
            real = (types.float32, types.float64)[index]
            compiled = dispatch.load_without_refresh(
                CFunc(_gemm_by_address, sigutils.normalize_signature(GEMM_SIGNATURE(real)),
                      locals={}, options={"nopython": True}))
            compiled.compile()      # loaded from disk after the install's first use
            _gemm_cfuncs.append(compiled)
            _table[index] = compiled.address
