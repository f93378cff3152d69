"""log_softmax and softmax: the primitives, and the stable forms users write
by hand recognised as them (one kernel forward, a gradient without the max)."""
import numpy as np
import pytest
import scipy.special

import graphc as gc
from graphc import api, codegen, ops
from graphc import prims as P
from graphc.benchmarks.workloads import softmax_cross_entropy


def by_hand(x):
    """The stable log-softmax as users write it in NumPy."""
    z = x - np.max(x, axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def softmax_by_hand(x):
    """The stable softmax as users write it in NumPy (attention's)."""
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


BY_HAND = {"log_softmax": by_hand, "softmax": softmax_by_hand}
NN = {"log_softmax": gc.nn.log_softmax, "softmax": gc.nn.softmax}


def ops_of(graph):
    return [n["node"].op for n in graph.nx.nodes.values()]


def test_hand_written_log_softmax_becomes_one_op_and_its_gradient_skips_the_max():
    x = np.random.default_rng(0).normal(size=(5, 4))
    y = np.array([0, 3, 1, 2, 3])
    graph = gc.trace(gc.grad(softmax_cross_entropy), x, y)
    ops = ops_of(graph)
    assert ops.count("log_softmax") == 1
    assert "max" not in ops and "log" not in ops
    step = gc.jit(gc.grad(softmax_cross_entropy))
    assert sum(k.ops == ["log_softmax"] for k in step.inspect(x, y).kernels) == 1
    gc.check_grad(softmax_cross_entropy, x, y)


_NN_SHAPES = [(3, 7), (2, 63), (3, 64), (2, 4100)]     # see below
_SHAPES = [(1, 1), (3, 7), (2, 3, 5), (6,), (2, 63), (3, 64), (2, 2, 150), (2, 4100)]


# rows shorter than codegen.FLAT_SOFTMAX_BELOW (64) take exp in one flat loop, longer ones
# row by row (kernels/softmax.py: sums of more than SUM_BLOCK in blocks)
@pytest.mark.parametrize("op, shape", [("log_softmax", shape) for shape in _SHAPES] + [
    ("softmax", shape) for shape in [(1, 1), (3, 7), (2, 3, 5), (2, 33), (2, 63), (3, 64),
                                     (2, 4100)]])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_values_and_gradients_match_numpy_and_finite_differences(op, shape, dtype):
    rng = np.random.default_rng(1)
    x = (3 * rng.normal(size=shape)).astype(dtype)
    weights = rng.normal(size=shape)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-6, atol=2e-6)
    # gc.nn's code differs from the rewritten hand-written form's by a line
    # (a row of -inf): checked at one shape of each row form, where the hand-
    # written form's modules are shared with the other shapes of the same rank and form
    hand = BY_HAND[op]
    forms = (hand, lambda v: NN[op](v)) if shape in _NN_SHAPES else (hand,)
    for fn in forms:
        def loss(v):
            return np.sum(fn(v) * weights)
        # the value and the gradient from one compiled module (compile time)
        together = gc.jit(lambda v: (fn(v), gc.grad(loss)(v)))
        value, grad = together(x)
        np.testing.assert_allclose(value, hand(x), **tol)
        f = gc.jit(fn)
        np.testing.assert_allclose(value, f.interpret(x), **tol)
        # only the form for the traced row length is called: both are kernels.softmax;
        # in the value's own module (lower: its source, not compiled) and in this one
        short = shape[-1] < codegen.FLAT_SOFTMAX_BELOW
        for source in (f.lower(x).source, together.inspect(x).source):
            assert (f"softmax.{op}_short_rows(" in source,
                    f"softmax.{op}_long_rows(" in source) == (short, not short)
        np.testing.assert_allclose(grad, gc.jit(gc.grad(loss)).interpret(x), **tol)
        if dtype == np.float64 and x.size < 1000:   # wider: differences lose the digits
            api.check_grad_values(loss, (x,), (grad,), (0,))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("finite_peak", [True, False])
