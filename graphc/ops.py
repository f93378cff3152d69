"""The primitive registry: every primitive op is declared once, here.

An `OpDef` holds the op's shape/dtype rule (`infer`), its NumPy reference
implementation (`impl`, the test oracle), its vector-Jacobian product (`vjp`,
written with traced primitives so backward graphs can be differentiated
again) and, for elementwise ops, the scalar Numba expression that codegen
inlines into a loop.

VJP rules get `(ct, out, *inputs, **params)` and return one cotangent per
input, or None where there is no gradient. They may return a cotangent of
the *output's* shape for an input that was broadcast: the autodiff driver
sums it back to the input's shape and casts it to the input's dtype.
"""
from __future__ import annotations

import builtins
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from graphc import errors
from graphc import prims as P


@dataclass(frozen=True)
class OpDef:
    name: str
    kind: str                      # elementwise | reduce | row | linalg | matmul | layout | index | shape
    infer: Callable                # (avals, params) -> (shape, dtype)
    impl: Callable                 # (*arrays, **params) -> ndarray
    vjp: Callable | None = None    # (ct, out, *inputs, **params) -> [ct | None]
    expr: str | None = None        # elementwise: Numba scalar expression, {0} {1} ... operands


OPS: dict[str, OpDef] = {}


def _register(op: OpDef) -> None:
    assert op.name not in OPS, op.name
    OPS[op.name] = op


# ---------------------------------------------------------------- shape rules
def broadcast_shapes(op: str, *shapes) -> tuple:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise errors.ShapeError(
            f"{op}: shapes {' and '.join(str(tuple(s)) for s in shapes)} cannot be "
            f"broadcast together; reshape or transpose one operand so trailing "
            f"dimensions match or are 1") from None


def _same_dtype(op, avals):
    dtypes = {np.dtype(a.dtype) for a in avals}
    if len(dtypes) != 1:
        raise errors.GraphcError(f"internal: {op} got mixed dtypes {sorted(map(str, dtypes))}")
    return dtypes.pop()


def _elementwise_rule(op, out_dtype=None):
    def infer(avals, params):
        dtype = _same_dtype(op, avals)
        return broadcast_shapes(op, *[a.shape for a in avals]), np.dtype(out_dtype or dtype)
    return infer


# ---------------------------------------------------------------- elementwise
def _unary(name, impl, vjp, expr):
    _register(OpDef(name, "elementwise", _elementwise_rule(name), impl, vjp, expr))


def _binary(name, impl, vjp, expr, out_dtype=None):
    _register(OpDef(name, "elementwise", _elementwise_rule(name, out_dtype), impl, vjp, expr))


_unary("neg", np.negative, lambda ct, out, x: [P.neg(ct)], "(-{0})")
_unary("exp", np.exp, lambda ct, out, x: [P.mul(ct, out)], "vmath.exp({0})")
_unary("log", np.log, lambda ct, out, x: [P.div(ct, x)], "vmath.log({0})")
_unary("log1p", np.log1p, lambda ct, out, x: [P.div(ct, P.add(x, P.scalar_like(x, 1)))],
       "vmath.log1p({0})")
_unary("expm1", np.expm1, lambda ct, out, x: [P.mul(ct, P.add(out, P.scalar_like(out, 1)))],
       "vmath.expm1({0})")
_unary("sqrt", np.sqrt, lambda ct, out, x: [P.div(ct, P.add(out, out))], "np.sqrt({0})")
_unary("sin", np.sin, lambda ct, out, x: [P.mul(ct, P.cos(x))], "trig.sin({0})")
_unary("cos", np.cos, lambda ct, out, x: [P.neg(P.mul(ct, P.sin(x)))], "trig.cos({0})")
_unary("tanh", np.tanh,
       lambda ct, out, x: [P.mul(ct, P.sub(P.scalar_like(out, 1), P.mul(out, out)))],
       "vmath.tanh({0})")
_unary("abs", np.abs, lambda ct, out, x: [P.mul(ct, P.sign(x))], "abs({0})")
# + 0 as NumPy: the sign of -0.0 is +0.0 (Numba's np.sign keeps -0.0); x >= 1
# first: Numba's np.sign of an unsigned integer past the signed range is -1
_unary("sign", np.sign, lambda ct, out, x: [P.mul(ct, P.scalar_like(x, 0))],
       "({T}(1) if {0} >= 1 else np.sign({0}) + {T}(0))")
def _erf_reference(x):
    import scipy.special      # here, not at import: it is a fifth of `import graphc`
    return scipy.special.erf(x).astype(x.dtype)


_unary("erf", _erf_reference,
       lambda ct, out, x: [P.mul(ct, P.mul(P.scalar_like(x, 2 / math.sqrt(math.pi)),
                                           P.exp(P.neg(P.mul(x, x)))))],
       "vmath.erf({0})")


