"""NumPy functions that are other NumPy functions graphc has: splitting,
stacking, padding and windowing variants, flip, roll, repeat, tile, tril,
triu, outer, linalg.norm, nan_to_num, searchsorted, interp, reciprocal,
argmax, argmin, isnan, isfinite, isinf, logical_xor, diff, round, deg2rad,
rad2deg, fmax, fmin, any, all, count_nonzero, isclose, allclose, heaviside,
select, sinc, convolve, correlate and trapezoid.
Each is written with numpy_api's functions, so it traces, differentiates
and fuses as they do, and needs no op, kernel or derivative of its own."""
from __future__ import annotations

import math
import operator

import numpy as np

from graphc import errors
from graphc import numpy_api as fnp
from graphc import prims as P


def _ints(value, name: str) -> tuple:
    """An int, or a sequence or array of ints, as a tuple of Python ints (a
    traced one raises Tracer's error: its value is not known while tracing)."""
    if isinstance(value, fnp.Tracer):
        operator.index(value)
    array = np.asarray(value)
    if (array.dtype.kind not in "iub" and array.size) or array.ndim > 1:
        errors.refuse(errors.GraphcTypeError, f"{name} must be an integer or a sequence of integers, "
                                       f"got {value!r}")
    return tuple(int(v) for v in array.reshape(-1))


# ------------------------------------------------------------ split, stack
def split(x, indices_or_sections, axis=0):
    return _split(x, indices_or_sections, axis, "split", equal=True)


def array_split(x, indices_or_sections, axis=0):
    return _split(x, indices_or_sections, axis, "array_split", equal=False)


def hsplit(x, indices_or_sections):
    return _split(x, indices_or_sections, 1 if fnp.ndim(x) > 1 else 0, "hsplit", equal=True)


def vsplit(x, indices_or_sections):
    if fnp.ndim(x) < 2:
        errors.refuse(errors.ShapeError, "vsplit only works on arrays of 2 or more dimensions")
    return _split(x, indices_or_sections, 0, "vsplit", equal=True)


def _split(x, indices_or_sections, axis, name, equal):
    """Slices along `axis` at the given indices, or into that many sections
    (equal ones for split; array_split gives the first ones one more)."""
    x = fnp._as_array(x)
    axis = fnp.normalize_axes(axis, x.ndim, name)[0]
    n = x.shape[axis]
    cuts = _ints(indices_or_sections, f"{name}: indices_or_sections")
    if np.ndim(indices_or_sections) == 0:
        sections = cuts[0]
        if sections <= 0:
            errors.refuse(errors.GraphcValueError, f"{name}: number of sections must be larger than 0")
        if equal and n % sections:
            errors.refuse(errors.GraphcValueError, f"{name}: an axis of {n} does not divide into "
                                            f"{sections} equal sections")
        each, extra = divmod(n, sections)
        bounds = np.cumsum([0] + [each + (k < extra) for k in range(sections)])
    else:
        bounds = [0, *cuts, n]
    return [fnp.along(x, axis, slice(int(start), int(stop)))
            for start, stop in zip(bounds[:-1], bounds[1:])]


def vstack(arrays, **kwargs):
    arrays = [a if fnp.ndim(a) >= 2 else fnp.reshape(a, (1, -1) if fnp.ndim(a) else (1, 1))
              for a in fnp._arrays_of_lists(*arrays)]
    return fnp.concatenate(arrays, axis=0, **kwargs)


def hstack(arrays, **kwargs):
    arrays = [a if fnp.ndim(a) else fnp.reshape(a, (1,)) for a in fnp._arrays_of_lists(*arrays)]
    return fnp.concatenate(arrays, axis=1 if fnp.ndim(arrays[0]) > 1 else 0, **kwargs)


def flip(x, axis=None):
    x = fnp._as_array(x)
    axes = range(x.ndim) if axis is None else fnp.normalize_axes(axis, x.ndim, "flip")
    return fnp.getitem(x, tuple(slice(None, None, -1) if d in axes else slice(None)
                                for d in range(x.ndim)))


def roll(x, shift, axis=None):
    x = fnp._as_array(x)
    if axis is None:
        return fnp.reshape(roll(fnp.ravel(x), shift, 0), x.shape)
    shifts, axes = _ints(shift, "roll: shift"), _ints(axis, "roll: axis")
    try:        # as NumPy: shifts and axes broadcast, and shifts on one axis add up
        pairs = np.broadcast(np.array(shifts), np.array(axes))
    except ValueError:
        errors.refuse(errors.GraphcValueError, "roll: shift and axis must broadcast together")
    total: dict[int, int] = {}
    for s, a in pairs:
        a = fnp.normalize_axes(int(a), x.ndim, "roll")[0]
        total[a] = total.get(a, 0) + int(s)
    for a, s in total.items():
        n = x.shape[a]
        s = s % n if n else 0
        if s:
            x = fnp.concatenate([fnp.along(x, a, slice(n - s, None)),
                                 fnp.along(x, a, slice(0, n - s))], axis=a)
    return x


