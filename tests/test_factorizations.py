"""np.linalg.svd, svdvals and qr, and the matrix norms of singular values:
values against NumPy (stacks of tall, wide and square matrices, float32 and
float64), compiled against the interpreter, gradients against central
finite differences, and the gradients where singular values are equal or 0.
(tests/test_ops.py has their rows too.)"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc


def _factorizations(a):
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    q, r = np.linalg.qr(a)
    return u, s, vh, q, r


def _same_up_to_signs(got, want, a, rtol):
    """The factors of `a` equal NumPy's up to the signs of singular vector
    pairs and of Q's columns (with R's rows): both are LAPACK's choice."""
    u, s, vh, q, r = got
    atol = rtol * max(1.0, float(np.abs(a).max(initial=0)))
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(np.abs(g), np.abs(w), rtol=rtol, atol=atol)
    np.testing.assert_allclose((u * s[..., None, :]) @ vh, a, atol=atol * 10)
    np.testing.assert_allclose(q @ r, a, atol=atol * 10)
    np.testing.assert_array_equal(np.tril(r, -1), 0)


_SHAPES = st.tuples(st.lists(st.integers(1, 3), max_size=2), st.integers(1, 5), st.integers(1, 5))


@settings(max_examples=15, deadline=None)
@given(_SHAPES, st.sampled_from([np.float32, np.float64]), st.integers(0, 2 ** 16))
def test_svd_and_qr_of_any_stack_equal_numpy_and_the_interpreter(shape, dtype, seed):
    batch, m, n = shape
    a = np.random.default_rng(seed).normal(size=(*batch, m, n)).astype(dtype)
    f = gc.jit(_factorizations)
    rtol = 2e-4 if dtype == np.float32 else 1e-10
    _same_up_to_signs(f(a), _factorizations(a), a, rtol)
    _same_up_to_signs(f.interpret(a), _factorizations(a), a, rtol)


def _sign_free_loss(weights):
    """A loss of every factor that does not change with LAPACK's choice of
    signs (singular vectors squared; Q R's own signs are a smooth choice)."""
    def loss(a):
        u, s, vh, q, r = _factorizations(a)
        w = iter(weights)
        return (np.sum(next(w) * u ** 2) + np.sum(next(w) * s) + np.sum(next(w) * vh ** 2)
                + np.sum(next(w) * q) + np.sum(next(w) * r))
    return loss


def test_svd_and_qr_gradients_match_finite_differences():
    # square, a stack of two axes, one row and one column, in one module
    # (tests/test_ops.py's rows: tall, wide and a stack of each)
    shapes = [(3, 3), (2, 1, 3, 2), (1, 4), (4, 1)]
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=shape) for shape in shapes]
    losses = [_sign_free_loss([rng.normal(size=x.shape) for x in _factorizations(a)])
              for a in arrays]

    def loss(*arrays):
        return sum(f(a) for f, a in zip(losses, arrays))
    nums = tuple(range(len(arrays)))
    g = gc.jit(gc.grad(loss, argnums=nums))
    got = g(*arrays)
    gc.check_grad(loss, *arrays, argnums=nums)
    for compiled, interpreted in zip(got, g.interpret(*arrays)):
        np.testing.assert_allclose(compiled, interpreted, rtol=1e-9, atol=1e-9)


NORMS = [
    lambda x: np.linalg.norm(x[0], 2),
    lambda x: np.linalg.norm(x[0], -2),
    lambda x: np.linalg.norm(x[0], "nuc"),
    lambda x: np.linalg.norm(x, 2, axis=(0, 2)),
    lambda x: np.linalg.norm(x, "nuc", axis=(2, 0), keepdims=True),
    lambda x: np.linalg.matrix_norm(x, ord=2, keepdims=True),
    lambda x: np.linalg.matrix_norm(x, ord="nuc"),
    lambda x: np.linalg.matrix_norm(x),
    lambda x: np.linalg.matrix_norm(x, ord=-np.inf),
    lambda x: np.linalg.vector_norm(x),
    lambda x: np.linalg.vector_norm(x, ord=1, axis=(0, 2), keepdims=True),
    lambda x: np.linalg.vector_norm(x, axis=1, ord=np.inf),
    lambda x: np.linalg.vector_norm(x, ord=3, keepdims=True),
    lambda x: np.linalg.svdvals(x),
    lambda x: np.linalg.svd(x, compute_uv=False),
    lambda x: np.linalg.qr(x, mode="r"),
    lambda x: np.linalg.qr(x[:, :3], mode="complete").R,
    lambda x: np.linalg.svd(x[:, :3, :3]).U ** 2,         # square: full matrices are the reduced
]