def _sigmoid_reference(x):
    """1 / (1 + exp(-x)) as 1 / (1 + e) for x >= 0 and e / (1 + e) below,
    e = exp(-|x|): no overflow, full relative accuracy in the left tail."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def _sigmoid_vjp(ct, out, x):
    """s'(x) = s(x) s(-x), accurate in both tails and without a division (a
    gate's backward is bound by its divisions): s (1 - s) for x <= 0, where
    s <= 1/2 and 1 - s is exact; s^2 exp(-x) above, where 1 - s cancels
    (PyTorch's and JAX's s (1 - s) is 0 once s rounds to 1, and so was
    -log(s)'s gradient -s(-x) past x = 37 in float64). exp(-|x|): no inf
    in the branch not taken, whose derivatives a Hessian would multiply by 0."""
    right = P.mul(P.mul(out, out), P.exp(P.neg(P.abs(x))))
    left = P.mul(out, P.sub(P.scalar_like(out, 1), out))
    return [P.mul(ct, P.where(P.gt(x, P.scalar_like(x, 0)), right, left))]


# The logistic sigmoid: gc.nn.sigmoid, and 1 / (1 + exp(-x)) written by hand
# (passes/simplify.py; the written form's chain rule gives inf / inf, nan,
# where exp(-x) overflows).
_unary("sigmoid", _sigmoid_reference, _sigmoid_vjp, "vmath.sigmoid({0})")
_unary("stop_gradient", lambda x: x.copy(), lambda ct, out, x: [None], "{0}")


# The long tail of NumPy's float ufuncs. They call libm (one call an element:
# this Numba has no SVML), so they do not vectorize as the vmath ones do; the
# loops around them still fuse. Derivatives are written so that they stay
# accurate where the function is steep: (1 - x)(1 + x) rather than 1 - x*x.
def _one(x):
    return P.scalar_like(x, 1)


def _rsqrt_vjp(radicand, sign=1):
    """ct * sign / sqrt(radicand(x)): arcsin, arccos, arcsinh, arccosh."""
    def vjp(ct, out, x):
        slope = P.div(ct, P.sqrt(radicand(x)))
        return [slope if sign > 0 else P.neg(slope)]
    return vjp


def _one_minus_square(x):
    return P.mul(P.sub(_one(x), x), P.add(_one(x), x))


_unary("tan", np.tan, lambda ct, out, x: [P.mul(ct, P.add(_one(out), P.mul(out, out)))],
       "np.tan({0})")
_unary("arcsin", np.arcsin, _rsqrt_vjp(_one_minus_square), "np.arcsin({0})")
_unary("arccos", np.arccos, _rsqrt_vjp(_one_minus_square, -1), "np.arccos({0})")
_unary("arctan", np.arctan, lambda ct, out, x: [P.div(ct, P.add(_one(x), P.mul(x, x)))],
       "np.arctan({0})")
_unary("sinh", np.sinh, lambda ct, out, x: [P.mul(ct, P.cosh(x))], "np.sinh({0})")
_unary("cosh", np.cosh, lambda ct, out, x: [P.mul(ct, P.sinh(x))], "np.cosh({0})")
_unary("arcsinh", np.arcsinh, _rsqrt_vjp(lambda x: P.add(P.mul(x, x), _one(x))),
       "np.arcsinh({0})")
_unary("arccosh", np.arccosh, _rsqrt_vjp(lambda x: P.mul(P.sub(x, _one(x)), P.add(x, _one(x)))),
       "np.arccosh({0})")
_unary("arctanh", np.arctanh, lambda ct, out, x: [P.div(ct, _one_minus_square(x))],
       "np.arctanh({0})")
# log2 and exp2 run in float64 and round: Numba declares one libm function for
# both widths, so a module with float32 and float64 calls of either did not
# compile ("arg mismatch: double != float").
_unary("log2", np.log2, lambda ct, out, x: [P.div(ct, P.mul(x, P.scalar_like(x, math.log(2))))],
       "{T}(np.log2(np.float64({0})))")
_unary("log10", np.log10,
       lambda ct, out, x: [P.div(ct, P.mul(x, P.scalar_like(x, math.log(10))))], "np.log10({0})")
_unary("exp2", np.exp2, lambda ct, out, x: [P.mul(ct, P.mul(out, P.scalar_like(out, math.log(2))))],
       "{T}(np.exp2(np.float64({0})))")
_unary("cbrt", np.cbrt,
       lambda ct, out, x: [P.div(ct, P.mul(P.scalar_like(out, 3), P.mul(out, out)))],
       "np.cbrt({0})")
# Steps: their slope is 0 wherever it exists (as JAX), so no gradient flows.
for _name in ("floor", "ceil", "trunc", "rint"):
    _unary(_name, getattr(np, _name), lambda ct, out, x: [None], f"np.{_name}({{0}})")

_binary("add", np.add, lambda ct, out, x, y: [ct, ct], "({0} + {1})")
_binary("sub", np.subtract, lambda ct, out, x, y: [ct, P.neg(ct)], "({0} - {1})")
_binary("mul", np.multiply, lambda ct, out, x, y: [P.mul(ct, y), P.mul(ct, x)], "({0} * {1})")
_binary("div", np.true_divide,
        lambda ct, out, x, y: [P.div(ct, y), P.neg(P.div(P.mul(ct, out), y))], "({0} / {1})")


def _arctan2_vjp(ct, out, y, x):
    # the numerators first: 1 / (x^2 + y^2) alone overflows float32 below 5e-20
    squares = P.add(P.mul(x, x), P.mul(y, y))
    return [P.div(P.mul(ct, x), squares), P.neg(P.div(P.mul(ct, y), squares))]


# `//` and `%` with NumPy's (Python's) signs, zeros and infinities, and no
# trap on integers (x // 0 is 0). The quotient is a step: no gradient; the
# remainder x - (x // y) y moves with x one for one.
_binary("floor_divide", np.floor_divide, lambda ct, out, x, y: [None, None],
        "vmath.floor_divide({0}, {1})")
_binary("remainder", np.remainder,
        lambda ct, out, x, y: [ct, P.neg(P.mul(ct, P.floor_divide(x, y)))],
        "vmath.remainder({0}, {1})")


# Both are nan at (0, 0), where neither has a derivative (as JAX, PyTorch).
_binary("arctan2", np.arctan2, _arctan2_vjp, "np.arctan2({0}, {1})")
_binary("hypot", np.hypot, lambda ct, out, x, y: [P.div(P.mul(ct, x), out), P.div(P.mul(ct, y), out)],
        "np.hypot({0}, {1})")


def _pow_vjp(ct, out, x, y):
    one = P.scalar_like(y, 1)
    # x ** 0 is constant: its slope is 0, not 0 * x ** -1 = nan at x == 0 (as
    # JAX, PyTorch). Where x and y may both be 0 the base is 1 there too, so
    # the second derivative does not meet the nan either; elsewhere the slope
    # stays y * x ** (y - 1), whose derivative in y at y = 0 is 1 / x.
    if isinstance(y, np.ndarray) and np.all(y == 0):
        dx = None
    elif isinstance(y, np.ndarray) and not np.any(y == 0):
        dx = P.mul(ct, P.mul(y, P.pow(x, P.sub(y, one))))
    else:
        zeroth = P.logical_and(P.eq(y, P.scalar_like(y, 0)), P.eq(x, P.scalar_like(x, 0)))
        base = P.where(zeroth, P.scalar_like(x, 1), x)
        dx = P.mul(ct, P.where(zeroth, P.scalar_like(y, 0), P.mul(y, P.pow(base, P.sub(y, one)))))
    # d/dy x**y = log(x) x**y; define it as 0 at x == 0 (as JAX does) instead of nan.
    zero = P.scalar_like(x, 0)
    safe_log = P.where(P.eq(x, zero), zero, P.log(P.where(P.eq(x, zero), P.scalar_like(x, 1), x)))
    return [dx, P.mul(ct, P.mul(safe_log, out))]


_binary("pow", np.power, _pow_vjp, "({0} ** {1})")
# NumPy's refusal, also raised from inside compiled loops (codegen.raises_in_loop)
NEGATIVE_INT_POWER = "integers to negative integer powers are not allowed"


def _select_vjp(first_wins):
    """maximum/minimum: the gradient goes to the winner; ties split it evenly."""
    def vjp(ct, out, x, y):
        win = P.gt(x, y) if first_wins else P.lt(x, y)
        half = P.mul(ct, P.scalar_like(ct, 0.5))
        zero = P.scalar_like(ct, 0)
        tie = P.eq(x, y)
        gx = P.where(win, ct, P.where(tie, half, zero))
        gy = P.where(win, zero, P.where(tie, half, ct))
        return [gx, gy]
    return vjp


# As np.maximum: a NaN operand wins, and a tie (0.0 and -0.0) gives the second.
# The NaN test is on the second operand: in a running max (codegen._max_of)
# the first is the carried value, and a test on it lengthens the chain
# (rows of 32: 990 -> 740 us per 2**20 elements).
_binary("maximum", np.maximum, _select_vjp(True),
        "({1} if ({1} >= {0} or {1} != {1}) else {0})")
_binary("minimum", np.minimum, _select_vjp(False),
        "({1} if ({1} <= {0} or {1} != {1}) else {0})")

for _name, _ufunc, _sym in [("eq", np.equal, "=="), ("ne", np.not_equal, "!="),
                            ("lt", np.less, "<"), ("le", np.less_equal, "<="),
                            ("gt", np.greater, ">"), ("ge", np.greater_equal, ">=")]:
    _binary(_name, _ufunc, None, f"({{0}} {_sym} {{1}})", out_dtype=np.bool_)

_register(OpDef("logical_and", "elementwise", _elementwise_rule("logical_and"),
                np.logical_and, None, "({0} and {1})"))
_register(OpDef("logical_or", "elementwise", _elementwise_rule("logical_or"),
                np.logical_or, None, "({0} or {1})"))
_register(OpDef("logical_not", "elementwise", _elementwise_rule("logical_not"),
                np.logical_not, None, "(not {0})"))


def _where_infer(avals, params):
    cond, x, y = avals
    if np.dtype(cond.dtype) != np.bool_:
        raise errors.GraphcError("internal: where condition must be bool")
    dtype = _same_dtype("where", [x, y])
    return broadcast_shapes("where", cond.shape, x.shape, y.shape), dtype


def _where_vjp(ct, out, cond, x, y):
    zero = P.scalar_like(ct, 0)
    return [None, P.where(cond, ct, zero), P.where(cond, zero, ct)]


_register(OpDef("where", "elementwise", _where_infer, np.where, _where_vjp, "({1} if {0} else {2})"))


def _convert_infer(avals, params):
    return avals[0].shape, np.dtype(params["dtype"])


def _convert_vjp(ct, out, x, dtype):
    return [P.convert(ct, x.dtype)] if np.issubdtype(x.dtype, np.floating) else [None]


_register(OpDef("convert", "elementwise", _convert_infer,
                lambda x, dtype: x.astype(dtype), _convert_vjp, "{T}({0})"))


def _index_check_infer(avals, params):
    x = avals[0]
    if not np.issubdtype(x.dtype, np.integer):
        raise errors.GraphcTypeError(f"indices must be integers, got {x.dtype}")
    return x.shape, np.dtype(np.int64)


def _index_check_impl(idx, size, allow_negative, what):
    lo = -size if allow_negative else 0
    bad = (idx < lo) | (idx >= size)
    if np.any(bad):
        first = idx[bad].flat[0] if idx.ndim else idx
        raise errors.GraphcIndexError(
            f"{what} {first} is out of range [{lo}, {size})")
    return np.where(idx < 0, idx + size, idx).astype(np.int64)


# Checks indices against [-size, size) (or [0, size)) and wraps negatives.
# Codegen runs every index_check before anything is written.
_register(OpDef("index_check", "index", _index_check_infer, _index_check_impl, None))


def _int_range_check_infer(avals, params):
    return avals[0].shape, avals[0].dtype


def int_out_of_bounds(dtype, value=None) -> str:
    """NumPy's message for a Python int its integer type cannot hold (the
    compiled check, which cannot format the value, leaves it out)."""
    shown = "" if value is None else f"{value} "
    return f"Python integer {shown}out of bounds for {np.dtype(dtype)}"


def _int_range_check_impl(x, dtype):
    info = np.iinfo(dtype)
    bad = (x < info.min) | (x > info.max)
    if np.any(bad):
        raise errors.GraphcOverflowError(int_out_of_bounds(dtype, x[bad].flat[0] if x.ndim else x))
    return x


# A Python int computed in the traced function (`-n`, `n * 300`), checked
# against the integer type it is about to be converted to: NumPy refuses one
# that does not fit (OverflowError), where the conversion would wrap. Like
# index_check it runs before anything is written.
_register(OpDef("int_range_check", "index", _int_range_check_infer, _int_range_check_impl, None))

# the ops that only check their operand and raise: codegen runs them first
CHECKS = ("index_check", "int_range_check")


# ---------------------------------------------------------------- reductions
def _reduce_infer(avals, params):
    x = avals[0]
    axes, keepdims = params["axes"], params["keepdims"]
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keepdims else \
        tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return shape, np.dtype(x.dtype)


def _numel_infer(avals, params):
    return (), np.dtype(params["dtype"])


def _numel_impl(x, axes, dtype):
    return np.asarray(math.prod(x.shape[a] for a in axes), dtype)


# numel: how many elements `x` has along `axes` (a mean's divisor), as a 0-d
# value. It reads only x's shape, so codegen writes it from the runtime shape
# and a new batch size does not change the generated code. No gradient.
_register(OpDef("numel", "shape", _numel_infer, _numel_impl,
                lambda ct, out, x, axes, dtype: [None]))


def _keepdims_shape(x, axes):
    return tuple(1 if i in axes else d for i, d in enumerate(x.shape))


def _sum_vjp(ct, out, x, axes, keepdims):
    return [P.broadcast_to(P.reshape(ct, _keepdims_shape(x, axes)), x.shape)]


def _max_vjp(ct, out, x, axes, keepdims):
    kd = _keepdims_shape(x, axes)
    hit = P.convert(P.eq(x, P.reshape(out, kd)), x.dtype)
    count = P.reduce_sum(hit, axes, True)
    return [P.mul(hit, P.div(P.reshape(ct, kd), count))]


_register(OpDef("sum", "reduce", _reduce_infer,
                lambda x, axes, keepdims: np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype),
                _sum_vjp))
_register(OpDef("max", "reduce", _reduce_infer,
                lambda x, axes, keepdims: np.max(x, axis=axes, keepdims=keepdims), _max_vjp))


# ---------------------------------------------------------------- rows
def exp_floor(dtype) -> float:
    """log of the smallest normal number of `dtype`, plus 1: softmax terms
    below e**exp_floor (3e-38 in float32) count as 0 in log_softmax's sum and
    gradient. Once a classifier is sure of its training set its other classes'
    probabilities fall below 1e-38, and subnormal numbers make Intel CPUs take
    a microcode assist on each operation: the demo's MLP step took 76 us
    instead of 32 after 30,000 steps. Against a sum of at least 1 (the peak's
    own term) and gradients of order 1, such terms change nothing."""
    return float(np.log(np.finfo(dtype).tiny)) + 1.0


# log_softmax over the last axis: x - peak - log(sum(exp(x - peak))). With
# finite_peak a row whose max is not finite subtracts 0 instead (SciPy and
# JAX: a row of -inf gives nan, not an error); without it, the peak is the
# row's max as users write it. Codegen gives it one kernel that makes three
# passes over each row while the row is in cache.
def _softmaxes_infer(name):
    def infer(avals, params):
        x = avals[0]
        if params["axis"] != len(x.shape) - 1 or np.dtype(x.dtype).kind != "f":
            raise errors.GraphcError(f"internal: {name} is over the last axis of a float array")
        if x.shape[-1] == 0:
            raise errors.ShapeError(f"{name}: the axis is empty (zero-size), so it has no maximum")
        return x.shape, np.dtype(x.dtype)
    return infer


def _shifted_terms(x, axis, finite_peak):
    """(x - peak, exp(x - peak) with terms below e**exp_floor as 0)."""
    peak = np.max(x, axis=axis, keepdims=True)
    if finite_peak:
        peak = np.where(np.isfinite(peak), peak, 0).astype(x.dtype)
    z = x - peak
    with np.errstate(under="ignore"):
        return z, np.where(z < exp_floor(x.dtype), 0, np.exp(z)).astype(x.dtype)


def _log_softmax_impl(x, axis, finite_peak):
    z, terms = _shifted_terms(x, axis, finite_peak)
    return z - np.log(np.sum(terms, axis=axis, keepdims=True, dtype=x.dtype))


def _log_softmax_vjp(ct, out, x, axis, finite_peak):
    # d out_i / d x_j = [i == j] - softmax_j; the peak's terms cancel, so no max
    # (and no tie handling) appears in the gradient
    # probabilities below e**exp_floor are taken as 0 (and exp never sees
    # their arguments): see exp_floor
    floor = P.scalar_like(out, exp_floor(out.dtype))
    low = P.lt(out, floor)
    probs = P.where(low, P.scalar_like(out, 0), P.exp(P.where(low, floor, out)))
    return [P.sub(ct, P.mul(probs, P.reduce_sum(ct, (axis,), True)))]


_register(OpDef("log_softmax", "row", _softmaxes_infer("log_softmax"), _log_softmax_impl,
                _log_softmax_vjp))


# softmax over the last axis, exp(x - peak) / sum(exp(x - peak)), as users
# write it for attention: log_softmax's peak and floor, one kernel
def _softmax_impl(x, axis, finite_peak):
    _, terms = _shifted_terms(x, axis, finite_peak)
    return terms / np.sum(terms, axis=axis, keepdims=True, dtype=x.dtype)


def _softmax_vjp(ct, out, x, axis, finite_peak):
    # d out_i / d x_j = out_i ([i == j] - out_j): the peak's terms cancel, so
    # no max (and no tie handling) appears in the gradient
    return [P.mul(out, P.sub(ct, P.reduce_sum(P.mul(ct, out), (axis,), True)))]


_register(OpDef("softmax", "row", _softmaxes_infer("softmax"), _softmax_impl, _softmax_vjp))


# cumsum over the last axis (the front end moves another axis there), in
# NumPy's order: one running sum in the dtype, so float results are NumPy's
# to the bit. `reverse` runs from the row's end; each direction's gradient is
# the other one.
def _row_rule(op, out_dtype=None):
    """The shape rule of an op over the last axis of a numeric array (cumsum,
    cumprod, argsort): the operand's shape, and its dtype or `out_dtype`."""
    def infer(avals, params):
        x = avals[0]
        if params["axis"] != len(x.shape) - 1 or np.dtype(x.dtype) == np.bool_:
            raise errors.GraphcError(f"internal: {op} is over the last axis of a numeric array")
        return tuple(x.shape), np.dtype(out_dtype or x.dtype)
    return infer


