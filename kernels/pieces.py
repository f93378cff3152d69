"""Copies between a concatenation and its pieces, both as 2-D rows.

Generated code views a concatenation along an axis as rows: the axes before
it are the rows, the axis and those after it one row (codegen._as_rows), so
each piece is a block of columns. A concatenation of more pieces than
graphc.codegen.INLINE_PIECES copies them by calls of copy_columns, compiled
once per install and dtype, not loops in every model's `run`: a stack of 40
column slices, 40 loop nests there, took 32 s to compile, 5 with calls.
Fewer pieces take the same loops inline (a call costs run time).

A piece narrower than NARROW_PIECE columns is copied down its columns, so
the inner loop runs over the rows; wider ones along the rows. Measured
(benchmarks/bench_concatenate.py, ns an element along the rows and down the
columns, float32): width 1 1.44 and 0.23, width 2 0.86 and 0.46, width 3
0.72 and 0.72, width 4 0.62 and 1.03; float64 width 1 1.72 and 0.54, width
2 1.01 and 1.03. A loop per axis, as generated before, ran its innermost
over a piece's last axis, often of length 1 (np.stack(axis=-1),
sliding_window_view's stacks of shifted slices): 2.3 ns an element.
"""
from numba import njit

from graphc.kernels import dispatch

NARROW_PIECE = 3


@dispatch.unliteral_calls
@dispatch.called_by_symbol
@njit(cache=True, nogil=True, error_model="numpy")
def copy_columns(dst, dst_col, src, src_col, width):
    """dst[:, dst_col:dst_col + width] = src[:, src_col:src_col + width] for 2-D
    C-contiguous arrays of the same number of rows: a piece into its
    concatenation (src_col 0) or out of it (dst_col 0). codegen._piece_copy
    writes these loops inline for concatenations of few pieces."""
    rows = dst.shape[0]
    if width < NARROW_PIECE:
        for j in range(width):
            for i in range(rows):
                dst[i, dst_col + j] = src[i, src_col + j]
    else:
        for i in range(rows):
            for j in range(width):
                dst[i, dst_col + j] = src[i, src_col + j]
