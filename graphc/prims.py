"""One Python function per primitive: the typed layer that binds ops.

VJP rules, the NumPy front end and `gc.nn` build graphs through these.
Arguments are already promoted to one dtype (the front end does that);
identity cases (reshape to the same shape, ...) return the operand itself.
"""
from __future__ import annotations

import numpy as np

from graphc import tracing


def bind(op, *operands, **params):
    return tracing.bind(op, *operands, **params)


def scalar_like(x, value):
    """A 0-d constant of x's dtype (it broadcasts against x)."""
    return np.array(value, dtype=x.dtype)


def _unary(name):
    return lambda x: bind(name, x)


def _binary(name):
    return lambda x, y: bind(name, x, y)


neg, exp, log, log1p, expm1, sqrt = map(_unary, ["neg", "exp", "log", "log1p", "expm1", "sqrt"])
sin, cos, tanh, abs, sign, erf = map(_unary, ["sin", "cos", "tanh", "abs", "sign", "erf"])
stop_gradient, logical_not = _unary("stop_gradient"), _unary("logical_not")
tan, arcsin, arccos, arctan = map(_unary, ["tan", "arcsin", "arccos", "arctan"])
sinh, cosh, arcsinh, arccosh, arctanh = map(_unary, ["sinh", "cosh", "arcsinh", "arccosh", "arctanh"])
sigmoid = _unary("sigmoid")
log2, log10, exp2, cbrt = map(_unary, ["log2", "log10", "exp2", "cbrt"])
floor, ceil, trunc, rint = map(_unary, ["floor", "ceil", "trunc", "rint"])
add, sub, mul, div, pow = map(_binary, ["add", "sub", "mul", "div", "pow"])
maximum, minimum = _binary("maximum"), _binary("minimum")
eq, ne, lt, le, gt, ge = map(_binary, ["eq", "ne", "lt", "le", "gt", "ge"])
logical_and, logical_or = _binary("logical_and"), _binary("logical_or")
arctan2, hypot = _binary("arctan2"), _binary("hypot")
floor_divide, remainder = _binary("floor_divide"), _binary("remainder")


def where(cond, x, y):
    return bind("where", cond, x, y)


def convert(x, dtype):
    dtype = np.dtype(dtype)
    return x if np.dtype(x.dtype) == dtype else bind("convert", x, dtype=dtype)


def index_check(idx, size, allow_negative=True, what="index"):
    return bind("index_check", idx, size=int(size), allow_negative=bool(allow_negative), what=what)


def int_range_check(x, dtype):
    return bind("int_range_check", x, dtype=np.dtype(dtype))


def cumsum(x, axis, reverse=False):
    return bind("cumsum", x, axis=int(axis), reverse=bool(reverse))


def recurrence(a, b, axis, reverse=False, lagged=False):
    return bind("recurrence", a, b, axis=int(axis), reverse=bool(reverse), lagged=bool(lagged))


def inv(a):
    return bind("inv", a)


def solve(a, b):
    return bind("solve", a, b)


def triangular_solve(a, b, lower, transposed=False):
    """x with op(a) x = b, op(a) a's lower (or upper) triangle, or its transpose."""
    return bind("triangular_solve", a, b, lower=bool(lower), transposed=bool(transposed))


def det(a):
    return bind("det", a)


def cholesky(a):
    return bind("cholesky", a)


def eigh(a):
    return bind("eigh", a)


def svd(a):
    return bind("svd", a)


def qr(a):
    return bind("qr", a)


def pinv(a, rcond):
    return bind("pinv", a, rcond=float(rcond))


def slogdet(a, logabs):
    return bind("slogdet", a, logabs=bool(logabs))


def cumprod(x, axis):
    return bind("cumprod", x, axis=int(axis))


def argsort(x, axis):
    return bind("argsort", x, axis=int(axis))


def reduce_sum(x, axes, keepdims=False):
    if not axes and not keepdims:
        return x
    return bind("sum", x, axes=tuple(sorted(axes)), keepdims=bool(keepdims))


def reduce_max(x, axes, keepdims=False):
    if not axes and not keepdims:
        return x
    return bind("max", x, axes=tuple(sorted(axes)), keepdims=bool(keepdims))


def numel(x, axes, dtype):
    """The number of elements of x along `axes`, as a 0-d `dtype` value read from x's shape."""
    return bind("numel", x, axes=tuple(sorted(axes)), dtype=np.dtype(dtype))


def log_softmax(x, axis, finite_peak=True):
    return bind("log_softmax", x, axis=int(axis), finite_peak=bool(finite_peak))


def softmax(x, axis, finite_peak=True):
    return bind("softmax", x, axis=int(axis), finite_peak=bool(finite_peak))


def matmul(a, b):
    return bind("matmul", a, b)


def matmul_add(c, a, b):
    return bind("matmul_add", c, a, b)


def reshape(x, shape):
    shape = tuple(int(d) for d in shape)
    return x if tuple(x.shape) == shape else bind("reshape", x, shape=shape)


def transpose(x, perm):
    perm = tuple(int(p) for p in perm)
    return x if perm == tuple(range(len(perm))) else bind("transpose", x, perm=perm)


def swap_last(x):
    perm = list(range(x.ndim))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return transpose(x, perm)


def broadcast_to(x, shape):
    shape = tuple(int(d) for d in shape)
    return x if tuple(x.shape) == shape else bind("broadcast_to", x, shape=shape)


def slice(x, starts, steps, shape, ends=None):
    """x[start:stop:step] per axis, `shape` elements long. `ends`: None, or per
    axis (start_back, stop_back, stop): start_back and stop_back are None, or
    k for an index written as "k before the end" (x[-3:] has (3, 0, n), x[1:]
    (None, 0, n)), and `stop` is where it stops, which only a stop written
    from the front is read from. Then generated code slices an axis of any
    size the same way (see dims.slice_length)."""
    starts, steps, shape = (tuple(int(v) for v in t) for t in (starts, steps, shape))
    if shape == tuple(x.shape) and all(s == 0 for s in starts) and all(s == 1 for s in steps):
        return x
    return bind("slice", x, starts=starts, steps=steps, shape=shape, **_ends(ends))


def unslice(u, base_shape, starts, steps, ends=None):
    return bind("unslice", u, base_shape=tuple(base_shape), starts=tuple(starts),
                steps=tuple(steps), **_ends(ends))


def _ends(ends) -> dict:
    """The `ends` param, left out when no index counts from the end (so such
    slices are the nodes they always were)."""
    if ends is None or all(s is None and e is None for s, e, _ in ends):
        return {}
    return {"ends": tuple((None if s is None else int(s), None if e is None else int(e),
                           int(stop)) for s, e, stop in ends)}


def concatenate(xs, axis):
    xs = list(xs)
    return xs[0] if len(xs) == 1 else bind("concatenate", *xs, axis=int(axis))


def concat_piece(whole, xs, axis):
    """The part of `whole`, a concatenation along `axis`, that came from
    xs[-1] (after xs[:-1])."""
    return bind("concat_piece", whole, *xs, axis=int(axis))


def take(x, idx, axis):
    return bind("take", x, idx, axis=int(axis))


def scatter_add(u, idx, axis, size):
    return bind("scatter_add", u, idx, axis=int(axis), size=int(size))
