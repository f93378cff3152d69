"""The NumPy front end: NumPy's semantics on top of the primitives.

Type promotion (NumPy 2 rules, with Python scalars weakly typed so a float32
model stays float32), axis normalisation, matmul of 1-D/2-D/batched operands,
indexing, and the tables that `Tracer.__array_ufunc__` and
`Tracer.__array_function__` dispatch through. Functions here accept tracers,
NumPy arrays and Python scalars alike.
"""
from __future__ import annotations

import builtins
import math
import operator
import sys
import warnings

import numpy as np

from graphc import einsum as _einsum
from graphc import errors
from graphc import prims as P
from graphc import tracing
from graphc.ops import NEGATIVE_INT_POWER
from graphc.tracing import Tracer, WeakScalar, aval_of, note_int_bounds, strongly_typed

_KIND_ORDER = {"b": 0, "u": 1, "i": 1, "f": 2}


def _is_weak(x) -> bool:
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic) or (
        isinstance(x, Tracer) and x.weak) or isinstance(x, WeakScalar)


def result_dtype(*xs) -> np.dtype:
    """NumPy 2 promotion where weakly typed values (Python scalars) never widen."""
    strong = [aval_of(x)[1] for x in xs if not _is_weak(x)]
    weak = [aval_of(x)[1] for x in xs if _is_weak(x)]
    if not strong:
        return np.result_type(*weak)
    out = np.result_type(*strong)
    for w in weak:
        if _KIND_ORDER[w.kind] > _KIND_ORDER[out.kind]:
            out = np.result_type(out, w)
    return out


def to_operand(x, dtype, wraps=False):
    """x as an operand of dtype: a converted tracer or a NumPy constant.
    A Python int argument converted to a narrower integer type is checked
    against it on every call, as NumPy's arithmetic refuses one that does
    not fit (tracing.note_int_bounds); `wraps`: NumPy converts it modulo
    2**bits here (np.where's values)."""
    if isinstance(x, Tracer):
        if not wraps:
            x = note_int_bounds(x, dtype)
        return P.convert(x, dtype)
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    aval_of(x)
    if wraps:
        operand = np.asarray(x).astype(dtype)
    else:
        try:
            operand = np.asarray(x, dtype=dtype)
        except OverflowError as e:  # a literal Python int out of the array's type: NumPy's error
            raise errors.GraphcOverflowError(f"{e}{errors.at(errors.user_location())}") from None
    return operand.view(WeakScalar) if _is_weak(x) else operand


def cast(x, dtype):
    """x (traced or not) as `dtype`, converting as NumPy's astype does."""
    return astype(x, dtype) if isinstance(x, Tracer) else np.asarray(x, dtype)


def strong_array(x):
    """A Python number as NumPy makes it before np.clip, np.einsum, ...: an
    array, strongly typed (a traced value stays as it is)."""
    return x if isinstance(x, Tracer) else np.asarray(x)


def _arrays_of_lists(*xs):
    return [np.asarray(x) if isinstance(x, (list, tuple)) else x for x in xs]


def _promote(*xs, wraps=False):
    xs = _arrays_of_lists(*xs)
    dtype = result_dtype(*xs)
    return [to_operand(x, dtype, wraps) for x in xs]


def _float_dtype(x) -> np.dtype:
    """What np.mean and np.var compute in: float64 for integers and bools."""
    dtype = aval_of(x)[1]
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def _ufunc_float_dtype(dtype: np.dtype) -> np.dtype:
    """What NumPy's float-only ufuncs (exp, tanh, logaddexp, ...) compute an
    integer or bool dtype in: the smallest float holding it exactly (int16
    -> float32, int32 -> float64), float32 where NumPy picks float16 (bool,
    int8, uint8), which graphc does not have."""
    if dtype.kind == "f":
        return dtype
    return np.dtype(np.float32) if dtype.itemsize <= 2 else np.dtype(np.float64)


def _as_float(x):
    return to_operand(x, _ufunc_float_dtype(aval_of(x)[1]))


def _as_float_or_float64(x):
    """x as float64 if it is not a float array (np.mean's rule, and SciPy's
    expit's and logsumexp's)."""
    return to_operand(x, _float_dtype(x))


# ---------------------------------------------------------------- elementwise
def _binary(prim):
    return lambda x, y: prim(*_promote(x, y))


add, multiply = _binary(P.add), _binary(P.mul)


def _refuse_boolean(x, what, instead):
    """NumPy has no boolean -, unary - or sign (a compiled loop computed them)."""
    if aval_of(x)[1].kind == "b":
        raise errors.GraphcTypeError(f"numpy boolean {what} is not supported, use {instead} "
                                     f"instead{errors.at(errors.user_location())}")


def subtract(x, y):
    x, y = _promote(x, y)
    _refuse_boolean(x, "subtract, the `-` operator,", "np.logical_xor")
    return P.sub(x, y)


def _integer_division(prim):
    """`//` and `%` (np.floor_divide, np.remainder): booleans divide as int8."""
    def divide(x, y):
        x, y = _promote(x, y)
        if aval_of(x)[1] == np.bool_:
            x, y = to_operand(x, np.int8), to_operand(y, np.int8)
        return prim(x, y)
    return divide


floor_divide, remainder = _integer_division(P.floor_divide), _integer_division(P.remainder)


def divmod_(x, y):
    return floor_divide(x, y), remainder(x, y)


def _compare(prim):
    """NumPy 2 compares a Python int with an integer array by value, even
    one outside the array's type (`uint8 < -1` is False): such a pair
    compares in int64, and a uint64 one as _compare_uint64 says."""
    def compare(x, y):
        x, y = _arrays_of_lists(x, y)
        dtype = result_dtype(x, y)
        weak_int = [_is_weak(v) and aval_of(v)[1].kind in "iu" for v in (x, y)]
        if dtype.kind in "iu" and dtype.itemsize < 8 and any(weak_int):
            dtype = np.dtype(np.int64)
        elif dtype == np.uint64 and weak_int[0] != weak_int[1]:
            return _compare_uint64(prim, x, y, weak_int[1])
        return prim(to_operand(x, dtype), to_operand(y, dtype))
    return compare


# a comparison's mirror image: n < x is x > n
_MIRRORED = {P.lt: P.gt, P.le: P.ge, P.gt: P.lt, P.ge: P.le, P.eq: P.eq, P.ne: P.ne}


def _compare_uint64(prim, x, y, int_on_right):
    """A uint64 array against a Python int, by value: a negative int is below
    every element (uint64 >= -3 is all True), any other is a uint64."""
    if not int_on_right:
        prim, x, y = _MIRRORED[prim], y, x
    u = to_operand(x, np.uint64)
    zero = to_operand(0, np.uint64)
    # against a negative n: x < n, x <= n and x == n are False, the others True
    below = P.lt(u, zero) if prim in (P.lt, P.le, P.eq) else P.ge(u, zero)
    if not isinstance(y, Tracer):
        n = int(np.asarray(y))
        return below if n < 0 else prim(u, to_operand(n, np.uint64))
    negative = P.lt(y, to_operand(0, y.dtype))
    return P.where(negative, below, prim(u, P.convert(y, np.uint64)))    # wraps, unused then


maximum, minimum = _binary(P.maximum), _binary(P.minimum)
equal, not_equal = _compare(P.eq), _compare(P.ne)
less, less_equal, greater, greater_equal = _compare(P.lt), _compare(P.le), _compare(P.gt), _compare(P.ge)


def true_divide(x, y):
    # integers divide as float64, each converted straight to it as in NumPy
    # (uint8 / -1 is -1.0, not 1 / 255)
    x, y = _arrays_of_lists(x, y)
    dtype = result_dtype(x, y)
    dtype = dtype if dtype.kind == "f" else np.dtype(np.float64)
    return P.div(to_operand(x, dtype), to_operand(y, dtype))


