"""log_softmax and softmax over the last axis, compiled once per install.

Written into each model's module, log_softmax's loop nests cost Numba and
LLVM about 0.4 s of W2's cold first call (4.59 -> 4.17 s), and 1 s of a
1000-class classifier's (3.82 -> 2.78 s); called, Numba compiles them here
once per dtype and each model holds one call.
graphc.codegen picks the form by the row length it traced
(FLAT_SOFTMAX_BELOW): short rows (a classifier's classes) take their exps
in one flat loop over the whole array, long rows run row by row. They
share the peak, the floored exp and the shift below; their sums add in
different orders (up to 2 ulp apart in float32).

Unlike `run`, they do not ask LLVM for 512-bit vectors
(vmath.full_width_vectors): compiled once per install, they could not
follow GRAPHC_VECTOR_WIDTH=256 (graphc.target), which a process may set.

How it is written keeps LLVM's loops as fast as the generated form's
(kernels/__init__.py): the floor is a constant of the dtype, block indices
count from 0.
"""
import numpy as np
from numba import njit
from numba.extending import intrinsic

from graphc.kernels import dispatch, vmath

# A row's peak: rows of this many or more reduce with vmath.nan_max
# (llvm.maximum), which LLVM vectorizes; shorter ones run a compare-and-select
# chain, which it does not (NaN must win), faster there.
# log_softmax_short_rows over 65536 float32 elements (float64 in brackets),
# us with the chain against nan_max: rows of 10 89 against 131 (132 / 167),
# 16 76 / 79 (117 / 128), 24 76 / 78 (118 / 124), 32 72 / 58 (121 / 112),
# 48 76 / 71 (124 / 104). The long forms take nan_max for every row: against
# the 64 running maxima folded at each row's end they had before, softmax over
# 512 rows of 1000 float32 425 -> 343 us, 4096 of 512 1818 -> 1407,
# log_softmax 464 -> 404 and 2028 -> 1659, 2048 of 64 212 -> 117. Its -0.0 <
# +0.0 is no concern here: the peak is subtracted, never seen.
VECTOR_PEAK_MIN = 32
# A long row's exps are summed in the row's dtype within blocks of this many
# elements and the block sums in float64: a float64 register halves exp's
# vector width. As graphc.codegen.SUM_BLOCK.
SUM_BLOCK = 4096


@intrinsic
def _exp_floor(typingctx, like):
    """graphc.ops.exp_floor of `like`'s dtype, a constant in the code (kernels
    cannot import graphc; tests/test_log_softmax.py checks they agree)."""
    floor = float(np.log(np.finfo(np.dtype(str(like.dtype))).tiny)) + 1.0

    def codegen(context, builder, sig, args):
        return context.get_constant(sig.return_type, floor)

    return like.dtype(like), codegen


@njit(cache=True, nogil=True, inline="always")
def _later_max(earlier, later):
    """np.maximum(earlier, later), as np.max runs it: a NaN wins and then stays."""
    return later if later >= earlier or later != later else earlier


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _floored_exp(z, floor, zero):
    """exp(z), or 0 below exp(`floor`) (graphc.ops.exp_floor). exp's argument
    is clamped too: the vectorized select computes both sides."""
    return zero if z < floor else vmath.exp(floor if z < floor else z)


@njit(cache=True, nogil=True, inline="always")
def _shift_by_peak(x, out, i, peak, zero, finite_peak):
    """out[i] = x[i] - peak, with a peak that is not finite taken as 0 when
    `finite_peak` (SciPy's and JAX's choice: a row of -inf gives NaN, not an
    error). x - peak goes through memory: with reassociation allowed LLVM
    may otherwise compute x - (peak + shift), which loses digits when
    |x| >> |x - peak| (float32 logits near 1000: softmax 2e-5 off)."""
    if finite_peak and not abs(peak) < np.inf:
        peak = zero
    for j in range(x.shape[1]):
        out[i, j] = x[i, j] - peak


@njit(cache=True, nogil=True, inline="always")
def _row_peak(x, i, lowest):
    """Row i's max (NaN wins), by the vectorized vmath.nan_max reduction."""
    peak = lowest
    for j in range(x.shape[1]):
        peak = vmath.nan_max(peak, x[i, j])
    return peak


@njit(cache=True, nogil=True, inline="always")
def _shift_short_rows(x, out, zero, finite_peak):
    """out[i] = x[i] - its peak (NaN wins) for every row (_shift_by_peak).
    Rows of VECTOR_PEAK_MIN or more reduce with vmath.nan_max, which LLVM
    vectorizes; shorter ones run the compare-and-select chain, faster
    there. The test is made once, outside the rows: made in each row, it
    tripled log_softmax_short_rows' time over rows of 10 (92 -> 268 us)."""
    rows, n = x.shape
    lowest = out.dtype.type(-np.inf)
    if n >= VECTOR_PEAK_MIN:
        for i in range(rows):
            _shift_by_peak(x, out, i, _row_peak(x, i, lowest), zero, finite_peak)
    else:
        for i in range(rows):
            peak = lowest
            for j in range(n):
                peak = _later_max(peak, x[i, j])
            _shift_by_peak(x, out, i, peak, zero, finite_peak)


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _exps_and_sums(x, out, exps, sums, finite_peak):
    """The short-row forms' first passes: out = x - peak row by row
    (_shift_short_rows), exps[k] = exp(out.flat[k]) floored in one flat loop,
    and each row's sum of them, added in float64, into sums[i]. `exps` is
    an array of its own: as a view of `out` the function took 3x as long."""
    rows, n = x.shape
    zero, floor = out.dtype.type(0), _exp_floor(out)
    _shift_short_rows(x, out, zero, finite_peak)
    flat = out.reshape(rows * n)
    for k in range(rows * n):
        exps[k] = _floored_exp(flat[k], floor, zero)
    for i in range(rows):
        s = np.float64(0)
        for j in range(n):
            s = vmath.radd(s, np.float64(exps[i * n + j]))
        sums[i] = s


