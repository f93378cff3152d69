"""The calculus of learning, checked against closed forms."""
import collections

import numpy as np
import pytest

import graphc as gc


def cost(q):
    return 0.5 * q ** 2 + 3 * q + 10


def test_derivative_is_the_rate_of_change():
    # d/dq (0.5 q^2 + 3q + 10) = q + 3, which is 7 at q = 4
    assert float(gc.grad(cost)(4.0)) == 7.0
    h = 1e-5
    assert abs((cost(4.0 + h) - cost(4.0 - h)) / (2 * h) - 7.0) < 1e-6


def test_value_and_grad_of_a_python_float_is_float64_0d():
    value, slope = gc.value_and_grad(cost)(4.0)
    assert value.shape == () and value.dtype == np.float64 and float(value) == 30.0
    assert slope.shape == () and float(slope) == 7.0


def test_partial_derivatives_by_argnums():
    def f(x, y):
        return x ** 2 * y + 3 * y

    x, y = 2.0, 5.0
    assert float(gc.grad(f, argnums=0)(x, y)) == 2 * x * y
    assert float(gc.grad(f, argnums=1)(x, y)) == x ** 2 + 3
    dx, dy = gc.grad(f, argnums=(0, 1))(x, y)
    assert (float(dx), float(dy)) == (20.0, 7.0)


def test_gradient_is_the_vector_of_partials():
    a = np.array([1.0, -2.0, 3.0])
    g = gc.grad(lambda v: np.sum(a * v ** 2))(np.array([1.0, 1.0, 2.0]))
    np.testing.assert_allclose(g, 2 * a * np.array([1.0, 1.0, 2.0]))


def test_chain_rule_through_twelve_nested_ops():
    def f(x):
        y = np.sin(x)
        y = np.exp(y) * 0.5
        y = np.tanh(y) + x
        y = np.log1p(y ** 2)
        y = np.sqrt(y + 1.0)
        y = np.cos(y) / (1.0 + x ** 2)
        return np.sum(np.maximum(y, -10.0))

    x = np.linspace(-1.5, 1.5, 7)
    gc.check_grad(f, x)

    # and by hand, the chain rule written out for one composition
    def g(x):
        return np.exp(np.sin(x ** 2))
    x0 = 0.7
    expected = np.exp(np.sin(x0 ** 2)) * np.cos(x0 ** 2) * 2 * x0
    assert float(gc.grad(g)(x0)) == pytest.approx(expected, rel=1e-14)


def test_gradient_descent_reaches_the_minimum_of_a_convex_quadratic():
    A = np.array([[3.0, 0.5], [0.5, 1.0]])
    b = np.array([1.0, -2.0])

    def loss(w):
        return 0.5 * w @ A @ w - b @ w

    step = gc.jit(lambda w: w - 0.2 * gc.grad(loss)(w))
    w = np.zeros(2)
    for _ in range(300):
        w = step(w)
    np.testing.assert_allclose(w, np.linalg.solve(A, b), rtol=1e-10)


def test_second_derivative_and_hessian_closed_forms():
    d2 = gc.grad(gc.grad(lambda x: x ** 3 + 2 * x ** 2))
    assert float(d2(2.0)) == 6 * 2.0 + 4

    def f(v):
        x, y = v[0], v[1]
        return x ** 2 * y + np.sin(y) * x

    v = np.array([0.3, 1.2])
    x, y = v
    expected = np.array([[2 * y, 2 * x + np.cos(y)],
                         [2 * x + np.cos(y), -np.sin(y) * x]])
    np.testing.assert_allclose(gc.hessian(f)(v), expected, rtol=1e-12)


def test_hessian_through_a_concatenation_and_its_gradient_pieces():
    # the gradient of a concatenation is made of concat_piece ops, the
    # second derivative of their transposes: zeros around each piece
    def f(x):
        return np.sum(np.concatenate([x ** 2, x, np.ones(2)]) ** 3)

    x = np.array([0.5, -1.5, 2.0])
    np.testing.assert_allclose(gc.hessian(f)(x), np.diag(30 * x ** 4 + 6 * x), rtol=1e-12)