def power(x, y):
    x, y = _arrays_of_lists(x, y)
    dtype = result_dtype(x, y)
    if dtype == np.bool_:   # NumPy's power has no boolean loop: its smallest integer one
        dtype = np.dtype(np.int8)
    if dtype.kind in "iu" and not isinstance(y, Tracer) and np.any(np.asarray(y) < 0):
        # NumPy raises too: the result would be a fraction (a Python int that
        # the unsigned type cannot hold is its OverflowError first)
        to_operand(y, dtype)
        raise errors.GraphcValueError(f"{NEGATIVE_INT_POWER}: {dtype} ** {np.asarray(y).min()}"
                                      f"{errors.at(errors.user_location())}")
    # shortcuts only where they keep NumPy's result type (int32 ** 2.0 is float64)
    if isinstance(y, (int, float, np.integer, np.floating)) and not isinstance(y, bool) \
            and aval_of(x)[1] == dtype:
        if y == 2:
            return square(x)
        if y == 1:
            return x
        if y == 0.5 and dtype.kind == "f":
            return P.sqrt(x)
    return P.pow(to_operand(x, dtype), to_operand(y, dtype))


def power_operator(x, y):
    """`x ** y`: NumPy's operator takes a bool array ** 2 to np.square (int8),
    where np.power(bool, 2) is int64."""
    if aval_of(x)[1] == np.bool_ and type(y) is int and y == 2:
        return square(x)
    return power(x, y)


def square(x):
    dtype = aval_of(x)[1]
    x = to_operand(x, np.dtype(np.int8) if dtype == np.bool_ else dtype)    # as power's
    return P.mul(x, x)


def _unary_float(prim):
    return lambda x: prim(_as_float(x))


exp, log, log1p, expm1, sqrt = map(_unary_float, [P.exp, P.log, P.log1p, P.expm1, P.sqrt])
sin, cos, tanh, erf = map(_unary_float, [P.sin, P.cos, P.tanh, P.erf])
tan, arcsin, arccos, arctan = map(_unary_float, [P.tan, P.arcsin, P.arccos, P.arctan])
sinh, cosh, arcsinh, arccosh, arctanh = map(_unary_float,
                                            [P.sinh, P.cosh, P.arcsinh, P.arccosh, P.arctanh])
log2, log10, exp2, cbrt, rint = map(_unary_float, [P.log2, P.log10, P.exp2, P.cbrt, P.rint])


def _step(prim):
    """floor, ceil, trunc: NumPy 2 gives integers and booleans back as they
    are, in their own dtype; floats go through the op."""
    def step(x):
        x = _as_array(x)
        dtype = aval_of(x)[1]
        return prim(to_operand(x, dtype)) if dtype.kind == "f" else x
    return step


floor, ceil, trunc = map(_step, [P.floor, P.ceil, P.trunc])


def negative(x):
    _refuse_boolean(x, "negative, the `-` operator,", "np.logical_not")
    return P.neg(to_operand(x, aval_of(x)[1]))


def positive(x):
    _refuse_boolean(x, "positive, the unary `+` operator,", "the array itself")
    return x


def absolute(x):
    return P.abs(to_operand(x, aval_of(x)[1]))


def sign(x):
    _refuse_boolean(x, "sign", "x.astype(np.int8)")
    return P.sign(to_operand(x, aval_of(x)[1]))


def logical_not(x):
    return P.logical_not(to_operand(x, np.bool_))


def logical_and(x, y):
    return P.logical_and(to_operand(x, np.bool_), to_operand(y, np.bool_))


def logical_or(x, y):
    return P.logical_or(to_operand(x, np.bool_), to_operand(y, np.bool_))


def _boolean_operator(logical, symbol):
    """`&`, `|` and `~`: NumPy's bitwise ops, the logical ones for booleans
    alone. graphc has no bitwise ops, so any other operand is refused (it
    computed the logical op: `uint8 & 3` was [True, True], NumPy's [1, 0])."""
    def op(*xs):
        for x in _arrays_of_lists(*xs):
            dtype = aval_of(x)[1]
            if dtype != np.bool_:
                raise errors.UnsupportedOpError(
                    f"the `{symbol}` operator on {dtype} values is NumPy's bitwise operation, "
                    f"which graphc does not support; for masks use boolean arrays or "
                    f"np.logical_and / np.logical_or / np.logical_not"
                    f"{errors.at(errors.user_location())}")
        return logical(*xs)
    return op


bitwise_and = _boolean_operator(logical_and, "&")
bitwise_or = _boolean_operator(logical_or, "|")
invert = _boolean_operator(logical_not, "~")


def _float_pair(x, y):
    """The operands of a float-only binary ufunc (logaddexp, arctan2, hypot)
    in NumPy's loop type: the first float type every strongly typed operand
    fits (float32 with int8, and uint16 with int8, are float32)."""
    x, y = _arrays_of_lists(x, y)
    if _is_weak(x) or _is_weak(y):      # NEP 50: int8 with 0.5, and bool with 2, are float64
        dtype = _ufunc_float_dtype(result_dtype(x, y))
    else:
        dtype = np.result_type(*(_ufunc_float_dtype(aval_of(v)[1]) for v in (x, y)))
    return to_operand(x, dtype), to_operand(y, dtype)


def arctan2(y, x):
    return P.arctan2(*_float_pair(y, x))


def hypot(x, y):
    return P.hypot(*_float_pair(x, y))


def logaddexp(x, y):
    """log(exp(x) + exp(y)) without overflow, as NumPy: the larger argument
    plus log1p(exp(smaller - larger)). Each side of the choice is the whole
    function, analytic everywhere (x + log1p(exp(y - x)) is logaddexp), so
    its derivatives of every order are right, at x == y too. (Written
    max(x, y) + log1p(exp(-|x - y|)), its two kinks at x == y cancel in the
    value and the first derivative only: logaddexp(0, z)'' at z = 0 was 0,
    not 1/4.) Two infinities of one sign give that infinity, as in NumPy,
    where x - y is nan."""
    x, y = _float_pair(x, y)
    x_larger = P.ge(x, y)
    larger = P.where(x_larger, x, y)
    below = P.where(x_larger, P.sub(y, x), P.sub(x, y))
    both_infinite = P.logical_and(P.eq(x, y), P.eq(P.abs(x), P.scalar_like(x, np.inf)))
    below = P.where(both_infinite, P.scalar_like(x, 0), below)
    return P.add(larger, P.log1p(P.exp(below)))


def where(cond, x=None, y=None):
    if x is None or y is None:
        raise errors.UnsupportedOpError("np.where with one argument (nonzero indices) has a "
                                        "data-dependent shape; pass all three arguments")
    if aval_of(cond)[1] != np.bool_:
        cond = not_equal(cond, 0)
    x, y = _promote(x, y, wraps=True)     # NumPy casts a Python int modulo 2**bits here
    return P.where(to_operand(cond, np.bool_), x, y)


def clip(x, a_min=None, a_max=None, *, min=None, max=None, **kwargs):
    """np.clip; also with NumPy 2.1's min= and max= (one of each pair)."""
    _check_no_out(kwargs, "clip")
    a_min, a_max = _either(a_min, min, "a_min"), _either(a_max, max, "a_max")
    x = strong_array(x)
    dtype = aval_of(x)[1]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        a_min = _int_bound(a_min, int(info.min), lower=True)
        a_max = _int_bound(a_max, int(info.max), lower=False)
    if a_min is not None:
        x = maximum(x, a_min)
    if a_max is not None:
        x = minimum(x, a_max)
    return x