def repeat(x, repeats, axis=None):
    """Each element `repeats` times along `axis` (one count for all)."""
    if not isinstance(repeats, (int, np.integer)):
        errors.refuse(errors.UnsupportedOpError, "np.repeat with a count per element is not supported; "
                                          "one count for every element")
    x = fnp._as_array(x)
    if axis is None:
        x, axis = fnp.ravel(x), 0
    a = fnp.normalize_axes(axis, x.ndim, "repeat")[0]
    r = operator.index(repeats)
    if r < 0:
        errors.refuse(errors.GraphcValueError, "repeat: negative dimensions are not allowed")
    wide = fnp.broadcast_to(fnp.expand_dims(x, a + 1), x.shape[:a + 1] + (r,) + x.shape[a + 1:])
    return fnp.reshape(wide, x.shape[:a] + (x.shape[a] * r,) + x.shape[a + 1:])


def tile(x, reps):
    x = fnp._as_array(x)
    reps = _ints(reps, "tile: reps")
    if any(r < 0 for r in reps):
        errors.refuse(errors.GraphcValueError, f"tile: negative repetitions {reps}")
    ndim = max(x.ndim, len(reps))
    x = fnp.reshape(x, (1,) * (ndim - x.ndim) + tuple(x.shape))
    for d, r in enumerate((1,) * (ndim - len(reps)) + reps):
        if r != 1:
            x = fnp.concatenate([x] * r, axis=d) if r else fnp.along(x, d, slice(0, 0))
    return x


_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def pad(x, pad_width, mode="constant", constant_values=0, **kwargs):
    """np.pad: mode 'constant' (one fill value), 'edge', 'reflect',
    'symmetric' or 'wrap' (widths up to the axis's own length)."""
    x = fnp._as_array(x)
    if mode not in _PAD_MODES or kwargs:
        errors.refuse(errors.UnsupportedOpError, f"np.pad(mode={mode!r}{', ' if kwargs else ''}"
                                                 f"{', '.join(f'{k}=' for k in kwargs)}) is not "
                                                 f"supported; graphc has modes {_PAD_MODES}")
    if isinstance(constant_values, fnp.Tracer) or np.ndim(constant_values):
        errors.refuse(errors.UnsupportedOpError, "np.pad: constant_values must be one number (not an "
                                          "array, nor a traced value)")
    widths = np.asarray(pad_width)
    if widths.dtype.kind not in "iu":
        errors.refuse(errors.GraphcTypeError, f"pad: pad_width must be integers, got {pad_width!r}")
    try:
        widths = np.broadcast_to(widths.astype(np.int64), (x.ndim, 2))
    except ValueError:
        errors.refuse(errors.GraphcValueError, f"pad: pad_width {pad_width!r} does not fit {x.ndim} axes")
    if (widths < 0).any():
        errors.refuse(errors.GraphcValueError, "pad: index can't contain negative values")
    dtype = fnp.aval_of(x)[1]
    if mode == "constant" and constant_values == 0 and not np.signbit(constant_values) \
            and widths.any():     # (-0.0 pads with -0.0)
        # x written into zeros: one unslice (a slice's gradient), one pass
        # over the result, where a concatenation per axis copied it per axis
        shape = tuple(int(n + before + after) for n, (before, after) in zip(x.shape, widths))
        return P.unslice(x, shape, tuple(int(w) for w in widths[:, 0]), (1,) * x.ndim)
    for d, (before, after) in enumerate(widths):
        if not (before or after):
            continue
        if mode == "constant":
            pieces = [np.full(x.shape[:d] + (int(w),) + x.shape[d + 1:], constant_values, dtype)
                      for w in (before, after)]
        else:
            pieces = _copied_edges(x, d, int(before), int(after), mode)
        x = fnp.concatenate([pieces[0], x, pieces[1]], axis=d)
    return x


def _copied_edges(x, d, before, after, mode):
    """The slices np.pad puts before and after axis d, taken from x itself."""
    n = x.shape[d]
    # how far the axis's own values reach (reflect leaves the edge out; an edge repeats)
    reach = {"reflect": n - 1, "edge": max(before, after)}.get(mode, n)
    if n == 0 or max(before, after) > reach:
        errors.refuse(errors.UnsupportedOpError, f"np.pad(mode={mode!r}) wider than the axis "
                                                 f"({max(before, after)} on an axis of {n}) is "
                                                 f"not supported")
    index = {"edge": (np.zeros(before, np.int64), np.full(after, n - 1)),
             "reflect": (np.arange(before, 0, -1), np.arange(n - 2, n - 2 - after, -1)),
             "symmetric": (np.arange(before - 1, -1, -1), np.arange(n - 1, n - 1 - after, -1)),
             "wrap": (np.arange(n - before, n), np.arange(after))}[mode]
    return [fnp.along(x, d, i) for i in index]


# sliding_window_view takes its windows as one gather (_windows_taken) while its
# constant index array has at most this many elements (2 MiB of int64: 3x3
# windows of 28x28 images of 3 channels take 18252; of 32 channels, taken as
# rows, 6084)
WINDOW_INDICES_MAX = 1 << 18
# ... and takes the axes after the windowed ones (channels) whole, as rows,
# where a row has at least this many elements (see _windows_taken). A 3x3
# convolution's SGD step (as einsum, batch 128 of 8x8 images, 16 filters),
# one element per index against rows, us: 2 channels 126/165, 4 194/222,
# 6 264/270, 7 320/320, 8 340-377/294-320, 16 723/614.
WINDOW_ROWS_MIN = 8


