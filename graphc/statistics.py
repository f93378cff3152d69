"""NumPy's statistics, written with graphc's functions: order statistics
(median, quantile, percentile, on rows sorted by graphc's argsort), ptp,
average with weights, the nan-ignoring reductions (nansum, nanmean,
nanmax, nanmin), cov and corrcoef. As graphc.composites, they trace,
differentiate and fuse as the functions they are written with."""
from __future__ import annotations

import numpy as np

from graphc import errors
from graphc import numpy_api as fnp
from graphc.composites import all_, isnan


# ------------------------------------------------------------ order statistics
def _sorted_rows(x, axis, name):
    """x sorted along `axis` moved last (several axes merged into one; the
    flattened array if None), and the shape keepdims= gives the result."""
    rows, keep = fnp.rows_over(x, axis, name)
    return fnp.sort(rows, axis=-1), keep


def _nan_where_any(rows, value):
    """value, or nan where its row holds a nan (sorted last), as NumPy's
    median and quantile."""
    if fnp.aval_of(rows)[1].kind != "f":
        return value
    return fnp.where(isnan(fnp.along(rows, rows.ndim - 1, rows.shape[-1] - 1)), np.nan, value)


def median(x, axis=None, out=None, overwrite_input=False, keepdims=False):
    """np.median: the mean of the one or two middle elements of each sorted
    row, nan where the row holds one."""
    if out is not None:
        errors.refuse(errors.UnsupportedOpError, "np.median(out=) is not supported; graphc arrays are "
                                          "immutable")
    x = fnp._as_array(x)
    rows, keep = _sorted_rows(fnp.astype(x, fnp._float_dtype(x)), axis, "median")
    n = rows.shape[-1]
    if n == 0:              # nan, with NumPy's "Mean of empty slice" warning
        value = fnp.mean(rows, axis=-1)
    else:
        middle = fnp.along(rows, rows.ndim - 1, slice((n - 1) // 2, n // 2 + 1))
        value = _nan_where_any(rows, fnp.mean(middle, axis=-1))
    return fnp.reshape(value, keep) if keepdims else value


_QUANTILE_METHODS = ("linear", "lower", "higher", "nearest", "midpoint")


def quantile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
             keepdims=False, *, weights=None, interpolation=None):
    """np.quantile of known q (a number or an array of them): the sorted rows
    taken at NumPy's indices and interpolated by its formulas (_lerp), so
    values and dtypes are NumPy's; gradients flow to the elements taken."""
    return _quantile(a, q, 1, axis, out, method, keepdims, weights, interpolation, "quantile")


def percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
               keepdims=False, *, weights=None, interpolation=None):
    return _quantile(a, q, 100, axis, out, method, keepdims, weights, interpolation,
                     "percentile")


def _quantile(a, q, scale, axis, out, method, keepdims, weights, interpolation, name):
    given = [k for k, v in (("out", out), ("weights", weights),
                            ("interpolation", interpolation)) if v is not None]
    if given or method not in _QUANTILE_METHODS:
        errors.refuse(errors.UnsupportedOpError,
               f"np.{name}({'=, '.join(given)}=) is not supported" if given else
               f"np.{name}(method={method!r}) is not supported; graphc has "
               f"{', '.join(_QUANTILE_METHODS)}")
    if isinstance(q, fnp.Tracer):
        errors.refuse(errors.UnsupportedOpError, f"np.{name}: q must be known when tracing (a number "
                                          f"or a NumPy array), not a traced value")
    weak = type(q) in (int, float)          # NumPy: a Python number keeps a's float type
    qs = np.true_divide(q, 100) if scale == 100 else np.asarray(q)
    if not np.all((qs >= 0) & (qs <= 1)):
        errors.refuse(errors.GraphcValueError, "Percentiles must be in the range [0, 100]" if
               scale == 100 else "Quantiles must be in the range [0, 1]")
    a = fnp._as_array(a)
    rows, keep = _sorted_rows(a, axis, name)
    n = rows.shape[-1]
    if n == 0:
        errors.refuse(errors.GraphcIndexError, f"np.{name} of an empty array (index -1 is out "
                                               f"of bounds)")
    values = [_quantile_of_sorted(rows, n, v, method, weak) for v in qs.reshape(-1)]
    value = fnp.reshape(fnp.stack(values), qs.shape + tuple(rows.shape[:-1]))
    return fnp.reshape(value, qs.shape + keep) if keepdims else value