def _either(value, alias, name):
    """One of np.clip's bound and its NumPy 2.1 alias (a_min or min)."""
    if alias is None:
        return value
    if value is not None:
        raise errors.users_error(errors.GraphcTypeError,
                                 f"clip: pass {name} or {name[2:]}, not both")
    return alias


def _int_bound(bound, limit, lower):
    """A Python int bound of np.clip on an integer array: NumPy 2 lets one
    beyond the type's range on its own side clip nothing (np.clip(u8, -1,
    300) is u8) and refuses one beyond the other side (OverflowError, from
    the conversion). A traced one is clamped to the limit; an int64 one
    cannot pass the limits of int64 or uint64 anyway."""
    if bound is None or not (_is_weak(bound) and aval_of(bound)[1].kind in "iu"):
        return bound
    if not isinstance(bound, Tracer):
        beyond = int(np.asarray(bound)) < limit if lower else int(np.asarray(bound)) > limit
        return None if beyond else bound
    limits = np.iinfo(np.int64)
    if not limits.min < limit < limits.max:
        return bound
    return maximum(bound, limit) if lower else minimum(bound, limit)


def astype(x, dtype):
    dtype = np.dtype(dtype)
    if dtype not in {np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64, np.bool_,
                                              np.int8, np.int16, np.uint8)}:
        raise errors.UnsupportedOpError(f"astype({dtype}) is not supported")
    return P.convert(to_operand(x, aval_of(x)[1]), dtype)


def _filled_like(x, fill_value, dtype, order, shape, device, name):
    """np.zeros_like and the others: NumPy's arguments, C order only."""
    if order not in ("K", "A", "C"):
        raise errors.users_error(errors.UnsupportedOpError,
                                 f"np.{name}(order={order!r}) is not supported: graphc's "
                                 f"arrays are C-ordered")
    if device not in (None, "cpu"):
        raise errors.users_error(errors.GraphcValueError,
                                 f"np.{name}: device must be 'cpu' or None, not {device!r}")
    own_shape, own_dtype, _ = aval_of(x)
    if shape is not None:
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (operator.index(shape),)
    shape, dtype = own_shape if shape is None else shape, dtype or own_dtype
    if isinstance(fill_value, Tracer):      # a traced fill (full_like): broadcast
        return astype(broadcast_to(fill_value, shape), dtype)
    return _assignable(np.full(shape, fill_value, dtype), x)


def zeros_like(x, dtype=None, order="K", subok=True, shape=None, *, device=None):
    return _filled_like(x, 0, dtype, order, shape, device, "zeros_like")


def empty_like(x, dtype=None, order="K", subok=True, shape=None, *, device=None):
    """np.empty_like: zeros (an empty array's values are whatever was there)."""
    return _filled_like(x, 0, dtype, order, shape, device, "empty_like")


def ones_like(x, dtype=None, order="K", subok=True, shape=None, *, device=None):
    return _filled_like(x, 1, dtype, order, shape, device, "ones_like")


def full_like(x, fill_value, dtype=None, order="K", subok=True, shape=None, *, device=None):
    return _filled_like(x, fill_value, dtype, order, shape, device, "full_like")


def _assignable(value, like):
    """np.zeros_like(x) and the others of a traced x: a traced constant, so
    that `h = np.zeros_like(x); h[:, 0::2] = np.sin(x)` assigns into it."""
    if not isinstance(like, Tracer):
        return value
    graph = tracing.current_graph()
    return Tracer(graph, tracing.const(graph, value, errors.user_location()))


# ---------------------------------------------------------------- reductions
def normalize_axes(axis, ndim, op="reduction"):
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(_axes_in(axis, ndim, op)))


def _axes_in(axis, ndim, op) -> list[int]:
    """An axis or a sequence of them (negative ones counting from the end), in
    their order, each checked against `ndim` as NumPy does (AxisError)."""
    out = []
    for a in axis if isinstance(axis, (tuple, list)) else (axis,):
        a = operator.index(a)
        if not -ndim <= a < ndim:
            raise errors.ShapeError(f"{op}: axis {a} is out of bounds for an array of "
                                    f"dimension {ndim}{errors.at(errors.user_location())}")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise errors.ShapeError(f"{op}: repeated axis in {axis}"
                                f"{errors.at(errors.user_location())}")
    return out


def _check_no_out(kwargs, name):
    bad = {k: v for k, v in kwargs.items() if v is not None and k not in ("dtype",)}
    if bad:
        raise errors.UnsupportedOpError(f"np.{name} argument(s) {sorted(bad)} are not supported"
                                        f"{errors.at(errors.user_location())}")


def _masked(x, where, name):
    """x with 0 where `where` is False (np.sum's and np.mean's where=), and the
    mask broadcast to x's shape; `where` must broadcast to it, as in NumPy."""
    x, where = _arrays_of_lists(x, where)
    if not isinstance(where, Tracer) and np.asarray(where).dtype.kind in "iu":
        where = np.asarray(where).astype(bool)      # where=1, as NumPy casts it
    shape, wshape = tuple(aval_of(x)[0]), tuple(aval_of(where)[0])
    try:
        fits = np.broadcast_shapes(shape, wshape) == shape
    except ValueError:
        fits = False
    if aval_of(where)[1] != np.bool_ or not fits:
        raise errors.GraphcValueError(
            f"np.{name}: where= must be a bool array that broadcasts to {shape}, got "
            f"{aval_of(where)[1]}{list(wshape)}{errors.at(errors.user_location())}")
    mask = broadcast_to(where, shape)
    return P.where(mask, x, to_operand(0, aval_of(x)[1])), mask


# The reductions take NumPy's positional order (x.sum(1, None, None, True) is
# keepdims), out= refused
def sum(x, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True, **kwargs):
    _check_no_out({"out": out, **kwargs}, "sum")
    if where is not True:
        x = _masked(x, where, "sum")[0]
    x = to_operand(x, _sum_dtype(x, dtype))
    total = P.reduce_sum(x, normalize_axes(axis, x.ndim, "sum"), keepdims)
    return total if initial is None else add(total, to_operand(initial, x.dtype))


def cumprod(x, axis=None, dtype=None, out=None):
    """np.cumprod: running products along `axis`, NumPy's to the bit (a
    linear recurrence: see ops.py), with gradients right at zeros."""
    _check_no_out({"out": out}, "cumprod")
    x = _as_array(x)
    if dtype is not None and np.dtype(dtype) == np.bool_:     # NumPy: a running logical and
        return equal(cumsum(equal(x, 0), axis, np.int64), 0)
    x = to_operand(x, _sum_dtype(x, dtype))
    return _along_last(x, axis, "cumprod", _running_product)[0]


def _running_product(rows):
    return P.cumprod(rows, rows.ndim - 1)


def prod(x, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True):
    """np.prod: the last running product over the axes merged into one (1 over none)."""
    _check_no_out({"out": out, "initial": initial,
                   "where": None if where is True else where}, "prod")
    x = _as_array(x)
    if dtype is not None and np.dtype(dtype) == np.bool_:     # NumPy: a logical and
        return equal(sum(equal(x, 0), axis, np.int64, keepdims=keepdims), 0)
    x = to_operand(x, _sum_dtype(x, dtype))
    rows, keep = rows_over(x, axis, "prod")
    shape = keep if keepdims else rows.shape[:-1]
    size = rows.shape[-1]
    if size == 0:
        return np.ones(shape, aval_of(x)[1])
    return reshape(getitem(_running_product(rows), (Ellipsis, size - 1)), shape)