def _windows_taken(x, windows: tuple, axes: tuple):
    """sliding_window_view of traced `x` over axes each given once and in
    order (an image's (1, 2), also with channels after them; a sequence's
    -1): one `take`, at a constant index array, of the axes from the first
    windowed one to the last merged into one, whose gradient is one
    scatter_add. The index array's shape is the result's over those axes
    (windowed axes shortened, the window axes last, as NumPy's). The stack
    of shifted slices otherwise built copies each windowed axis's windows
    apart and then stacks them (benchmarks/bench_conv.py's 3x3 windows of
    128 8x8 images: 30 us of slices and stacks, 17 as a gather; its step
    156 -> 129 us).

    Axes after the last windowed one (an image's channels) are taken whole,
    as rows of the gather: its result then holds the window axes before
    them, and a transpose puts them last, as NumPy's. An einsum over the
    windows contracts them in the order taken (einsum's _pair), so the
    transpose cancels with its own; the gather and its gradient copy and
    add rows of channels, in vectors, instead of an element per index.
    None where that does not apply or the index array would be large."""
    if not isinstance(x, fnp.Tracer) or not axes or axes != tuple(sorted(set(axes))) \
            or not all(0 < w <= x.shape[a] for w, a in zip(windows, axes)):
        return None     # (the stack of slices refuses windows that do not fit)
    first, last = axes[0], axes[-1]
    sizes, rows = x.shape[first:last + 1], x.shape[last + 1:]
    if math.prod(rows) < WINDOW_ROWS_MIN:
        sizes, rows = x.shape[first:], ()
    window_of = dict(zip(axes, windows))
    outs = tuple(n - window_of.get(first + k, 1) + 1 for k, n in enumerate(sizes))
    if np.prod(outs + windows, dtype=np.int64) > WINDOW_INDICES_MAX:
        return None
    at = np.indices(outs + windows, dtype=np.int64)
    strides = np.cumprod((1,) + sizes[:0:-1])[::-1]     # of the merged axes, C order
    shift = {a - first: at[len(sizes) + k] for k, a in enumerate(axes)}
    index = sum((at[k] + shift.get(k, 0)) * strides[k] for k in range(len(sizes)))
    # the merged size written out: -1 is refused for a reshape of no elements (an empty batch)
    merged = fnp.reshape(x, x.shape[:first] + (math.prod(sizes),) + rows)
    taken = P.take(merged, index, first)    # before, outs, windows, rows
    if not rows:
        return taken
    k = first + len(outs)
    return P.transpose(taken, tuple(range(k)) + tuple(range(k + len(windows), taken.ndim))
                       + tuple(range(k, k + len(windows))))


def sliding_window_view(x, window_shape, axis=None, **kwargs):
    """Windows as a new trailing axis per windowed axis: one gather where the
    windowed axes are given once and in order (_windows_taken), else a stack
    of shifted slices (a copy where NumPy gives a view; traced arrays are
    immutable)."""
    x = fnp._as_array(x)
    windows = _ints(window_shape, "sliding_window_view: window_shape")
    # against the input's axes (each window adds one at the end)
    axes = tuple(range(x.ndim)) if axis is None else tuple(
        fnp.normalize_axes(a, x.ndim, "sliding_window_view")[0]
        for a in _ints(axis, "sliding_window_view: axis"))
    if len(windows) != len(axes):
        errors.refuse(errors.GraphcValueError, "sliding_window_view: window_shape and axis must have "
                                        "the same length")
    taken = _windows_taken(x, windows, axes)
    if taken is not None:
        return taken
    for w, a in zip(windows, axes):
        n = x.shape[a]
        if not 0 <= w <= n:
            errors.refuse(errors.GraphcValueError, f"sliding_window_view: window {w} does not fit an "
                                            f"axis of {n}")
        if w == 0:      # n + 1 empty windows: no values to take
            shape = x.shape[:a] + (n + 1,) + x.shape[a + 1:] + (0,)
            x = np.zeros(shape, fnp.aval_of(x)[1])
            continue
        x = fnp.stack([fnp.along(x, a, slice(i, i + n - w + 1)) for i in range(w)], axis=-1)
    return x


def tril(m, k=0):
    return _triangle(m, k, lower=True)


def triu(m, k=0):
    return _triangle(m, k, lower=False)


def _triangle(m, k, lower):
    m = fnp._as_array(m)
    if m.ndim < 2:
        errors.refuse(errors.UnsupportedOpError, "np.tril/np.triu of a 1-d array is not supported")
    keep = np.tri(m.shape[-2], m.shape[-1], k if lower else k - 1, dtype=bool)
    return fnp.where(keep if lower else ~keep, m, np.zeros((), fnp.aval_of(m)[1]))


# ------------------------------------------------------------ products, norms
def outer(a, b, out=None):
    if out is not None:
        errors.refuse(errors.UnsupportedOpError, "np.outer(out=...) is not supported")
    return fnp.multiply(fnp.reshape(a, (-1, 1)), fnp.reshape(b, (1, -1)))


