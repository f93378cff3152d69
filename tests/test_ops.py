"""Registry-driven op tests: every primitive, values, compiled == interpreted,
float32 preservation and gradients against central finite differences."""
import re

import numpy as np
import pytest

import graphc as gc
from graphc import api, passes
from graphc.ops import OPS
from op_cases import CASES, make_arg


def _id(case):
    return "-".join(case.ops) + f"-{CASES.index(case)}"


def _args(case, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [make_arg(a, rng, dtype) for a in case.args]


def _reference(case, args):
    return (case.reference or case.fn)(*args)


def test_every_op_has_a_test_row():
    covered = {op for case in CASES for op in case.ops}
    missing = sorted(set(OPS) - covered)
    assert not missing, f"ops without a row in tests/op_cases.py: {missing}"
    unknown = sorted(covered - set(OPS))
    assert not unknown, f"rows name ops that do not exist: {unknown}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_traced_graph_uses_the_op(case):
    graph = gc.trace(case.fn, *_args(case))
    graph.verify()
    used = {n.op for n in graph.nx.nodes.values() for n in [n["node"]]}
    grad_ops = set()
    if case.grad and {"unslice", "scatter_add", "concat_piece"} & set(case.ops):   # gradients
        grad_fn = lambda *a: np.sum(case.fn(*a) ** 2)  # noqa: E731  (x-dependent, so not folded)
        graph = gc.trace(gc.grad(grad_fn), *_args(case))
        grad_ops = {n["node"].op for n in graph.nx.nodes.values()}
    if not set(case.ops) <= used | grad_ops:    # an op only a pass makes (cholesky_solve)
        used |= {n.op for n in passes.run(graph).topo()}
    assert set(case.ops) <= used | grad_ops


def _differentiable(case) -> tuple:
    return tuple(i for i, a in enumerate(case.args)
                 if case.grad and a.diff and not a.kind.startswith(("int", "bool")))


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_values_float32_and_gradients_match_numpy_and_finite_differences(case):
    """One compiled module per row, not one per check (a third of the
    compiles; about 0.2-0.4 s less compile time a row): the float64 values,
    against NumPy and the interpreter; the float32 values, whose type must be
    NumPy's; and the float64 gradient against central finite differences."""
    args, args32 = _args(case), _args(case, np.float32)
    nums = _differentiable(case)
    expected = np.asarray(_reference(case, args))
    # a random weighting makes the scalar loss see every output element
    weights = np.random.default_rng(1).normal(size=expected.shape)

    def loss(*a):
        return np.sum(case.fn(*a) * weights)

    def together(a64, a32):
        return (case.fn(*a64), case.fn(*a32) if case.f32 else (),
                gc.grad(loss, argnums=nums)(*a64) if nums else ())

    f = gc.jit(together)
    compiled, compiled32, grads = f(args, args32)
    interpreted = gc.jit(case.fn).interpret(*args)
    assert compiled.dtype == expected.dtype and compiled.shape == expected.shape
    np.testing.assert_allclose(interpreted, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(compiled, interpreted, rtol=1e-12, atol=1e-12)
    if case.f32:
        expected32 = np.asarray(_reference(case, args32))
        # NumPy 2 keeps float32 here (Python scalars are weak); graphc must agree exactly.
        assert compiled32.dtype == expected32.dtype
        np.testing.assert_allclose(compiled32, expected32, rtol=2e-5, atol=2e-6)
    if nums:
        api.check_grad_values(loss, args, grads, nums)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_of_logaddexp_and_sign_match_numpy(dtype):
    # x - y is nan for two infinities of one sign; Numba's np.sign keeps -0.0
    v = np.array([-np.inf, -1.0, -0.0, 0.0, 2.0, np.inf, np.nan], dtype)
    x, y = (a.ravel() for a in np.meshgrid(v, v))
    with np.errstate(invalid="ignore"):
        for n in (len(x), 3):
            got = gc.jit(np.logaddexp)(x[:n], y[:n])
            np.testing.assert_allclose(got, np.logaddexp(x[:n], y[:n]), rtol=1e-6)
            np.testing.assert_allclose(gc.jit(np.logaddexp).interpret(x[:n], y[:n]), got,
                                       rtol=1e-6)
            s = gc.jit(np.sign)(x[:n])
            np.testing.assert_array_equal(np.signbit(s), np.signbit(np.sign(x[:n])))
    gc.check_grad(lambda a, b: np.sum(np.logaddexp(a, b)), np.array([1.0, 2.0, -3.0]),
                  np.array([1.0, 0.5, -3.0]))


def test_logaddexp_has_its_second_derivatives_where_its_arguments_are_equal():
    # with p = sigmoid(x - y): the Hessian of logaddexp(x, y) is p (1 - p) [[1, -1], [-1, 1]],
    # 1/4 at a tie (where a logistic loss's Newton step starts, at w = 0)
    for x, y in [(0.0, 0.0), (1.5, 1.5), (-2.0, -2.0), (0.3, -1.0), (-4.0, 2.0)]:
        H = gc.hessian(lambda v: np.logaddexp(v[0], v[1]))(np.array([x, y]))
        p = 1 / (1 + np.exp(y - x))
        np.testing.assert_allclose(H, p * (1 - p) * np.array([[1, -1], [-1, 1]]), rtol=1e-12)
    z = np.linspace(-3, 3, 7)       # 0 among them
    d2 = gc.jit(gc.grad(lambda z: np.sum(gc.grad(lambda t: np.sum(np.logaddexp(0.0, t)))(z))))
    np.testing.assert_allclose(d2(z.astype(np.float32)), np.exp(z) / (1 + np.exp(z)) ** 2,
                               rtol=2e-6)


def test_sinc_has_every_derivative_at_zero_and_numpys_values_near_it():
    # sinc(x) = 1 - (pi x)^2 / 6 + (pi x)^4 / 120 - ...: its second derivative
    # at 0 is -pi^2/3, its fourth pi^4/5 (a Newton step from 0 read 0), odd ones 0
    d = lambda f: gc.grad(lambda x: f(x))       # noqa: E731
    derivatives = [np.sinc]
    for _ in range(4):
        derivatives.append(d(derivatives[-1]))
    np.testing.assert_allclose([float(f(0.0)) for f in derivatives],
                               [1.0, 0.0, -np.pi ** 2 / 3, 0.0, np.pi ** 4 / 5],
                               rtol=1e-14, atol=1e-14)
    H = gc.hessian(lambda x: np.sum(np.sinc(x)))(np.array([0.0, 0.1, 1.0, 2.0]))
    np.testing.assert_allclose(np.diag(H)[0], -np.pi ** 2 / 3, rtol=1e-14)
    for dtype in (np.float32, np.float64):      # where the series and sin(y) / y meet
        x = np.array([0.0, -1e-5, 3e-3, 0.01 / np.pi, 3.2e-3, 0.25, 2.0], dtype)
        np.testing.assert_allclose(gc.jit(np.sinc)(x), np.sinc(x),
                                   rtol=2 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maximum_minimum_and_max_keep_numpys_choice_between_zeros(dtype):
    # of 0.0 and -0.0 NumPy keeps the second operand, and a reduction the later
    # element; 1 / x tells them apart (a relu of -0.0 is +0.0)
    a, b = np.array([0.0, -0.0, np.nan, 1.0], dtype), np.array([-0.0, 0.0, 1.0, np.nan], dtype)
    for fn in (np.maximum, np.minimum):
        got = gc.jit(fn)(a, b)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(fn(a, b)))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(fn(a, b)))
    for x in (np.array([0.0, -0.0] * 20, dtype), np.array([-0.0, 0.0] * 20, dtype)):
        for fn in (np.max, np.min):
            got = gc.jit(fn)(x)
            assert np.signbit(got) == np.signbit(fn(x)), (fn, x[:2])
        rows = gc.jit(lambda m: np.max(m, axis=0))(x.reshape(4, 10))
        np.testing.assert_array_equal(np.signbit(rows), np.signbit(np.max(x.reshape(4, 10), 0)))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint64, np.int32])