def _cumsum_impl(x, axis, reverse):
    if reverse:
        return np.flip(np.cumsum(np.flip(x, axis), axis=axis, dtype=x.dtype), axis)
    return np.cumsum(x, axis=axis, dtype=x.dtype)


_register(OpDef("cumsum", "row", _row_rule("cumsum"), _cumsum_impl,
                lambda ct, out, x, axis, reverse: [P.cumsum(ct, axis, not reverse)]))


# A first-order linear recurrence over the last axis: s[i] = b[i] + a[k] * s[p],
# p the element before i in the scan's direction (i - 1, or i + 1 when
# `reverse`), k = i (or k = p when `lagged`: the coefficient is read where
# the step comes from), and before the first element s is -0.0 (0 for
# integers), so s[first] = b[first] to the bit. np.cumprod is one with
# a = (1, x[1], x[2], ...) and b = (x[0], -0, -0, ...): each step is
# -0 + x[i] * s, NumPy's product exactly. Its transpose (the gradient in b)
# is the recurrence the other way with the other reading of a, so gradients
# need no division and are right at zeros.
def _recurrence_infer(avals, params):
    a, b = avals
    if (tuple(a.shape) != tuple(b.shape) or params["axis"] != len(a.shape) - 1
            or np.dtype(a.dtype) != np.dtype(b.dtype) or np.dtype(a.dtype) == np.bool_):
        raise errors.GraphcError("internal: recurrence takes two same-shaped numeric arrays "
                                 "and runs over the last axis")
    return tuple(a.shape), np.dtype(a.dtype)