def inner(a, b):
    """np.inner: sums of products over the last axes, shape a.shape[:-1] +
    b.shape[:-1] (a product where one is a scalar)."""
    a, b = fnp._as_array(a), fnp._as_array(b)
    if a.ndim == 0 or b.ndim == 0:
        return fnp.multiply(a, b)
    if a.shape[-1] != b.shape[-1]:
        errors.refuse(errors.ShapeError, f"np.inner: shapes {a.shape} and {b.shape} not aligned: "
                                         f"{a.shape[-1]} != {b.shape[-1]} (their last axes)")
    k = a.shape[-1]     # (sizes, not -1: an axis may be 0)
    rows = fnp.matmul(fnp.reshape(a, (math.prod(a.shape[:-1]), k)),
                      fnp.transpose(fnp.reshape(b, (math.prod(b.shape[:-1]), k))))
    return fnp.reshape(rows, a.shape[:-1] + b.shape[:-1])


def vdot(a, b, /):
    """np.vdot of real arrays: the dot product of both flattened."""
    a, b = fnp._as_array(a), fnp._as_array(b)
    if fnp.size(a) != fnp.size(b):
        errors.refuse(errors.ShapeError, f"np.vdot: a has {fnp.size(a)} elements and b "
                                         f"{fnp.size(b)}: they must have as many")
    return fnp.dot(fnp.reshape(a, (fnp.size(a),)), fnp.reshape(b, (fnp.size(b),)))


def norm(x, ord=None, axis=None, keepdims=False):
    """np.linalg.norm. Over one axis, any order: 2 (the default), 1, inf and
    -inf (max and min of |x|), 0 (the count of nonzeros) and p (sum |x|^p
    to the 1/p). Over two, the Frobenius norm (the default) and 1, -1, inf,
    -inf (the largest or smallest sum of |x| down a column or along a row),
    2, -2 and 'nuc' (the largest, the smallest and the sum of the singular
    values: np.linalg.svdvals's gradients). Without ord and axis,
    the 2-norm of all elements. The 2-norm's gradient at 0 is nan, as
    sqrt's slope there is infinite (as in JAX); so are those of p < 1 at a
    0, and a tie for the largest |x| shares the inf-norm's slope."""
    x = fnp._as_array(x)
    ord = ord.item() if isinstance(ord, np.generic) else ord   # np.float64(3) promotes nothing
    every_element = axis is None and ord is None        # whatever the rank
    axes = tuple(range(x.ndim)) if axis is None else fnp.normalize_axes(axis, x.ndim, "norm")
    if not every_element and len(axes) not in (1, 2):
        errors.refuse(errors.GraphcValueError, "norm: improper number of dimensions to norm")
    x = fnp._as_float_or_float64(x)      # as NumPy's norm: float64 for integers
    if ord is None or (ord in ("fro", "f") and len(axes) == 2) or (ord == 2 and len(axes) == 1):
        return fnp.sqrt(fnp.sum(fnp.square(x), axis=axes, keepdims=keepdims))
    if len(axes) == 2 and ord in (2, -2, "nuc"):
        return _spectral_norm(x, ord, axes, keepdims)
    if isinstance(ord, str) or (len(axes) == 2 and ord not in (1, -1, np.inf, -np.inf)):
        errors.refuse(errors.GraphcValueError,      # NumPy's messages
                      f"Invalid norm order {ord!r} for vectors" if len(axes) == 1
                      else "Invalid norm order for matrices.")
    magnitude = fnp.absolute(x)
    if len(axes) == 2:      # sums down columns (ord +-1) or along rows (+-inf), then their extreme
        rows, columns = (0, 1) if axis is None else (a % x.ndim for a in axis)  # in the given order
        summed, across = (rows, columns) if ord in (1, -1) else (columns, rows)
        sums = fnp.sum(magnitude, axis=summed, keepdims=True)
        out = _extreme(ord)(sums, axis=across, keepdims=True)
        return out if keepdims else fnp.squeeze(out, axis=axes)
    if ord in (np.inf, -np.inf):
        return _extreme(ord)(magnitude, axis=axes, keepdims=keepdims)
    if ord == 0:
        return fnp.sum(fnp.not_equal(x, 0).astype(magnitude.dtype), axis=axes, keepdims=keepdims)
    if ord == 1:
        return fnp.sum(magnitude, axis=axes, keepdims=keepdims)
    return fnp.power(fnp.sum(fnp.power(magnitude, ord), axis=axes, keepdims=keepdims), 1 / ord)


def vector_norm(x, /, *, axis=None, keepdims=False, ord=2):
    """np.linalg.vector_norm: norm's vector orders over `axis` (every axis
    by default) taken as one vector."""
    x = fnp._as_array(x)
    axes = tuple(range(x.ndim)) if axis is None else fnp.normalize_axes(axis, x.ndim, "norm")
    rest = [d for d in range(x.ndim) if d not in axes]
    flat = fnp.reshape(fnp.transpose(x, rest + list(axes)),
                       tuple(x.shape[d] for d in rest) + (math.prod(x.shape[d] for d in axes),))
    out = norm(flat, ord, axis=-1)
    if keepdims:
        out = fnp.reshape(out, tuple(1 if d in axes else x.shape[d] for d in range(x.ndim)))
    return out