@pytest.mark.parametrize("n", [1, 3, 31, 32, 63, 64, 65, 130, 4097])
def test_both_kernel_forms_give_the_same_rows_at_any_length(n, finite_peak, dtype):
    # codegen picks the form by the length it traced; either must be right at
    # any length a later call brings (lanes or not, one sum block or more),
    # with a NaN in a row, rows of -inf and an inf
    from graphc.kernels import softmax
    rng = np.random.default_rng(n)
    x = (30 * rng.normal(size=(6, n))).astype(dtype)
    x[1, n // 2] = np.nan
    x[2, :] = -np.inf
    x[3, n - 1] = np.inf
    x[4, 0] = 200      # its other terms take the floor's branch (counted as 0)
    short, long = np.empty_like(x), np.empty_like(x)
    softmax.log_softmax_short_rows(x, short, np.empty(x.size, dtype), np.empty(6, dtype),
                                   finite_peak)
    softmax.log_softmax_long_rows(x, long, finite_peak)
    short_p, long_p = np.empty_like(x), np.empty_like(x)
    softmax.softmax_short_rows(x, short_p, np.empty(x.size, dtype), np.empty(6, dtype),
                               finite_peak)
    softmax.softmax_long_rows(x, long_p, finite_peak)
    with np.errstate(all="ignore"):
        want = ops.OPS["log_softmax"].impl(x, 1, finite_peak)
        want_p = ops.OPS["softmax"].impl(x, 1, finite_peak)
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    for got, expected in ((short, want), (long, want), (short_p, want_p), (long_p, want_p)):
        np.testing.assert_allclose(got, expected, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernels_floor_is_ops_exp_floor(dtype):
    # kernels/softmax.py cannot import graphc: it writes exp_floor's formula again
    from numba import njit
    from graphc.kernels import softmax
    floor = njit(lambda a: softmax._exp_floor(a))(np.empty(1, dtype))
    assert type(floor) is float and floor == ops.exp_floor(dtype)


@pytest.mark.parametrize("width", [10, 100])      # the flat exp loop and the row loop
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_confident_classifier_gets_no_subnormal_gradients(width, dtype):
    # The other classes' logits sit about 95 (float32) or 725 (float64) below
    # the label's: NumPy's softmax terms are subnormal there, and each one
    # would cost Intel CPUs a microcode assist in every step from then on.
    # graphc counts them as 0 (ops.exp_floor), a change far below the loss's
    # rounding and below the gradient's absolute tolerance here.
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(8, width)).astype(dtype)
    labels = rng.integers(0, width, size=8)
    logits[np.arange(8), labels] += 95.0 if dtype == np.float32 else 725.0
    f = gc.jit(gc.value_and_grad(softmax_cross_entropy))
    loss, grad = f(logits, labels)
    tiny = np.finfo(dtype).tiny
    assert not np.any((grad != 0) & (np.abs(grad) < tiny))
    with np.errstate(under="ignore"):
        probs = np.exp(by_hand(logits.astype(np.float64)))
        ref_grad = (probs - np.eye(width)[labels]) / 8
        assert np.any((probs > 0) & (probs < tiny))        # the case is the one meant
        np.testing.assert_allclose(loss, softmax_cross_entropy(logits, labels), rtol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=tiny)
    np.testing.assert_array_equal(grad, f.interpret(logits, labels)[1])


def test_a_peak_behind_stop_gradient_is_recognised_too():
    def f(x):
        z = x - P.stop_gradient(np.max(x, axis=-1, keepdims=True))
        return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    x = np.random.default_rng(5).normal(size=(4, 3))
    assert "log_softmax" in ops_of(gc.trace(gc.grad(lambda v: np.sum(f(v) ** 2)), x))
    np.testing.assert_allclose(gc.jit(f)(x), by_hand(x), rtol=1e-12)
    gc.check_grad(lambda v: np.sum(f(v) ** 2), x)


@pytest.mark.parametrize("op", ["log_softmax", "softmax"])
def test_an_empty_axis_is_a_shape_error(op):
    with pytest.raises(gc.ShapeError, match=f"^{op}: the axis is empty"):
        gc.jit(lambda v: NN[op](v))(np.ones((3, 0)))


def test_second_derivative_through_log_softmax():
    """d/dx of (grad . v): the gradient is itself made of differentiable ops."""
    rng = np.random.default_rng(2)
    x, v, w = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    inner = gc.grad(lambda x: np.sum(by_hand(x) * w))
    gc.check_grad(lambda x: np.sum(inner(x) * v), x)


@pytest.mark.parametrize("op", ["log_softmax", "softmax"])
@pytest.mark.parametrize("width", [3, 70])       # both sides of codegen.FLAT_SOFTMAX_BELOW
def test_rows_without_a_finite_peak_behave_as_numpy_and_scipy(width, op):
    inf, nan = np.inf, np.nan
    rows = np.array([[1.0, 2.0, 3.0], [-inf, -inf, -inf], [inf, 1.0, 0.0], [nan, 1.0, 0.0],
                     [-inf, 0.0, 1.0]])
    x = np.concatenate([rows, np.linspace(-1, 1, 5 * (width - 3)).reshape(5, -1)], axis=1)
    hand = BY_HAND[op]
    with np.errstate(all="ignore"):
        expected_by_hand = hand(x)
        expected_scipy = getattr(scipy.special, op)(x, axis=-1)
    np.testing.assert_array_equal(np.isnan(gc.jit(hand)(x)), np.isnan(expected_by_hand))
    np.testing.assert_allclose(gc.jit(hand)(x), expected_by_hand, rtol=1e-12)
    nn = gc.jit(lambda v: NN[op](v))(x)
    np.testing.assert_array_equal(np.isnan(nn), np.isnan(expected_scipy))
    np.testing.assert_allclose(nn, expected_scipy, rtol=1e-12)


@pytest.mark.parametrize("fn", [
    # over axis 0, not the last: not a log-softmax op
    lambda x: (x - x.max(axis=0, keepdims=True)) - np.log(
        np.sum(np.exp(x - x.max(axis=0, keepdims=True)), axis=0, keepdims=True)),
    # the peak of another array
    lambda x: (x - np.max(x * 2, axis=-1, keepdims=True)) - np.log(
        np.sum(np.exp(x - np.max(x * 2, axis=-1, keepdims=True)), axis=-1, keepdims=True)),
    # log of the sum of something else
    lambda x: (x - np.max(x, axis=-1, keepdims=True)) - np.log(
        np.sum(np.exp(x), axis=-1, keepdims=True)),
    # the peak without keepdims: broadcast along the rows, not the columns
    lambda x: (x - np.max(x, axis=-1)) - np.log(
        np.sum(np.exp(x - np.max(x, axis=-1)), axis=-1, keepdims=True)),
    # a sum over another axis than the peak
    lambda x: (x - np.max(x, axis=-1, keepdims=True)) - np.log(
        np.sum(np.exp(x - np.max(x, axis=-1, keepdims=True)), axis=0, keepdims=True)),
    # softmaxes: over axis 0; of another exp's sum; without the peak
    lambda x: np.exp(x - x.max(axis=0, keepdims=True)) / np.sum(
        np.exp(x - x.max(axis=0, keepdims=True)), axis=0, keepdims=True),
    lambda x: np.exp(x - x.max(axis=-1, keepdims=True)) / np.sum(
        np.exp(x), axis=-1, keepdims=True),
    lambda x: np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True),
], ids=["axis0", "other-peak", "other-sum", "peak-without-keepdims", "sum-over-axis0",
        "softmax-axis0", "softmax-other-sum", "softmax-without-peak"])