def test_hessian_of_a_layer_written_with_the_weight_transposed():
    # f(W) = |X W.T|^2 / 2: its gradient's (X.T @ G).T is computed as G.T @ X
    # (passes.simplify), and the hessian is I (x) X.T X in closed form
    X = np.array([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0], [-2.0, 1.0, 1.0], [0.0, 1.5, -0.5]])
    W = np.array([[0.3, -0.2, 0.1], [1.0, 0.5, -1.5]])
    H = gc.hessian(lambda w: 0.5 * np.sum((X @ w.T) ** 2))(W)
    np.testing.assert_allclose(H, np.einsum("jJ,kK->jkJK", np.eye(2), X.T @ X), rtol=1e-12)


def test_jacobian_of_a_vector_function():
    W = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
    x = np.array([0.1, 0.2, -0.3])
    J = gc.jacobian(lambda x: np.tanh(W @ x))(x)
    expected = (1 - np.tanh(W @ x) ** 2)[:, None] * W
    assert J.shape == (2, 3)
    np.testing.assert_allclose(J, expected, rtol=1e-12)


def test_vjp_pulls_cotangents_back_through_the_transposed_jacobian(monkeypatch):
    # vjp_fn(ct) = J.T ct for each primal; traced once, then called as compiled
    W = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
    x, s = np.array([0.1, 0.2, -0.3]), np.array(1.5)

    def f(x, s):
        return np.tanh(W @ x) * s, np.sum(x ** 2)

    out, vjp_fn = gc.vjp(f, x, s)
    np.testing.assert_allclose(out[0], np.tanh(W @ x) * s, rtol=1e-14)
    slope = (1 - np.tanh(W @ x) ** 2) * s
    traces = []
    real = gc.api.tracing.trace_fn
    monkeypatch.setattr(gc.api.tracing, "trace_fn", lambda *a, **k: traces.append(1) or real(
        *a, **k))
    for k, ct in enumerate(([1.0, 0.0], [0.5, -2.0], [0.0, 3.0])):
        ct = (np.array(ct), np.array(0.25))
        dx, ds = vjp_fn(ct)
        np.testing.assert_allclose(dx, W.T @ (slope * ct[0]) + 0.25 * 2 * x, rtol=1e-12)
        np.testing.assert_allclose(ds, np.tanh(W @ x) @ ct[0], rtol=1e-12)
        traced_first = traced_first if k else len(traces)
    assert traced_first and len(traces) == traced_first     # the first call's traces only
    # a cotangent not of the output's structure and shapes is refused, as in JAX
    # (a missing leaf was taken as 0, an extra axis summed away)
    for ct, error, message in [((np.ones(2),), TypeError, r"structure \(\*,\), but .* \(\*, \*\)"),
                               (np.ones(2), TypeError, "structure"),
                               ((np.ones((3, 2)), 1.0), ValueError,
                                r"at \[0\] has shape \(3, 2\), but the output's is \(2,\)"),
                               ((np.ones(2), np.ones(2)), ValueError, r"at \[1\] has shape")]:
        with pytest.raises(error, match=message):
            vjp_fn(ct)
    _, of_labels = gc.vjp(lambda x, k: x * k, x, np.arange(3))
    with pytest.raises(TypeError, match=r"close over it \(functools.partial"):
        of_labels(np.ones(3))


def test_jacobian_of_an_empty_output_is_empty():
    # as JAX: output shape + input shape, no rows; not an error
    x = np.arange(3.0)
    J = gc.jacobian(lambda x: x[:0])(x)
    assert J.shape == (0, 3) and J.dtype == np.float64
    assert gc.jacobian(lambda x: (x * x).reshape(3, 1)[:, :0])(x).shape == (3, 0, 3)