def matrix_norm(x, /, *, keepdims=False, ord="fro"):
    """np.linalg.matrix_norm: norm's matrix orders over the last two axes."""
    return norm(x, ord, axis=(-2, -1), keepdims=keepdims)


def _spectral_norm(x, ord, axes, keepdims):
    """The matrix norms of singular values: the largest (ord 2), the smallest
    (-2) or their sum ('nuc'), of the matrices over `axes`."""
    from graphc.matrices import svdvals
    rest = [d for d in range(x.ndim) if d not in axes]
    values = svdvals(fnp.transpose(x, rest + list(axes)))
    out = (fnp.sum if ord == "nuc" else _extreme(ord))(values, axis=-1, keepdims=False)
    if keepdims:
        out = fnp.expand_dims(out, tuple(sorted(axes)))
    return out


def _extreme(ord):
    """The largest of |x| values (0 over none, as NumPy's norm: initial=0) for
    a positive order, else the smallest."""
    if ord > 0:
        return lambda x, axis, keepdims: fnp.max(x, axis=axis, keepdims=keepdims, initial=0.0)
    return fnp.min


def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    """np.nan_to_num: nan to `nan`, infinities to `posinf` and `neginf`
    (the dtype's largest and smallest floats by default); integers as they are."""
    x = fnp._as_array(x)
    dtype = fnp.aval_of(x)[1]
    if dtype.kind != "f":
        return x
    info = np.finfo(dtype)      # (the replacements as Python floats: in x's dtype, as NumPy)
    x = fnp.where(isnan(x), float(nan), x)
    x = fnp.where(fnp.equal(x, np.inf), float(info.max if posinf is None else posinf), x)
    return fnp.where(fnp.equal(x, -np.inf), float(info.min if neginf is None else neginf), x)


def reciprocal(x):
    if fnp.aval_of(x)[1].kind != "f":
        errors.refuse(errors.UnsupportedOpError, "np.reciprocal of integers (which truncates) is not "
                                          "supported; use 1 / x")
    return fnp.true_divide(1, x)


# ------------------------------------------------------------ argmax, argmin
def argmax(x, axis=None, out=None, *, keepdims=False):
    return _arg_extreme(x, axis, out, keepdims, fnp.max, "argmax")


def argmin(x, axis=None, out=None, *, keepdims=False):
    return _arg_extreme(x, axis, out, keepdims, fnp.min, "argmin")


def _arg_extreme(x, axis, out, keepdims, extreme, name):
    """The first index of the max (min) along `axis`, or of the first nan, as
    NumPy's: the smallest index whose value is the extreme or nan (a max with
    a nan is nan). An int64 result, with no gradient (as an index)."""
    if out is not None:
        errors.refuse(errors.UnsupportedOpError, f"np.{name}(out=...) is not supported")
    x = fnp._as_array(x)
    if axis is not None:
        try:
            axis = operator.index(axis)     # one axis, as NumPy's (not a tuple)
        except TypeError:
            errors.refuse(errors.GraphcTypeError, f"{name}: axis must be an integer, got {axis!r}")
        if x.ndim == 0 and axis in (0, -1):
            axis = None
    if axis is None:
        flat = _arg_extreme(fnp.ravel(x), 0, None, False, extreme, name)
        return fnp.reshape(flat, (1,) * x.ndim) if keepdims else flat
    a = fnp.normalize_axes(axis, x.ndim, name)[0]
    n = x.shape[a]
    if n == 0:
        errors.refuse(errors.ShapeError, f"attempt to get {name} of an empty sequence")
    hit = fnp.equal(x, extreme(x, axis=a, keepdims=True))
    if fnp.aval_of(x)[1].kind == "f":
        hit = fnp.logical_or(hit, fnp.not_equal(x, x))
    index = np.arange(n, dtype=np.int64).reshape((n,) + (1,) * (x.ndim - a - 1))
    return fnp.min(fnp.where(hit, index, np.int64(n)), axis=a, keepdims=keepdims)


# ------------------------------------------------------------ predicates
def isnan(x):
    return fnp.not_equal(x, x) if fnp.aval_of(x)[1].kind == "f" else _all_false(x)


def isfinite(x):
    if fnp.aval_of(x)[1].kind != "f":
        return fnp.logical_not(_all_false(x))
    return fnp.less(fnp.absolute(x), np.inf)     # nan compares False too


def isinf(x):
    if fnp.aval_of(x)[1].kind != "f":
        return _all_false(x)
    return fnp.equal(fnp.absolute(x), np.inf)


def _all_false(x):
    return fnp.zeros_like(x, dtype=np.bool_)


def count_nonzero(a, axis=None, *, keepdims=False):
    """np.count_nonzero, as an int64 array (NumPy gives a Python int for axis=None)."""
    return fnp.sum(fnp.not_equal(fnp._as_array(a), 0), axis=axis, keepdims=keepdims)


def _test(which):
    """np.any/np.all as counts of the true elements against none and all of them
    (an empty axis: any False, all True, as NumPy)."""
    def test(a, axis=None, out=None, keepdims=False, *, where=True):
        if out is not None or where is not True:
            errors.refuse(errors.UnsupportedOpError, f"np.{which}(out=/where=) is not supported")
        a = fnp._as_array(a)
        count = count_nonzero(a, axis, keepdims=keepdims)
        if which == "any":
            return fnp.greater(count, 0)
        axes = fnp.normalize_axes(axis, a.ndim, which)
        return fnp.equal(count, int(np.prod([a.shape[d] for d in axes])))
    return test