@dispatch.unliteral_calls
@dispatch.called_by_symbol
@njit(cache=True, nogil=True, error_model="numpy")
def log_softmax_short_rows(x, out, exps, shifts, finite_peak):
    """out[i] = x[i] - peak - log(sum(exp(x[i] - peak))) for each row of the
    2-D C-contiguous `x`, with `peak` the row's max (NaN wins, as np.max), 0
    where it is not finite when `finite_peak`. Terms below
    exp(graphc.ops.exp_floor) count as 0 (_floored_exp).

    Scratch: `exps` (x.size elements) and `shifts` (a row each), of out's
    dtype. The exps run in one flat loop over all rows (a loop of 10 runs
    mostly in its scalar remainder: W1's log_softmax 8.0 -> 4.9 us with
    512-bit vectors), then each row's sum in float64, then the logs in one
    loop over the rows, which LLVM vectorizes (64 rows of 10: 2.8 against
    2.3 us)."""
    rows, n = x.shape
    _exps_and_sums(x, out, exps, shifts, finite_peak)
    for i in range(rows):
        shifts[i] = vmath.log(shifts[i])
    for i in range(rows):
        shift = shifts[i]
        for j in range(n):
            out[i, j] -= shift


@dispatch.unliteral_calls
@dispatch.called_by_symbol
@njit(cache=True, nogil=True, error_model="numpy")
def log_softmax_long_rows(x, out, finite_peak):
    """log_softmax_short_rows' result (to rounding), row by row, for rows
    long enough that its flat exp loop over the whole array would read each
    row from memory once more.

    Measured on the generated form this replaced, whose loops it keeps
    (but for the peak: see VECTOR_PEAK_MIN): the sum goes over views of
    SUM_BLOCK elements indexed from 0, non-negative as LLVM sees it (512
    rows of 1000: 180 us, against 312 with Numba's negative-index select in
    the loop; rows of 30000: 603 against 1167). The peak's own terms (exactly 1) are counted apart: in a
    lane with them, the small terms of a confident row would each round
    against 1 (cross-entropy of a row of 4096: 9x NumPy's error). They are
    counted in the row's dtype: an integer count halved the vector width
    (410 -> 650 us)."""
    rows, n = x.shape
    zero, floor = out.dtype.type(0), _exp_floor(out)
    for i in range(rows):
        peak = _row_peak(x, i, out.dtype.type(-np.inf))
        _shift_by_peak(x, out, i, peak, zero, finite_peak)
    for i in range(rows):
        s = np.float64(0)
        for j0 in range(0, n, SUM_BLOCK):
            block = out[i, j0:j0 + SUM_BLOCK]
            b = zero
            peaks = zero
            for j in range(block.shape[0]):
                z = block[j]
                peaks = vmath.radd(peaks, out.dtype.type(z == zero))
                b = vmath.radd(b, zero if z == zero else _floored_exp(z, floor, zero))
            s += b
            s += peaks
        shift = vmath.log(out.dtype.type(s))
        for j in range(n):
            out[i, j] -= shift


@dispatch.unliteral_calls
@dispatch.called_by_symbol
@njit(cache=True, nogil=True, error_model="numpy")
def softmax_short_rows(x, out, exps, sums, finite_peak):
    """out[i] = exp(x[i] - peak) / sum(exp(x[i] - peak)) for each row of the
    2-D C-contiguous `x`: softmax as users write it, with
    log_softmax_short_rows' peak, floor, scratch and first passes; each row
    then divided by its sum, as e / e.sum() does."""
    rows, n = x.shape
    _exps_and_sums(x, out, exps, sums, finite_peak)
    for i in range(rows):
        total = sums[i]
        for j in range(n):
            out[i, j] = exps[i * n + j] / total


@dispatch.unliteral_calls
@dispatch.called_by_symbol
@njit(cache=True, nogil=True, error_model="numpy")
def softmax_long_rows(x, out, finite_peak):
    """softmax_short_rows' result (to rounding), a row at a time while it is
    in cache: its peak (as log_softmax_long_rows'), its exps summed within
    blocks of SUM_BLOCK in its dtype and the blocks in float64, its division."""
    rows, n = x.shape
    zero, floor = out.dtype.type(0), _exp_floor(out)
    for i in range(rows):
        peak = _row_peak(x, i, out.dtype.type(-np.inf))
        _shift_by_peak(x, out, i, peak, zero, finite_peak)
        s = np.float64(0)
        for j0 in range(0, n, SUM_BLOCK):
            block = out[i, j0:j0 + SUM_BLOCK]
            b = zero
            for j in range(block.shape[0]):
                e = _floored_exp(block[j], floor, zero)
                block[j] = e
                b = vmath.radd(b, e)
            s += b
        total = out.dtype.type(s)
        for j in range(n):
            out[i, j] /= total