def rows_over(x, axis, name):
    """x with `axis` (a tuple merged into one; all of them if None) moved
    last, as rows for an op over the last axis; and the shape keepdims= gives
    a result over them."""
    x = _as_array(x)
    axes = normalize_axes(axis, x.ndim, name)
    keep = tuple(1 if d in axes else n for d, n in enumerate(x.shape))
    rest = [d for d in range(x.ndim) if d not in axes]
    size = int(np.prod([x.shape[d] for d in axes]))
    rows = reshape(transpose(x, rest + list(axes)), tuple(x.shape[d] for d in rest) + (size,))
    return rows, keep


def _sum_dtype(x, dtype) -> np.dtype:
    """What np.sum and np.cumsum add in: `dtype`, else floats their own,
    bools and signed integers int64, unsigned ones uint64."""
    if dtype is not None:
        return np.dtype(dtype)
    xdtype = aval_of(x)[1]
    return xdtype if xdtype.kind == "f" else np.dtype(np.int64) if xdtype.kind in "bi" else \
        np.dtype(np.uint64)


def cumsum(x, axis=None, dtype=None, out=None):
    """np.cumsum: running sums along `axis` (of the flattened array if None;
    a 0-d array's are 1-d, as NumPy's)."""
    _check_no_out({"out": out}, "cumsum")
    x = _as_array(x)
    if dtype is not None and np.dtype(dtype) == np.bool_:     # NumPy: a running logical or
        return not_equal(cumsum(not_equal(x, 0), axis, np.int64), 0)
    x = to_operand(x, _sum_dtype(x, dtype))
    return _along_last(x, axis, "cumsum", lambda rows: P.cumsum(rows, rows.ndim - 1))[0]


def mean(x, axis=None, dtype=None, out=None, keepdims=False, *, where=True, **kwargs):
    _check_no_out({"out": out, **kwargs}, "mean")
    x = to_operand(x, np.dtype(dtype) if dtype is not None else _float_dtype(x))
    axes = normalize_axes(axis, x.ndim, "mean")
    if where is not True:
        # the mean of the chosen elements (a masked mean over padding): nan
        # where none is chosen, as NumPy's (which also warns)
        x, mask = _masked(x, where, "mean")
        count = sum(mask, axis=axes, keepdims=keepdims, dtype=x.dtype)
        return true_divide(P.reduce_sum(x, axes, keepdims), count)
    if any(x.shape[a] == 0 for a in axes):      # 0 / 0: nan, as NumPy (which warns too)
        warnings.warn("Mean of empty slice", RuntimeWarning,
                      stacklevel=errors.users_stacklevel())
    # the divisor is read from the shape at run time (numel), not written in as a constant
    return true_divide(P.reduce_sum(x, axes, keepdims), P.numel(x, axes, x.dtype))


def max(x, axis=None, out=None, keepdims=False, initial=None, where=True, *, _name="max",
        **kwargs):
    """np.max; `initial` takes part as one more element, and where= leaves
    out elements, which NumPy allows only with an initial. (`_name`: np.min's
    errors, of the max it is written as.)"""
    _check_no_out({"out": out, **kwargs}, _name)
    x = to_operand(x, aval_of(x)[1])
    axes = normalize_axes(axis, x.ndim, _name)
    if initial is None:
        if where is not True:
            raise errors.GraphcValueError(
                f"np.{_name}: where= leaves an empty selection possible, so it needs initial= "
                f"(as NumPy's: the {_name}imum has no identity)"
                f"{errors.at(errors.user_location())}")
        if any(x.shape[a] == 0 for a in axes):
            raise errors.ShapeError(f"{_name} of an empty array has no identity; pass initial="
                                    f"{errors.at(errors.user_location())}")
        return P.reduce_max(x, axes, keepdims)
    initial = to_operand(initial, x.dtype)
    if where is not True:
        x = P.where(_masked(x, where, _name)[1], x, initial)
    if any(x.shape[a] == 0 for a in axes):
        shape = tuple(1 if a in axes else n for a, n in enumerate(x.shape)) if keepdims else \
            tuple(n for a, n in enumerate(x.shape) if a not in axes)
        return broadcast_to(initial, shape)
    return maximum(P.reduce_max(x, axes, keepdims), initial)


def min(x, axis=None, out=None, keepdims=False, initial=None, where=True, **kwargs):
    """max of an order-reversed x: -x for floats, and for integers ~x (-x - 1,
    which wraps without collisions: -x alone maps int8 -128 and uint8 0 to
    themselves)."""
    _check_no_out({"out": out, **kwargs}, "min")
    kind = aval_of(x)[1].kind
    if kind == "b":
        flip = logical_not
    elif kind in "iu":
        def flip(v):
            return subtract(negative(v), 1)
    else:
        flip = negative
    if initial is not None:
        initial = flip(to_operand(initial, aval_of(x)[1]))
    return flip(max(flip(x), axis=axis, keepdims=keepdims, initial=initial, where=where,
                    _name="min"))


def var(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kwargs):
    _check_no_out({"out": out, **kwargs}, "var")
    x = to_operand(x, np.dtype(dtype)) if dtype is not None else _as_float_or_float64(x)
    axes = normalize_axes(axis, x.ndim, "var")
    centered = subtract(x, mean(x, axis=axes, keepdims=True))
    count = P.numel(x, axes, x.dtype)
    # NumPy divides by max(n - ddof, 0): more ddof than elements gives inf, not a negative
    return true_divide(sum(square(centered), axis=axes, keepdims=keepdims),
                       maximum(subtract(count, ddof), 0) if ddof else count)


def std(x, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kwargs):
    return sqrt(var(x, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims, **kwargs))


# ---------------------------------------------------------------- shapes
def shape(x):
    return aval_of(x)[0]


def ndim(x):
    return len(aval_of(x)[0])


def size(x):
    return int(np.prod(aval_of(x)[0], dtype=np.int64))


def _as_array(x):
    return x if isinstance(x, Tracer) else np.asarray(x)


def reshape(x, *newshape, order="C"):
    if order != "C":
        raise errors.UnsupportedOpError(f"reshape(order={order!r}): only order='C' is supported")
    x = _as_array(x)
    if len(newshape) == 1 and isinstance(newshape[0], (tuple, list)):
        newshape = tuple(newshape[0])
    newshape = [operator.index(d) for d in newshape]
    if newshape.count(-1) > 1:
        raise errors.ShapeError("reshape: only one dimension can be -1")
    if -1 in newshape:
        known = int(np.prod([d for d in newshape if d != -1], dtype=np.int64))
        total = x.size
        if known == 0 or total % known:
            raise errors.ShapeError(f"reshape: cannot reshape {x.shape} into {tuple(newshape)}"
                                    f"{errors.at(errors.user_location())}")
        newshape[newshape.index(-1)] = total // known
    return P.reshape(x, tuple(newshape))


def transpose(x, axes=None, *more):
    x = _as_array(x)
    if more:
        axes = (axes,) + more
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    if len(axes) != x.ndim:
        raise errors.ShapeError(f"transpose: axes {tuple(axes)} are not a permutation of the "
                                f"{x.ndim} axes of {x.shape}{errors.at(errors.user_location())}")
    return P.transpose(x, tuple(_axes_in(tuple(axes), x.ndim, "transpose")))


def swapaxes(x, axis1, axis2):
    x = _as_array(x)
    perm = list(range(x.ndim))
    (a,), (b,) = _axes_in(axis1, x.ndim, "swapaxes"), _axes_in(axis2, x.ndim, "swapaxes")
    perm[a], perm[b] = perm[b], perm[a]
    return P.transpose(x, perm)


def moveaxis(x, source, destination):
    """np.moveaxis: each axis of `source` (an axis or a sequence) to its place in
    `destination`, the others in their order."""
    x = _as_array(x)
    source = _axes_in(source, x.ndim, "moveaxis")
    destination = _axes_in(destination, x.ndim, "moveaxis")
    if len(source) != len(destination):
        raise errors.ShapeError(f"moveaxis: source and destination need as many axes, got "
                                f"{len(source)} and {len(destination)}"
                                f"{errors.at(errors.user_location())}")
    perm = [a for a in range(x.ndim) if a not in source]
    for to, axis in sorted(zip(destination, source)):
        perm.insert(to, axis)
    return P.transpose(x, perm)