any_, all_ = _test("any"), _test("all")


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|a - b| <= atol + rtol |b| where b is finite, or a == b (so equal
    infinities), as NumPy's; b computes in a float type."""
    a, b = fnp._arrays_of_lists(a, b)
    b_type = fnp.aval_of(b)[1]
    if b_type.kind != "f" and not fnp._is_weak(b):
        b = fnp.astype(b, np.result_type(b_type, 1.0))
    elif isinstance(b, int):
        b = float(b)
    close = fnp.less_equal(fnp.absolute(fnp.subtract(a, b)),
                           fnp.add(atol, fnp.multiply(rtol, fnp.absolute(b))))
    result = fnp.logical_or(fnp.logical_and(close, isfinite(b)), fnp.equal(a, b))
    if equal_nan:
        result = fnp.logical_or(result, fnp.logical_and(isnan(a), isnan(b)))
    return result


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """np.allclose, as a 0-d bool array (NumPy gives a Python bool)."""
    return all_(isclose(a, b, rtol, atol, equal_nan))


def heaviside(x1, x2):
    """0 below 0, 1 above, x2 at 0 (nan stays nan), in NumPy's float type."""
    x1, x2 = fnp._float_pair(x1, x2)
    return fnp.where(fnp.less(x1, 0), 0, fnp.where(fnp.greater(x1, 0), 1,
                                                    fnp.where(isnan(x1), x1, x2)))


def select(condlist, choicelist, default=0):
    """np.select: the first choice whose condition holds, else default."""
    if len(condlist) != len(choicelist):
        errors.refuse(errors.GraphcValueError, "list of cases must be same length as list of conditions")
    if not condlist:
        errors.refuse(errors.GraphcValueError, "select with an empty condition list is not possible")
    choices = fnp._promote(*choicelist, default)
    result = choices[-1]
    for cond, choice in zip(reversed(fnp._arrays_of_lists(*condlist)), reversed(choices[:-1])):
        if fnp.aval_of(cond)[1] != np.bool_:
            errors.refuse(errors.GraphcTypeError, f"invalid entry in condlist: should be boolean ndarray")
        result = fnp.where(cond, choice, result)
    return result


def sinc(x):
    """sin(pi x) / (pi x), 1 at 0. Near 0 (|pi x| < 0.01) its Maclaurin series
    1 - y^2/6 + y^4/120 - y^6/5040, whose next term is below 3e-22, so every
    derivative there is right (sinc''(0) = -pi^2/3; NumPy's x = 0 -> 1e-20
    substitution gave 0); elsewhere sin(y) / y as NumPy, of a y the series'
    side replaces by 1, so its unused derivatives stay finite."""
    x = fnp._as_float_or_float64(fnp._as_array(x))     # NumPy: 1e-20 makes integers float64
    y = fnp.multiply(np.pi, x)
    near = fnp.less(fnp.absolute(y), 0.01)
    y2 = fnp.square(y)
    series = fnp.add(1.0, fnp.multiply(y2, fnp.add(-1.0 / 6, fnp.multiply(
        y2, fnp.add(1.0 / 120, fnp.multiply(y2, -1.0 / 5040))))))
    far = fnp.where(near, 1.0, y)
    return fnp.where(near, series, fnp.true_divide(fnp.sin(far), far))


def searchsorted(a, v, side="left", sorter=None):
    """np.searchsorted of a sorted 1-d `a`: where each v would go, the count of
    a's elements below it (side='left') or at most it ('right'), an int64
    array. Counted by comparing every pair (len(a) * v.size), not bisected;
    nan goes last, as in NumPy's sort order."""
    if sorter is not None:
        errors.refuse(errors.UnsupportedOpError, "np.searchsorted(sorter=) is not supported: "
                                                 "pass a sorted array")
    if side not in ("left", "right"):
        errors.refuse(errors.GraphcValueError,
                      f"np.searchsorted: side must be 'left' or 'right', got {side!r}")
    a, v = fnp._as_array(a), fnp._as_array(v)
    if fnp.ndim(a) != 1:
        errors.refuse(errors.GraphcValueError, "np.searchsorted: a must be 1-d")
    v = fnp.expand_dims(v, -1)          # pairs: v's shape + (len(a),)
    before = (fnp.less if side == "left" else fnp.less_equal)(a, v)
    # nan sorts last: a nan in a comes after every number, and a nan v after
    # every number in a, and after a's nans too for side='right'
    a_number = fnp.logical_not(isnan(a))
    after_numbers = a_number if side == "left" else fnp.ones_like(a_number)
    pairs = fnp.logical_or(fnp.logical_and(before, a_number),
                           fnp.logical_and(isnan(v), after_numbers))
    return fnp.sum(pairs.astype(np.int64), axis=-1)