def test_jacobian_and_hessian_of_pytrees_have_jaxs_nesting():
    """Output structure outside, then argnums' tuple, then each argument's
    structure; every block out_leaf.shape + arg_leaf.shape, in closed form."""
    w, b, x = np.array([0.3, -0.2, 0.5]), np.array(0.1), np.array([[1.0, 2.0, -1.0], [0.5, 0.0, 2.0]])

    def layer(p, x):               # a tuple out, a dict and an array in
        return np.tanh(x @ p["w"] + p["b"]), np.sum(p["w"]) * x[0]

    J = gc.jacobian(layer, argnums=(0, 1))({"w": w, "b": b}, x)
    assert type(J) is tuple and all(type(block) is tuple for block in J)
    (dp_t, dx_t), (dp_s, dx_s) = J
    assert type(dp_t) is dict and type(dp_s) is dict
    slope = 1 - np.tanh(x @ w + b) ** 2
    np.testing.assert_allclose(dp_t["w"], slope[:, None] * x, rtol=1e-14)
    np.testing.assert_allclose(dp_t["b"], slope, rtol=1e-14)
    np.testing.assert_allclose(dx_t, slope[:, None, None] * np.eye(2)[:, :, None] * w, rtol=1e-14)
    np.testing.assert_array_equal(dp_s["w"], np.broadcast_to(x[0][:, None], (3, 3)))
    np.testing.assert_array_equal(dp_s["b"], np.zeros(3))
    np.testing.assert_array_equal(dx_s, np.sum(w) * np.eye(3)[:, None, :] * np.array([1, 0])[None, :, None])

    def cubic(p, c):               # sum(w^2 b) + b^3 + c . w
        return np.sum(p["w"] ** 2 * p["b"]) + p["b"] ** 3 + np.sum(c * p["w"])

    # hessian = jacobian(grad): grad's (dict, array) outside, then the argnums.
    # The nesting is built while tracing: the interpreter shows it without a
    # compile (the tests above check compiled hessians)
    H = gc.hessian(cubic, argnums=(0, 1)).interpret({"w": w, "b": b}, x[0])
    assert type(H) is tuple and type(H[0]) is dict and type(H[1]) is tuple
    H_p, H_c = H
    np.testing.assert_allclose(H_p["w"][0]["w"], 2 * b * np.eye(3), rtol=1e-14)
    np.testing.assert_allclose(H_p["w"][0]["b"], 2 * w, rtol=1e-14)
    np.testing.assert_array_equal(H_p["w"][1], np.eye(3))
    np.testing.assert_allclose(H_p["b"][0]["w"], 2 * w, rtol=1e-14)
    np.testing.assert_allclose(H_p["b"][0]["b"], 6 * b, rtol=1e-14)
    np.testing.assert_array_equal(H_p["b"][1], np.zeros(3))
    np.testing.assert_array_equal(H_c[0]["w"], np.eye(3))
    np.testing.assert_array_equal(H_c[0]["b"], np.zeros(3))
    np.testing.assert_array_equal(H_c[1], np.zeros((3, 3)))
    with pytest.raises(TypeError, match=r"jacobian: the output must be float, got bool\[3\]"):
        gc.jacobian(lambda p, c: (p["w"] * c, c > 0))({"w": w, "b": b}, x[0])


def test_a_static_argument_reaches_a_differentiated_function_as_a_python_value():
    # JAX's way with a train flag: jit(value_and_grad(loss), static_argnums=...);
    # inside jit, a Python number is static, and Python's `if` reads it
    def loss(w, x, train):
        h = x * w
        if train:
            h = h * 0.5
        return np.sum(h ** 2)

    w, x = np.array([1.0, -2.0]), np.array([3.0, 0.5])
    with pytest.raises(gc.TracerError, match="static_argnums"):
        gc.value_and_grad(loss)(w, x, True)         # traced: the error says what to do
    step = gc.jit(gc.value_and_grad(loss), static_argnums=2)
    for train, scale in [(True, 0.25), (False, 1.0), (True, 0.25)]:
        value, g = step(w, x, train)
        np.testing.assert_allclose(value, scale * np.sum((x * w) ** 2), rtol=1e-14)
        np.testing.assert_allclose(g, scale * 2 * x ** 2 * w, rtol=1e-14)
    # a Python number that is differentiated stays a traced value (with float32
    # x it is converted, and its derivative needs its dtype)
    dk = gc.jit(lambda x: gc.grad(lambda x, k: np.sum(x * k ** 2), argnums=1)(x, 2.0))
    np.testing.assert_allclose(dk(x), 4.0 * np.sum(x), rtol=1e-14)
    ds = gc.jit(lambda x: gc.grad(lambda x, s: np.sum(x ** 2) * s, argnums=1)(x, 2.0))
    np.testing.assert_allclose(ds(x.astype(np.float32)), np.sum(x ** 2), rtol=1e-6)