def test_sign_of_integers(dtype):
    info = np.iinfo(dtype)
    x = np.array([info.min, 0, 1, info.max // 2 + 1, info.max], dtype)
    np.testing.assert_array_equal(gc.jit(np.sign)(x), np.sign(x))


def test_integer_powers_promote_and_refuse_negative_exponents():
    i = np.array([0, 1, 2, -3], np.int32)
    for fn in (lambda x: x ** 2.0, lambda x: x ** 1.0, lambda x: x ** 0.5, lambda x: x ** 2,
               lambda x: x ** 1, lambda x: np.power(x, np.float32(2))):
        with np.errstate(invalid="ignore"):
            want = fn(i)
        got = gc.jit(fn)(i)
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="negative integer powers.*test_ops.py"):
        gc.jit(lambda x: x ** -1)(i)
    power = gc.jit(lambda x, k: x ** k)
    np.testing.assert_array_equal(power(i, np.array([3, 0, 5, 2], np.int32)), [0, 1, 32, 9])
    for run in (power, power.interpret):     # the same error both ways (the interpreter
        with pytest.raises(gc.GraphcError) as info:   # raised NumPy's bare ValueError)
            run(i, np.array([3, 0, -1, 2], np.int32))
        assert isinstance(info.value, ValueError)
        assert re.search("negative integer powers.*test_ops.py", str(info.value))
    # past 65536 Numba's integer power went through floating point; NumPy wraps
    for x, k in [(np.array([-1, 3, 2, 0, 5]), np.array([2 ** 63 - 1, 65537, 62, 0, 3])),
                 (np.array([2, 3], np.uint64), np.array([2 ** 63, 5], np.uint64)),
                 (np.array([-128, 3, 7], np.int8), np.array([3, 5, 2], np.int8))]:
        np.testing.assert_array_equal(power(x, k), x ** k)
    np.testing.assert_array_equal(gc.jit(lambda x: x ** 70001)(np.array([3])), np.array([3]) ** 70001)


def test_gradient_of_a_zeroth_power_is_zero_at_zero():
    # y * x ** (y - 1) is 0 * inf there; x ** 0 is the constant 1
    x = np.array([0.0, 0.0, 2.0, 0.0])
    y = np.array([0.0, 1.0, 0.0, 2.0])
    gx, gy = gc.grad(lambda a, b: np.sum(a ** b), argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx, [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(gy, [0.0, 0.0, np.log(2.0), 0.0])
    np.testing.assert_array_equal(gc.grad(lambda a: np.sum(a ** 0))(x), np.zeros(4))
    # the second derivative: the zeroth power's base is 1 where y is 0
    for power in (lambda a, b: a ** b, lambda a, b: a ** 0 + 0 * b):
        slope = lambda a, b: np.sum(gc.grad(lambda u: np.sum(power(u, b)))(a))
        assert np.isfinite(gc.grad(slope)(x, y)).all()
    # away from x = 0 the slope is y * x ** (y - 1): its derivative in y at y = 0 is 1 / x
    slope_in_y = gc.grad(lambda a, b: np.sum(gc.grad(lambda u: np.sum(u ** b))(a)), argnums=1)
    np.testing.assert_allclose(slope_in_y(np.array([3.0, 0.5]), np.array([0.0, 0.0])),
                               [1 / 3, 2.0], rtol=1e-12)


def test_boolean_arithmetic_stays_boolean_in_fused_loops():
    # NumPy's bool + bool is a logical or: True + True is True, never 2
    a = np.array([True, True, False])
    fn = lambda a, b: (np.sum(a + b), (a + b).astype(np.int8), (a + b) == a, a * b)
    for got, want in zip(gc.jit(fn)(a, a.copy()), fn(a, a.copy())):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int64, np.uint64, np.bool_])
def test_integer_min_max_and_fused_arithmetic_wrap_as_numpy(dtype):
    # min is max of an order-reversed x: -x would map int8 -128 and uint8 0 to
    # themselves; and a fused chain must wrap at every op, as NumPy does
    if dtype == np.bool_:
        x = np.array([True, False, True])
    else:
        info = np.iinfo(dtype)
        x = np.array([info.min, 0, 5, info.max, info.max // 2 + 1], dtype)
    reductions = lambda a, b: (np.min(a), np.max(a), np.min(a, axis=0, keepdims=True))  # noqa: E731
    chain = lambda a, b: ((a + b) > a, (a + b) * 3 - a)  # noqa: E731
    # 64-bit: Numba's adds assume no signed overflow (LLVM folded
    # (x + 1) > x to True); graphc's wrap
    edges = lambda a, b: ((a + 1) > a, (a - 1) < a, -a > a, (a * 2) > a)  # noqa: E731
    parts = (reductions,) if dtype == np.bool_ else (reductions, chain, edges)
    # all of them from one module: one compile per dtype, not five
    together = lambda a, b: sum((part(a, b) for part in parts), ())  # noqa: E731
    y = x[::-1].copy()
    with np.errstate(over="ignore"):
        for k, (got, want) in enumerate(zip(gc.jit(together)(x, y), together(x, y))):
            np.testing.assert_array_equal(got, want, err_msg=f"result {k}")
            assert got.dtype == want.dtype, f"result {k}"


def test_boolean_subtract_negative_and_sign_are_refused_as_numpy_does():
    a = np.array([True, False])
    for fn in (lambda a: a - a, lambda a: -a, lambda a: np.sign(a), lambda a: a - True):
        with pytest.raises(TypeError, match="boolean.*test_ops.py"):
            gc.jit(fn)(a)
        with pytest.raises(TypeError):
            fn(a)


def test_a_ufunc_dtype_is_the_computation_dtype_as_in_numpy():
    # NumPy computes in dtype=, it does not convert afterwards
    i8, b = np.array([100, 120], np.int8), np.array([True, False])
    for fn, x in [(lambda v: np.add(v, v, dtype=np.int16), i8),
                  (lambda v: np.add(v, v, dtype=np.int64), b),
                  (lambda v: np.subtract(v, v, dtype=np.int64), b),
                  (lambda v: np.negative(v, dtype=np.int64), b),
                  (lambda v: np.less(v, 110, dtype=bool), i8)]:
        got, want = gc.jit(fn)(x), fn(x)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    with pytest.raises(TypeError, match="boolean positive"):
        gc.jit(lambda v: +v)(b)


def test_powers_of_booleans_and_of_lists_as_numpy():
    # NumPy's power and square have no boolean loop: their smallest integer
    # one gives int8; a list exponent is an array (as in every binary op)
    b, x = np.array([True, False]), np.array([2.0, 3.0])
    for fn, arg in [(lambda v: v ** 2, b), (lambda v: v ** v, b), (lambda v: v ** 1, b),
                    (lambda v: np.square(v), b), (lambda v: v ** [1, 2], x),
                    (lambda v: [2, 3] ** v, x), (lambda v: np.power(v, [1, 2]), x)]:
        got, want = gc.jit(fn)(arg), fn(arg)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_float_to_int_casts_of_nan_and_out_of_range_values_are_numpys_known_or_not():
    """NumPy's values on this CPU, whether the value is only known at run
    time or LLVM can see it: with Numba's plain cast LLVM read (x * nan) as a
    poison value, dropped the store, and left whatever memory held."""
    special = np.array([np.nan, np.inf, -np.inf, 300.7, -300.2, 1e10, -1e10, -1.5, 2.5])
    types = (np.int8, np.int16, np.int32, np.int64, np.uint8)

    def casts(x64, x32, ones):
        return [(x.astype(t), (ones * np.nan).astype(t), (ones * np.inf).astype(t))
                for t in types for x in (x64, x32)]
    ones = np.ones(3)
    got = gc.jit(casts)(special, special.astype(np.float32), ones)
    with np.errstate(invalid="ignore"):
        expected = casts(special, special.astype(np.float32), ones)
    for (t, x), outs, refs in zip([(t, x) for t in types for x in ("float64", "float32")],
                                  got, expected):
        for out, ref, what in zip(outs, refs, ("at run time", "x * nan", "x * inf")):
            assert out.dtype == t
            np.testing.assert_array_equal(out, ref, err_msg=f"{x} -> {t.__name__}, {what}")
