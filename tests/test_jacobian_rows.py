"""Jacobians of more than ROWS_UNROLLED_AT_MOST rows, called with arrays: one
compiled VJP per output, called once per row (graphc/jacobians.py). They must
equal the closed forms and the unrolled rows (the interpreter's, and the
compiled ones inside a trace), in JAX's nesting, with the same errors."""
import numpy as np
import pytest

import graphc as gc
from graphc import jacobians, pytree

ROWS = jacobians.ROWS_UNROLLED_AT_MOST + 4


def quartic(x):
    """sum(x^4)/4 + x.A.x/2 + sum(x[:-1] x[1:]): its Hessian is diag(3x^2) + A, plus ones
    beside the diagonal."""
    A = np.diag(np.arange(1.0, len(x) + 1))
    return np.sum((x * x) ** 2) / 4 + x @ A @ x / 2 + np.sum(x[:-1] * x[1:])


def test_a_hessian_of_many_rows_equals_its_closed_form_without_unrolling_them():
    x = np.linspace(-1, 1, ROWS)
    H = gc.hessian(quartic)
    side = np.eye(ROWS, k=1) + np.eye(ROWS, k=-1)
    np.testing.assert_allclose(H(x), np.diag(3 * x ** 2 + np.arange(1.0, ROWS + 1)) + side,
                               rtol=1e-12, atol=1e-12)
    assert not H._cache and len(H._pulls) == 1      # no unrolled module: one VJP's
    np.testing.assert_allclose(H(x), H.interpret(x), rtol=1e-12, atol=1e-12)


def test_rows_of_pytrees_have_jaxs_nesting_and_the_unrolled_values():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=3).astype(np.float32), np.float32(0.1) * np.ones((), np.float32)
    x = rng.normal(size=(ROWS, 3)).astype(np.float32)

    def layer(p, x):            # a dict out, a dict and an array in
        return {"h": np.tanh(x @ p["w"] + p["b"]), "s": np.sum(p["w"]) * x[0]}

    J = gc.jacobian(layer, argnums=(0, 1))
    got, want = J({"w": w, "b": b}, x), J.interpret({"w": w, "b": b}, x)
    (got_leaves, got_tree), (want_leaves, want_tree) = pytree.flatten(got), pytree.flatten(want)
    assert got_tree == want_tree and type(got["h"]) is tuple and type(got["h"][0]) is dict
    for g, u in zip(got_leaves, want_leaves):
        assert g.shape == u.shape and g.dtype == u.dtype == np.float32
        np.testing.assert_allclose(g, u, rtol=1e-5, atol=1e-6)
    assert got["h"][0]["w"].shape == (ROWS, 3) and got["h"][1].shape == (ROWS, ROWS, 3)


def test_inside_a_trace_the_rows_are_unrolled_to_the_same_values():
    x = np.linspace(-1, 1, ROWS)
    outside = gc.hessian(quartic)(x)
    inside = gc.jit(lambda x: gc.hessian(quartic)(x) * 2.0)(x)
    np.testing.assert_allclose(inside, 2.0 * outside, rtol=1e-12, atol=1e-12)


def test_each_row_pulls_back_its_own_unit_cotangent():
    # the VJP of the identity is its cotangent, which the rows reuse: an
    # output that was its input would leave them all one array
    x = np.arange(float(ROWS))
    np.testing.assert_array_equal(gc.jacobian(lambda x: x)(x), np.eye(ROWS))
    J = gc.jacobian(lambda x: (x, 2 * x[:ROWS - 1]))(x)
    np.testing.assert_array_equal(J[0], np.eye(ROWS))
    np.testing.assert_array_equal(J[1], 2 * np.eye(ROWS)[:ROWS - 1])


def test_the_same_errors_as_unrolled_rows():
    x = np.linspace(-1, 1, ROWS)
    for n in (3, ROWS):
        with pytest.raises(TypeError, match=r"jacobian: the output must be float, got bool"):
            gc.jacobian(lambda x: x > 0)(x[:n])
        with pytest.raises(TypeError, match="jacobian") as raised:
            gc.jacobian(lambda x, k: x * k, argnums=1)(x[:n], np.arange(n))
        assert "integer" in str(raised.value) or "int64" in str(raised.value)


def test_an_empty_output_among_many_rows_has_an_empty_block():
    x = np.arange(float(ROWS))
    J = gc.jacobian(lambda x: (x * 2, x[:0], (x * x)[:0].reshape(0, 1)))(x)
    assert [b.shape for b in J] == [(ROWS, ROWS), (0, ROWS), (0, 1, ROWS)]
    assert all(b.dtype == np.float64 for b in J)
    np.testing.assert_array_equal(J[0], 2 * np.eye(ROWS))


def test_a_static_flag_reaches_a_hessian_inside_jit():
    def loss(x, train):
        value = np.sum(np.tanh(x) ** 2)
        return value * 2.0 if train else value

    x = np.linspace(-1, 1, ROWS)
    H = gc.jit(gc.hessian(loss), static_argnums=1)
    plain = gc.hessian(lambda x: loss(x, False))(x)
    np.testing.assert_allclose(H(x, False), plain, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(H(x, True), 2 * plain, rtol=1e-12, atol=1e-14)