def interp(x, xp, fp, left=None, right=None, period=None):
    """np.interp: piecewise-linear through (xp, fp), xp increasing; fp[0] (or
    `left`) before xp[0], fp[-1] (or `right`) after xp[-1]. Differentiable in
    x, xp and fp (the slope at a knot is the segment's to its right)."""
    if period is not None:
        errors.refuse(errors.UnsupportedOpError, "np.interp(period=) is not supported")
    # NumPy's interp computes in float64, whatever its arguments' types
    x, xp, fp = (fnp.astype(fnp._as_array(a), np.float64) for a in (x, xp, fp))
    n = fnp.aval_of(xp)[0][0] if fnp.ndim(xp) == 1 else 0
    if fnp.ndim(xp) != 1 or fnp.ndim(fp) != 1 or fnp.aval_of(fp)[0][0] != n or n == 0:
        errors.refuse(errors.GraphcValueError, "np.interp: xp and fp must be 1-d, of one "
                                               "nonzero length")
    if n == 1:
        inside = fnp.multiply(fnp.ones_like(x), fp[0])
    else:
        j = fnp.clip(searchsorted(xp, x, side="right") - 1, 0, n - 2)
        x0, x1 = fnp.take(xp, j), fnp.take(xp, j + 1)     # (xp may be a NumPy array)
        y0, y1 = fnp.take(fp, j), fnp.take(fp, j + 1)
        # a repeated knot (NumPy takes them) is a segment of width 0: x lands
        # on one only at xp[-1], where NumPy gives fp[-1]; elsewhere it is
        # not chosen, and divides by 1, so its derivatives stay finite
        flat = fnp.equal(x1, x0)
        slope = (y1 - y0) / fnp.where(flat, 1.0, x1 - x0)
        inside = fnp.where(flat, y1, y0 + (x - x0) * slope)
    below = fp[0] if left is None else left
    above = fp[-1] if right is None else right
    return fnp.where(fnp.less(x, xp[0]), below, fnp.where(fnp.greater(x, xp[-1]), above, inside))


def logical_xor(x, y):
    x, y = fnp._arrays_of_lists(x, y)
    return fnp.not_equal(fnp.astype(x, np.bool_), fnp.astype(y, np.bool_))


# ------------------------------------------------------------ differences
def diff(x, n=1, axis=-1, prepend=None, append=None):
    """np.diff: the n-th differences along `axis` (not_equal for booleans, as
    NumPy); prepend/append join the array first, a scalar as one slice."""
    x = fnp._as_array(x)
    n = operator.index(n)
    if n < 0:
        errors.refuse(errors.GraphcValueError, f"diff: order must be non-negative but got {n}")
    if n == 0:
        return x
    if x.ndim == 0:
        errors.refuse(errors.ShapeError, "diff requires input that is at least one dimensional")
    if axis is None:
        errors.refuse(errors.GraphcTypeError, "diff: axis must be an integer, got None")
    axis = fnp._one_axis(axis, x.ndim, "diff")
    ends = [fnp._as_array(v) for v in (prepend, append) if v is not None]
    if ends:
        one_slice = x.shape[:axis] + (1,) + x.shape[axis + 1:]
        ends = [fnp.broadcast_to(v, one_slice) if fnp.ndim(v) == 0 else v for v in ends]
        before = ends[:1] if prepend is not None else []
        x = fnp.concatenate(before + [x] + ends[len(before):], axis=axis)
    for _ in range(n):
        later, earlier = fnp.along(x, axis, slice(1, None)), fnp.along(x, axis, slice(None, -1))
        boolean = fnp.aval_of(x)[1] == np.bool_
        x = fnp.not_equal(later, earlier) if boolean else fnp.subtract(later, earlier)
    return x