def _recurrence_impl(a, b, axis, reverse, lagged):
    out = np.empty_like(b)
    order = range(b.shape[-1] - 1, -1, -1) if reverse else range(b.shape[-1])
    s = np.full(b.shape[:-1], -0.0 if b.dtype.kind == "f" else 0, b.dtype)
    coefficient = np.zeros(b.shape[:-1], b.dtype)
    with np.errstate(over="ignore"):            # integers wrap, as NumPy's cumprod
        for i in order:
            s = (b[..., i] + (coefficient if lagged else a[..., i]) * s).astype(b.dtype)
            coefficient = a[..., i]
            out[..., i] = s
    return out


def _shifted_from_before(x, reverse):
    """x[p] at i (p the element before i in the scan's direction), 0 at the first."""
    from graphc import numpy_api as fnp     # the front end's slicing: ops is imported by it
    zero = np.zeros(x.shape[:-1] + (1,), x.dtype)
    if reverse:
        return fnp.concatenate([fnp.getitem(x, (Ellipsis, builtins.slice(1, None))), zero], -1)
    return fnp.concatenate([zero, fnp.getitem(x, (Ellipsis, builtins.slice(None, -1)))], -1)


def _recurrence_vjp(ct, out, a, b, axis, reverse, lagged):
    adjoint = P.recurrence(a, ct, axis, not reverse, not lagged)   # the transpose, in b
    if lagged:      # a[p] scaled s[p] into s[i]: its slope is adjoint[i] s[p], summed at p
        slope_a = P.mul(_shifted_from_before(adjoint, not reverse), out)
    else:
        slope_a = P.mul(adjoint, _shifted_from_before(out, reverse))
    return [slope_a, adjoint]


_register(OpDef("recurrence", "row", _recurrence_infer, _recurrence_impl, _recurrence_vjp))


# cumprod over the last axis: one running product a row, s = s * x (NumPy's
# order: its products to the bit). Its gradient is the recurrence's with
# a = (1, x[1], x[2], ...) and b = (x[0], -0, ...): no division, right at zeros.
def _cumprod_vjp(ct, out, x, axis):
    from graphc import numpy_api as fnp
    first, rest = (Ellipsis, builtins.slice(None, 1)), (Ellipsis, builtins.slice(1, None))
    a = fnp.concatenate([np.ones(x.shape[:-1] + (1,), x.dtype), fnp.getitem(x, rest)], -1)
    adjoint = P.recurrence(a, ct, axis, True, True)         # the transpose, in b
    slope_a = P.mul(adjoint, _shifted_from_before(out, False))
    return [fnp.concatenate([fnp.getitem(adjoint, first), fnp.getitem(slope_a, rest)], -1)]


