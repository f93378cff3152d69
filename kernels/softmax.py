"""log_softmax over short rows (a classifier's classes), compiled once per install.

Written into each model's module, this loop nest cost W2's cold first call
about 0.4 s of Numba's and LLVM's time (4.59 -> 4.17 s); called, Numba compiles it here once
per dtype and each model holds one call. Rows of SHORT_ROW elements or more
(graphc.codegen) keep their generated form, which blocks the sum and keeps
the peak in lanes.
"""
import numpy as np
from numba import njit

from graphc.kernels import dispatch, vmath


@dispatch.unliteral_calls
@njit(cache=True, nogil=True, error_model="numpy")
def log_softmax_short_rows(x, out, exps, shifts, floor, finite_peak):
    """out[i] = x[i] - peak - log(sum(exp(x[i] - peak))) for each row of the
    2-D C-contiguous `x`, with `peak` the row's max (NaN wins, as np.max), 0
    where it is not finite when `finite_peak` (as SciPy does). Terms below
    exp(`floor`) count as 0 (graphc.ops.exp_floor), and exp's argument is
    clamped too: the vectorized select computes both sides.

    Scratch: `exps` (x.size elements) and `shifts` (a row each), of out's
    dtype. The exps run in one flat loop over all rows (a loop of 10 runs
    mostly in its scalar remainder: W1's log_softmax 8.0 -> 4.9 us with
    512-bit vectors), then each row's sum in float64, then the logs in one
    loop over the rows, which LLVM vectorizes (64 rows of 10: 2.8 against
    2.3 us). x - peak goes through memory: with reassociation allowed LLVM
    may otherwise compute x - (peak + shift), which loses digits when
    |x| >> |x - peak|."""
    rows, n = x.shape
    zero = out.dtype.type(0)
    for i in range(rows):
        peak = out.dtype.type(-np.inf)
        for j in range(n):
            v = x[i, j]
            peak = v if v >= peak or v != v else peak
        if finite_peak and not abs(peak) < np.inf:
            peak = zero
        for j in range(n):
            out[i, j] = x[i, j] - peak
    flat = out.reshape(rows * n)
    for k in range(rows * n):
        z = flat[k]
        exps[k] = zero if z < floor else vmath.exp(floor if z < floor else z)
    for i in range(rows):
        s = np.float64(0)
        for j in range(n):
            s = vmath.radd(s, np.float64(exps[i * n + j]))
        shifts[i] = s
    for i in range(rows):
        shifts[i] = vmath.log(shifts[i])
    for i in range(rows):
        shift = shifts[i]
        for j in range(n):
            out[i, j] -= shift