def expand_dims(x, axis):
    x = _as_array(x)
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out_ndim = x.ndim + len(axes)
    axes = normalize_axes(axes, out_ndim, "expand_dims")
    dims = iter(x.shape)
    return P.reshape(x, tuple(1 if i in axes else next(dims) for i in range(out_ndim)))


def squeeze(x, axis=None):
    x = _as_array(x)
    axes = tuple(i for i, d in enumerate(x.shape) if d == 1) if axis is None else \
        normalize_axes(axis, x.ndim, "squeeze")
    for a in axes:
        if x.shape[a] != 1:
            raise errors.ShapeError(f"squeeze: axis {a} has size {x.shape[a]}, not 1")
    return P.reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def ravel(x, order="C"):
    return reshape(x, -1, order=order)


def broadcast_to(x, shape):
    x = _as_array(x)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return P.broadcast_to(x, shape)


_CASTINGS = ("no", "equiv", "safe", "same_kind", "unsafe")


def concatenate(arrays, axis=0, dtype=None, casting="same_kind", **kwargs):
    _check_no_out(kwargs, "concatenate")
    arrays = list(arrays)
    if not arrays:
        raise errors.ShapeError("concatenate needs at least one array")
    if casting not in _CASTINGS:
        raise errors.GraphcValueError(f"concatenate: casting must be one of {_CASTINGS}"
                                      f"{errors.at(errors.user_location())}")
    arrays = _arrays_of_lists(*arrays)
    target = np.dtype(dtype) if dtype is not None else result_dtype(*arrays)
    for a in arrays:    # as NumPy: each input cast to the result under `casting`
        if not (_is_weak(a) or np.can_cast(aval_of(a)[1], target, casting)):
            raise errors.GraphcTypeError(
                f"concatenate: cannot cast {aval_of(a)[1]} to {target} according to the rule "
                f"{casting!r}{errors.at(errors.user_location())}")
    operands = [to_operand(a, target) for a in arrays]
    if axis is None:
        operands, axis = [reshape(a, -1) for a in operands], 0
    ndim = operands[0].ndim
    if ndim == 0:
        raise errors.ShapeError("concatenate: zero-dimensional arrays cannot be concatenated")
    return P.concatenate(operands, normalize_axes(axis, ndim, "concatenate")[0])


def stack(arrays, axis=0, **kwargs):
    arrays = list(arrays)
    shapes = {tuple(aval_of(a)[0]) for a in arrays}
    if len(shapes) != 1:
        raise errors.ShapeError(f"stack: all arrays must have the same shape, got {sorted(shapes)}")
    axis = normalize_axes(axis, len(shapes.pop()) + 1, "stack")[0]
    return concatenate([expand_dims(a, axis) for a in arrays], axis=axis, **kwargs)


# ---------------------------------------------------------------- matmul
def matmul(a, b):
    a, b = _promote(a, b)
    a, b = _as_array(a), _as_array(b)
    if a.ndim == 0 or b.ndim == 0:
        raise errors.ShapeError("matmul: operands must be at least 1-D; use * for scalars")
    a2 = P.reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = P.reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise errors.ShapeError(f"matmul: shapes {a.shape} and {b.shape} do not line up "
                                f"({a.shape[-1]} != {b2.shape[-2]}){errors.at(errors.user_location())}")
    batch = tuple(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])) if (
        a2.ndim > 2 or b2.ndim > 2) else ()
    if a2.ndim > 2 and b2.shape[:-2] == (1,) * (b2.ndim - 2) and a2.shape[:-2] == batch:
        out = _rows_times_matrix(a2, P.reshape(b2, b2.shape[-2:]))
    else:
        a2 = P.broadcast_to(a2, batch + a2.shape[-2:])
        b2 = P.broadcast_to(b2, batch + b2.shape[-2:])
        out = P.matmul(a2, b2)
    shape = out.shape
    if a.ndim == 1:
        shape = shape[:-2] + shape[-1:]
    if b.ndim == 1:
        shape = shape[:-1]
    return P.reshape(out, shape)


def _rows_times_matrix(a, b):
    """a (..., m, k) @ b (k, n) as one GEMM over all of a's rows, (... * m,
    k) @ (k, n), reshaped back: a batch of activations times a weight matrix.
    As a batched matmul it was one small GEMM per batch entry against b
    copied to each, and b's gradient one GEMM per entry and a sum over them
    (a transformer block's SGD step, 16 sequences of 32 tokens by 64, four
    such products and two of 64 by 128: 1450-1475 -> 1239-1321 us, both with
    blas.gemm's blocks)."""
    rows = P.reshape(a, (math.prod(a.shape[:-1]), a.shape[-1]))
    return P.reshape(P.matmul(rows, b), a.shape[:-1] + b.shape[-1:])


def dot(a, b, out=None):
    if out is not None:
        raise errors.UnsupportedOpError("np.dot(out=...) is not supported")
    if np.ndim(a) == 0 or np.ndim(b) == 0 or (isinstance(a, Tracer) and a.ndim == 0) or (
            isinstance(b, Tracer) and b.ndim == 0):
        return multiply(a, b)
    if ndim(a) > 2 or ndim(b) > 2:
        raise errors.UnsupportedOpError("np.dot of arrays with more than 2 dimensions is not "
                                        "supported; use np.matmul (@)")
    return matmul(a, b)


# ---------------------------------------------------------------- indexing
def _is_int_array(k):
    if isinstance(k, Tracer):
        return True
    if isinstance(k, list):
        k = np.asarray(k)
    return isinstance(k, np.ndarray) and k.ndim > 0


def _from_end(k: slice, n: int, start: int, stop: int, step: int) -> tuple:
    """prims.slice's (start_back, stop_back, stop) for slice `k` of an axis of
    n: for each of start and stop that the user wrote counting from the end
    (negative, or left out where it means the end), how far before the end
    it lands; None for one written from the front."""
    start_back = n - start if (k.start is None and step < 0) or (
        k.start is not None and k.start < 0) else None
    stop_back = n - stop if (k.stop is None and step > 0) or (
        k.stop is not None and k.stop < 0) else None
    return start_back, stop_back, stop


def _is_constant_mask(k) -> bool:
    return isinstance(k, (np.ndarray, list)) and np.ndim(k) > 0 and (
        np.asarray(k).dtype == np.bool_)


def _constant_masks(x, key: tuple) -> tuple:
    """`key` with each NumPy bool mask (known when tracing, so its result's
    shape is too) as NumPy reads it, mask.nonzero(): a k-d mask becomes k
    integer index arrays, its shape checked against the axes it takes."""
    if not any(_is_constant_mask(k) for k in key):
        return key
    width = [np.ndim(k) if _is_constant_mask(k) else int(k is not None and k is not Ellipsis)
             for k in key]
    ellipsis = next((i for i, k in enumerate(key) if k is Ellipsis), len(key))
    out = []
    for i, k in enumerate(key):
        if not _is_constant_mask(k):
            out.append(k)
            continue
        mask = np.asarray(k)
        first = builtins.sum(width[:i]) if i < ellipsis else x.ndim - builtins.sum(width[i:])
        sizes = x.shape[first:first + mask.ndim] if first >= 0 else ()
        if sizes != mask.shape:
            raise errors.GraphcIndexError(
                f"boolean index of shape {mask.shape} does not match the indexed array's "
                f"axes {sizes} (of {x.shape}){errors.at(errors.user_location())}")
        out.extend(np.nonzero(mask))
    return tuple(out)