_register(OpDef("cumprod", "row", _row_rule("cumprod"),
                lambda x, axis: np.cumprod(x, axis=axis, dtype=x.dtype), _cumprod_vjp))


# np.linalg on stacks of square matrices (the last two axes), each matrix by
# LAPACK (kernels/linalg.py). Gradients are the standard ones, written with
# these ops and matmul: inv' = -inv^T ct inv^T; solve(a, b) = x gives b the
# cotangent solve(a^T, ct) and a minus that times x^T; det' = ct det inv^T and
# log|det|' = ct inv^T. slogdet's sign has none.
def _matrices(op, a):
    if len(a.shape) < 2 or np.dtype(a.dtype).kind != "f":
        raise errors.GraphcError(f"internal: {op} takes a stack of float matrices")


def _square(op, a):
    _matrices(op, a)
    if a.shape[-1] != a.shape[-2]:
        raise errors.GraphcError(f"internal: {op} takes a stack of square float matrices")


def _square_infer(op):
    """The shape rule of an op from a stack of square matrices to another (inv, cholesky)."""
    def infer(avals, params):
        _square(op, avals[0])
        return tuple(avals[0].shape), np.dtype(avals[0].dtype)
    return infer


def _solve_infer(avals, params):
    a, b = avals
    _square("solve", a)
    if tuple(b.shape[:-1]) != tuple(a.shape[:-1]) or np.dtype(b.dtype) != np.dtype(a.dtype):
        raise errors.GraphcError("internal: solve's right-hand side is (..., n, k), as its matrix")
    return tuple(b.shape), np.dtype(b.dtype)


def _det_infer(avals, params):
    _square("det", avals[0])
    return tuple(avals[0].shape[:-2]), np.dtype(avals[0].dtype)


def _transposed_inverse(a):
    return P.swap_last(P.inv(a))


def _per_matrix(ct):
    """A cotangent of one number per matrix, broadcast over its matrix."""
    return P.reshape(ct, tuple(ct.shape) + (1, 1))


_register(OpDef("inv", "linalg", _square_infer("inv"), lambda a: np.linalg.inv(a),
                lambda ct, out, a: [P.neg(P.matmul(P.matmul(P.swap_last(out), ct),
                                                   P.swap_last(out)))]))


def _solve_vjp(ct, out, a, b):
    gb = P.solve(P.swap_last(a), ct)
    return [P.neg(P.matmul(gb, P.swap_last(out))), gb]


_register(OpDef("solve", "linalg", _solve_infer, lambda a, b: np.linalg.solve(a, b), _solve_vjp))
_register(OpDef("det", "linalg", _det_infer, lambda a: np.linalg.det(a),
                lambda ct, out, a: [P.mul(_per_matrix(P.mul(ct, out)), _transposed_inverse(a))]))


def _slogdet_impl(a, logabs):
    sign, log = np.linalg.slogdet(a)
    return np.asarray(log if logabs else sign, a.dtype)


_register(OpDef("slogdet", "linalg", _det_infer, _slogdet_impl,
                lambda ct, out, a, logabs: [P.mul(_per_matrix(ct), _transposed_inverse(a))
                                            if logabs else None]))


# triangular_solve: x with op(a) x = b, op(a) a's lower (or upper) triangle
# (the other is never read) or that triangle's transpose. With g = op(a)^-T ct,
# b's cotangent is g and op(a)'s is -g x^T, of which a keeps its triangle.
def _triangle(n, dtype, lower):
    return (np.tril if lower else np.triu)(np.ones((n, n))).astype(dtype)


def _triangular_solve_impl(a, b, lower, transposed):
    t = np.tril(a) if lower else np.triu(a)
    return np.linalg.solve(np.swapaxes(t, -1, -2) if transposed else t, b)


def _triangular_solve_vjp(ct, out, a, b, lower, transposed):
    g = P.triangular_solve(a, ct, lower, not transposed)
    outer = P.matmul(out, P.swap_last(g)) if transposed else P.matmul(g, P.swap_last(out))
    return [P.neg(P.mul(outer, _triangle(a.shape[-1], a.dtype, lower))), g]


_register(OpDef("triangular_solve", "linalg", _solve_infer, _triangular_solve_impl,
                _triangular_solve_vjp))


# cholesky: L with a = L L^T from a's lower triangle, as NumPy's. Its gradient,
# as JAX's and PyTorch's, is the symmetric one (a perturbation of a symmetric
# a is symmetric): with P = Phi(L^T ct), Phi the lower triangle with its
# diagonal halved, a's cotangent is sym(L^-T P L^-1). Both solves are with the
# triangle L: S = L^-T P, then (S L^-1)^T = L^-T S^T, and sym takes either.
def _lower_with_half_diagonal(n, dtype):
    return (np.tril(np.ones((n, n)), -1) + 0.5 * np.eye(n)).astype(dtype)


def _symmetric_part(x):
    return P.mul(P.add(x, P.swap_last(x)), P.scalar_like(x, 0.5))


def _cholesky_vjp(ct, out, a):
    phi = P.mul(P.matmul(P.swap_last(out), ct), _lower_with_half_diagonal(a.shape[-1], a.dtype))
    s = P.triangular_solve(out, phi, lower=True, transposed=True)
    return [_symmetric_part(P.triangular_solve(out, P.swap_last(s), lower=True, transposed=True))]


_register(OpDef("cholesky", "linalg", _square_infer("cholesky"), lambda a: np.linalg.cholesky(a),
                _cholesky_vjp))


# cholesky_solve(a, L, b): solve(a, b) with L = cholesky(a) at hand, which
# serves when a is symmetric (passes/factor_solves.py makes it, after autodiff:
# it has no gradient of its own).
_register(OpDef("cholesky_solve", "linalg",
                lambda avals, params: _solve_infer([avals[0], avals[2]], params),
                lambda a, factor, b: np.linalg.solve(a, b)))


# eigh: one (n + 1, n) block a matrix, its eigenvalues (ascending) in row 0
# and its eigenvectors (columns) below: one LAPACK call serves both of
# np.linalg.eigh's results. With w, V and their cotangents w', V', a's
# cotangent is sym(V (diag(w') + F * (V^T V')) V^T), F[i, j] = 1 / (w[j] - w[i])
# off the diagonal. Where two eigenvalues are equal the eigenvectors are not
# unique and F is infinite: a term there is 0 when its (V^T V')[i, j] is 0 (a
# loss of the eigenvalues alone keeps its gradient) and nan otherwise, as
# JAX's and PyTorch's are (even a loss that does not depend on the choice of
# eigenvectors, as a matrix function written with them, has a slope there
# that V' cannot tell).
def _eigh_infer(avals, params):
    _square("eigh", avals[0])
    shape = tuple(avals[0].shape)
    return shape[:-2] + (shape[-1] + 1, shape[-1]), np.dtype(avals[0].dtype)


