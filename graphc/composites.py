"""NumPy functions that are other NumPy functions graphc has: splitting and
stacking variants, flip, outer, linalg.norm, isnan and isfinite. Each is
written with numpy_api's functions, so it traces, differentiates and fuses
as they do, and needs no op, kernel or derivative of its own."""
from __future__ import annotations

import operator

import numpy as np

from graphc import errors
from graphc import numpy_api as fnp


def _error(kind, message: str):
    raise kind(f"{message}{errors.at(errors.user_location())}")


# ------------------------------------------------------------ split, stack
def split(x, indices_or_sections, axis=0):
    return _split(x, indices_or_sections, axis, "split", equal=True)


def array_split(x, indices_or_sections, axis=0):
    return _split(x, indices_or_sections, axis, "array_split", equal=False)


def hsplit(x, indices_or_sections):
    return _split(x, indices_or_sections, 1 if fnp.ndim(x) > 1 else 0, "hsplit", equal=True)


def vsplit(x, indices_or_sections):
    if fnp.ndim(x) < 2:
        _error(errors.ShapeError, "vsplit only works on arrays of 2 or more dimensions")
    return _split(x, indices_or_sections, 0, "vsplit", equal=True)


def _split(x, indices_or_sections, axis, name, equal):
    """Slices along `axis` at the given indices, or into that many sections
    (equal ones for split; array_split gives the first ones one more)."""
    x = fnp._as_array(x)
    axis = fnp.normalize_axes(axis, x.ndim, name)[0]
    n = x.shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        sections = operator.index(indices_or_sections)
        if sections <= 0:
            _error(errors.GraphcValueError, f"{name}: number of sections must be larger than 0")
        if equal and n % sections:
            _error(errors.GraphcValueError, f"{name}: an axis of {n} does not divide into "
                                            f"{sections} equal sections")
        each, extra = divmod(n, sections)
        bounds = np.cumsum([0] + [each + (k < extra) for k in range(sections)])
    else:
        cuts = [operator.index(i) for i in indices_or_sections]
        bounds = [0] + cuts + [n]
    lead = (slice(None),) * axis
    return [fnp.getitem(x, lead + (slice(int(start), int(stop)),))
            for start, stop in zip(bounds[:-1], bounds[1:])]


def vstack(arrays, **kwargs):
    arrays = [a if fnp.ndim(a) >= 2 else fnp.reshape(a, (1, -1) if fnp.ndim(a) else (1, 1))
              for a in arrays]
    return fnp.concatenate(arrays, axis=0, **kwargs)


def hstack(arrays, **kwargs):
    arrays = [a if fnp.ndim(a) else fnp.reshape(a, (1,)) for a in arrays]
    return fnp.concatenate(arrays, axis=1 if fnp.ndim(arrays[0]) > 1 else 0, **kwargs)


def flip(x, axis=None):
    x = fnp._as_array(x)
    axes = range(x.ndim) if axis is None else fnp.normalize_axes(axis, x.ndim, "flip")
    return fnp.getitem(x, tuple(slice(None, None, -1) if d in axes else slice(None)
                                for d in range(x.ndim)))


# ------------------------------------------------------------ products, norms
def outer(a, b, out=None):
    if out is not None:
        _error(errors.UnsupportedOpError, "np.outer(out=...) is not supported")
    return fnp.multiply(fnp.reshape(a, (-1, 1)), fnp.reshape(b, (1, -1)))


def norm(x, ord=None, axis=None, keepdims=False):
    """np.linalg.norm: the 2-norm of vectors and the Frobenius norm of matrices
    (ord None, 2 on one axis, 'fro' on two). Its gradient at 0 is nan, as
    sqrt's slope there is infinite (as in JAX)."""
    x = fnp._as_array(x)
    axes = tuple(range(x.ndim)) if axis is None else fnp.normalize_axes(axis, x.ndim, "norm")
    euclidean = ord is None or (ord == 2 and len(axes) == 1) or (ord == "fro" and len(axes) == 2)
    if not euclidean:
        _error(errors.UnsupportedOpError, f"np.linalg.norm(ord={ord!r}) over {len(axes)} axes "
                                          f"is not supported; only the 2-norm of vectors and "
                                          f"the Frobenius norm of matrices")
    x = fnp._as_float(x)
    return fnp.sqrt(fnp.sum(fnp.square(x), axis=axes, keepdims=keepdims))


# ------------------------------------------------------------ predicates
def isnan(x):
    return fnp.not_equal(x, x) if fnp.aval_of(x)[1].kind == "f" else _all_false(x)


def isfinite(x):
    if fnp.aval_of(x)[1].kind != "f":
        return fnp.logical_not(_all_false(x))
    return fnp.less(fnp.absolute(x), np.inf)     # nan compares False too


def _all_false(x):
    return fnp.zeros_like(x, dtype=np.bool_)


FUNCTIONS = {
    np.split: split, np.array_split: array_split, np.hsplit: hsplit, np.vsplit: vsplit,
    np.vstack: vstack, np.hstack: hstack, np.flip: flip, np.outer: outer,
    np.linalg.norm: norm,
}
UFUNCS = {"isnan": isnan, "isfinite": isfinite}