def test_norms_and_partial_results_equal_numpy_with_their_gradients():
    x = np.random.default_rng(1).normal(size=(2, 3, 4))
    f = gc.jit(lambda x: [norm(x) for norm in NORMS])
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        for norm, got in zip(NORMS, f(x.astype(dtype))):
            want = norm(x.astype(dtype))
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_allclose(np.abs(got), np.abs(want), rtol=rtol, atol=rtol)
    weights = [np.random.default_rng(2).normal(size=np.shape(norm(x))) for norm in NORMS]
    gc.check_grad(lambda x: sum(np.sum(w * norm(x)) for w, norm in zip(weights, NORMS)), x)


def test_singular_value_gradients_where_they_are_equal_or_zero():
    """A loss of the singular values alone keeps its gradient U diag(s') V^T
    where singular values are equal (the nuclear norm of I is I's) or 0 (a
    matrix of lower rank), compiled as interpreted; one using the singular
    vectors of equal singular values gets nan there, as in JAX and PyTorch."""
    nuclear = gc.jit(gc.grad(lambda a: np.linalg.norm(a, "nuc")))
    for a, want in [(np.eye(3), np.eye(3)),
                    (np.array([[3.0, 0], [0, 3], [0, 0]]), np.array([[1.0, 0], [0, 1], [0, 0]])),
                    (np.array([[2.0, 0, 0], [0, 0, 0]]), None)]:
        for got in (nuclear(a), nuclear.interpret(a)):
            assert np.all(np.isfinite(got))
            if want is not None:
                np.testing.assert_allclose(got, want, atol=1e-12)
    u, v = np.array([1.0, 2.0, 2.0]) / 3, np.array([0.6, 0.8])
    spectral = gc.jit(gc.grad(lambda a: np.linalg.norm(a, 2)))
    np.testing.assert_allclose(spectral(5 * np.outer(u, v)), np.outer(u, v), atol=1e-12)
    vectors = gc.jit(gc.grad(lambda a: np.sum(np.linalg.svd(a).U * np.arange(4.0).reshape(2, 2))))
    assert np.isnan(vectors(np.eye(2))).any() and np.isnan(vectors.interpret(np.eye(2))).any()


def test_pinv_s_gradient_holds_at_lower_rank_and_equal_singular_values():
    """Where the SVD's gradient is nan (equal singular values: an orthogonal
    matrix) or the rank is lower than the matrix's, pinv's own derivative
    holds: along any change that keeps the rank, it is the slope."""
    rng = np.random.default_rng(0)
    for a in [np.array([[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]]), np.eye(3),
              np.outer([1.0, 2.0, 3.0], [1.0, -1.0]), rng.normal(size=(2, 4))]:
        weights = rng.normal(size=a.T.shape)
        g = gc.jit(gc.grad(lambda a: np.sum(weights * np.linalg.pinv(a))))
        got = g(a)
        np.testing.assert_allclose(got, g.interpret(a), atol=1e-12)
        change = a @ rng.normal(size=(a.shape[1], a.shape[1]))     # keeps the rank
        slope = (np.sum(weights * np.linalg.pinv(a + 1e-6 * change))
                 - np.sum(weights * np.linalg.pinv(a - 1e-6 * change))) / 2e-6
        np.testing.assert_allclose(np.sum(got * change), slope, rtol=1e-6)


def test_lstsq_equals_numpys_and_differentiates_in_both_arguments():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    f = gc.jit(lambda a, b: [np.linalg.lstsq(a, b), np.linalg.lstsq(a, b[:, 0], rcond=None),
                             np.linalg.lstsq(a.T, b[:3, 0])])
    for got, want in zip(f(a, b), [np.linalg.lstsq(a, b), np.linalg.lstsq(a, b[:, 0]),
                                   np.linalg.lstsq(a.T, b[:3, 0])]):
        for g, w in zip(got, want):
            assert np.shape(g) == np.shape(w) and np.asarray(g).dtype == np.asarray(w).dtype
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    gc.check_grad(lambda a, b: np.sum(np.linalg.lstsq(a, b)[0] ** 2)
                  + np.sum(np.linalg.lstsq(a, b)[1]), a, b, argnums=(0, 1))


def test_float32_lstsq_takes_numpys_cutoff_and_computes_in_float64():
    """NumPy computes float32's lstsq in float64 with float64's eps in its
    default cutoff: float32's eps took a singular value of 3e-7 for zero,
    another rank and another x (a review)."""
    rng = np.random.default_rng(0)
    u, v = np.linalg.qr(rng.normal(size=(8, 3)))[0], np.linalg.qr(rng.normal(size=(3, 3)))[0]
    a = ((u * [1, 1e-2, 3e-7]) @ v.T).astype(np.float32)
    b = rng.normal(size=8).astype(np.float32)
    got, want = gc.jit(lambda a, b: np.linalg.lstsq(a, b))(a, b), np.linalg.lstsq(a, b)
    assert got[2] == want[2] == 3
    for g, w in zip(got, want):
        assert np.asarray(g).dtype == np.asarray(w).dtype
        np.testing.assert_allclose(g, w, rtol=1e-6)


