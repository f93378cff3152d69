"""Assignment into traced arrays (x[key] = value, x += y), and what makes
it safe: NumPy's views and copies, as graphc sees them.

A traced array is a value in the graph; x[key] = value makes the Tracer x
(so every name bound to it, as in NumPy) stand for a new array with the
value placed. Where NumPy would share memory, graphc cannot, so it keeps
track: results the user takes with a basic index or a view function
(reshape, .T, split, ...) are noted as views of their base; once the base is
assigned into, using such a view is refused (NumPy's would show the
change), unless both are indexes of slices and integers that provably miss
each other (_disjoint), and so is assigning through one, except in place through a view of
slices and integers, which writes through to the base as NumPy's does. Every
other function and method returns a new Tracer even where graphc computes
nothing (x.copy(), x.astype(x.dtype)), as NumPy returns a new array.
"""
from __future__ import annotations

import builtins
import warnings
import weakref

import numpy as np

from graphc import errors
from graphc import numpy_api as fnp
from graphc import tracing


def setitem(x, key, value):
    """x[key] = value on a traced x: x stands for the updated array from then
    on (as in NumPy, every name bound to x sees it). The positions must be
    known when tracing (slices, integers, NumPy index arrays or masks), or be
    a traced boolean mask of x's shape with one value. Arrays indexed out of
    x before (views, in NumPy) may not be used after, unless the assignment
    missed them; assigning into such a view is refused (NumPy would change
    x too)."""
    if x.base is not None:
        raise errors.users_error(errors.UnsupportedOpError,
                                 "assignment into an array indexed out of another (v = x[...]; "
                                 "v[...] = value): NumPy would change x too, graphc would not; "
                                 "assign into x with one index, x[i, j] = value")
    _replace(x, _assigned(x, key, value), key)


def _replace(x, updated, key=None):
    """x (the Tracer, so every name bound to it) stands for `updated` from now on."""
    if x.graph is not tracing.current_graph():
        raise errors.users_error(errors.UnsupportedOpError,
                                 "assignment into an array of an enclosing traced function")
    if x.argument:
        x.argument = False      # once
        warnings.warn(f"graphc: an argument of the traced function is assigned into "
                      f"{errors.at(errors.user_location()).strip()}: it changes inside the "
                      f"function only, and the caller's array keeps its values (NumPy would "
                      f"change it); assign into x = x.copy() to say so", RuntimeWarning,
                      stacklevel=errors.users_stacklevel())
    _mark_stale(x, key)
    x.node = updated.node if isinstance(updated, fnp.Tracer) else tracing.const(
        x.graph, updated, errors.user_location())


def in_place(ufunc, operation):
    """x += y and the other augmented assignments: NumPy's ufunc with out=x, so
    the result keeps x's dtype (refused where NumPy's same_kind casting refuses
    it) and every name bound to x sees it. On a view (v = x[i]; v += y) NumPy
    writes through to x: graphc does too for a view of slices and integers,
    and refuses it for the others (reshape, .T, ...)."""
    def update(self, other):
        result = operation(self, other)
        if self.ndim == 0 and self.base is None:
            return result       # a NumPy scalar (a sum, x[i], a Python number): rebound
        target, result_type = np.dtype(self.dtype), fnp.aval_of(result)[1]
        if not np.can_cast(result_type, target, casting="same_kind"):
            raise errors.users_error(errors.GraphcTypeError,
                                     f"Cannot cast ufunc '{ufunc}' output from "
                                     f"dtype('{result_type}') to dtype('{target}') with casting "
                                     f"rule 'same_kind'")
        result = fnp.astype(result, target)
        if self.base is None:
            _replace(self, result)
            return self
        base, key = self.base
        if key is None:
            raise errors.users_error(errors.UnsupportedOpError,
                                     f"{ufunc} in place on a view made by reshape, transpose, ...: "
                                     f"NumPy would change its base too; assign into the base")
        setitem(base, key, result)              # writes through, as NumPy's view does
        return base[key]
    return update


def _stored(value, dtype):
    """value as NumPy stores it into an array of `dtype`: a number it cannot
    hold (300 into int8, nan into an integer array) refused as NumPy refuses
    it; arrays converted as astype; a list of traced values stacked."""
    if isinstance(value, (list, tuple)) and any(isinstance(v, fnp.Tracer) for v in value):
        value = fnp.stack(value)
    if not isinstance(value, fnp.Tracer):
        try:
            if np.ndim(value) == 0:
                np.zeros((), dtype)[()] = value
        except (OverflowError, ValueError, TypeError) as e:
            raise errors.users_error(errors.GraphcValueError, f"{type(e).__name__}: {e}") from None
        if fnp._is_weak(value) and isinstance(value, int):
            return fnp.to_operand(value, dtype)
        return fnp.cast(fnp._as_array(value), dtype)
    return fnp.to_operand(value, dtype) if fnp._is_weak(value) else fnp.cast(value, dtype)