def test_look_alikes_are_not_rewritten(fn):
    x = np.random.default_rng(3).normal(size=(5, 5))

    def loss(v):
        return np.sum(fn(v) ** 2)
    graph = gc.trace(gc.grad(loss), x)
    assert "log_softmax" not in ops_of(graph) and "softmax" not in ops_of(graph)
    # the value and the gradient from one compiled module (compile time)
    value, grad = gc.jit(lambda v: (fn(v), gc.grad(loss)(v)))(x)
    np.testing.assert_allclose(value, fn(x), rtol=1e-12)
    api.check_grad_values(loss, (x,), (grad,), (0,))


def test_intermediates_the_user_also_returns_stay_correct():
    def f(x):
        z = x - np.max(x, axis=-1, keepdims=True)
        e = np.exp(z)
        total = np.sum(e, axis=-1, keepdims=True)
        logp = z - np.log(total)
        return np.sum(logp * 1.5) + np.sum(e ** 2) + np.sum((e / total) * total ** 2)
    x = np.random.default_rng(4).normal(size=(3, 6))
    assert {"log_softmax", "softmax"} <= set(ops_of(gc.trace(gc.grad(f), x)))
    np.testing.assert_allclose(gc.jit(f)(x), f(x), rtol=1e-12)
    gc.check_grad(f, x)


def test_hand_written_softmax_becomes_one_op_and_its_gradient_skips_the_max():
    """Attention's softmax: one kernel, and p * (g - sum(g * p)) for its gradient."""
    x = np.random.default_rng(6).normal(size=(2, 3, 5, 5))
    w = np.random.default_rng(7).normal(size=(2, 3, 5, 5))
    graph = gc.trace(gc.grad(lambda v: np.sum(softmax_by_hand(v) * w)), x)
    assert ops_of(graph).count("softmax") == 1
    assert not {"max", "exp", "eq"} & set(ops_of(graph))
    inspected = gc.jit(softmax_by_hand).inspect(x)
    assert [k.ops for k in inspected.kernels] == [["softmax"]]
    gc.check_grad(lambda v: np.sum(softmax_by_hand(v) * w), x)


def test_a_confident_long_row_sums_as_accurately_as_numpy():
    # long rows sum float32 exp terms in lanes; the peak's terms (exactly 1)
    # are counted apart, else each small term rounds against 1 in its lane
    x = np.full((1, 4096), -16.0, np.float32)
    x[0, 0] = 0
    exact = np.log1p(4095 * np.exp(-16.0))
    loss = gc.jit(lambda v, y: gc.nn.cross_entropy(v, y))(x, np.array([0]))
    with np.errstate(all="ignore"):
        numpy_error = abs(float(np.log(np.sum(np.exp(x - x.max()))) / exact - 1))
    assert abs(float(loss) / exact - 1) <= 1.5 * numpy_error


def test_a_sum_in_another_dtype_is_not_rewritten():
    """np.sum(e, dtype=np.float64) over float32 makes the result float64, as NumPy's."""
    def f(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        z = x - x.max(axis=-1, keepdims=True)
        total = np.sum(e, axis=-1, keepdims=True, dtype=np.float64)
        return e / total, z - np.log(total)
    x = np.random.default_rng(8).normal(size=(3, 4)).astype(np.float32)
    for got, expected in zip(gc.jit(f)(x), f(x)):
        assert got.dtype == expected.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=1e-6)
