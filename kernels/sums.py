"""A float32 column sum's bookkeeping, compiled once per install.

Generated code sums a float32 column (a bias gradient: rows of a batch
added into one row) in float32, and past SUM_ROWS rows (graphc.codegen)
folds each block of rows into float64 totals. Written into every kernel
that sums so, these three loops and the test around the fold cost Numba
and LLVM about 0.25 s of compile time a kernel; called, they are compiled
here once, and each kernel holds three calls (W2's cold first call, with
three bias gradients: 5.22 -> 4.79 s).
"""
from numba import njit

from graphc.kernels import alloc, dispatch


@dispatch.unliteral_calls
@njit(cache=True, nogil=True)
def zero(block):
    """block[:] = 0 for a 1-D array."""
    for j in range(block.shape[0]):
        block[j] = 0


@dispatch.unliteral_calls
@dispatch.called_by_symbol
@njit(cache=True, nogil=True)
def fold_rows(totals, block, row, num_rows, rows_per_fold):
    """After row `row` of `num_rows`: at the end of every `rows_per_fold` rows
    and after the last, add `block` into `totals` and zero it. Nothing
    when `totals` has no elements (alloc.full_if: few rows need none)."""
    if totals.shape[0] and (row % rows_per_fold == rows_per_fold - 1 or row == num_rows - 1):
        for j in range(totals.shape[0]):
            totals[j] += block[j]
            block[j] = 0


@dispatch.unliteral_calls
@njit(cache=True, nogil=True)
def copy_totals(block, totals):
    """block[:] = totals, in block's dtype, when there are totals."""
    if totals.shape[0]:
        alloc.copy_flat(block, totals)