def _mark_stale(x, key=None):
    """x's views (and theirs) are stale: x is assigned into (at `key`, None:
    everywhere). A view of slices and integers that `key` misses keeps its
    values, as NumPy's does, and stays."""
    kept = []
    for ref in x.views or ():
        view = ref()
        if view is None:
            continue
        if key is not None and view.base[1] is not None and _disjoint(
                x.shape, key, view.base[1]):
            kept.append(ref)
            continue
        view.stale = True
        _mark_stale(view)
    x.views = kept or None


# an axis's positions are compared as sets up to this many (beyond: as intervals
# when both steps are 1, else taken to overlap)
_SET_COMPARED_AT_MOST = 1 << 16


def _disjoint(shape, key_a, key_b) -> bool:
    """Whether two basic indexes of an array of `shape` provably select no
    element in common: on some axis their positions do not meet."""
    a, b = _positions(shape, key_a), _positions(shape, key_b)
    if a is None or b is None:
        return False
    for ra, rb in zip(a, b):
        if not ra or not rb:
            return True
        if ra.step == rb.step == 1:
            if max(ra.start, rb.start) >= min(ra.stop, rb.stop):
                return True
        elif len(ra) <= _SET_COMPARED_AT_MOST and len(rb) <= _SET_COMPARED_AT_MOST:
            if not set(ra) & set(rb):
                return True
    return False


def _positions(shape, key) -> list[range] | None:
    """Each axis's positions a basic index (integers, slices, None, one
    Ellipsis) selects, as ranges; None for any other index."""
    keys = key if isinstance(key, tuple) else (key,)
    keys = [k for k in keys if k is not None]
    if not all(k is Ellipsis or isinstance(k, builtins.slice) or (
            isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)))
            for k in keys):
        return None
    if keys.count(Ellipsis) > 1 or len(keys) - keys.count(Ellipsis) > len(shape):
        return None
    if Ellipsis in keys:
        i = keys.index(Ellipsis)
        keys = keys[:i] + [builtins.slice(None)] * (len(shape) - len(keys) + 1) + keys[i + 1:]
    keys += [builtins.slice(None)] * (len(shape) - len(keys))
    out = []
    for k, n in zip(keys, shape):
        if isinstance(k, builtins.slice):
            out.append(range(*k.indices(n)))
        else:
            i = int(k) + n if k < 0 else int(k)
            out.append(range(i, i + 1))
    return out


def _assigned(x, key, value):
    """x with value at key, as a new traced array."""
    keys = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, fnp.Tracer) for k in keys):
        mask = keys[0]
        if len(keys) != 1 or fnp.aval_of(mask)[1] != np.bool_ or mask.shape != x.shape:
            raise errors.users_error(errors.UnsupportedOpError,
                                     "assignment at traced positions: only a boolean mask of the "
                                     "array's own shape is supported (x[x < 0] = 0); else use "
                                     "np.where(mask, value, x)")
        value = _stored(value, x.dtype)
        if fnp.aval_of(value)[0] not in ((), (1,)):
            raise errors.users_error(errors.UnsupportedOpError,
                                     "assignment of an array through a traced mask: how many "
                                     "elements it selects is only known when the compiled code "
                                     "runs; use np.where(mask, values, x)")
        return fnp.where(mask, fnp.reshape(value, ()), x)
    try:
        chosen = np.full(x.shape, -1, np.int64)
        count = chosen[key].size
        chosen[key] = np.arange(count).reshape(chosen[key].shape)
    except IndexError as e:
        raise errors.users_error(errors.GraphcIndexError, str(e)) from None
    taken = np.zeros(x.shape, np.int8)[key].shape
    value = _stored(value, x.dtype)
    while value.ndim > len(taken) and value.shape[0] == 1:     # NumPy drops leading 1s
        value = fnp.reshape(value, value.shape[1:])
    if count == 0:
        return x
    try:
        value = fnp.broadcast_to(value, taken)
    except errors.ShapeError:
        raise errors.users_error(errors.ShapeError,
                                 f"could not broadcast input array from shape "
                                 f"{fnp.aval_of(value)[0]} into shape {taken}") from None
    per_axis = _per_axis(x.shape, keys)
    if per_axis is not None:            # slices and integers: constants per axis, not per element
        return _placed_per_axis(x, value, per_axis)
    placed = fnp.reshape(fnp.take(fnp.ravel(value), np.maximum(chosen, 0).reshape(-1)), x.shape)
    return fnp.where(chosen >= 0, placed, x)


def _per_axis(shape, keys):
    """For a key of slices and integers (and one Ellipsis): per axis, the
    positions it writes and whether the axis stays in the selection; else None."""
    if builtins.sum(k is Ellipsis for k in keys) > 1 or not all(
            k is Ellipsis or isinstance(k, builtins.slice) or (
                isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)))
            for k in keys):
        return None
    if any(k is Ellipsis for k in keys):
        i = next(j for j, k in enumerate(keys) if k is Ellipsis)
        keys = keys[:i] + (builtins.slice(None),) * (len(shape) - len(keys) + 1) + keys[i + 1:]
    keys = tuple(keys) + (builtins.slice(None),) * (len(shape) - len(keys))
    return [(np.arange(n)[k].reshape(-1), isinstance(k, builtins.slice))
            for n, k in zip(shape, keys)]