def _eigh_impl(a):
    w, v = np.linalg.eigh(a)
    return np.concatenate([w[..., None, :], v], axis=-2)


def rows(x, start, stop):
    """Rows start:stop of each matrix of the stack x (a part of eigh's, svd's or qr's
    blocks)."""
    from graphc import numpy_api as fnp
    return fnp.getitem(x, (Ellipsis, builtins.slice(start, stop), builtins.slice(None)))


def columns(x, start, stop):
    """Columns start:stop of each matrix of the stack x."""
    from graphc import numpy_api as fnp
    return fnp.getitem(x, (Ellipsis, builtins.slice(start, stop)))


def _over_gaps(m, gap):
    """F * m, F[i, j] = 1 / gap[i, j] off the diagonal and 0 on it, where a
    gap of 0 (equal eigenvalues or singular values) gives 0 where m is 0 and
    nan elsewhere: the derivative of vectors that are not unique there."""
    one, zero = P.scalar_like(gap, 1), P.scalar_like(gap, 0)
    tied = P.eq(gap, zero)                                 # the diagonal too
    at_ties = P.where(P.eq(m, zero), zero, P.scalar_like(gap, np.nan))
    spread = P.where(tied, at_ties, P.div(m, P.where(tied, one, gap)))
    return P.where(np.eye(gap.shape[-1], dtype=bool), zero, spread)


def _eigh_vjp(ct, out, a):
    w, v = rows(out, 0, 1), rows(out, 1, None)           # w kept 2-d: one row
    w_ct, v_ct = rows(ct, 0, 1), rows(ct, 1, None)
    gap = P.sub(w, P.swap_last(w))                         # [i, j] = w[j] - w[i]
    spread = _over_gaps(P.matmul(P.swap_last(v), v_ct), gap)
    inner = P.add(P.mul(w_ct, np.eye(a.shape[-1], dtype=a.dtype)), spread)
    return [_symmetric_part(P.matmul(P.matmul(v, inner), P.swap_last(v)))]


_register(OpDef("eigh", "linalg", _eigh_infer, _eigh_impl, _eigh_vjp))


# svd: a's reduced SVD, a = U diag(s) V^T with k = min(m, n) singular values
# (descending), in one (m + 1 + n, k) block a matrix: U's m rows, s, then
# V's n rows (np.linalg.svd's Vh transposed). With S = diag(s), the
# cotangents U', s', V' and F[i, j] = 1 / (s[j]^2 - s[i]^2) off the diagonal,
# a's cotangent is
#   U (diag(s') + F * (U^T U' - U'^T U) S + S F * (V^T V' - V'^T V)) V^T
#   + (I - U U^T) U' S^-1 V^T + U S^-1 V'^T (I - V V^T),
# the last two terms where a is not square. Equal singular values are
# handled as eigh's equal eigenvalues; 1 / s is taken as 0 where s is 0 (as
# JAX's), so a loss of the singular values alone keeps its gradient
# U diag(s') V^T at a matrix of lower rank.
def _svd_infer(avals, params):
    _matrices("svd", avals[0])
    shape = tuple(avals[0].shape)
    m, n = shape[-2:]
    return shape[:-2] + (m + 1 + n, min(m, n)), np.dtype(avals[0].dtype)


def _svd_impl(a):
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    return np.concatenate([u, s[..., None, :], np.swapaxes(vh, -1, -2)], axis=-2)


def _skew(x):
    return P.sub(x, P.swap_last(x))


def _svd_vjp(ct, out, a):
    m, n = a.shape[-2:]
    u, s, v = rows(out, 0, m), rows(out, m, m + 1), rows(out, m + 1, None)
    u_ct, s_ct, v_ct = rows(ct, 0, m), rows(ct, m, m + 1), rows(ct, m + 1, None)
    k = min(m, n)
    squares = P.mul(s, s)
    gap = P.sub(squares, P.swap_last(squares))             # [i, j] = s[j]^2 - s[i]^2
    left = P.mul(_over_gaps(_skew(P.matmul(P.swap_last(u), u_ct)), gap), s)       # J S
    right = P.mul(P.swap_last(s), _over_gaps(_skew(P.matmul(P.swap_last(v), v_ct)), gap))
    inner = P.add(P.add(P.mul(s_ct, np.eye(k, dtype=a.dtype)), left), right)
    grad = P.matmul(P.matmul(u, inner), P.swap_last(v))
    zero = P.scalar_like(s, 0)
    at_zero = P.eq(s, zero)
    one = P.scalar_like(s, 1)
    s_inv = P.where(at_zero, zero, P.div(one, P.where(at_zero, one, s)))
    if m > k:       # (I - U U^T) U' S^-1 V^T
        scaled = P.mul(u_ct, s_inv)
        outside = P.sub(scaled, P.matmul(u, P.matmul(P.swap_last(u), scaled)))
        grad = P.add(grad, P.matmul(outside, P.swap_last(v)))
    if n > k:       # U S^-1 V'^T (I - V V^T)
        scaled = P.mul(v_ct, s_inv)
        outside = P.sub(scaled, P.matmul(v, P.matmul(P.swap_last(v), scaled)))
        grad = P.add(grad, P.matmul(u, P.swap_last(outside)))
    return [grad]


_register(OpDef("svd", "linalg", _svd_infer, _svd_impl, _svd_vjp))


# qr: a's reduced QR, a = Q R with k = min(m, n), in one (m + n, k) block a
# matrix: Q's m rows, then R^T's n rows. For m >= n, with the cotangents Q'
# and R' (its upper triangle: R's lower one is 0 whatever a is) and
# M = R R'^T - Q'^T Q, a's cotangent is (Q' + Q copyltu(M)) R^-T, copyltu(M)
# the symmetric matrix of M's lower triangle. A wide a = [X | Y] (m < n) is
# Q [R_X | R_Y]: X's cotangent is that of a square QR, with Q' + Y R_Y'^T
# for Q' (Y = Q R_Y reads Q too), and Y's is Q R_Y'. R must be invertible
# (a of full rank), as for these formulas in JAX and PyTorch.
def _qr_infer(avals, params):
    _matrices("qr", avals[0])
    shape = tuple(avals[0].shape)
    m, n = shape[-2:]
    return shape[:-2] + (m + n, min(m, n)), np.dtype(avals[0].dtype)


def _qr_impl(a):
    q, r = np.linalg.qr(a)
    return np.concatenate([q, np.swapaxes(r, -1, -2)], axis=-2)


def _square_qr_vjp(q, r, q_ct, r_ct):
    """The cotangent of a in a = Q R, R square and invertible."""
    m = P.sub(P.matmul(r, P.swap_last(r_ct)), P.matmul(P.swap_last(q_ct), q))
    k = r.shape[-1]
    symmetric = P.where(np.tril(np.ones((k, k), bool)), m, P.swap_last(m))   # copyltu(M)
    b = P.add(q_ct, P.matmul(q, symmetric))
    return P.swap_last(P.solve(r, P.swap_last(b)))          # b R^-T