def _quantile_of_sorted(rows, n, q, method, weak):
    """One quantile of each sorted row, as numpy.lib._function_base_impl._quantile."""
    last = rows.ndim - 1
    if method in ("lower", "higher", "nearest") or (method == "linear" and q.dtype.kind in "iub"):
        at = {"lower": np.floor, "higher": np.ceil, "nearest": np.around}.get(method, np.asarray)
        return _nan_where_any(rows, fnp.along(rows, last, int(at((n - 1) * q))))
    virtual = (n - 1) * q
    if method == "midpoint":
        virtual = 0.5 * (np.floor(virtual) + np.ceil(virtual))
    previous = -1 if virtual >= n - 1 else 0 if virtual < 0 else int(np.floor(virtual))
    following = previous if previous == -1 or virtual < 0 else previous + 1
    gamma = virtual - previous
    if method == "midpoint":
        gamma = q.dtype.type(0.0 if virtual % 1 == 0 else 0.5)     # q's float type
    t = float(gamma) if weak else gamma         # weak: a's float type; else float64
    a, b = fnp.along(rows, last, previous % n), fnp.along(rows, last, following % n)
    if fnp.aval_of(rows)[1] == np.bool_:
        errors.refuse(errors.GraphcTypeError, "numpy boolean subtract is not supported (np.quantile "
                                       "interpolates); convert the array to a number type")
    diff = fnp.subtract(b, a)
    lerp = fnp.subtract(b, fnp.multiply(diff, 1 - t)) if t >= 0.5 else \
        fnp.add(a, fnp.multiply(diff, t))
    return _nan_where_any(rows, lerp)


def ptp(x, axis=None, out=None, keepdims=False):
    """np.ptp: max - min (the gradient goes to both extremes)."""
    if out is not None:
        errors.refuse(errors.UnsupportedOpError, "np.ptp(out=) is not supported")
    return fnp.subtract(fnp.max(x, axis=axis, keepdims=keepdims),
                        fnp.min(x, axis=axis, keepdims=keepdims))