def _placed_per_axis(x, value, per_axis):
    """where(mask, value spread to x's shape, x), the mask an and of one 1-d
    constant per axis and the value spread by a take per axis: no constant of
    x's size (an RNN's h_all[t] = h in a loop of T steps would hold T of them)."""
    value = fnp.reshape(value, tuple(len(p) if kept else 1 for p, kept in per_axis))
    mask = None
    for d, ((positions, _), n) in enumerate(zip(per_axis, x.shape)):
        if len(positions) == n and (positions == np.arange(n)).all():
            continue                    # the whole axis, in order
        spread = np.zeros(n, np.int64)
        spread[positions] = np.arange(len(positions))
        value = fnp.take(value, spread, axis=d)
        member = np.zeros(n, bool)
        member[positions] = True
        member = member.reshape((n,) + (1,) * (x.ndim - d - 1))
        mask = member if mask is None else fnp.logical_and(mask, member)
    value = fnp.broadcast_to(value, x.shape)
    return value if mask is None else fnp.where(mask, value, x)


def indexed(x, key):
    """x[key] as the user writes it: a result of slices and integers is a view
    of x in NumPy, and noted as one (see setitem)."""
    result = fnp.getitem(x, key)
    keys = key if isinstance(key, tuple) else (key,)
    integer = [isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))
               for k in keys]
    if all(i or k is None or k is Ellipsis or isinstance(k, builtins.slice)
           for i, k in zip(integer, keys)) and not (all(integer) and len(keys) == x.ndim):
        note_view(x, result, key)     # integers alone for every axis: a scalar, a copy
    return result


def note_view(x, result, key=None):
    """Note result (or each array in it) as a view of x (`key`: the basic
    index it was taken with, so in-place operators can write through). Only
    what the user calls is noted: graphc's own reshapes inside other
    functions are not views the user holds."""
    if isinstance(result, (list, tuple)):
        for r in result:
            note_view(x, r)
    elif isinstance(x, fnp.Tracer) and isinstance(result, fnp.Tracer) and result is not x:
        result.base = (x, key)
        x.views = (x.views or []) + [weakref.ref(result)]


def new_arrays(result, inputs):
    """result, with an input's Tracer object in it replaced by a new Tracer of
    the same node: where NumPy returns a new array (np.positive(x),
    x.astype(x.dtype), np.round of integers) and graphc the input itself, a
    later assignment into x (setitem) must not reach it."""
    given = {id(x) for x in inputs if isinstance(x, fnp.Tracer)}

    def new(r):
        if isinstance(r, fnp.Tracer) and id(r) in given:
            return fnp.Tracer(r.graph, r.node)
        if isinstance(r, (list, tuple)):
            values = [new(v) for v in r]
            return type(r)(*values) if hasattr(r, "_fields") else type(r)(values)
        return r
    return new(result)


def _returns_new(method):
    def wrapped(self, *args, **kwargs):
        return new_arrays(method(self, *args, **kwargs), (self,) + args)
    wrapped.__name__ = getattr(method, "__name__", "method")
    return wrapped


# NumPy functions (and Tracer methods) whose results share memory with their
# first argument; graphc notes them as views (note_view), and every
# other result is a new array
VIEWS = {np.reshape, np.transpose, np.swapaxes, np.moveaxis, np.squeeze, np.expand_dims,
          np.ravel, np.broadcast_to, np.split, np.array_split, np.hsplit, np.vsplit,
          np.atleast_1d, np.atleast_2d, np.atleast_3d, np.diagonal, np.flip,
          np.lib.stride_tricks.sliding_window_view}
_VIEW_METHODS = {"reshape", "transpose", "swapaxes", "squeeze", "ravel", "diagonal", "T", "mT"}
# (x[...]: indexed notes the views among its results)


def methods_return_new_arrays():
    """Wrap every Tracer method: the views' note their results as views of
    self, the others' return new arrays (see new_arrays)."""
    for name, value in list(vars(fnp.Tracer).items()):
        if name in _VIEW_METHODS:
            setattr(fnp.Tracer, name, _returns_view(value))
        elif callable(value) and not isinstance(value, type) and (
                not name.startswith("_") or name in _OPERATORS):
            setattr(fnp.Tracer, name, _returns_new(value))


def _returns_view(method):
    if isinstance(method, property):
        return property(_returns_view(method.fget))

    def wrapped(self, *args, **kwargs):
        result = method(self, *args, **kwargs)
        note_view(self, result)
        return result
    wrapped.__name__ = getattr(method, "__name__", "method")
    return wrapped


_OPERATORS = {"__pos__", "__neg__", "__abs__", "__add__", "__radd__", "__sub__", "__rsub__",
              "__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__pow__", "__rpow__",
              "__round__"}
