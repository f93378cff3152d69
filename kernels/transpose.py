"""Transposed copies of 2-D float arrays, in 8x8 tiles of vector shuffles.

Why: a dense layer's backward GEMM is g @ W.T, and where OpenBLAS has
small-matrix kernels (SkylakeX's) it runs that product of small matrices
fastest as a plain GEMM on a copy of W.T (see blas._transposing_b_pays).
Numba's np.ascontiguousarray(W.T) copies one element at a time with a
strided read each: 1.9-2.2 us for 64x64 float32, as long as the GEMM it
serves. A tile of 8 rows is loaded as 8 vectors, turned
into 8 columns by 24 shuffles (three rounds of interleaving: elements, pairs,
then halves) and stored as 8 vectors.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from graphc.kernels import dispatch

TILE = 8

# Each round takes two vectors a, b (indices 0-7 and 8-15 of their concatenation).
_ELEMENTS = ([0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15])   # rows k, k+1
_PAIRS = ([0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15])       # results k, k+2
_HALVES = ([0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15])      # results k, k+4


def _shuffle(builder, a, b, mask):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), TILE), mask))


def _tile_columns(builder, rows):
    """The 8 columns of the 8x8 tile whose rows are `rows` (vectors)."""
    t = []
    for k in range(0, TILE, 2):         # rows k and k+1, element by element
        t += [_shuffle(builder, rows[k], rows[k + 1], m) for m in _ELEMENTS]
    s = []
    for base in (0, 4):                 # then pairs of elements
        t0, t1, t2, t3 = t[base:base + 4]
        s += [_shuffle(builder, t0, t2, m) for m in _PAIRS] + [
            _shuffle(builder, t1, t3, m) for m in _PAIRS]
    return ([_shuffle(builder, s[k], s[k + 4], _HALVES[0]) for k in range(4)] +   # then halves
            [_shuffle(builder, s[k], s[k + 4], _HALVES[1]) for k in range(4)])


@intrinsic
def _transpose_tile(typingctx, src, src_row_bytes, dst, dst_row_bytes, dtype):
    """dst[j, i] = src[i, j] for i, j < 8: src and dst are the addresses of the
    tiles' first elements, each row's elements contiguous."""
    if not (isinstance(dtype, types.DType) and dtype.dtype in (types.float32, types.float64)):
        return None
    elem = dtype.dtype

    def codegen(context, builder, sig, args):
        src, src_row, dst, dst_row, _ = args
        fty = context.get_value_type(elem)
        vptr = ir.VectorType(fty, TILE).as_pointer()
        align = context.get_abi_sizeof(fty)

        def row_ptr(base, row_bytes, k):
            offset = builder.mul(row_bytes, ir.Constant(row_bytes.type, k))
            return builder.inttoptr(builder.add(base, offset), vptr)
        rows = [builder.load(row_ptr(src, src_row, k), align=align) for k in range(TILE)]
        for k, column in enumerate(_tile_columns(builder, rows)):
            builder.store(column, row_ptr(dst, dst_row, k), align=align)
        return context.get_dummy_value()

    return types.none(types.intp, types.intp, types.intp, types.intp, dtype), codegen


@dispatch.unliteral_calls
@dispatch.called_by_symbol
@njit(cache=True, nogil=True)
def transpose_into(b, out):
    """out[...] = b.T for a 2-D float32/float64 `b` and a C-contiguous `out` of
    shape b.shape[::-1] sharing no memory with it: in tiles when b's rows are
    contiguous, else element by element."""
    m, n = b.shape
    if out.shape != (n, m) or not out.flags.c_contiguous:
        raise ValueError("transpose_into: out must be C-contiguous, of shape b.shape[::-1]")
    if b.strides[1] != b.itemsize:
        # a plain loop: Numba takes about 10 s to compile `out[...] = b.T`
        for i in range(m):
            for j in range(n):
                out[j, i] = b[i, j]
        return
    size = b.itemsize
    src, dst = b.ctypes.data, out.ctypes.data
    src_row, dst_row = b.strides[0], out.strides[0]
    m_tiles, n_tiles = m - m % TILE, n - n % TILE
    for i in range(0, m_tiles, TILE):
        for j in range(0, n_tiles, TILE):
            _transpose_tile(src + i * src_row + j * size, src_row,
                            dst + j * dst_row + i * size, dst_row, b.dtype)
    for i in range(m_tiles):                # the columns past the last whole tile
        for j in range(n_tiles, n):
            out[j, i] = b[i, j]
    for i in range(m_tiles, m):             # the rows past it
        for j in range(n):
            out[j, i] = b[i, j]


@dispatch.unliteral_calls
@dispatch.called_by_symbol
@njit(cache=True, nogil=True)
def transposed(b):
    """A new C-contiguous copy of b.T (2-D float32/float64)."""
    out = np.empty((b.shape[1], b.shape[0]), b.dtype)
    transpose_into(b, out)
    return out
