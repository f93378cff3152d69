"""NumPy functions written with others (graphc.composites): values and dtypes
equal NumPy's, gradients equal central differences, and one compiled module
agrees with the interpreter."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc import api, composites

# One case of each way the others are built (slices, with a negative step;
# concatenation; a broadcast reshaped; a stack of slices; where with a
# constant mask; a square root of a sum; a logsumexp) is also compiled, in
# one module: all of them cost 13 s of compile, for ops compiled in their
# own tests too
COMPILED = []


def compiled(case):
    COMPILED.append(case)
    return case


def _added_at(x, v):
    """np.add.at and np.subtract.at into a traced array: repeated indices add up."""
    out = np.zeros_like(x)
    np.add.at(out, np.array([0, 2, 2, 0]), x[::-1] * 2)
    np.subtract.at(out, (np.array([1, 1, -1]), np.array([3, 3, 0])), v[:3])
    np.add.at(out, (slice(None), 5), 1.5)
    return out


CASES = [   # one a line: a failure names its line
    lambda x, v: np.split(x, 2, axis=1),
    compiled(lambda x, v: np.split(x, [1, 3])),
    lambda x, v: np.array_split(x, 4, axis=1),        # sections of 2, 2, 1, 1
    lambda x, v: np.array_split(v, 3),
    lambda x, v: np.hsplit(x, 3),
    lambda x, v: np.vsplit(x, [2]),
    lambda x, v: np.vstack([x, x[:1]]),
    lambda x, v: np.vstack([v, v]),                    # 1-d rows
    # NumPy bool masks, known when tracing: their nonzero() indices
    lambda x, v: x[:, np.arange(6) % 3 == 0] * 2 + x[np.array([True, False, True, False])].sum(),
    lambda x, v: x[x.shape[0] * np.eye(4, 6, dtype=bool) > 0] + v[[False, True] * 2 + [True]][0],
    lambda x, v: np.moveaxis(np.stack([x, 2 * x]), [0, -1], [1, 0]),    # axes in sequences
    lambda x, v: np.moveaxis(x[None], -1, 0) + np.swapaxes(x, -1, 0)[:, None],
    lambda x, v: np.hstack([x, x]),
    lambda x, v: np.hstack([v, v[:2]]),
    lambda x, v: np.flip(x),
    compiled(lambda x, v: np.flip(x, 1)),
    lambda x, v: np.outer(v, x[1]),
    lambda x, v: np.inner(x, x[:2]) + np.inner(2.0, x[0]).sum() + np.inner(v, v),
    lambda x, v: np.vdot(x[:2], x[2:].T.T) + np.vdot(v, v[::-1]),
    lambda x, v: np.linalg.norm(v),
    compiled(lambda x, v: np.linalg.norm(x, axis=1)),
    lambda x, v: np.linalg.norm(x, "fro"),
    lambda x, v: np.linalg.norm(x, axis=0, keepdims=True),
    lambda x, v: np.linalg.norm(v, 1) + np.linalg.norm(v, np.inf) + np.linalg.norm(v, -np.inf),
    lambda x, v: np.linalg.norm(x, 3, axis=1, keepdims=True),
    lambda x, v: np.linalg.norm(np.where(x > 1, 0, x), 0, axis=0),      # a count of nonzeros
    lambda x, v: np.linalg.norm(x, 1) + np.linalg.norm(x, -np.inf),     # max column, min row sum
    compiled(lambda x, v: np.linalg.norm(x, np.inf, axis=(1, 0), keepdims=True)),   # axes turned
    lambda x, v: np.linalg.norm(x.reshape(2, 3, 4), -1, axis=(2, 0)),
    lambda x, v: np.nan_to_num(x * 2),         # the gradient of the finite (test_result_types...)
    lambda x, v: np.roll(x, 2, axis=1),
    compiled(lambda x, v: np.roll(x, (1, -2), axis=(0, 1))),
    lambda x, v: np.roll(v, 7),                        # more than the length; axis None
    compiled(lambda x, v: np.repeat(x, 2, axis=0)),
    lambda x, v: v.repeat(3),
    lambda x, v: np.tile(v, (2, 2)),
    lambda x, v: np.tile(x, 2),
    compiled(lambda x, v: np.pad(x, 1)),      # zeros: one unslice
    compiled(lambda x, v: np.pad(x.reshape(2, 3, 4), ((0, 0), (2, 1), (0, 3)), constant_values=0)),
    lambda x, v: np.pad(v, 0),
    compiled(lambda x, v: np.arctan2(np.pad(v, 1, constant_values=-0.0), -1.0)),  # -pi at ends
    compiled(lambda x, v: np.pad(x, ((0, 2), (1, 0)), constant_values=-1.5)),
    lambda x, v: np.pad(x, ((1, 2), (3, 0)), mode="reflect"),
    compiled(lambda x, v: np.pad(x, 2, mode="symmetric")),
    lambda x, v: np.pad(x, 2, mode="wrap"),
    lambda x, v: np.pad(v, (7, 1), mode="edge"),
    lambda x, v: np.lib.stride_tricks.sliding_window_view(v, 3),
    compiled(lambda x, v: np.lib.stride_tricks.sliding_window_view(x, (2, 3))),
    lambda x, v: np.lib.stride_tricks.sliding_window_view(x, 2, axis=1),
    compiled(lambda x, v: np.tril(x)),
    lambda x, v: np.triu(x, 1),
    compiled(lambda x, v: np.logaddexp.reduce(x, axis=1)),
    compiled(lambda x, v: _added_at(x, v)),
    compiled(lambda x, v: np.interp(x, np.cumsum(np.abs(v) + 0.1) - 1.0, np.sin(v))),
    lambda x, v: np.interp(x[0], np.arange(5.0) - 2, v, left=-3.0, right=3.0),  # NumPy's knots
    lambda x, v: np.interp(x, np.array([-1.0, -1.0, 0.0, 0.5, 0.5]), v),     # repeated knots
    lambda x, v: np.interp(np.concatenate([x[0], [-1.0, 0.5, 0.0]]),       # at them
                           np.array([-1.0, -1.0, 0.0, 0.5, 0.5]), v),
    lambda x, v: np.reciprocal(v),
    # found in review: axes against the input (-1 was the new window axis),
    # shifts on one axis add up, arrays as counts, dtypes kept or honoured
    lambda x, v: np.lib.stride_tricks.sliding_window_view(x, (2, 3), axis=(0, -1)),
    lambda x, v: np.roll(x, (1, 2), axis=1),
    lambda x, v: np.tile(v, np.array([2, 1])),
    lambda x, v: np.lib.stride_tricks.sliding_window_view(v, 0),
    # windows over axes in order are one gather (with an axis after them too); out
    # of order or an axis twice, a stack of shifted slices (test_windows_over_axes_in_order_...)
    compiled(lambda x, v: np.lib.stride_tricks.sliding_window_view(x, 2, axis=0)),
    lambda x, v: np.lib.stride_tricks.sliding_window_view(x, (3, 2), axis=(1, 0)),
    lambda x, v: np.lib.stride_tricks.sliding_window_view(x, (2, 3), axis=(1, 1)),
    lambda x, v: np.lib.stride_tricks.sliding_window_view(x[:0], 2, axis=-1),   # no rows
    # where= of sum and mean: a masked mean, as over padding tokens
    lambda x, v: np.sum(x, axis=0, where=x > 0.5),
    compiled(lambda x, v: np.mean(x, axis=1, where=np.array([1, 1, 0, 1, 0, 1], bool))),
    lambda x, v: x.mean(where=x < 0),
    lambda x, v: np.sum(np.ones((4, 6)), where=x > 0),  # a traced mask on a NumPy array
    # initial= takes part as one more element; with where=, the chosen ones' and it
    lambda x, v: np.sum(x, axis=0, initial=1.5) + np.max(x, axis=0, initial=0.9),
    lambda x, v: np.min(x, axis=1, initial=-0.3, where=x > 0.1),
    lambda x, v: x.max(axis=0, initial=-0.2, where=x < 0.7, keepdims=True),
    lambda x, v: np.copy(x) * np.max(x[:, :0], axis=1, initial=2.0, keepdims=True),
    # NumPy's positional order (keepdims after out; ddof after out)
    lambda x, v: np.sum(x, 1, None, None, True),
    lambda x, v: x.mean(0, None, None, True),
    lambda x, v: np.var(x, 0, None, None, 1),
    lambda x, v: x.max(1, None, True),
    lambda x, v: np.diff(x),
    compiled(lambda x, v: np.diff(x, 2, axis=0, prepend=v[0], append=x[:1])),
    # order statistics: sorted rows taken at NumPy's indices
    lambda x, v: np.median(x, axis=1),
    compiled(lambda x, v: np.median(x, axis=0, keepdims=True)),
    lambda x, v: np.median(v),
    lambda x, v: np.median(x, axis=(0, 1)),
    compiled(lambda x, v: np.quantile(x, [0.1, 0.5, 0.95], axis=1)),
    lambda x, v: np.percentile(v, 37.5),
    lambda x, v: np.quantile(x, 0.3, axis=0, method="midpoint", keepdims=True),
    lambda x, v: np.quantile(x, np.array([0.25, 0.75]), method="nearest"),
    lambda x, v: np.argsort(x, axis=0) * x,
    # products: a recurrence, so gradients are right at zeros (no division)
    lambda x, v: np.prod(np.where(x > 1, 0, x), axis=1),
    compiled(lambda x, v: np.cumprod(np.where(x > 1, 0, x), axis=0)),
    lambda x, v: x.prod() + np.prod(v, keepdims=True),
    # statistics (graphc/statistics.py)
    lambda x, v: np.ptp(x, axis=1),
    lambda x, v: np.average(x, axis=1, weights=np.arange(1.0, 7.0)),
    compiled(lambda x, v: np.average(x, weights=x ** 2 + 1)),      # traced weights
    lambda x, v: np.nansum(np.where(x > 1, np.nan, x), axis=0),
    lambda x, v: np.nanmean(np.where(x > 1, np.nan, x), axis=1),
    lambda x, v: np.nanmax(np.where(x > 1, np.nan, x), axis=1),
    compiled(lambda x, v: np.cov(x)),
    lambda x, v: np.cov(x, rowvar=False, bias=True),
    lambda x, v: np.cov(v, x[0, :5]),
    lambda x, v: np.corrcoef(x),
    # matrices (graphc/matrices.py)
    lambda x, v: np.diagonal(x, 1),
    compiled(lambda x, v: np.diag(v, -1)),
    lambda x, v: np.diag(x) + x.trace(),
    lambda x, v: np.kron(x[:2, :2], v[:3]),
    compiled(lambda x, v: np.cross(x[:, :3], x[:, 3:])),
    lambda x, v: np.atleast_3d(v),
    # np.linalg's front: vectors, broadcast stacks, integers
    lambda x, v: np.linalg.solve(x[:4, :4] + 3 * np.eye(4), v[:4]),
    lambda x, v: np.linalg.solve(x[:4, :4] + 3 * np.eye(4), x[None, :, :2]),
    lambda x, v: np.linalg.slogdet(x[:4, :4] + 3 * np.eye(4))[1] * np.linalg.inv(x[:2, :2] + 2 * np.eye(2)),
    # cholesky and eigh read one triangle; their gradients are the symmetric
    # ones, so the matrices are made symmetric here (central differences see a's parameters)
    lambda x, v: np.linalg.cholesky(x @ x.T + np.eye(4), upper=True),
    lambda x, v: np.linalg.eigvalsh(x[:, :4] + x[:, :4].T, "U") * np.linalg.eigvalsh(x @ x.T),
    lambda x, v: (lambda r: [r.eigenvalues, r.eigenvectors ** 2])(
        np.linalg.eigh(np.stack([x[:, :4] + x[:, :4].T, x @ x.T]))),
    # signals and running sums as ufunc methods
    lambda x, v: np.convolve(x[0], v),
    compiled(lambda x, v: np.convolve(v, x[1, :3], "same")),
    lambda x, v: np.correlate(v, x[2, :2], "same"),
    lambda x, v: np.correlate(x[0], v[:3]),
    lambda x, v: np.correlate(v[:2], x[0, :5], "same"),      # the longer second: NumPy swaps
    lambda x, v: np.trapezoid(x, axis=0).sum() + np.trapezoid(x, np.cumsum(np.arange(1.0, 7.0))),
    lambda x, v: np.add.accumulate(x) * np.multiply.accumulate(x, axis=1),
    # predicates and pieces
    lambda x, v: np.sinc(x),
    lambda x, v: np.where(np.isclose(x, x[0]), x, 0),
    lambda x, v: np.select([x > 0.5, x < -0.5], [x, v[0]]),
    lambda x, v: np.heaviside(x, 0.5) * x,
    # rounding, units, NaN-ignoring extremes, predicates
    lambda x, v: np.round(x, 2) + x,
    compiled(lambda x, v: np.round(x * 100, -1) + x),
    lambda x, v: x.round(1) * x,
    lambda x, v: np.deg2rad(x) + np.rad2deg(v).sum(),
    compiled(lambda x, v: np.fmax(x, np.where(x > 0.5, np.nan, 0.25))),
    lambda x, v: np.fmin(np.where(x > 0, x, np.nan), x[0]),
    lambda x, v: np.where(np.isinf(np.where(x > 0, x, -np.inf)), v[0], x),
    lambda x, v: np.where(np.logical_xor(x > 0, x < 0.5), x, v[1]),
]

DTYPE_CASES = [   # result types (values only: float32 and bools have no useful gradient check)
    lambda x, v: np.nan_to_num(np.where(x > 1, np.inf, np.where(x < 0.2, -np.inf, np.where(
        x < 0.4, np.nan, x)))),
    lambda x, v: np.nan_to_num(np.where(x > 1, np.inf, np.where(x < 0.2, -np.inf, np.where(
        x < 0.4, np.nan, x))).astype(np.float32), nan=-1.0, posinf=2.0, neginf=-2.0),
    lambda x, v: np.nan_to_num((x > 1).astype(np.int8)),
    lambda x, v: (np.var(x, axis=0, ddof=5), np.std(x, ddof=24), np.var(x, ddof=30)),   # inf
    lambda x, v: np.min((x * 10).astype(np.int8), axis=0, initial=-3, where=x > 0),
    lambda x, v: np.max(x > 0, axis=1, initial=True) & np.min(x > 0, axis=1, initial=False),
    lambda x, v: np.sum((x > 0).astype(np.int16), initial=np.int16(3)),
    lambda x, v: np.searchsorted(np.sort(v), x),
    lambda x, v: np.searchsorted(np.concatenate([np.sort(v), [np.nan]]),
                                 np.where(x > 1, np.nan, x), side="right"),    # nan last
    lambda x, v: np.searchsorted(np.concatenate([np.sort(v), [np.nan]]),
                                 np.where(x > 1, np.nan, x)),
    lambda x, v: np.interp(x.astype(np.float32), np.float32([0, 1]), np.float32([1, 3])),  # f8
    lambda x, v: np.nan_to_num(np.where(x > 1, np.nan, x).astype(np.float32), nan=np.float64(3)),
    lambda x, v: np.linalg.norm(x.astype(np.float32), ord=np.float64(3), axis=1),   # float32
    lambda x, v: np.linalg.norm(x[:0], ord=np.inf, axis=0) + np.linalg.norm(v[:0], np.inf),
    lambda x, v: np.linalg.norm(x[:, :0], ord=1) + np.linalg.norm(x[:0], ord=np.inf),
    lambda x, v: np.linalg.norm(x.reshape(2, 3, 4), keepdims=True),     # every element
    lambda x, v: np.hstack([x[0], [1.0, 2.0]], dtype=np.float32),
    lambda x, v: np.tril(x > 0),
    lambda x, v: np.linalg.norm(x > 0, axis=1),         # float64, as NumPy's norm
    lambda x, v: np.logaddexp.reduce((x > 0).astype(np.int16), axis=0),     # float32
    lambda x, v: np.add.reduce(x, axis=1, dtype=np.float32),
    lambda x, v: np.add.reduce((x * 50).astype(np.int8), axis=0, dtype=np.int8),   # wraps
    lambda x, v: np.concatenate([x, x], dtype=np.int64, casting="unsafe"),
    lambda x, v: np.split(x, []),                       # one piece; empty counts
    lambda x, v: np.tile(x, ()),
    lambda x, v: np.argmax(x[0, 0], axis=-1),           # a 0-d array's one axis
    lambda x, v: np.round((x * 100).astype(np.int16), -1),     # integers: to tens, in int16
    lambda x, v: np.floor((x * 10).astype(np.int8)),            # integers are their own floor
    lambda x, v: np.ceil(x > 0),
    lambda x, v: np.deg2rad((x * 10).astype(np.int16)),         # float32
    lambda x, v: np.arctan2((x * 10).astype(np.int8), x.astype(np.float32)),
    lambda x, v: np.hypot((x * 100).astype(np.int16), (x * 10).astype(np.int8)),   # float32
    lambda x, v: np.fmax((x * 10).astype(np.int32), 3),
    lambda x, v: np.cumsum(x > 0, axis=1),                      # int64
    lambda x, v: np.cumsum(np.abs(x * 10).astype(np.uint8)),    # uint64, flattened
    lambda x, v: np.cumsum((x * 50).astype(np.int8), axis=0, dtype=np.int8),   # wraps
    lambda x, v: np.cumsum(x[0, 0], axis=0),                    # a 0-d array's is 1-d
    lambda x, v: np.cumsum(x.astype(np.float32), axis=-1),      # NumPy's order: equal bits
    lambda x, v: np.diff(x > 0, axis=0),                        # not_equal
    lambda x, v: np.median((x * 10).astype(np.int16), axis=1),   # float64
    lambda x, v: np.median(x > 0),                               # float64
    lambda x, v: np.quantile((x * 10).astype(np.int64), 0.5, method="lower"),   # int64
    lambda x, v: np.quantile(x.astype(np.float32), 0.3),        # a Python q keeps float32
    lambda x, v: np.quantile(x.astype(np.float32), [0.3]),      # a list: float64
    lambda x, v: np.quantile((x * 10).astype(np.int8), 1),      # an integer q takes elements
    lambda x, v: np.median(np.where(x > 1, np.nan, x), axis=1),  # nan where a row has one
    lambda x, v: np.sort(x > 0, axis=None),
    lambda x, v: np.argsort(np.round(x), axis=1, kind="stable"),   # ties keep their order
    # found in review: a Python number with integers or booleans is float64 (NEP 50)
    lambda x, v: np.arctan2((x * 10).astype(np.int8), 2.5),
    lambda x, v: np.hypot(x > 0, 2),
    lambda x, v: np.logaddexp((x * 10).astype(np.int8), 0.5),
    lambda x, v: np.cumsum(x > 0.5, axis=1, dtype=bool),        # a running logical or
    lambda x, v: _rounded_past_float64(x),                       # 10**309 is inf: nan, as NumPy
    lambda x, v: np.logical_xor(x[0] > 0, [True, False, True, False, True, False]),
    lambda x, v: round(x[0, 0], 2) * x,                          # a NumPy scalar's round
    lambda x, v: np.prod((x * 3).astype(np.int16), axis=0),     # int64, as np.sum
    lambda x, v: np.cumprod((x * 50).astype(np.int8), axis=1, dtype=np.int8),   # wraps
    lambda x, v: (np.prod(x > 0, axis=1), np.prod(x[:, :0], axis=1)),   # int64; empty: 1.0
    lambda x, v: np.cumprod(np.where(x > 0, -0.0, x), axis=1),  # signs of zeros, as NumPy
    lambda x, v: (np.prod(x, axis=0, dtype=bool), np.cumprod(x > 0, axis=1, dtype=bool)),   # and
    lambda x, v: np.convolve((x[0] * 5).astype(np.int8), (v * 5).astype(np.int8), "valid"),
    lambda x, v: np.add.accumulate((x * 50).astype(np.int8)),   # int64, as np.cumsum
    lambda x, v: np.count_nonzero(x > 0, axis=1),               # int64
    lambda x, v: (np.any(x > 2, axis=0), np.all(x > -3), x.any(), (x > 0).all(axis=1)),
    lambda x, v: (np.all(x[:, :0], axis=1), np.any(x[:, :0], axis=1)),   # True, False
    lambda x, v: np.allclose(x, x + 1e-9),
    lambda x, v: np.isclose((x * 10).astype(np.int64), 3),     # float64
    lambda x, v: np.trace((x * 10).astype(np.int8)),            # int64, as np.sum
    lambda x, v: np.nanmax((x * 10).astype(np.int16), axis=0),
    lambda x, v: np.average((x * 10).astype(np.int16), axis=0, weights=np.arange(4)),
    lambda x, v: np.cov((x * 10).astype(np.int8)),              # float64
    lambda x, v: np.heaviside((x * 10).astype(np.int8), 0.5),   # float64: a Python float
    lambda x, v: np.diag(x[0] > 0, 2),                          # bool
    lambda x, v: (np.linalg.det((x[:3, :3] * 3).astype(np.int64)), *np.linalg.slogdet(x[:3, :3] > 0)),
    lambda x, v: (np.linalg.eigvalsh((x[:3, :3] * 3).astype(np.int64)),
                  np.linalg.eigh((x[:3, :3] + x[:3, :3].T).astype(np.float32)).eigenvalues,
                  np.linalg.cholesky((x @ x.T + np.eye(4)).astype(np.float32))),
    # found in review: NumPy's divisor for cov, q's float type, sinc of integers
    lambda x, v: (np.cov(x[:2, :3], ddof=4), np.cov(x[:2, :0])),    # inf; nan
    lambda x, v: np.quantile(x.astype(np.float32), np.float32(0.3), method="midpoint"),
    lambda x, v: np.sinc((x * 3).astype(np.int8)),              # float64
]


def _rounded_past_float64(x):
    with np.errstate(invalid="ignore"):     # x * inf / inf
        return np.round(x, 309)


def _values():
    rng = np.random.default_rng(0)
    return rng.normal(size=(4, 6)), rng.normal(size=5)


def _same(got, want, where, rtol=1e-12):
    got, want = (got, want) if isinstance(want, (list, tuple)) else ([got], [want])
    assert len(got) == len(want), where
    for g, w in zip(got, want):
        w = np.asarray(w)        # np.allclose gives a Python bool; graphc a 0-d array
        assert g.shape == w.shape and g.dtype == w.dtype, where
        np.testing.assert_allclose(g, w, rtol=rtol, err_msg=where)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"line{c.__code__.co_firstlineno}")
def test_values_equal_numpys_and_gradients_central_differences(case):
    x, v = _values()
    _same(gc.jit(case).interpret(x, v), case(x, v), "value")

    def loss(x, v):      # every piece counts, each with its own weight
        out = case(x, v)
        pieces = out if isinstance(out, list) else [out]
        return sum(np.sum(np.sin(p) * (k + 1)) for k, p in enumerate(pieces))

    api.check_grad_values(loss, (x, v), gc.grad(loss, argnums=(0, 1)).interpret(x, v), (0, 1))


@pytest.mark.parametrize("case", DTYPE_CASES, ids=lambda c: f"line{c.__code__.co_firstlineno}")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # edge cases warn in NumPy too
def test_result_types_equal_numpys(case):
    x, v = _values()
    _same(gc.jit(case).interpret(x, v), case(x, v), "value", rtol=1e-6)


def test_compiled_equals_the_interpreter():
    x, v = (a.astype(np.float32) for a in _values())     # float32, as models use them
    f = gc.jit(lambda x, v: [case(x, v) for case in COMPILED])
    for case, got, want in zip(COMPILED, f(x, v), f.interpret(x, v)):
        # float32 sums may add in another order: an ulp or so
        _same(got, want, f"line {case.__code__.co_firstlineno}", rtol=1e-6)


ARG_EXTREMES = [   # ties, nan (its first index wins), keepdims, axis None, ints and bools
    lambda x: np.argmax(x, axis=1),
    lambda x: np.argmin(x, axis=1),
    lambda x: x.argmax(),
    lambda x: x.argmin(axis=0),
    lambda x: np.argmax(x, axis=0, keepdims=True),
    lambda x: np.argmax(x, keepdims=True),
    lambda x: np.argmax(x[2].astype(np.int64)),
    lambda x: np.argmin(x[0] > 1),
]


def _ops_of(fn, *args):
    return {d["node"].op for d in gc.trace(fn, *args).nx.nodes.values()}


def test_windows_over_axes_in_order_are_one_gather(monkeypatch):
    swv = np.lib.stride_tricks.sliding_window_view
    x = np.random.default_rng(0).normal(size=(2, 5, 6))

    def windows(x):
        return swv(x, (3, 2), axis=(1, 2))
    assert "take" in _ops_of(windows, x) and "concatenate" not in _ops_of(windows, x)
    channels_last = np.random.default_rng(1).normal(size=(2, 5, 6, 3))   # an axis after them
    assert "take" in _ops_of(windows, channels_last)
    assert "concatenate" not in _ops_of(windows, channels_last)
    np.testing.assert_array_equal(gc.jit(windows)(channels_last), windows(channels_last))
    assert "concatenate" in _ops_of(lambda x: swv(x, (2, 2), axis=(2, 1)), x)   # out of order
    f = gc.jit(windows)
    gathered = f(x)
    monkeypatch.setattr(composites, "WINDOW_INDICES_MAX", 3 * 5 * 3 * 2 - 1)   # one too many
    assert "take" not in _ops_of(windows, x)
    stacked = gc.jit(windows)(x)
    np.testing.assert_array_equal(gathered, swv(x, (3, 2), axis=(1, 2)))
    np.testing.assert_array_equal(stacked, gathered)


WINDOWS_WITH_ROWS = [   # (input shape, window_shape, axis): the axes after the windowed ones hold 8+
    ((2, 5, 6, 8), (3, 2), (1, 2)),      # an image's channels
    ((5, 3, 6, 8), (2, 3), (0, 2)),      # an axis between the windowed ones
    ((2, 6, 4, 2), (3,), (1,)),          # two axes after
]


@pytest.mark.parametrize("shape, window, axis", WINDOWS_WITH_ROWS)
def test_windows_over_channels_equal_numpys_with_their_gradient(shape, window, axis):
    swv = np.lib.stride_tricks.sliding_window_view
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape)
    weights = rng.normal(size=swv(x, window, axis=axis).shape)

    def f(x):
        return swv(x, window, axis=axis)
    assert "take" in _ops_of(f, x) and "transpose" in _ops_of(f, x)     # channels as rows
    np.testing.assert_array_equal(gc.jit(f)(x), f(x))
    np.testing.assert_array_equal(gc.jit(f).interpret(x), f(x))
    grad = gc.grad(lambda x: np.sum(f(x) * weights))(x)
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        hi, lo = x.copy(), x.copy()
        hi[i] += 1e-6
        lo[i] -= 1e-6
        numeric[i] = (np.sum(f(hi) * weights) - np.sum(f(lo) * weights)) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-7)


def test_a_convolution_as_einsum_over_windows_copies_no_windows():
    """The windows' channels are taken as rows (vectors), and the einsum reads
    them in that order: no transpose is left in the step, forward or backward.
    Fewer channels than WINDOW_ROWS_MIN keep the one-element-per-index gather
    and NumPy's order; then the kernel is copied into that order (and its
    gradient back)."""
    swv = np.lib.stride_tricks.sliding_window_view
    rng = np.random.default_rng(3)

    def loss(k, h):
        return np.sum(np.einsum("bijckl,klcd->bijd", swv(h, (3, 3), axis=(1, 2)), k) ** 2)
    for channels in (composites.WINDOW_ROWS_MIN, composites.WINDOW_ROWS_MIN - 1):
        h, k = rng.normal(size=(2, 5, 6, channels)), rng.normal(size=(3, 3, channels, 4))
        step = gc.jit(gc.value_and_grad(loss, argnums=(0, 1)))
        graph = step.lower(k, h).optimized
        transposed = [n.size for n in graph.topo() if n.op == "transpose"]
        take = next(n for n in graph.topo() if n.op == "take")
        if channels >= composites.WINDOW_ROWS_MIN:     # k too is read as stored, (k, l, c, d)
            assert take.shape[-1] == channels and not transposed
        else:       # the windows in NumPy's order, (c, k, l): k and its gradient copied
            assert take.shape[-1] == 3 and transposed == [k.size, k.size]
        value, grads = step(k, h)
        want, want_grads = step.interpret(k, h)
        np.testing.assert_allclose(value, want, rtol=1e-12)
        for g, w in zip(grads, want_grads):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_argmax_and_argmin_pick_numpys_index():
    x = np.array([[1.0, 3.0, 3.0, 0.0], [np.nan, 2.0, np.nan, 5.0], [-1.0, -1.0, -2.0, -2.0]])
    f = gc.jit(lambda x: [case(x) for case in ARG_EXTREMES])
    for run, how in ((f, "compiled"), (f.interpret, "interpreted")):
        for case, got in zip(ARG_EXTREMES, run(x)):
            want = case(x)
            where = f"line {case.__code__.co_firstlineno}, {how}"
            assert got.dtype == want.dtype and got.shape == want.shape, where
            np.testing.assert_array_equal(got, want, err_msg=where)
    # an accuracy beside a loss, as models report it
    acc = gc.jit(lambda x, y: np.mean(np.argmax(x, axis=1) == y))(x, np.array([1, 0, 2]))
    assert float(acc) == 2 / 3


def test_the_mean_of_an_empty_slice_is_nan_with_numpys_warning():
    # found writing a convolution whose output length came out 0: it raised
    x = np.ones((3, 4))
    f = gc.jit(lambda x: (np.mean(x[:, :0], axis=1), np.mean(x[:0], axis=0, keepdims=True)))
    with pytest.warns(RuntimeWarning, match="Mean of empty slice") as caught:
        got = f(x)
    assert {w.filename for w in caught} == {__file__}     # the line of the mean
    np.testing.assert_array_equal(got[0], np.full(3, np.nan))
    np.testing.assert_array_equal(got[1], np.full((1, 4), np.nan))


def test_isnan_and_isfinite():
    x = np.array([0.0, -np.inf, np.nan, 3e38, np.inf], np.float32)
    n = np.arange(3)
    f = gc.jit(lambda x, n: (np.isnan(x), np.isfinite(x), np.isnan(n), np.isfinite(n)))
    for got, want in zip(f(x, n), (np.isnan(x), np.isfinite(x), np.isnan(n), np.isfinite(n))):
        assert got.dtype == np.bool_
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("call, error, message", [
    (lambda x: np.split(x, 5, axis=1), ValueError, "an axis of 6 does not divide into 5"),
    (lambda x: np.split(x, 0), ValueError, "number of sections must be larger than 0"),
    (lambda x: np.vsplit(x[0], 2), ValueError, "vsplit only works on arrays of 2 or more"),
    (lambda x: np.linalg.norm(x, 3), ValueError, r"Invalid norm order for matrices"),
    (lambda x: np.inner(x, x.T), ValueError, r"np.inner: shapes \(4, 6\) and \(6, 4\) not aligned"),
    (lambda x: np.vdot(x, x[0]), ValueError, "np.vdot: a has 24 elements and b 6"),
    (lambda x: np.linalg.outer(x, x[0]), ValueError, "np.linalg.outer: both arguments must be 1-d"),
    (lambda x: np.linalg.matrix_power(x, 2), ValueError, "Last 2 dimensions of the array must be"),
    (lambda x: np.linalg.matrix_power(x[:, :4], 1.5), TypeError, "exponent must be an integer"),
    (lambda x: np.fill_diagonal(x[0], 1.0), ValueError, "array must be at least 2-d"),
    (lambda x: np.zeros_like(x, order="F"), gc.UnsupportedOpError,
     r"np.zeros_like\(order='F'\) is not supported"),
    (lambda x: np.linalg.solve(x[:, :4], x[0]), ValueError,
     r"np.linalg.solve: a is \(4, 4\) and b \(6,\): b's length must be 4"),
    (lambda x: np.linalg.solve(np.stack([x[:4, :4]] * 2), np.ones((3, 4, 1))), gc.ShapeError,
     r"their stacks \(2,\) and \(3,\) do not broadcast together"),
    (lambda x: np.linalg.norm(x[0], "fro"), ValueError, r"Invalid norm order 'fro' for vectors"),
    (lambda x: np.linalg.norm(x[0, 0], 1), ValueError, "improper number of dimensions"),
    (lambda x: np.searchsorted(x, x), ValueError, "np.searchsorted: a must be 1-d"),
    (lambda x: np.searchsorted(x[0], x, side="middle"), ValueError, "side must be 'left' or"),
    (lambda x: np.searchsorted(x[0], x, sorter=np.arange(6)), gc.UnsupportedOpError,
     r"np.searchsorted\(sorter=\) is not supported"),
    (lambda x: np.interp(x, x[0], x[1, :5]), ValueError, "xp and fp must be 1-d, of one"),
    (lambda x: np.add.at(np.zeros(3), [0], x[0, 0]), gc.UnsupportedOpError,
     "np.add.at into a NumPy array of a traced value"),
    (lambda x: np.add.at(x.astype(np.int64), [0], 1), gc.UnsupportedOpError,
     "np.add.at into a int64 array is not supported"),
    (lambda x: np.pad(x, 1, mode="mean"), gc.UnsupportedOpError, r"np.pad\(mode='mean'\)"),
    (lambda x: np.pad(x, 4, mode="reflect"), gc.UnsupportedOpError, "wider than the axis"),
    (lambda x: np.repeat(x, [1, 2, 1, 1], axis=0), gc.UnsupportedOpError, "a count per element"),
    (lambda x: np.lib.stride_tricks.sliding_window_view(x, 7, axis=1), ValueError,
     "window 7 does not fit an axis of 6"),
    (lambda x: np.reciprocal(x.astype(np.int64)), gc.UnsupportedOpError, "use 1 / x"),
    (lambda x: np.logaddexp.reduce(x, initial=5.0), gc.UnsupportedOpError,
     r"np.logaddexp.reduce\(initial=\) is not supported"),
    (lambda x: np.maximum.reduce(x, where=x > 0), gc.UnsupportedOpError,
     r"np.maximum.reduce\(where=\) is not supported"),
    (lambda x: np.pad(x, 1.5), TypeError, "pad_width must be integers"),
    (lambda x: np.pad(x, 1, constant_values=x[0, 0]), gc.UnsupportedOpError,
     "constant_values must be one number"),
    (lambda x: np.tile(x, -1), ValueError, "negative repetitions"),
    (lambda x: np.linalg.norm(x[None], axis=(0, 1, 2)), ValueError, "improper number of dim"),
    (lambda x: np.concatenate([x, x], dtype=np.int64), TypeError,
     "cannot cast float64 to int64 according to the rule 'same_kind'"),
    (lambda x: np.concatenate([x, x.astype(np.int64)], casting="no"), TypeError,
     "cannot cast int64 to float64 according to the rule 'no'"),
    (lambda x: np.argmax(x, axis=(1, 0)), TypeError, r"argmax: axis must be an integer"),
    (lambda x: np.sum(x, where=np.ones((2, 4, 6), bool)), ValueError,
     r"np.sum: where= must be a bool array that broadcasts to \(4, 6\)"),
    (lambda x: np.mean(x, axis=1, where=np.ones(4, bool)), ValueError,
     r"np.mean: where= must be a bool array that broadcasts to \(4, 6\), got bool\[4\]"),
    (lambda x: np.quantile(x, 0.5, method="weibull"), gc.UnsupportedOpError,
     r"np.quantile\(method='weibull'\) is not supported"),
    (lambda x: np.quantile(x, x[0, 0]), gc.UnsupportedOpError, "q must be known when tracing"),
    (lambda x: np.quantile(x, 1.5), ValueError, r"Quantiles must be in the range \[0, 1\]"),
    (lambda x: np.percentile(x, -1), ValueError, r"Percentiles must be in the range \[0, 100\]"),
    (lambda x: np.quantile(x[:, :0], 0.5, axis=1), IndexError, "quantile of an empty array"),
    (lambda x: np.quantile(x > 0, 0.5), TypeError, "numpy boolean subtract is not supported"),
    (lambda x: np.sort(x, order="f"), gc.UnsupportedOpError, r"np.sort\(order=\)"),
    (lambda x: np.cov(x, fweights=np.ones(6)), gc.UnsupportedOpError, r"np.cov\(fweights="),
    (lambda x: np.cross(x[:3], x[:3], axis=0), gc.UnsupportedOpError, "np.cross over an axis"),
    (lambda x: np.diag(x[None]), ValueError, "Input must be 1- or 2-d"),
    (lambda x: np.average(x, weights=x[0]), TypeError, "Axis must be specified"),
    (lambda x: np.select([x > 0], [x, x]), ValueError, "list of cases must be same length"),
    (lambda x: np.sort(x[0, 0]), ValueError, "axis -1 is out of bounds for array of dimension 0"),
    (lambda x: np.linalg.inv(x), ValueError, "Last 2 dimensions of the array must be square"),
    (lambda x: np.linalg.det(x[0]), ValueError, "1-dimensional array given"),
    (lambda x: np.linalg.solve(x[:4, :4], x[:3]), ValueError, "b's second to last axis must be 4"),
    (lambda x: np.linalg.eigh(x[:4, :4], "X"), ValueError, "UPLO argument must be 'L' or 'U'"),
    (lambda x: np.linalg.cholesky(x), ValueError, "Last 2 dimensions of the array must be square"),
    (lambda x: np.convolve(x[0], x[1], "middle"), ValueError, "mode must be one of 'full'"),
    (lambda x: np.convolve(x, x[0]), ValueError, "convolve: both arguments must be 1-d"),
    (lambda x: np.diff(x, -1), ValueError, "diff: order must be non-negative but got -1"),
    (lambda x: np.diff(x, axis=None), TypeError, "diff: axis must be an integer, got None"),
    (lambda x: round(x, 2), TypeError, "ndarray doesn't define __round__ method; use np.round"),
    (lambda x: np.diff(x[0, 0]), ValueError, "diff requires input that is at least one dim"),
    (lambda x: np.cumsum(x, axis=2), ValueError, "axis 2 is out of bounds"),
    (lambda x: x[..., np.ones(4, bool)], IndexError,
     r"boolean index of shape \(4,\) does not match the indexed array's axes \(6,\)"),
    (lambda x: x[x > 0], gc.UnsupportedOpError, "traced boolean mask has a data-dependent"),
    (lambda x: np.max(x, where=x > 0), ValueError, r"np.max: where= .* needs initial="),
    (lambda x: np.min(x[:0], axis=0), ValueError, "^min of an empty array has no identity; pass"),
    (lambda x: np.min(x, where=x > 0), ValueError, r"^np.min: where= .* the minimum has no"),
    (lambda x: np.min(x, initial=0, where=x[:, 0] > 0), ValueError, r"^np.min: where= must be"),
    (lambda x: x.transpose(0, 3), ValueError, "transpose: axis 3 is out of bounds"),
    (lambda x: x.transpose(-3, 0), ValueError, "transpose: axis -3 is out of bounds"),
    (lambda x: x.transpose(0, -2), ValueError, r"transpose: repeated axis in \(0, -2\)"),
    (lambda x: x.transpose(1, 0, 2), ValueError,
     r"axes \(1, 0, 2\) are not a permutation of the 2 axes of \(4, 6\)"),
    (lambda x: np.swapaxes(x, 0, 2), ValueError, "swapaxes: axis 2 is out of bounds"),
    (lambda x: np.moveaxis(x, 3, 0), ValueError, "moveaxis: axis 3 is out of bounds"),
    (lambda x: np.moveaxis(x, [0, 1], 0), ValueError, "need as many axes, got 2 and 1"),
    (lambda x: np.round(x.astype(np.int64), -1, out=x), gc.UnsupportedOpError,
     r"np.round\(out=\) is not supported"),
])
def test_refusals_name_the_problem_and_the_line(call, error, message):
    with pytest.raises(error, match=message) as e:
        gc.trace(call, _values()[0])
    assert "test_composites.py:" in str(e.value)


_X3, _Y3, _M3 = (np.random.default_rng(3).normal(size=shape) for shape in
                 ((2, 3, 4), (2, 3, 4), (3, 3)))


def _filled_diagonals(x):
    a = x[0].copy()
    np.fill_diagonal(a, 7.0)
    b = np.zeros_like(x[0])
    np.fill_diagonal(b, x[1, 0, :3])
    return a + b


ARRAY_API = [       # NumPy 2's np.linalg names, and the *_like functions' shape=
    lambda x: np.linalg.matmul(x, np.swapaxes(x, -1, -2)),
    lambda x: np.linalg.outer(x[0, 0], x[1, 1]),
    lambda x: np.linalg.vecdot(x, _Y3) + np.vecdot(x, _Y3),
    lambda x: np.linalg.vecdot(x > 0, _Y3 < 1),                        # bools: a bool
    lambda x: np.linalg.vecdot(x, _Y3, axis=1) + np.vecdot(x, _Y3, axis=-2),
    lambda x: np.linalg.matrix_transpose(x) + np.matrix_transpose(x),
    lambda x: np.linalg.trace(x) + np.linalg.trace(x, offset=1),
    lambda x: np.linalg.diagonal(x, offset=-1),
    lambda x: np.linalg.cross(x[..., :3], _Y3[..., :3]),
    lambda x: np.linalg.cross(x[:, :, 0], _Y3[:, :, 1], axis=1),
    lambda x: np.linalg.tensordot(x, _Y3, axes=([1, 2], [1, 2])),
    lambda x: np.linalg.multi_dot([x[0, :, 0], x[0, :, :3], _M3, x[1, :, 0]]),
    lambda x: np.linalg.matrix_power(x[:, :3, :3], 5) + np.linalg.matrix_power(x[:, :3, :3], 0),
    lambda x: np.linalg.matrix_power(x[0, :3, :3] + 3 * np.eye(3), -2),
    lambda x: np.zeros_like(x, shape=(3, 3)) + np.full_like(x, 2.0, shape=3) + x[0, :, :3],
    lambda x: np.ones_like(x, order="C", dtype=np.float32) * 0 + np.empty_like(x, shape=4) * 0,
    _filled_diagonals,
]


def test_numpy_2_linalg_names_and_like_shapes_equal_numpy_with_their_gradients():
    got = gc.jit(lambda x: [f(x) for f in ARRAY_API])(_X3)
    for f, value in zip(ARRAY_API, got):
        want = f(_X3)
        assert value.shape == want.shape and value.dtype == want.dtype
        np.testing.assert_allclose(value, want, rtol=1e-10, atol=1e-12)
    weights = [np.random.default_rng(4).normal(size=np.shape(f(_X3))) for f in ARRAY_API]
    gc.check_grad(lambda x: sum(np.sum(w * f(x)) for w, f in zip(weights, ARRAY_API)), _X3)


def test_products_and_norms_over_an_axis_of_size_0_are_numpys():
    fs = [lambda x: np.linalg.vector_norm(x, axis=1), lambda x: np.linalg.vector_norm(x.T, axis=0),
          lambda x: np.inner(x.T[:2], x.T), lambda x: np.vdot(x, x)]
    x = np.zeros((0, 3))
    for f, got in zip(fs, gc.jit(lambda x: [f(x) for f in fs])(x)):
        want = f(x)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_degrees_and_radians_scale_by_numpys_float32_ratio():
    x = np.array([1.0, 0.3, -2.5, 1e-3], np.float32)
    f = gc.jit(lambda x: (np.rad2deg(x), np.deg2rad(x)))
    for got, want in zip(f(x), (np.rad2deg(x), np.deg2rad(x))):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_arctan2_and_hypot_gradients_stay_finite_for_tiny_arguments():
    """The numerators are multiplied in first: 1 / (x^2 + y^2) alone
    overflows float32 below 5e-20, where the slopes are finite."""
    x = np.array([3e-20, 1e-19], np.float32)
    slope = gc.grad(lambda a: np.sum(np.arctan2(a, x)))(x)      # x / (2 x^2) = 1 / (2 x)
    np.testing.assert_allclose(slope, 1 / (2 * x.astype(np.float64)), rtol=1e-5)
    np.testing.assert_allclose(gc.grad(lambda a: np.sum(np.hypot(a, a)))(x), np.sqrt(2),
                               rtol=1e-5)


def test_running_sums_and_products_keep_numpys_signed_zeros():
    x = np.array([-0.0, -0.0, 1.0, -0.0])
    f = gc.jit(lambda x: (np.cumsum(x), np.cumprod(x[:2]), np.cumsum(x[::-1])))
    for got, want in zip(f(x), (np.cumsum(x), np.cumprod(x[:2]), np.cumsum(x[::-1]))):
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def _assigned_by_slices(x, v):
    y = x * 2
    y[1:3, ::2] = 7.0
    y[0] = v[:1] * np.arange(6.0)
    y[[3, 3], [0, 1]] = x[0, :2]          # a repeated position: the last value, as NumPy
    y[..., -1] = x[:, 0] * 3
    return y


def _assigned_by_masks(x, v):
    y = x + 0
    y[y < 0] = 0.0                        # a traced mask of y's shape, one value
    y[:, np.arange(6) % 2 == 0] = v[0]    # a NumPy mask of the last axis
    return y


def _assigned_nowhere_and_broadcast(x, v):
    y = x + 0
    y[2:2] = 5.0                          # an empty selection: nothing changes
    y[:, :3] = np.ones((1, 1, 3))         # NumPy drops the value's leading 1s
    y[:2, 0] = [y[0, 1], y[1, 1]]         # a list of traced values
    return y


def _assigned_into_zeros_like(x, v):
    h = np.zeros_like(x)
    h[:, 0::2] = np.sin(x[:, 0::2])
    h[:, 1::2] = np.cos(x[:, 1::2])
    c = np.copy(h)
    c[0] = 0.0                            # a copy's assignment reaches only the copy
    return h + 2 * c


def _assigned_beside_views(x, v):
    y = x + 0
    first, rest, odd = y[:, 0], y[1:, 3:], y[::2, 1::2]     # views that keep their values:
    y[:, 2] = v[0]                                          # neither assignment reaches them
    y[0, -2] = 7.0
    return y + first[:, None] * 2 + np.sum(rest * 3) - np.sum(odd ** 2)


@pytest.mark.parametrize("fn", [_assigned_by_slices, _assigned_by_masks, _assigned_into_zeros_like,
                                _assigned_nowhere_and_broadcast, _assigned_beside_views])
def test_assignment_into_traced_arrays_is_numpys(fn):
    """x[key] = value makes x the updated array; gradients flow to what stays
    and to the values assigned."""
    x, v = _values()
    _same(gc.jit(fn).interpret(x, v), fn(x.copy(), v.copy()), "value")

    def loss(x, v):
        return np.sum(np.sin(fn(x, v)) * np.arange(1.0, 7.0))

    api.check_grad_values(loss, (x, v), gc.grad(loss, argnums=(0, 1)).interpret(x, v), (0, 1))


def test_assignment_compiles():
    x, v = _values()
    f = gc.jit(lambda x, v: (_assigned_by_slices(x, v), _assigned_by_masks(x, v)))
    for got, want in zip(f(x, v), f.interpret(x, v)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_assignment_of_slices_holds_no_constant_of_the_arrays_size():
    """An RNN's h_all[:, t] = h in a loop: per-axis constants, not one of the
    whole array per step (only the zeros it starts from)."""
    def rnn(x):
        states = np.zeros_like(x)
        h = x[:, 0] * 0
        for t in range(x.shape[1]):
            h = np.tanh(h + x[:, t])
            states[:, t] = h
        return states

    x, _ = _values()
    graph = gc.trace(rnn, x)
    big = [n for n in graph.topo() if n.op == "const" and n.size >= x.size]
    assert len(big) == 1
    np.testing.assert_allclose(gc.jit(rnn).interpret(x), rnn(x), rtol=1e-15)


def test_eigenvalue_gradients_where_eigenvalues_are_equal():
    """Equal eigenvalues leave the eigenvectors free; a loss of the eigenvalues
    alone still has its gradient (the trace's is I), with no nan from the
    pairs' 1 / (w[j] - w[i]), compiled as interpreted."""
    # (the interpreter: test_ops checks the compiled eigh gradient against it)
    g = gc.jit(gc.grad(lambda a: np.sum(np.linalg.eigvalsh(a) * np.array([1.0, 2.0, 3.0]))))
    got = g.interpret(np.diag([2.0, 2.0, 5.0]))
    np.testing.assert_allclose(got[2], [0, 0, 3], atol=1e-12)
    assert np.all(np.isfinite(got))
    trace = gc.jit(gc.grad(lambda a: np.sum(np.linalg.eigvalsh(a))))
    np.testing.assert_allclose(trace.interpret(3 * np.eye(3)), np.eye(3), atol=1e-12)

    # a loss using the eigenvectors of equal eigenvalues gets nan there (as in
    # JAX and PyTorch), even one that does not depend on their choice: this
    # one is sum(W * a @ a), whose slope eigh's cotangents cannot tell
    W = np.arange(9.0).reshape(3, 3)
    g = gc.jit(gc.grad(lambda a: (lambda w, v: np.sum(W * ((v * w ** 2) @ v.T)))(*np.linalg.eigh(a))))
    assert np.isnan(g(np.eye(3))).any() and np.isnan(g.interpret(np.eye(3))).any()
    apart = np.diag([2.0, 2.5, 5.0])
    slope = W @ apart + apart @ W                           # of sum(W * a @ a) at a diagonal a
    np.testing.assert_allclose(g(apart), (slope + slope.T) / 2, rtol=1e-12)   # the symmetric one


def test_eigh_reads_only_its_triangle_and_takes_lowercase_uplo():
    lower = np.array([[2.0, np.nan], [1.0, 3.0]])      # NumPy never reads the nan
    f = gc.jit(lambda a: np.linalg.eigvalsh(a) + np.linalg.eigvalsh(a.T, "u"))
    np.testing.assert_allclose(f(lower), 2 * np.linalg.eigvalsh(lower), rtol=1e-14)


def _basic_keys(n_axes_at_most=2, shape=(4, 5)):
    def entry(n):
        return st.one_of(st.integers(-n, n - 1), st.builds(
            slice, st.none() | st.integers(-n - 1, n + 1), st.none() | st.integers(-n - 1, n + 1),
            st.none() | st.sampled_from([1, 2, 3, -1, -2])))
    return st.integers(0, n_axes_at_most).flatmap(
        lambda k: st.tuples(*(entry(n) for n in shape[:k])))


@settings(max_examples=300, deadline=None)
@given(_basic_keys(), _basic_keys())
def test_a_view_is_kept_exactly_when_an_assignment_misses_it(key_a, key_b):
    # graphc.assignment._disjoint against NumPy's own selections
    from graphc import assignment
    a, b = np.zeros((4, 5), bool), np.zeros((4, 5), bool)
    a[key_a], b[key_b] = True, True
    assert assignment._disjoint((4, 5), key_a, key_b) == (not (a & b).any())