def test_a_static_string_or_function_reaches_a_differentiated_function_inside_jit():
    # a mode string and an activation: static arguments of no array type
    def loss(w, x, mode, activation):
        h = activation(x * w)
        return np.sum(h ** 2) * (0.5 if mode == "train" else 1.0)

    w, x = np.array([1.0, -2.0]), np.array([0.3, 0.5])
    step = gc.jit(gc.value_and_grad(loss), static_argnums=(2, 3))
    for mode, scale in [("train", 0.5), ("eval", 1.0)]:
        for activation, slope in [(np.tanh, lambda z: 1 - np.tanh(z) ** 2),
                                  (np.sin, np.cos)]:
            value, g = step(w, x, mode, activation)
            np.testing.assert_allclose(value, scale * np.sum(activation(x * w) ** 2), rtol=1e-14)
            np.testing.assert_allclose(g, scale * 2 * activation(x * w) * slope(x * w) * x,
                                       rtol=1e-14)
    with pytest.raises(TypeError, match=r"type str .* functools.partial\(fn, ...\) "
                                        r"bound before gc.grad .*test_calculus.py:"):
        gc.grad(loss)(w, x, "train", np.tanh)


def test_keyword_arguments_take_the_places_of_the_functions_parameters():
    # as in JAX: bound by the user's function's signature, statics by place
    def f(w, x, lam=0.1):
        return np.sum((w * x) ** 2) + lam * np.sum(w)
    w, x = np.array([1.0, -2.0]), np.array([0.5, 3.0])
    np.testing.assert_allclose(gc.grad(f)(w, x=x, lam=1.0), 2 * w * x ** 2 + 1.0)
    np.testing.assert_allclose(gc.jit(f)(w, lam=0.0, x=x), np.sum((w * x) ** 2))
    np.testing.assert_allclose(gc.hessian(f)(w, x=x), np.diag(2 * x ** 2))
    np.testing.assert_allclose(gc.jit(lambda x, n: x * n, static_argnums=1)(x, n=4), 4 * x)
    np.testing.assert_allclose(gc.jit(gc.grad(f))(w, x=x), 2 * w * x ** 2 + 0.1)   # through jit

    def skipped(w, x=None, lam=0.1):        # x keeps its default when lam is given
        return np.sum(w * w) * lam + (0.0 if x is None else np.sum(x))
    np.testing.assert_allclose(gc.grad(skipped)(w, lam=2.0), 4 * w)
    jf = gc.jit(f)      # calls of one keyword plan, with new values each time
    for lam, xs in [(1.0, x), (3.0, 2 * x), (0.5, -x)]:
        np.testing.assert_allclose(jf(w, x=xs, lam=lam), f(w, xs, lam), rtol=1e-14)
        np.testing.assert_allclose(jf(w, lam=lam, x=xs), f(w, xs, lam), rtol=1e-14)
        np.testing.assert_allclose(jf(w, xs, lam=lam), f(w, xs, lam), rtol=1e-14)
    with pytest.raises(gc.GraphcError, match="f: got an unexpected keyword argument 'y'"):
        gc.jit(f)(w, x, y=1.0)
    with pytest.raises(gc.GraphcError, match=r"^grad\(f\): got an unexpected keyword argument"):
        gc.grad(f)(w, x, y=1.0)
    with pytest.raises(gc.GraphcError, match="keyword-only and \\*\\*kwargs parameters \\(s\\)"):
        gc.jit(lambda x, *, s: x * s)(x, s=2.0)


def test_gradient_over_a_pytree_of_parameters():
    params = {"W": np.ones((3, 2)), "b": np.zeros(2), "layers": [np.array(2.0), (np.ones(2),)]}
    x = np.arange(6.0).reshape(2, 3)

    def loss(p, x):
        h = x @ p["W"] + p["b"]
        return np.sum(h * p["layers"][0] * p["layers"][1][0])

    g = gc.grad(loss)(params, x)
    assert set(g) == {"W", "b", "layers"} and isinstance(g["layers"], list)
    np.testing.assert_allclose(g["b"], [4.0, 4.0])
    np.testing.assert_allclose(g["W"], 2 * x.sum(0)[:, None] * np.ones((3, 2)))
    np.testing.assert_allclose(g["layers"][0], np.sum(x @ params["W"]))
    assert g["layers"][1][0].shape == (2,)


def test_fan_out_accumulates_x_times_x():
    assert float(gc.grad(lambda x: x * x)(3.0)) == 6.0
    assert float(gc.grad(lambda x: x * x * x + x)(2.0)) == 13.0


def test_broadcast_gradient_is_summed_back():
    g = gc.grad(lambda b, X: np.sum(X + b))(np.zeros(3), np.ones((4, 3)))
    np.testing.assert_array_equal(g, [4.0, 4.0, 4.0])