def _qr_vjp(ct, out, a):
    m, n = a.shape[-2:]
    k = min(m, n)
    q, r = rows(out, 0, m), P.swap_last(rows(out, m, None))
    upper = np.triu(np.ones((k, n), bool))
    q_ct = rows(ct, 0, m)
    r_ct = P.where(upper, P.swap_last(rows(ct, m, None)), P.scalar_like(r, 0))
    if m >= n:
        return [_square_qr_vjp(q, r, q_ct, r_ct)]
    y, r_y_ct = columns(a, m, None), columns(r_ct, m, None)
    x_ct = _square_qr_vjp(q, columns(r, 0, m), P.add(q_ct, P.matmul(y, P.swap_last(r_y_ct))),
                          columns(r_ct, 0, m))
    return [P.concatenate([x_ct, P.matmul(q, r_y_ct)], len(a.shape) - 1)]


_register(OpDef("qr", "linalg", _qr_infer, _qr_impl, _qr_vjp))


# pinv: a's pseudo-inverse X (n, m), singular values at most rcond times the
# largest taken as 0 (NumPy's). Its derivative at a constant rank (Golub and
# Pereyra) gives a's cotangent from X's, C:
#   -X^T C X^T + (I - a X) C^T X X^T + X^T X C^T (I - X a),
# written with X itself, so it holds where singular values are equal or 0
# (the SVD's gradient is nan there), to every order.
def _pinv_infer(avals, params):
    _matrices("pinv", avals[0])
    shape = tuple(avals[0].shape)
    return shape[:-2] + (shape[-1], shape[-2]), np.dtype(avals[0].dtype)


def _pinv_vjp(ct, out, a, rcond):
    x, x_t, ct_t = out, P.swap_last(out), P.swap_last(ct)
    first = P.neg(P.matmul(P.matmul(x_t, ct), x_t))
    left = P.matmul(ct_t, P.matmul(x, x_t))                    # C^T X X^T, then (I - a X) of it
    left = P.sub(left, P.matmul(a, P.matmul(x, left)))
    right = P.matmul(P.matmul(x_t, x), ct_t)                  # X^T X C^T, then of it (I - X a)
    right = P.sub(right, P.matmul(P.matmul(right, x), a))
    return [P.add(P.add(first, left), right)]


_register(OpDef("pinv", "linalg", _pinv_infer,
                lambda a, rcond: np.linalg.pinv(a, rcond).astype(a.dtype), _pinv_vjp))


# argsort over the last axis, stable (NumPy's kind="stable": ties keep their
# order, nan sorts last). np.sort is x taken at these indices, so its
# gradient is take's: each sorted slot's cotangent goes back to its element.
_register(OpDef("argsort", "row", _row_rule("argsort", np.int64),
                lambda x, axis: np.argsort(x, axis=axis, kind="stable").astype(np.int64),
                lambda ct, out, x, axis: [None]))


# ---------------------------------------------------------------- matmul
# matmul(a, b) of operands with equal batch dims. The passes may set
# transpose_a/transpose_b: the operand is then read transposed in its last two
# axes (a strided view handed to BLAS instead of a copy); and, on stacks,
# perm_a/perm_b: the operand is read as np.transpose(x, perm) first (a view
# whose matrices BLAS reads by their leading dimension), and perm_out: the
# result is np.transpose(a @ b, perm_out), written so (passes/strided_stacks.py).
def _swapped(shape, flag):
    return shape[:-2] + (shape[-1], shape[-2]) if flag else shape


def inverse_permutation(perm) -> tuple:
    """The permutation undoing np.transpose(x, perm): axis perm[j] of x is
    axis j of its transpose."""
    return tuple(sorted(range(len(perm)), key=lambda d: perm[d]))


def matmul_operand_shapes(a_shape, b_shape, params) -> tuple[tuple, tuple]:
    """The shapes of a and b as the product reads them: permuted, then
    transposed in their last two axes, as its params say."""
    def read(shape, perm, flag):
        return _swapped(tuple(shape[p] for p in perm) if perm else tuple(shape), flag)
    return (read(a_shape, params.get("perm_a"), params.get("transpose_a", False)),
            read(b_shape, params.get("perm_b"), params.get("transpose_b", False)))


def _matmul_infer(avals, params):
    a, b = avals
    dtype = _same_dtype("matmul", avals)
    sa, sb = matmul_operand_shapes(a.shape, b.shape, params)
    if len(sa) < 2 or len(sb) < 2 or sa[:-2] != sb[:-2] or sa[-1] != sb[-2]:
        raise errors.ShapeError(f"matmul: shapes {sa} and {sb} do not line up: "
                                f"the last axis of the first must equal the second-to-last "
                                f"of the second")
    shape = sa[:-1] + (sb[-1],)
    perm = params.get("perm_out")
    return (tuple(shape[p] for p in perm) if perm else shape), dtype


def _matmul_impl(a, b, transpose_a=False, transpose_b=False, perm_a=None, perm_b=None,
                 perm_out=None):
    a, b = (np.transpose(x, perm) if perm else x for x, perm in ((a, perm_a), (b, perm_b)))
    product = np.matmul(np.swapaxes(a, -1, -2) if transpose_a else a,
                        np.swapaxes(b, -1, -2) if transpose_b else b)
    return np.transpose(product, perm_out) if perm_out else product


def _matmul_vjp(ct, out, a, b, transpose_a=False, transpose_b=False, perm_a=None, perm_b=None,
                perm_out=None):
    ct = P.transpose(ct, inverse_permutation(perm_out)) if perm_out else ct
    a = P.transpose(a, perm_a) if perm_a else a
    b = P.transpose(b, perm_b) if perm_b else b
    a = P.swap_last(a) if transpose_a else a
    b = P.swap_last(b) if transpose_b else b
    ga, gb = P.matmul(ct, P.swap_last(b)), P.matmul(P.swap_last(a), ct)
    ga = P.swap_last(ga) if transpose_a else ga
    gb = P.swap_last(gb) if transpose_b else gb
    return [P.transpose(ga, inverse_permutation(perm_a)) if perm_a else ga,
            P.transpose(gb, inverse_permutation(perm_b)) if perm_b else gb]


_register(OpDef("matmul", "matmul", _matmul_infer, _matmul_impl, _matmul_vjp))


# matmul_add(c, a, b) = c + a @ b, c of the product's shape and dtype: one GEMM
# accumulating into c's buffer (BLAS's beta = 1). passes/accumulate.py makes
# it of a sum of products (an unrolled RNN's weight gradients, a residual's
# backward), so that no product needs a buffer and no loop adds them up.
def _matmul_add_infer(avals, params):
    shape, dtype = _matmul_infer(avals[1:], params)
    c = avals[0]
    if tuple(c.shape) != shape or np.dtype(c.dtype) != dtype:
        raise errors.ShapeError(f"matmul_add: the addend is {tuple(c.shape)} {np.dtype(c.dtype)}, "
                                f"the product {shape} {dtype}: they must be equal")
    return shape, dtype


