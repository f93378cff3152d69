"""A stable argsort of each row (np.argsort, np.sort, np.median, np.quantile),
compiled once per install for each dtype.

Numba's mergesort written into a model's `run` added 8-10 s to that model's
cold compile; called here, it is compiled once and loaded from the cache
after. Mergesort is NumPy's kind="stable": ties keep their order, nan last.
"""
import numpy as np
from numba import njit

from graphc.kernels import dispatch


@dispatch.unliteral_calls
@dispatch.called_by_symbol
@njit(cache=True, nogil=True, error_model="numpy")
def argsort_rows(x, out):
    for r in range(x.shape[0]):
        out[r] = np.argsort(x[r], kind="mergesort")