def test_has_aux():
    (value, aux), g = gc.value_and_grad(lambda x: (np.sum(x ** 2), x * 2), has_aux=True)(
        np.array([1.0, 2.0]))
    assert float(value) == 5.0
    np.testing.assert_array_equal(aux, [2.0, 4.0])
    np.testing.assert_array_equal(g, [2.0, 4.0])
    # any pair, a namedtuple too (as in JAX); on the interpreter (no compile)
    Pair = collections.namedtuple("Pair", "loss aux")
    (value, aux), g = gc.value_and_grad(lambda x: Pair(np.sum(x ** 2), x * 2),
                                        has_aux=True).interpret(np.array([1.0, 2.0]))
    assert float(value) == 5.0
    np.testing.assert_array_equal(aux, [2.0, 4.0])
    np.testing.assert_array_equal(g, [2.0, 4.0])


def test_composition_jit_of_grad_and_grad_of_jit():
    f = lambda x: np.sum(np.tanh(x) ** 2)  # noqa: E731
    x = np.linspace(-1, 1, 5)
    a = gc.jit(gc.grad(f))(x)
    b = gc.grad(gc.jit(f))(x)
    c = gc.grad(f)(x)
    np.testing.assert_allclose(a, c)
    np.testing.assert_allclose(b, c)
    np.testing.assert_allclose(c, 2 * np.tanh(x) * (1 - np.tanh(x) ** 2), rtol=1e-12)


def test_value_and_grad_inside_a_traced_function_and_closures():
    x = np.linspace(0, 1, 4)

    @gc.jit
    def step(w, x):
        loss, g = gc.value_and_grad(lambda w: np.sum((w * x - 1.0) ** 2))(w)
        return w - 0.1 * g, loss

    w, loss = step(np.ones(4), x)
    np.testing.assert_allclose(w, 1 - 0.1 * 2 * (x - 1) * x)
    assert float(loss) == pytest.approx(np.sum((x - 1) ** 2))


def test_an_inner_transform_on_constants_that_closes_over_a_traced_value():
    """A directional derivative: the inner grad's argument is a constant, but its
    function reads the outer x. It is inlined into the outer trace, as in JAX
    (a compiled module of its own could not be given x)."""
    x = np.array([0.5, -1.0, 2.0])

    def slope_along_t(x):        # d/dt sum(sin(t x)) at t = 1 is sum(x cos x)
        return gc.grad(lambda t: np.sum(np.sin(t * x)))(1.0)

    def scaled(x):               # an inner jit on a constant array
        return np.sum(gc.jit(lambda c: c * x)(np.array([1.0, 2.0, 3.0])))

    np.testing.assert_allclose(gc.jit(slope_along_t)(x), np.sum(x * np.cos(x)), rtol=1e-14)
    np.testing.assert_allclose(gc.grad(slope_along_t)(x), np.cos(x) - x * np.sin(x), rtol=1e-14)
    np.testing.assert_array_equal(gc.grad(scaled)(x), [1.0, 2.0, 3.0])

    # one that does not read x still runs compiled, to a value known while tracing
    def concrete_inside(x):
        g = gc.grad(lambda t: t ** 2)(3.0)
        assert type(g) is np.ndarray
        return x * float(g)
    np.testing.assert_array_equal(gc.jit(concrete_inside)(x), 6.0 * x)
    # .interpret() of one that reads x cannot be run on its own: said so
    with pytest.raises(TypeError, match="reads a value traced by an enclosing function"):
        gc.jit(lambda x: gc.jit(lambda c: c * x).interpret(np.ones(3)))(x)


def test_gradient_of_a_function_that_ignores_its_input_is_zero():
    g = gc.grad(lambda x, y: np.sum(y * 2.0))(np.ones(3), np.ones(2))
    np.testing.assert_array_equal(g, np.zeros(3))


def test_float32_gradients_stay_float32():
    w = np.ones(3, np.float32)
    g = gc.grad(lambda w: np.sum(0.5 * w ** 2.0 / 3.0))(w)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, w / 3.0)


def test_a_gradient_s_own_constants_raise_no_numpy_warnings(recwarn):
    # d/dy (-2)^y = (-2)^y log(-2): nan, as in JAX, and the log of a negative
    # base is graphc's constant, not the user's, so NumPy's warning is not said
    assert np.isnan(gc.grad(lambda y: (-2.0) ** y)(3.0))
    assert not [w for w in recwarn.list if issubclass(w.category, RuntimeWarning)]
