"""Solves with a Cholesky factor at hand (passes/factor_solves.py) and
cholesky's gradient through triangular solves: which ops the compiled graph
holds, values against NumPy and the interpreter, a matrix that is not
symmetric solved as before, gradients against central finite differences, and
the errors of a matrix holding nan."""
import numpy as np
import pytest

import graphc as gc


def _spd(n, seed, batch=()):
    a = np.random.default_rng(seed).normal(size=(*batch, n, n))
    return a @ np.swapaxes(a, -1, -2) + n * np.eye(n)


def _ops(f, *args):
    return [n.op for n in f.inspect(*args).optimized.topo()]


def _gp_likelihood(k, y):
    """y^T K^-1 y / 2 + log det K / 2, the way a Gaussian process writes it."""
    factor = np.linalg.cholesky(k)
    return 0.5 * np.sum(y * np.linalg.solve(k, y)) + np.sum(np.log(np.diagonal(
        factor, axis1=-2, axis2=-1)))


def _textbook_likelihood(k, y):
    """The same through the factor: alpha = L^T \\ (L \\ y) (Rasmussen and Williams, 2.1)."""
    factor = np.linalg.cholesky(k)
    alpha = np.linalg.solve(factor.T, np.linalg.solve(factor, y))
    return 0.5 * np.sum(y * alpha) + np.sum(np.log(np.diagonal(factor)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_solve_with_the_factor_at_hand_uses_it_forward_and_backward(dtype):
    k, y = _spd(12, 0).astype(dtype), np.random.default_rng(1).normal(size=(12, 3)).astype(dtype)
    f = gc.jit(gc.value_and_grad(_gp_likelihood, argnums=(0, 1)))
    ops = _ops(f, k, y)
    assert ops.count("cholesky_solve") == 2 and "solve" not in ops     # K^-1 y and K^-T ct
    assert ops.count("triangular_solve") == 2 and "inv" not in ops     # cholesky's gradient
    value, (gk, gy) = f(k, y)
    want_value, (want_gk, want_gy) = f.interpret(k, y)
    rtol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(value, want_value, rtol=rtol)
    np.testing.assert_allclose(gk, want_gk, rtol=rtol, atol=rtol * np.abs(want_gk).max())
    np.testing.assert_allclose(gy, want_gy, rtol=rtol, atol=rtol * np.abs(want_gy).max())
    # by hand: d/dK = (K^-1 - alpha alpha^T) / 2, symmetric
    k64, y64 = k.astype(np.float64), y.astype(np.float64)
    inverse = np.linalg.inv(k64)
    alpha = inverse @ y64
    np.testing.assert_allclose(gk, 0.5 * (inverse - alpha @ alpha.T), rtol=rtol * 10,
                               atol=rtol * 10 * np.abs(inverse).max())
    np.testing.assert_allclose(gy, alpha, rtol=rtol * 10, atol=rtol * 10)


def test_the_textbook_form_solves_with_triangles_only():
    k, y = _spd(9, 2), np.random.default_rng(3).normal(size=9)
    f = gc.jit(gc.value_and_grad(_textbook_likelihood, argnums=(0, 1)))
    ops = _ops(f, k, y)
    assert "solve" not in ops and "cholesky_solve" not in ops and "inv" not in ops
    value, grads = f(k, y)
    want_value, want_grads = gc.value_and_grad(_gp_likelihood, argnums=(0, 1))(k, y)
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    for g, w in zip(grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    # (against differences of a symmetric K: cholesky's gradient is the symmetric one)
    gc.check_grad(lambda a, y: _textbook_likelihood(a @ a.T + 9 * np.eye(9), y), k / 9, y)


def test_an_upper_factor_and_a_stack_of_matrices():
    def f(k, b):
        upper = np.linalg.cholesky(k, upper=True)
        return np.linalg.solve(upper, b) + np.linalg.solve(np.swapaxes(upper, -1, -2), b)

    k, b = _spd(5, 4, batch=(3,)), np.random.default_rng(5).normal(size=(3, 5, 2))
    upper = np.swapaxes(np.linalg.cholesky(k), -1, -2)
    want = np.linalg.solve(upper, b) + np.linalg.solve(np.swapaxes(upper, -1, -2), b)
    jitted = gc.jit(f)
    assert "solve" not in _ops(jitted, k, b)
    np.testing.assert_allclose(jitted(k, b), want, rtol=1e-12, atol=1e-12)
    a = k / 5
    gc.check_grad(lambda a, b: np.sum(f(a @ np.swapaxes(a, -1, -2) + 5 * np.eye(5), b) ** 2),
                  a, b)


def test_an_upper_factor_beside_a_solve_of_its_matrix_serves_it_too():
    def f(k, y):
        upper = np.linalg.cholesky(k, upper=True)
        return np.sum(y * np.linalg.solve(k, y)) + np.sum(np.log(np.diagonal(upper)))

    k, y = _spd(7, 10), np.random.default_rng(11).normal(size=7)
    grad = gc.jit(gc.value_and_grad(f, argnums=(0, 1)))
    ops = _ops(grad, k, y)
    assert ops.count("cholesky_solve") == 2 and "solve" not in ops
    (value, grads), (want_value, want_grads) = grad(k, y), grad.interpret(k, y)
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_a_matrix_that_is_not_symmetric_is_solved_as_itself():
    # cholesky reads the lower triangle only: L L^T is not k, so the solve
    # must not use L; one matrix of the stack symmetric, one not
    k = _spd(6, 6, batch=(2,))
    k[1, 0, 5] += 3.0
    y = np.random.default_rng(7).normal(size=(2, 6, 1))

    def f(k, y):
        return np.linalg.solve(k, y), np.linalg.cholesky(k)

    jitted = gc.jit(f)
    assert "cholesky_solve" in _ops(jitted, k, y)
    x, factor = jitted(k, y)
    np.testing.assert_allclose(x, np.linalg.solve(k, y), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(factor, np.linalg.cholesky(k), rtol=1e-12, atol=1e-12)
    # its gradient: solve's, with K^T solved as itself too
    loss = lambda k, y: np.sum(np.linalg.solve(k, y) ** 2) + np.sum(np.linalg.cholesky(k))
    got = gc.jit(gc.grad(loss))(k, y)
    np.testing.assert_allclose(got, gc.jit(gc.grad(loss)).interpret(k, y), rtol=1e-9, atol=1e-12)


def test_second_derivatives_through_cholesky():
    def f(x):
        k = np.outer(x, x) + 3 * np.eye(3)
        return np.sum(np.log(np.diagonal(np.linalg.cholesky(k)))) + np.sum(np.linalg.cholesky(k))

    x = np.array([0.3, -0.7, 1.1])
    hessian = gc.jit(gc.hessian(f))(x)
    gradient = gc.grad(f)
    step, columns = 1e-5, []
    for i in range(3):
        e = np.zeros(3)
        e[i] = step
        columns.append((gradient(x + e) - gradient(x - e)) / (2 * step))
    np.testing.assert_allclose(hessian, np.stack(columns, axis=1), rtol=1e-6, atol=1e-8)


def test_a_matrix_holding_nan_raises_solves_error_and_changes_nothing():
    k, y = _spd(4, 8), np.ones(4)
    k[2, 1] = k[1, 2] = np.nan
    params = {"k": k}
    before = k.copy()
    step = gc.compile_step(lambda p, y: _gp_likelihood(p["k"], y), gc.optim.SGD(lr=0.1))
    with pytest.raises(np.linalg.LinAlgError, match="Array must not contain infs or NaNs.*"
                                                    "test_factor_solves.py"):
        step(params, y)
    np.testing.assert_array_equal(params["k"], before)


def test_graphc_warm_builds_every_linalg_kernel():
    """Each C function generated code may build (codegen.LINALG_KERNELS, and
    those they call) is built by one of `graphc warm`'s families, in float64
    (float32 linear algebra computes in float64, as NumPy's): a review found
    cholesky_solve's left to the first model."""
    import re
    from graphc import codegen, warm
    built = set()
    for loss, makers in warm.FAMILIES.values():     # (float32 builds float64's too)
        f = gc.jit(gc.value_and_grad(loss, argnums=tuple(range(len(makers)))))
        source = f.lower(*[make(np.float64) for make in makers]).source
        built |= set(re.findall(r"linalg\.build_lapack\('(\w+)', (\d)\)", source))
    wanted = {(k, size) for op, k in codegen.LINALG_KERNELS.items()
              for k in (k,) + codegen.LINALG_KERNELS_CALLED.get(op, ()) for size in "8"}
    assert wanted <= built, sorted(wanted - built)


def test_a_product_with_its_own_transpose_beside_a_factor_is_symmetric_bit_for_bit():
    """As NumPy's (BLAS ?syrk): GEMM sums the two triangles in different
    orders, and a K made from x @ x.T then failed cholesky_solve's test (a
    user review: the 300 x 16 float64 Gram matrix of a GP; these shapes are
    not symmetric from OpenBLAS's dgemm here). Only in a graph solving
    beside a factor: elsewhere the pass over the product cost up to 2x."""
    x, wide = (np.random.default_rng(12).normal(size=s) for s in ((300, 16), (64, 300)))

    def gp(x, wide):
        k = x @ x.T + 300 * np.eye(300)
        solved = np.linalg.solve(k, x[:, 0]) + np.sum(np.log(np.diag(np.linalg.cholesky(k))))
        return solved, x @ x.T, wide.T @ wide, np.stack([x, x]) @ np.stack([x, x]).mT

    f = gc.jit(gp)
    assert "solve" not in _ops(f, x, wide)
    got, want = f(x, wide), gp(x, wide)
    for p in got[1:]:
        np.testing.assert_array_equal(p, np.swapaxes(p, -1, -2))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)
    plain = gc.jit(lambda x: x @ x.T)
    assert "mirror_lower" not in plain.inspect(x).source


def test_a_float32_factor_is_solved_as_a_triangle_too():
    """float32's L is cholesky's float64 factor rounded (float32 linear algebra
    computes in float64, as NumPy's), and solve converts it back: the
    textbook form in float32 still solves with triangles, in its own values."""
    k = _spd(10, 13).astype(np.float32)
    y = np.random.default_rng(14).normal(size=10).astype(np.float32)
    f = gc.jit(gc.value_and_grad(_textbook_likelihood, argnums=(0, 1)))
    ops = _ops(f, k, y)
    assert "solve" not in ops and "cholesky_solve" not in ops
    (value, grads), (want_value, want_grads) = f(k, y), f.interpret(k, y)
    assert value.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    np.testing.assert_allclose(value, want_value, rtol=1e-6)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