def getitem(x, key):
    x = _as_array(x)
    key = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, (bool, np.bool_)) for k in key):
        # NumPy reads x[True] as a new axis of 1 (x[False]: of 0), not as row 1
        raise errors.UnsupportedOpError(
            "a True or False index is a boolean mask; use x[None] for a new axis, "
            "np.where(mask, x, 0) for a mask" + errors.at(errors.user_location()))
    if builtins.sum(k is Ellipsis for k in key) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    key = _constant_masks(x, key)
    consumed = builtins.sum(1 for k in key if k is not None and k is not Ellipsis)
    if consumed > x.ndim:
        raise errors.GraphcIndexError(f"too many indices ({consumed}) for an array of "
                                      f"dimension {x.ndim}{errors.at(errors.user_location())}")
    if any(k is Ellipsis for k in key):   # not `in`: that would compare tracers with ==
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (x.ndim - consumed) + key[i + 1:]
    else:
        key = key + (slice(None),) * (x.ndim - consumed)
    for k in key:
        if isinstance(k, (Tracer, np.ndarray)) and aval_of(k)[1] == np.bool_ or (
                isinstance(k, list) and np.asarray(k).dtype == np.bool_):
            raise errors.UnsupportedOpError(
                "indexing with a traced boolean mask has a data-dependent shape; use "
                "np.where(mask, x, 0), or pass the mask as a NumPy array known when tracing"
                + errors.at(errors.user_location()))
        if isinstance(k, (Tracer, np.ndarray)) and aval_of(k)[1].kind not in "iu":
            raise errors.GraphcIndexError("arrays used as indices must be of integer type")
    has_array = any(_is_int_array(k) for k in key)

    # 1. basic slicing (ints too, unless they join an advanced group)
    starts, steps, sizes, ends, axis = [], [], [], [], 0
    entries = []   # per key entry: ("slice"|"int"|"new"|"adv", x-axis or None)
    for k in key:
        if k is None:
            entries.append(("new", None))
            continue
        n = x.shape[axis]
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            starts.append(start), steps.append(step), sizes.append(len(range(start, stop, step)))
            ends.append(_from_end(k, n, start, stop, step))
            entries.append(("slice", axis))
        elif _is_int_array(k) or (has_array and isinstance(k, (int, np.integer))):
            starts.append(0), steps.append(1), sizes.append(n)
            ends.append((None, None, n))
            entries.append(("adv", axis))
        else:
            i = operator.index(k)
            if not -n <= i < n:
                raise errors.GraphcIndexError(f"index {i} is out of bounds for axis {axis} with "
                                              f"size {n}{errors.at(errors.user_location())}")
            starts.append(i % n), steps.append(1), sizes.append(1)
            ends.append((-i, -i - 1, i % n + 1) if i < 0 else (None, None, i + 1))  # x[-1]: x[-1:]
            entries.append(("int", axis))
        axis += 1
    x1 = P.slice(x, starts, steps, sizes, ends)

    if not has_array:
        shape = []
        for kind, ax in entries:
            if kind == "new":
                shape.append(1)
            elif kind == "slice":
                shape.append(x1.shape[ax])
        return P.reshape(x1, shape)

    # 2. advanced indexing: adjacent integer arrays become one linear index
    adv_pos = [i for i, (kind, _) in enumerate(entries) if kind == "adv"]
    if adv_pos != list(range(adv_pos[0], adv_pos[-1] + 1)):
        raise errors.UnsupportedOpError("integer-array indices separated by slices or None "
                                        "are not supported; index in two steps")
    adv_keys = [k for k in key if k is not None and (
        _is_int_array(k) or isinstance(k, (int, np.integer)))]
    adv_axes = [entries[i][1] for i in adv_pos]
    idx_shapes = [aval_of(np.asarray(k) if isinstance(k, (list, int, np.integer)) else k)[0]
                  for k in adv_keys]
    bshape = tuple(np.broadcast_shapes(*idx_shapes))
    linear, stride = None, 1
    for k, ax in reversed(list(zip(adv_keys, adv_axes))):
        k = np.asarray(k) if isinstance(k, (list, int, np.integer)) else k
        checked = P.index_check(k, x1.shape[ax], True)
        term = P.broadcast_to(checked, bshape)
        if stride != 1:
            term = P.mul(term, np.array(stride, np.int64))
        linear = term if linear is None else P.add(linear, term)
        stride *= x1.shape[ax]
    a0, a1 = adv_axes[0], adv_axes[-1] + 1
    merged = P.reshape(x1, x1.shape[:a0] + (stride,) + x1.shape[a1:])
    taken = P.take(merged, linear, a0)
    shape = []
    for i, (kind, ax) in enumerate(entries):
        if kind == "new":
            shape.append(1)
        elif kind == "slice":
            shape.append(x1.shape[ax])
        elif i == adv_pos[0]:
            shape.extend(bshape)
    return P.reshape(taken, shape)


def _integer_indices(indices):
    """Indices as np.take reads them: sequences become arrays, booleans count as 0/1."""
    if not isinstance(indices, Tracer):
        indices = np.asarray(indices)
    return astype(indices, np.int64) if aval_of(indices)[1] == np.bool_ else indices


def _one_axis(axis, ndim, name):
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise errors.GraphcTypeError(f"{name}: axis must be an integer or None, got "
                                     f"{axis!r}{errors.at(errors.user_location())}")
    return normalize_axes(int(axis), ndim, name)[0]


def take(x, indices, axis=None, out=None, mode="raise"):
    """np.take: integer indices along one axis (or into the flattened array);
    negative indices count from the end, as with mode='raise'."""
    if out is not None or mode != "raise":
        raise errors.UnsupportedOpError(f"np.take(out=/mode={mode!r}) is not supported; only "
                                        f"mode='raise'{errors.at(errors.user_location())}")
    x, indices = _as_array(x), _integer_indices(indices)
    if axis is None:
        return getitem(ravel(x), indices)
    axis = _one_axis(axis, x.ndim, "take")
    return along(x, axis, indices)


def along(x, axis: int, index):
    """x[..., index] with `index` (a slice or an index array) on axis `axis`."""
    return getitem(x, (slice(None),) * axis + (index,))


def take_along_axis(x, indices, axis=-1):
    """np.take_along_axis: out[..., j, ...] = x[..., indices[..., j, ...], ...], the way a
    cross-entropy picks each row's label: np.take_along_axis(logp, y[:, None], axis=1)."""
    x, indices = _as_array(x), _integer_indices(indices)
    idx_ndim = len(aval_of(indices)[0])
    if axis is None:
        if idx_ndim != 1:
            raise errors.ShapeError(f"take_along_axis: with axis=None the indices must be 1-D, "
                                    f"got {idx_ndim}-D{errors.at(errors.user_location())}")
        return take_along_axis(ravel(x), indices, 0)
    axis = _one_axis(axis, x.ndim, "take_along_axis")
    if idx_ndim != x.ndim:
        raise errors.ShapeError(f"take_along_axis: the indices are {idx_ndim}-D and the array "
                                f"{x.ndim}-D; they must match{errors.at(errors.user_location())}")
    # every other axis is indexed by its own position, broadcast against `indices`
    key = tuple(indices if d == axis else
                np.arange(n).reshape((n,) + (1,) * (x.ndim - d - 1))
                for d, n in enumerate(x.shape))
    return getitem(x, key)


def _along_last(x, axis, name, row_op):
    """row_op over `axis` (the flattened array's if None): ops over rows work
    on the last axis, so another is moved there and back."""
    x = _as_array(x)
    if axis is None or x.ndim == 0:
        x, axis = ravel(x), 0 if axis is None else axis
    axis = _one_axis(axis, x.ndim, name)
    return moveaxis(row_op(moveaxis(x, axis, -1)), -1, axis), x, axis