# ------------------------------------------------------------ signals
def convolve(a, v, mode="full"):
    """np.convolve of two 1-d arrays: windows of the zero-padded longer one
    times the shorter one reversed, summed in their dtype; 'same' and 'valid'
    are slices of the full result, as NumPy's."""
    if mode not in ("full", "same", "valid"):
        errors.refuse(errors.GraphcValueError, f"mode must be one of 'full', 'same', or "
                                               f"'valid' (got {mode!r})")
    a, v = fnp._promote(*(fnp._as_array(x) for x in (a, v)))
    if a.ndim != 1 or v.ndim != 1:
        errors.refuse(errors.ShapeError, "convolve: both arguments must be 1-d")
    if a.shape[0] == 0 or v.shape[0] == 0:
        errors.refuse(errors.GraphcValueError, f"{'a' if a.shape[0] == 0 else 'v'} cannot be empty")
    if v.shape[0] > a.shape[0]:
        a, v = v, a
    n, m = a.shape[0], v.shape[0]
    windows = sliding_window_view(pad(a, m - 1), m)             # (n + m - 1, m)
    full = fnp.sum(fnp.multiply(windows, flip(v)), axis=1, dtype=fnp.aval_of(a)[1])
    start, length = {"full": (0, n + m - 1), "same": ((m - 1) // 2, n),
                     "valid": (m - 1, n - m + 1)}[mode]
    return fnp.getitem(full, slice(start, start + length))


def correlate(a, v, mode="valid"):
    """np.correlate of real 1-d arrays: convolve with v reversed (NumPy swaps a
    shorter a with v, and reverses the result)."""
    a, v = fnp._as_array(a), fnp._as_array(v)
    if a.ndim == v.ndim == 1 and v.shape[0] > a.shape[0]:
        return flip(correlate(v, a, mode))
    return convolve(a, flip(v), mode)


def trapezoid(y, x=None, dx=1.0, axis=-1):
    """np.trapezoid: the sum of (y[i] + y[i+1]) / 2 times the spacing along `axis`."""
    y = fnp._as_array(y)
    axis = fnp._one_axis(axis, y.ndim, "trapezoid")
    if x is None:
        spacing = dx
    else:
        x = fnp._as_array(x)
        spacing = diff(x, axis=axis if x.ndim > 1 else 0)
        if x.ndim == 1 and y.ndim > 1:
            spacing = fnp.reshape(spacing, (spacing.shape[0],) + (1,) * (y.ndim - axis - 1))
    later, earlier = (fnp.along(y, axis, slice(1, None)), fnp.along(y, axis, slice(None, -1)))
    return fnp.sum(fnp.true_divide(fnp.multiply(spacing, fnp.add(later, earlier)), 2.0), axis=axis)


# ------------------------------------------------------------ rounding, units
def around(x, decimals=0, out=None):
    """np.round: to `decimals` places, halves to even, as NumPy computes it
    (x * 10**d, rint, / 10**d, so 2.675 rounds to 2.67 as in NumPy). Its
    slope is 0 wherever it has one, as floor's."""
    if out is not None:
        errors.refuse(errors.UnsupportedOpError, "np.round(out=) is not supported; graphc arrays are "
                                          "immutable")
    decimals = operator.index(decimals)
    x = fnp._as_array(x)
    dtype = fnp.aval_of(x)[1]
    if dtype.kind in "iu":
        if decimals >= 0:
            return x
        # NumPy rounds integers to tens, hundreds, ... through float64 too
        return fnp.astype(around(fnp.astype(x, np.float64), decimals), dtype)
    if dtype.kind == "b":
        x = fnp.astype(x, np.float32)       # NumPy: float16, which graphc does not have
    with np.errstate(over="ignore"):        # 10**309 and beyond: inf, as NumPy's C pow
        scale = float(np.float64(10.0) ** abs(decimals))
    if decimals == 0:
        return fnp.rint(x)
    if decimals > 0:
        return fnp.true_divide(fnp.rint(fnp.multiply(x, scale)), scale)
    return fnp.multiply(fnp.rint(fnp.true_divide(x, scale)), scale)


def deg2rad(x):
    return _times_in_its_dtype(x, np.pi, 180)


def rad2deg(x):
    return _times_in_its_dtype(x, 180, np.pi)


def _times_in_its_dtype(x, numerator, denominator):
    """x * (numerator / denominator), the ratio rounded in x's float type
    first, as NumPy's loops compute it (NPY_PIf / 180.0f in float32)."""
    x = fnp._as_float(fnp._as_array(x))
    dtype = fnp.aval_of(x)[1].type
    return fnp.multiply(x, float(dtype(numerator) / dtype(denominator)))


def _nan_ignoring(extreme):
    """np.fmax/np.fmin: np.maximum/np.minimum, but a NaN loses to a number."""
    def pick(x, y):
        x, y = fnp._promote(x, y)
        both = extreme(x, y)
        if fnp.aval_of(both)[1].kind != "f":
            return both
        return fnp.where(isnan(y), x, fnp.where(isnan(x), y, both))
    return pick


fmax, fmin = _nan_ignoring(fnp.maximum), _nan_ignoring(fnp.minimum)


FUNCTIONS = {
    np.split: split, np.array_split: array_split, np.hsplit: hsplit, np.vsplit: vsplit,
    np.vstack: vstack, np.hstack: hstack, np.flip: flip, np.outer: outer, np.inner: inner,
    np.vdot: vdot,
    np.linalg.norm: norm, np.linalg.vector_norm: vector_norm,
    np.linalg.matrix_norm: matrix_norm, np.roll: roll, np.repeat: repeat, np.tile: tile,
    np.pad: pad,
    np.lib.stride_tricks.sliding_window_view: sliding_window_view, np.tril: tril,
    np.triu: triu, np.argmax: argmax, np.argmin: argmin, np.round: around, np.around: around,
    np.diff: diff, np.count_nonzero: count_nonzero, np.any: any_, np.all: all_,
    np.isclose: isclose, np.allclose: allclose, np.select: select, np.sinc: sinc,
    np.convolve: convolve, np.correlate: correlate, np.trapezoid: trapezoid,
    np.nan_to_num: nan_to_num, np.searchsorted: searchsorted, np.interp: interp,
}
UFUNCS = {"isnan": isnan, "isfinite": isfinite, "isinf": isinf, "reciprocal": reciprocal,
          "logical_xor": logical_xor, "deg2rad": deg2rad, "radians": deg2rad,
          "rad2deg": rad2deg, "degrees": rad2deg, "fmax": fmax, "fmin": fmin,
          "heaviside": heaviside}
# where a function is found, for the unsupported-function message's list
NAMES = {np.linalg.norm: "np.linalg.norm",
         np.lib.stride_tricks.sliding_window_view: "np.lib.stride_tricks.sliding_window_view"}