def _matmul_add_vjp(ct, out, c, a, b, **flags):
    return [ct] + _matmul_vjp(ct, out, a, b, **flags)


_register(OpDef("matmul_add", "matmul", _matmul_add_infer,
                lambda c, a, b, **flags: c + _matmul_impl(a, b, **flags), _matmul_add_vjp))


# ---------------------------------------------------------------- layout
def _reshape_infer(avals, params):
    x, shape = avals[0], params["shape"]
    if int(np.prod(shape, dtype=np.int64)) != int(np.prod(x.shape, dtype=np.int64)):
        raise errors.ShapeError(f"reshape: cannot reshape {x.shape} into {shape}")
    return shape, np.dtype(x.dtype)


def _transpose_infer(avals, params):
    x, perm = avals[0], params["perm"]
    return tuple(x.shape[p] for p in perm), np.dtype(x.dtype)


def _broadcast_infer(avals, params):
    x, shape = avals[0], params["shape"]
    if broadcast_shapes("broadcast_to", x.shape, shape) != tuple(shape):
        raise errors.ShapeError(f"broadcast_to: cannot broadcast {x.shape} to {shape}")
    return shape, np.dtype(x.dtype)


_register(OpDef("reshape", "layout", _reshape_infer, lambda x, shape: x.reshape(shape),
                lambda ct, out, x, shape: [P.reshape(ct, x.shape)]))
_register(OpDef("transpose", "layout", _transpose_infer,
                lambda x, perm: np.ascontiguousarray(np.transpose(x, perm)),
                lambda ct, out, x, perm: [P.transpose(ct, inverse_permutation(perm))]))
# broadcast_to is elementwise: a copy with the broadcast index pattern.
_register(OpDef("broadcast_to", "elementwise", _broadcast_infer,
                lambda x, shape: np.ascontiguousarray(np.broadcast_to(x, shape)),
                lambda ct, out, x, shape: [ct], "{0}"))


def _slices(starts, steps, shape):
    out = []
    for start, step, n in zip(starts, steps, shape):
        stop = start + n * step
        out.append(slice(start, None if stop < 0 else stop, step))
    return tuple(out)


def _slice_infer(avals, params):
    return params["shape"], np.dtype(avals[0].dtype)


def _unslice_infer(avals, params):
    return params["base_shape"], np.dtype(avals[0].dtype)


def _slice_impl(x, starts, steps, shape, ends=None):
    return np.ascontiguousarray(x[_slices(starts, steps, shape)])


def _unslice_impl(u, base_shape, starts, steps, ends=None):
    out = np.zeros(base_shape, u.dtype)
    out[_slices(starts, steps, u.shape)] = u
    return out


# slice: out[i] = x[start + i*step] per axis. unslice is its transpose: the
# slice written into zeros of the base shape. `ends` (optional; prims.slice)
# says which starts and stops count from the end of their axis, so generated
# code reads them from the shape and a new size of that axis shares it.
_register(OpDef("slice", "layout", _slice_infer, _slice_impl,
                lambda ct, out, x, starts, steps, shape, ends=None:
                [P.unslice(ct, x.shape, starts, steps, ends)]))
_register(OpDef("unslice", "layout", _unslice_infer, _unslice_impl,
                lambda ct, out, u, base_shape, starts, steps, ends=None:
                [P.slice(ct, starts, steps, u.shape, ends)]))


def _concat_infer(avals, params):
    axis = params["axis"]
    first = avals[0]
    for a in avals[1:]:
        if a.ndim != first.ndim or any(
                d1 != d2 for i, (d1, d2) in enumerate(zip(a.shape, first.shape)) if i != axis):
            raise errors.ShapeError(f"concatenate: shapes {first.shape} and {a.shape} differ "
                                    f"outside axis {axis}")
    dtype = _same_dtype("concatenate", avals)
    shape = list(first.shape)
    shape[axis] = sum(a.shape[axis] for a in avals)
    return tuple(shape), dtype


def _concat_vjp(ct, out, *xs, axis):
    return [P.concat_piece(ct, xs[:i + 1], axis) for i in range(len(xs))]


def _piece_infer(avals, params):
    return tuple(avals[-1].shape), np.dtype(avals[0].dtype)


def _piece_impl(ct, *xs, axis):
    offset = sum(x.shape[axis] for x in xs[:-1])
    return np.ascontiguousarray(np.take(ct, np.arange(offset, offset + xs[-1].shape[axis]),
                                        axis=axis))


def _piece_vjp(ct, out, whole, *xs, axis):
    """The piece written into zeros of the whole (the operands after `whole`
    give shapes only, and get no gradient)."""
    def zeros(shape):
        return P.broadcast_to(P.scalar_like(ct, 0), shape)
    tail = list(whole.shape)
    tail[axis] -= sum(x.shape[axis] for x in xs)
    parts = [zeros(x.shape) for x in xs[:-1]] + [ct] + ([zeros(tail)] if tail[axis] else [])
    return [P.concatenate(parts, axis)] + [None] * len(xs)


_register(OpDef("concatenate", "layout", _concat_infer,
                lambda *xs, axis: np.concatenate(xs, axis=axis), _concat_vjp))
# concat_piece(whole, x0, ..., xk): the part of `whole` (a concatenation along
# `axis`) that came from xk, after x0 ... x(k-1): concatenate's gradient. The
# x's give only their shapes, which generated code reads at run time, so one
# module serves every size of them (a slice would write the offsets in).
_register(OpDef("concat_piece", "layout", _piece_infer, _piece_impl, _piece_vjp))


# ---------------------------------------------------------------- gather/scatter
def _take_infer(avals, params):
    x, idx = avals
    axis = params["axis"]
    return x.shape[:axis] + tuple(idx.shape) + x.shape[axis + 1:], np.dtype(x.dtype)


def _scatter_infer(avals, params):
    u, idx = avals
    axis, size = params["axis"], params["size"]
    return u.shape[:axis] + (size,) + u.shape[axis + idx.ndim:], np.dtype(u.dtype)


def _scatter_add_impl(u, idx, axis, size):
    out = np.zeros(u.shape[:axis] + (size,) + u.shape[axis + idx.ndim:], u.dtype)
    moved = np.moveaxis(out, axis, 0)
    u_moved = np.moveaxis(u.reshape(u.shape[:axis] + (idx.size,) + u.shape[axis + idx.ndim:]),
                          axis, 0)
    np.add.at(moved, idx.reshape(-1), u_moved)
    return out


# take: np.take(x, idx, axis) with idx already checked and wrapped (index_check).
# scatter_add is its transpose; repeated indices accumulate.
_register(OpDef("take", "index", _take_infer, lambda x, idx, axis: np.take(x, idx, axis=axis),
                lambda ct, out, x, idx, axis: [P.scatter_add(ct, idx, axis, x.shape[axis]), None]))
_register(OpDef("scatter_add", "index", _scatter_infer, _scatter_add_impl,
                lambda ct, out, u, idx, axis, size: [P.take(ct, idx, axis), None]))