def argsort(x, axis=-1, kind=None, order=None, *, stable=None):
    """np.argsort, always stable (kind="stable"): ties keep their order, nan last."""
    _check_sort_options(kind, order, "argsort")
    return _along_last(x, axis, "argsort", _argsort_last)[0]


def sort(x, axis=-1, kind=None, order=None, *, stable=None):
    """np.sort: x taken at its argsort, so the gradient flows back to each element."""
    _check_sort_options(kind, order, "sort")
    if axis is not None and _as_array(x).ndim == 0:
        raise errors.users_error(errors.ShapeError, f"sort: axis {axis} is out of bounds for "
                                                    f"array of dimension 0")
    indices, x, axis = _along_last(x, axis, "sort", _argsort_last)
    return take_along_axis(x, indices, axis)


def _sort_in_place(self, axis=-1, kind=None, order=None, *, stable=None):
    """x.sort(): x itself sorted, an assignment (graphc/assignment.py)."""
    _assignment.setitem(self, Ellipsis, sort(self, axis, kind, order))


def _python_round(self, ndigits=None):
    """round(x, n): NumPy scalars (x[0] of a vector) have it, arrays do not."""
    if self.ndim:
        raise errors.users_error(errors.GraphcTypeError,
                                 "type numpy.ndarray doesn't define __round__ method; use "
                                 "np.round(x, decimals)")
    if ndigits is None:         # a Python int
        self._concrete_error("round(x)", "Use np.round(x)")
    return _composites.around(self, ndigits)


def _argsort_last(x):
    dtype = aval_of(x)[1]
    return P.argsort(to_operand(x, np.uint8 if dtype == np.bool_ else dtype), x.ndim - 1)


def _check_sort_options(kind, order, name):
    if order is not None or kind not in (None, "quicksort", "mergesort", "heapsort", "stable"):
        raise errors.users_error(errors.UnsupportedOpError,
                                 f"np.{name}(order=) of structured arrays is not supported"
                                 if order is not None else f"np.{name}: unknown kind {kind!r}")


# ---------------------------------------------------------------- dispatch tables
UFUNCS = {
    "add": add, "subtract": subtract, "multiply": multiply, "divide": true_divide,
    "true_divide": true_divide, "power": power, "negative": negative, "positive": positive,
    "exp": exp, "log": log, "log1p": log1p, "expm1": expm1, "sqrt": sqrt, "square": square,
    "absolute": absolute, "fabs": absolute, "sign": sign, "sin": sin, "cos": cos,
    "tanh": tanh, "erf": erf, "maximum": maximum, "minimum": minimum, "logaddexp": logaddexp,
    "tan": tan, "arcsin": arcsin, "arccos": arccos, "arctan": arctan, "sinh": sinh,
    "cosh": cosh, "arcsinh": arcsinh, "arccosh": arccosh, "arctanh": arctanh, "log2": log2,
    "log10": log10, "exp2": exp2, "cbrt": cbrt, "rint": rint, "floor": floor, "ceil": ceil,
    "trunc": trunc, "arctan2": arctan2, "hypot": hypot, "floor_divide": floor_divide,
    "remainder": remainder, "mod": remainder, "divmod": divmod_,
    "greater": greater, "greater_equal": greater_equal, "less": less,
    "less_equal": less_equal, "equal": equal, "not_equal": not_equal,
    "logical_and": logical_and, "logical_or": logical_or, "logical_not": logical_not,
    "bitwise_and": bitwise_and, "bitwise_or": bitwise_or, "invert": invert,
    "matmul": matmul,
}

FUNCTIONS = {
    np.sum: sum, np.mean: mean, np.max: max, np.amax: max, np.min: min, np.amin: min,
    np.var: var, np.std: std, np.dot: dot, np.matmul: matmul, np.transpose: transpose,
    np.reshape: reshape, np.ravel: ravel, np.concatenate: concatenate, np.stack: stack,
    np.broadcast_to: broadcast_to, np.expand_dims: expand_dims, np.squeeze: squeeze,
    np.swapaxes: swapaxes, np.moveaxis: moveaxis, np.zeros_like: zeros_like,
    np.empty_like: empty_like, np.ones_like: ones_like, np.full_like: full_like, np.where: where,
    np.clip: clip,
    np.shape: shape, np.ndim: ndim, np.size: size, np.square: square,
    np.take: take, np.take_along_axis: take_along_axis,
    np.einsum: _einsum.einsum, np.tensordot: _einsum.tensordot,
    np.linalg.tensordot: _einsum.tensordot, np.cumsum: cumsum,
    np.argsort: argsort, np.sort: sort, np.cumprod: cumprod, np.prod: prod,
    np.copy: lambda a, order="K", subok=False: _as_array(a),     # a new array: see new_arrays
}


def _add_at(a, indices, b, negate=False):
    """np.add.at(a, indices, b) (np.subtract.at with negate): a[indices] += b
    where repeated indices add up, in place on a traced `a`. The sum is the
    transpose of the gather a[indices] (a scatter that adds) applied to b,
    so any index a[indices] takes, takes; b is cast to a's dtype as NumPy's
    same_kind casting allows."""
    from graphc import autodiff     # it imports this module
    if not isinstance(a, Tracer):
        raise errors.UnsupportedOpError(
            f"np.add.at into a NumPy array of a traced value: NumPy arrays cannot take traced "
            f"values; make a with np.zeros_like(x) of a traced x"
            f"{errors.at(errors.user_location())}")
    if a.dtype.kind != "f":     # (its scatter is a VJP's, which integers do not have)
        raise errors.UnsupportedOpError(
            f"np.add.at into a {a.dtype} array is not supported, only into float arrays; "
            f"count with np.sum(y[:, None] == np.arange(k), axis=0)"
            f"{errors.at(errors.user_location())}")
    gather = tracing.trace_fn(lambda z: getitem(z, indices), (a,))
    picked = gather.node(gather.outputs[0])
    b = _as_array(b)
    if not np.can_cast(aval_of(b)[1], a.dtype, casting="same_kind") and not aval_of(b)[2]:
        raise errors.GraphcTypeError(f"np.add.at: cannot add {aval_of(b)[1]} values into a "
                                     f"{a.dtype} array{errors.at(errors.user_location())}")
    b = astype(broadcast_to(b, picked.shape), a.dtype)
    _, (scattered,) = autodiff.vjp_into(gather, tracing.bound_values(gather, [a]), [0],
                                        [negative(b) if negate else b])
    _assignment.setitem(a, Ellipsis, add(a, scattered))


def _ufunc_name(ufunc):
    return getattr(ufunc, "__name__", str(ufunc))