_LOW_RANK = np.outer([1.0, 2.0, 3.0], [1.0, 0.0, 2.0])
RANKS_AND_CONDITIONS = [
    lambda a: np.linalg.matrix_rank(a) + np.linalg.matrix_rank(_LOW_RANK + 0 * a[0, :3]),
    lambda a: np.linalg.matrix_rank(a[0, 0]) + np.linalg.matrix_rank(a, tol=0.5),
    lambda a: np.linalg.matrix_rank(a, rtol=0.3),
    lambda a: np.linalg.cond(a) + np.linalg.cond(a, -2),
    lambda a: np.linalg.cond(a[:, :3] + 2 * np.eye(3), "fro") + np.linalg.cond(a[:, :3], np.inf),
    lambda a: np.linalg.cond(0 * a[:, :2, :2]) + np.linalg.cond(a[:, :3] + 2 * np.eye(3), 1),
]


def test_matrix_rank_and_cond_equal_numpys():
    a = np.random.default_rng(2).normal(size=(2, 4, 3))
    f = gc.jit(lambda a: [g(a) for g in RANKS_AND_CONDITIONS])
    for g, got in zip(RANKS_AND_CONDITIONS, f(a)):
        want = np.asarray(g(a))
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-12)      # a zero matrix's cond: inf
    gc.check_grad(lambda a: np.sum(RANKS_AND_CONDITIONS[3](a)), a)


def test_a_batch_size_on_either_side_of_the_columns_is_right():
    # k = min(m, n) is the rows' count or the columns', by the traced sizes
    f = gc.jit(lambda x: np.linalg.svdvals(x) * np.linalg.qr(x).R[..., 0])
    rng = np.random.default_rng(0)
    for rows in (5, 2, 3, 7, 1):
        x = rng.normal(size=(rows, 3))
        np.testing.assert_allclose(np.abs(f(x)), np.abs(np.linalg.svdvals(x)
                                                        * np.linalg.qr(x).R[..., 0]), rtol=1e-12)


@pytest.mark.parametrize("call, error, message", [
    (lambda a: np.linalg.svd(a), gc.UnsupportedOpError,
     r"np.linalg.svd\(full_matrices=True\) of 4 x 3 matrices is not supported: pass "
     r"full_matrices=False"),
    (lambda a: np.linalg.svd(a, full_matrices=False, hermitian=True), gc.UnsupportedOpError,
     r"hermitian=True\) is not supported"),
    (lambda a: np.linalg.qr(a, mode="raw"), gc.UnsupportedOpError,
     r"np.linalg.qr\(mode='raw'\) is not supported: pass mode='reduced'"),
    (lambda a: np.linalg.qr(a, mode="complete"), gc.UnsupportedOpError,
     r"np.linalg.qr\(mode='complete'\) is not supported for 4 x 3 matrices"),
    (lambda a: np.linalg.qr(a, mode="full"), ValueError, "Unrecognized mode 'full'"),
    (lambda a: np.linalg.svdvals(a[0]), np.linalg.LinAlgError, "1-dimensional array given"),
    (lambda a: np.linalg.multi_dot([a[None], a.T, a]), np.linalg.LinAlgError,
     "3-dimensional array given. Array must be two-dimensional"),
    (lambda a: np.linalg.pinv(a, rcond=0.1, rtol=0.1), ValueError, "can't be both set"),
    (lambda a: np.linalg.pinv(a, rcond=np.ones(1)), gc.UnsupportedOpError,
     "rcond .* must be one number known when tracing"),
    (lambda a: np.linalg.lstsq(a, a[:3]), np.linalg.LinAlgError, "Incompatible dimensions"),
])
def test_refusals_name_the_problem_and_the_line(call, error, message):
    with pytest.raises(error, match=message) as e:
        gc.trace(call, np.ones((4, 3)))
    assert "test_factorizations.py:" in str(e.value)


def test_a_matrix_holding_nan_raises_numpys_linalgerror_with_the_line():
    a = np.ones((3, 2))
    a[1, 1] = np.nan
    for f in (lambda a: np.linalg.svdvals(a), lambda a: np.linalg.qr(a).Q):
        with pytest.raises(np.linalg.LinAlgError, match=r"infs or NaNs.*test_factorizations.py:"):
            gc.jit(f)(a)


def test_det_and_slogdet_of_empty_matrices_are_numpys_one_and_zero():
    """A 0 x 0 matrix's determinant is 1 (its log 0), as NumPy's, alone or in
    a stack; it raised a reshape error (a review)."""
    f = gc.jit(lambda a: (np.linalg.det(a), *np.linalg.slogdet(a)))
    for a in (np.zeros((0, 0)), np.zeros((3, 0, 0)), np.zeros((0, 2, 2)),
              np.zeros((2, 0, 0), np.float32)):
        for got, want in zip(f(a), (np.linalg.det(a), *np.linalg.slogdet(a))):
            assert got.shape == np.shape(want) and got.dtype == np.asarray(want).dtype
            np.testing.assert_array_equal(got, want)