# ------------------------------------------------------------ weighted and nan-ignoring
def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    """np.average: the mean, or sum(a * w) / sum(w) in NumPy's result type
    (integers with float64); 1-d weights run along `axis`."""
    a = fnp._as_array(a)
    if weights is None:
        avg = fnp.mean(a, axis=axis, keepdims=keepdims)
        scale = fnp.astype(fnp.full_like(avg, a.size // max(avg.size, 1)), fnp.aval_of(avg)[1])
        return (avg, scale) if returned else avg
    w = fnp._as_array(weights)
    if w.shape != a.shape:
        if axis is None:
            errors.refuse(errors.GraphcTypeError, "Axis must be specified when shapes of a and "
                                           "weights differ.")
        if w.ndim != 1:
            errors.refuse(errors.ShapeError, "Shape of weights must be consistent with shape of "
                                             "a along specified axis.")
        axis = fnp._one_axis(axis, a.ndim, "average")
        if w.shape[0] != a.shape[axis]:
            errors.refuse(errors.ShapeError, "Length of weights not compatible with specified axis.")
        w = fnp.reshape(w, (w.shape[0],) + (1,) * (a.ndim - axis - 1))
    kinds = fnp.aval_of(a)[1].kind
    dtype = np.result_type(fnp.aval_of(a)[1], fnp.aval_of(w)[1],
                           *(["f8"] if kinds in "biu" else []))
    scale = fnp.sum(fnp.broadcast_to(fnp.astype(w, dtype), a.shape), axis=axis,
                    keepdims=keepdims)
    total = fnp.sum(fnp.multiply(fnp.astype(a, dtype), fnp.astype(w, dtype)), axis=axis,
                    keepdims=keepdims)
    avg = fnp.true_divide(total, scale)
    return (avg, fnp.broadcast_to(scale, fnp.shape(avg))) if returned else avg


def _without_nans(x, fill):
    x = fnp._as_array(x)
    return fnp.where(isnan(x), fill, x) if fnp.aval_of(x)[1].kind == "f" else x


def nansum(a, axis=None, dtype=None, out=None, keepdims=False):
    return fnp.sum(_without_nans(a, 0), axis=axis, dtype=dtype, out=out, keepdims=keepdims)


def nanmean(a, axis=None, dtype=None, out=None, keepdims=False):
    """The mean of the elements that are not nan (nan where none is, as
    NumPy's, without its warning)."""
    a = fnp._as_array(a)
    kept = fnp.logical_not(isnan(a))
    return fnp.mean(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, where=kept)


def _nan_extreme(extreme, fill):
    def reduce(a, axis=None, out=None, keepdims=False):
        a = fnp._as_array(a)
        value = extreme(_without_nans(a, fill), axis=axis, out=out, keepdims=keepdims)
        if fnp.aval_of(a)[1].kind != "f":
            return value
        # all nan: nan, as NumPy's (which also warns)
        none = all_(isnan(a), axis=axis, keepdims=keepdims)
        return fnp.where(none, np.nan, value)
    return reduce


nanmax, nanmin = _nan_extreme(fnp.max, -np.inf), _nan_extreme(fnp.min, np.inf)


# ------------------------------------------------------------ covariance
def cov(m, y=None, rowvar=True, bias=False, ddof=None, fweights=None, aweights=None, *,
        dtype=None):
    """np.cov: the centred observations' products over N - ddof (N - 1 by
    default, N with bias=True); each row a variable unless rowvar=False."""
    if fweights is not None or aweights is not None:
        errors.refuse(errors.UnsupportedOpError, "np.cov(fweights=/aweights=) is not supported")
    m = fnp._as_array(m)
    if m.ndim > 2:
        errors.refuse(errors.ShapeError, "m has more than 2 dimensions")
    dtype = np.dtype(dtype) if dtype is not None else np.result_type(fnp.aval_of(m)[1], np.float64)
    x = _at_least_2d(m, dtype)
    x = fnp.transpose(x) if not rowvar and m.ndim != 1 else x
    if y is not None:
        y = _at_least_2d(fnp._as_array(y), dtype)
        x = fnp.concatenate([x, fnp.transpose(y) if not rowvar and y.shape[0] != 1 else y], axis=0)
    ddof = (0 if bias else 1) if ddof is None else ddof
    centred = fnp.subtract(x, fnp.mean(x, axis=1, keepdims=True))
    # NumPy's divisor: none below 0 (then inf or nan, with NumPy's warning)
    c = fnp.true_divide(fnp.matmul(centred, fnp.transpose(centred)), max(x.shape[1] - ddof, 0))
    return fnp.squeeze(c) if c.shape == (1, 1) else c


def _at_least_2d(m, dtype):
    return fnp.astype(fnp.reshape(m, (1, -1)) if m.ndim < 2 else m, dtype)


def corrcoef(x, y=None, rowvar=True, *, dtype=None):
    """np.corrcoef: cov scaled by the standard deviations, clipped to [-1, 1]."""
    c = cov(x, y, rowvar, dtype=dtype)
    if fnp.ndim(c) == 0:
        return fnp.true_divide(c, c)
    d = fnp.sqrt(fnp.getitem(c, (np.arange(c.shape[0]), np.arange(c.shape[0]))))
    c = fnp.true_divide(fnp.true_divide(c, fnp.reshape(d, (-1, 1))), fnp.reshape(d, (1, -1)))
    return fnp.clip(c, -1, 1)


FUNCTIONS = {
    np.median: median, np.quantile: quantile, np.percentile: percentile, np.ptp: ptp,
    np.average: average, np.nansum: nansum, np.nanmean: nanmean, np.nanmax: nanmax,
    np.nanmin: nanmin, np.cov: cov, np.corrcoef: corrcoef,
}