def array_ufunc(tracer, ufunc, method, *inputs, **kwargs):
    name = _ufunc_name(ufunc)
    if method != "__call__":
        if method == "reduce" and name in ("add", "maximum", "minimum", "logaddexp"):
            return _reduce(name, inputs[0], **kwargs)
        if method == "accumulate" and name in ("add", "multiply"):
            return _accumulate(name, *inputs, **kwargs)
        if method == "at" and name in ("add", "subtract") and len(inputs) == 3 and not kwargs:
            return _add_at(*inputs, negate=name == "subtract")
        raise errors.UnsupportedOpError(f"np.{name}.{method} is not supported by graphc"
                                        f"{errors.at(errors.user_location())}")
    out = kwargs.get("out")
    if out is not None and len(out) == 1 and out[0] is inputs[0]:
        # `a += x` on a NumPy array `a` with a traced x: NumPy calls np.add(a, x, out=a)
        raise errors.UnsupportedOpError(
            f"in-place np.{name} into a NumPy array (a += x, a *= x, ...) of a traced value is "
            f"not supported: graphc does not write into given arrays; write a = a + x, which makes a new "
            f"array{errors.at(errors.user_location())}")
    if out is not None or kwargs.get("where", True) is not True:
        raise errors.UnsupportedOpError(f"np.{name}(out=/where=) is not supported; graphc arrays "
                                        f"are immutable{errors.at(errors.user_location())}")
    numpys = getattr(np, name, None) is ufunc
    if numpys and name == "vecdot":     # a gufunc: its axis is a keyword
        from graphc.matrices import vecdot
        return vecdot(*inputs, **kwargs)
    fn = UFUNCS.get(name) if numpys else _special.UFUNCS.get(name)    # SciPy's: its own rules
    if fn is None:
        where = "NumPy ufunc np." if numpys else "ufunc scipy.special." \
            if getattr(sys.modules.get("scipy.special"), name, None) is ufunc else "ufunc "
        raise errors.UnsupportedOpError(f"{where}{name} is not supported by graphc"
                                        f"{errors.at(errors.user_location())}")
    dtype = kwargs.get("dtype")
    if dtype is not None and name not in _PREDICATES:
        # NumPy computes in `dtype`: int8 + int8 with dtype=int16 does not wrap,
        # and a boolean subtract with dtype=int64 is an integer one
        inputs = [cast(x, dtype) for x in inputs]
    result = fn(*inputs)
    return _assignment.new_arrays(
        strongly_typed(astype(result, dtype) if dtype is not None else result), inputs)


def _accumulate(name, x, axis=0, dtype=None, out=None):
    """np.add.accumulate and np.multiply.accumulate: np.cumsum and np.cumprod
    (their dtypes too: small integers and booleans in int64), along axis 0
    by default."""
    return (cumsum if name == "add" else cumprod)(x, axis, dtype, out)


def _reduce(name, x, axis=0, dtype=None, keepdims=False, out=None, where=True, **rest):
    """np.add/maximum/minimum/logaddexp.reduce. add.reduce is np.sum (also
    np.sum of a NumPy array with a traced where=, which NumPy sends here);
    the others refuse initial= and where= (dropped, they changed the result)."""
    if name == "add":       # sum's accumulator, or dtype's (int8 wraps)
        return sum(x, axis=axis, dtype=dtype, out=out, keepdims=keepdims, where=where, **rest)
    if out is not None or rest or where is not True:
        given = sorted(rest) + (["out"] if out is not None else []) + (
            ["where"] if where is not True else [])
        raise errors.UnsupportedOpError(f"np.{name}.reduce({'=, '.join(given)}=) is not "
                                        f"supported{errors.at(errors.user_location())}")
    if dtype is not None:
        x = cast(x, dtype)
    if name == "logaddexp":
        from graphc.nn import logsumexp
        return logsumexp(_as_float(x), axis=axis, keepdims=keepdims)   # float32 for int16
    return {"maximum": max, "minimum": min}[name](x, axis=axis, keepdims=keepdims)


# ufuncs with boolean results: their dtype= is the output's, not the inputs'
_PREDICATES = {"greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
               "logical_and", "logical_or", "logical_not"}


def array_function(tracer, func, types, args, kwargs):
    fn = FUNCTIONS.get(func)
    if fn is None:
        name = f"{func.__module__}.{func.__name__}".replace("numpy.", "np.", 1)
        names = (_composites.NAMES.get(f, ("np.linalg." if getattr(f, "__module__", "") ==
                                           "numpy.linalg" else "np.") + f.__name__)
                 for f in FUNCTIONS)
        raise errors.UnsupportedOpError(f"NumPy function {name} is not supported by graphc"
                                        f"{errors.at(errors.user_location())}; supported: "
                                        f"{', '.join(sorted(names))}")
    result = strongly_typed(fn(*args, **kwargs))
    if func in _assignment.VIEWS:
        _assignment.note_view(args[0], result)
        return result
    return _assignment.new_arrays(result, args)


# ---------------------------------------------------------------- Tracer methods
def _install_tracer_methods():
    def rev(fn):
        return lambda self, other: fn(other, self)

    T = Tracer
    T.__add__, T.__radd__ = add, rev(add)
    T.__sub__, T.__rsub__ = subtract, rev(subtract)
    T.__mul__, T.__rmul__ = multiply, rev(multiply)
    T.__truediv__, T.__rtruediv__ = true_divide, rev(true_divide)
    T.__pow__, T.__rpow__ = power_operator, rev(power)
    T.__matmul__, T.__rmatmul__ = matmul, rev(matmul)
    T.__neg__, T.__pos__, T.__abs__ = negative, positive, absolute
    T.__eq__, T.__ne__ = equal, not_equal
    T.__lt__, T.__le__, T.__gt__, T.__ge__ = less, less_equal, greater, greater_equal
    T.__and__ = T.__rand__ = bitwise_and
    T.__or__ = T.__ror__ = bitwise_or
    T.__invert__ = invert
    T.__getitem__ = _assignment.indexed
    T.__floordiv__, T.__rfloordiv__ = floor_divide, rev(floor_divide)
    T.__mod__, T.__rmod__ = remainder, rev(remainder)
    T.__divmod__, T.__rdivmod__ = divmod_, rev(divmod_)
    for name, ufunc, operation in (("add", "add", add), ("sub", "subtract", subtract),
                                   ("mul", "multiply", multiply),
                                   ("truediv", "divide", true_divide), ("pow", "power", power),
                                   ("floordiv", "floor_divide", floor_divide),
                                   ("mod", "remainder", remainder),
                                   ("and", "bitwise_and", bitwise_and),
                                   ("or", "bitwise_or", bitwise_or)):
        setattr(T, f"__i{name}__", _assignment.in_place(ufunc, operation))
    T.copy = lambda self, order="K": self       # a new Tracer: assignment.new_arrays
    T.__array_ufunc__ = array_ufunc
    T.__array_function__ = array_function
    T.T = property(lambda self: transpose(self))
    T.mT = property(lambda self: swapaxes(self, -1, -2))
    T.reshape = reshape
    T.transpose = transpose
    T.swapaxes = swapaxes
    T.squeeze = squeeze
    T.ravel = ravel
    T.flatten = ravel       # a copy in NumPy, not a view: not in _VIEW_METHODS
    T.astype = astype
    T.sum, T.mean, T.max, T.min, T.var, T.std = sum, mean, max, min, var, std
    T.cumsum, T.argsort, T.cumprod, T.prod = cumsum, argsort, cumprod, prod
    T.sort, T.__round__ = _sort_in_place, _python_round
    T.clip = clip
    T.dot = dot



# functions written with the ones above (split, flip, outer, norm, isnan, ...)
from graphc import composites as _composites  # noqa: E402  (it uses this module's functions)

FUNCTIONS.update(_composites.FUNCTIONS)
UFUNCS.update(_composites.UFUNCS)
from graphc import special as _special  # noqa: E402  (it uses gc.nn, which uses this module)
UFUNCS.update(_special.UFUNCS)
from graphc import statistics as _statistics  # noqa: E402
FUNCTIONS.update(_statistics.FUNCTIONS)
from graphc import matrices as _matrices  # noqa: E402
FUNCTIONS.update(_matrices.FUNCTIONS)
Tracer.diagonal, Tracer.trace = _matrices.diagonal, _matrices.trace
Tracer.any, Tracer.all = _composites.any_, _composites.all_
Tracer.repeat = _composites.repeat
Tracer.argmax, Tracer.argmin = _composites.argmax, _composites.argmin
Tracer.round = _composites.around
from graphc import assignment as _assignment  # noqa: E402  (it uses this module's functions)
_install_tracer_methods()
_assignment.methods_return_new_arrays()
