"""gc.nn against SciPy/closed forms, extreme logits, and label checks."""
import math

import numpy as np
import pytest
import scipy.special as sp

import graphc as gc
from graphc import api

RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, 5)) * 3
LABELS = np.array([0, 4, 2, 2])


def _gelu_exact(x):
    return 0.5 * x * (1 + sp.erf(x / math.sqrt(2)))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _cross_entropy(logits, labels):
    return -np.mean(sp.log_softmax(logits, axis=1)[np.arange(len(labels)), labels])


CASES = [
    ("relu", gc.nn.relu, lambda x: np.maximum(x, 0)),
    ("sigmoid", gc.nn.sigmoid, sp.expit),
    ("softplus", gc.nn.softplus, lambda x: np.logaddexp(0, x)),
    ("gelu", gc.nn.gelu, _gelu_exact),
    ("gelu_tanh", lambda x: gc.nn.gelu(x, approximate=True), _gelu_tanh),
    ("softmax", gc.nn.softmax, lambda x: sp.softmax(x, axis=-1)),
    ("softmax0", lambda x: gc.nn.softmax(x, axis=0), lambda x: sp.softmax(x, axis=0)),
    ("log_softmax", gc.nn.log_softmax, lambda x: sp.log_softmax(x, axis=-1)),
    ("logsumexp", gc.nn.logsumexp, sp.logsumexp),
    ("logsumexp_axis", lambda x: gc.nn.logsumexp(x, axis=(0,), keepdims=True),
     lambda x: sp.logsumexp(x, axis=0, keepdims=True)),
    ("logaddexp", lambda x: np.logaddexp(x, 0.5 * x), lambda x: np.logaddexp(x, 0.5 * x)),
    ("mse", lambda x: gc.nn.mse(x, x[::-1] * 0.5), lambda x: np.mean((x - x[::-1] * 0.5) ** 2)),
    ("cross_entropy", lambda x: gc.nn.cross_entropy(x, LABELS), lambda x: _cross_entropy(x, LABELS)),
]


def _values_and_gradient(fn, x, weights):
    """fn(x) at float64 and at float32, and the float64 gradient of
    sum(fn(x) * weights), from ONE compiled module (compile time: one module,
    not three). Returns (loss, (value64, value32, grad64))."""
    def loss(v):
        return np.sum(fn(v) * weights)

    def together(x64, x32):
        return fn(x64), fn(x32), gc.grad(loss)(x64)
    return loss, gc.jit(together)(x, x.astype(np.float32))


@pytest.mark.parametrize("name, fn, ref", CASES, ids=[c[0] for c in CASES])
def test_values_float32_and_gradients(name, fn, ref):
    """float64 values, float32 values (float32 in, float32 out) and the float64
    gradient against finite differences: one compiled module per case."""
    weights = RNG.normal(size=np.shape(ref(X)))
    loss, (out, out32, g) = _values_and_gradient(fn, X, weights)
    np.testing.assert_allclose(out, ref(X), rtol=1e-12, atol=1e-14)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, ref(X), rtol=1e-4, atol=1e-5)
    api.check_grad_values(loss, (X,), (g,), (0,))


def test_extreme_logits_stay_finite_and_correct():
    logits = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -999.0]])
    labels = np.array([0, 2])
    tols = (1e-9, 1e-4)          # float64, float32: f32 ulp at 1000 is 6e-5
    fns = [(gc.nn.logsumexp, sp.logsumexp), (gc.nn.softplus, lambda v: np.logaddexp(0, v)),
           (gc.nn.sigmoid, sp.expit), (gc.nn.log_softmax, lambda v: sp.log_softmax(v, axis=-1))]
    # weighted as in test_values_float32_and_gradients: its modules give the
    # values and float64 gradients here (no compile after it); cross_entropy at
    # both precisions and the float32 gradients are one module more
    weights = [RNG.normal(size=np.shape(ref(logits))) for _, ref in fns]
    losses = [lambda z, fn=fn, w=w: np.sum(fn(z) * w) for (fn, _), w in zip(fns, weights)]
    vg = gc.value_and_grad(lambda z: gc.nn.cross_entropy(z, labels))
    ce, grads32 = gc.jit(lambda a, b: ((vg(a), vg(b)), [gc.grad(f)(b) for f in losses]))(
        logits, logits.astype(np.float32))
    for (loss, g), tol in zip(ce, tols):
        assert np.isfinite(loss) and np.all(np.isfinite(g))
        np.testing.assert_allclose(loss, _cross_entropy(logits, labels), rtol=tol, atol=tol)
        expected_g = (sp.softmax(logits, axis=1) - np.eye(3)[labels]) / 2
        np.testing.assert_allclose(g, expected_g, atol=1e-6)
    for (fn, ref), w, g32 in zip(fns, weights, grads32):
        _, (out64, out32, g64) = _values_and_gradient(fn, logits, w)
        for out, gx, tol in ((out64, g64, tols[0]), (out32, g32, tols[1])):
            assert np.all(np.isfinite(out)), fn
            np.testing.assert_allclose(out, ref(logits), rtol=tol, atol=tol)
            assert np.all(np.isfinite(gx)), fn


def test_sigmoid_is_accurate_in_its_left_tail_with_finite_log_gradients():
    """Relative accuracy down to where the value underflows, in both float
    types (0.5 tanh(x/2) + 0.5 gave 0 at x = -40 in float64 and -20 in
    float32), and -log(sigmoid(x)), the logistic loss, with its gradient
    sigmoid(x) - 1 = -sigmoid(-x) finite there; sigmoid'(0) = 1/4."""
    x = np.array([-700.0, -90.0, -40.0, -20.0, -10.0, -1e-3, 0.0, 1e-3, 3.0, 40.0, 800.0])

    def neg_log(v):
        return -np.sum(np.log(gc.nn.sigmoid(v)))
    values64, values32, grad64, grad32, slope = gc.jit(lambda a, b: (
        gc.nn.sigmoid(a), gc.nn.sigmoid(b), gc.grad(neg_log)(a[1:]), gc.grad(neg_log)(b[3:]),
        gc.grad(lambda v: np.sum(gc.nn.sigmoid(v)))(a[6:7])))(x, x.astype(np.float32))
    np.testing.assert_allclose(values64, sp.expit(x), rtol=4e-16, atol=0)
    assert values32.dtype == np.float32
    np.testing.assert_allclose(values32, sp.expit(x).astype(np.float32), rtol=3e-7, atol=0)
    np.testing.assert_allclose(grad64, -sp.expit(-x[1:]), rtol=1e-14, atol=0)
    np.testing.assert_allclose(grad32, -sp.expit(-x[3:]).astype(np.float32), rtol=1e-6, atol=0)
    np.testing.assert_array_equal(slope, [0.25])


@pytest.mark.parametrize("written", [lambda z: 1 / (1 + np.exp(-z)),
                                     lambda z: 1.0 / (np.exp(-z) + 1.0)], ids=["1+e", "e+1"])
def test_a_sigmoid_written_by_hand_is_the_primitive_with_an_accurate_gradient(written):
    """1 / (1 + exp(-z)) compiles to the sigmoid primitive (passes/simplify.py,
    before autodiff): the chain rule through the written form gives inf / inf
    (nan) where exp(-z) overflows, z < -88 in float32; the primitive's
    s(z) s(-z) is right in both tails, in both float types."""
    z = np.array([-800.0, -100.0, -20.0, -1.0, -0.0, 0.0, 1.0, 20.0, 50.0, 800.0])
    f = gc.jit(gc.value_and_grad(lambda v: np.sum(written(v))))
    ops = [n.op for n in f.lower(z).optimized.topo()]
    assert "sigmoid" in ops and "div" not in ops, ops
    want = sp.expit(z) * sp.expit(-z)
    for dtype, rtol in ((np.float64, 1e-15), (np.float32, 1e-6)):
        value, grad = f(z.astype(dtype))
        assert grad.dtype == dtype
        np.testing.assert_allclose(value, np.sum(sp.expit(z)), rtol=rtol)
        np.testing.assert_allclose(grad, want.astype(dtype), rtol=rtol, atol=0)


def test_smooth_functions_keep_their_slope_at_zero_and_relu_keeps_nan():
    """softplus'(0) = 1/2 and softplus''(0) = 1/4 (its max(x, 0) and |x|
    had slope 0 there: a scale initialised at 0 never moved), sigmoid'(0) =
    1/4; relu(nan) is nan, as np.maximum(nan, 0) and PyTorch's relu."""
    x = np.array([0.0, -0.0, 1.0, -2.0])

    def total(fn):
        return lambda v: np.sum(fn(v))
    g_softplus, g_sigmoid, relu64, relu32 = gc.jit(lambda a, n: (
        gc.grad(total(gc.nn.softplus))(a), gc.grad(total(gc.nn.sigmoid))(a),
        gc.nn.relu(n), gc.nn.relu(n.astype(np.float32))))(x, np.array([np.nan, -1.0, 2.0]))
    np.testing.assert_allclose(g_softplus, sp.expit(x), rtol=1e-15)
    s = sp.expit(x)
    np.testing.assert_allclose(g_sigmoid, s * (1 - s), rtol=1e-15)
    for out in (relu64, relu32):
        np.testing.assert_array_equal(out, [np.nan, 0.0, 2.0])
    h = gc.hessian(total(gc.nn.softplus))(x)
    np.testing.assert_allclose(np.diag(h), s * (1 - s), rtol=1e-14)


def test_logsumexp_over_an_empty_axis_is_minus_infinity_as_scipys():
    x = np.zeros((3, 0))
    rows, whole = gc.jit(lambda v: (gc.nn.logsumexp(v, axis=1), gc.nn.logsumexp(v)))(x)
    np.testing.assert_array_equal(rows, sp.logsumexp(x, axis=1))
    assert whole == -np.inf


def test_logsumexp_of_all_minus_infinity_is_minus_infinity():
    x = np.full((2, 3), -np.inf)
    np.testing.assert_array_equal(gc.jit(lambda x: gc.nn.logsumexp(x, axis=1))(x), [-np.inf, -np.inf])


def test_relu_gradient_at_zero_is_zero():
    np.testing.assert_array_equal(gc.grad(lambda x: np.sum(gc.nn.relu(x)))(np.array([-1.0, 0.0, 2.0])),
                                  [0.0, 0.0, 1.0])


def test_one_hot():
    out = gc.jit(lambda y: gc.nn.one_hot(y, 4))(np.array([3, 0, 1]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.eye(4, dtype=np.float32)[[3, 0, 1]])
    np.testing.assert_array_equal(gc.nn.one_hot(np.array([1]), 2, dtype=np.float64), [[0.0, 1.0]])
    for bad in (0, -1, 2.0, True):      # named as such, not as labels out of range [0, -1)
        with pytest.raises(ValueError, match=rf"num_classes must be a Python int >= 1, got {bad}"):
            gc.nn.one_hot(np.array([0]), bad)


@pytest.mark.parametrize("bad", [np.array([0, 4]), np.array([-1, 0])])
def test_labels_out_of_range_raise_index_error(bad):
    with pytest.raises(IndexError, match=r"label.*\[0, 4\)") as e:
        gc.jit(lambda y: gc.nn.one_hot(y, 4))(bad)
    assert isinstance(e.value, gc.GraphcError)
    with pytest.raises(IndexError, match=r"\[0, 4\)"):
        gc.jit(lambda x, y: gc.nn.cross_entropy(x, y))(np.zeros((2, 4)), bad)
    with pytest.raises(IndexError):
        gc.nn.one_hot(bad, 4)     # eager, on NumPy arrays


def test_cross_entropy_rejects_float_labels_and_bad_shapes():
    with pytest.raises(TypeError, match="integer"):
        gc.jit(lambda x, y: gc.nn.cross_entropy(x, y))(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(gc.ShapeError, match=r"\(N, C\)"):
        gc.jit(lambda x, y: gc.nn.cross_entropy(x, y))(np.zeros((2, 3)), np.zeros(3, int))


def _torch_cross_entropy(logits, labels, weight=None, ignore_index=None, reduction="mean",
                         label_smoothing=0.0):
    """PyTorch's F.cross_entropy, by its definition, in NumPy."""
    n, classes = logits.shape
    logp, eps = sp.log_softmax(logits, axis=1), label_smoothing
    w = np.ones(classes) if weight is None else weight
    if labels.dtype.kind == "f":     # class probabilities
        losses = -(w * logp * (labels * (1 - eps) + eps / classes)).sum(1)
        return {"none": losses, "sum": losses.sum(), "mean": losses.sum() / n}[reduction]
    kept = labels != ignore_index
    safe = np.where(kept, labels, 0)
    nll = -w[safe] * logp[np.arange(n), safe] * kept
    smooth = -(w * logp).sum(1) * kept
    if reduction == "none":
        return (1 - eps) * nll + eps / classes * smooth
    total = 1 if reduction == "sum" else (w[safe] * kept).sum()
    return ((1 - eps) * nll.sum() + eps / classes * smooth.sum()) / total


def test_cross_entropy_takes_pytorchs_weight_ignore_index_reduction_and_label_smoothing():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4))
    indices = np.array([0, 3, -100, 2, 1, -100])
    probabilities = rng.dirichlet(np.ones(4), size=6)
    options = [dict(ignore_index=-100), dict(ignore_index=-100, reduction="sum"),
               dict(ignore_index=-100, reduction="none", label_smoothing=0.1),
               dict(weight=np.array([1.0, 2.0, 0.5, 3.0]), ignore_index=-100),
               dict(weight=np.array([1.0, 2.0, 0.5, 3.0]), ignore_index=-100, label_smoothing=0.2),
               dict(label_smoothing=np.array(0.1)), dict(reduction="none")]
    cases = [(indices if "ignore_index" in o else np.abs(indices) % 4, o) for o in options]
    cases += [(probabilities, dict(weight=np.arange(1.0, 5.0), label_smoothing=0.1)),
              (probabilities, dict(reduction="none"))]
    f = gc.jit(lambda z: [gc.nn.cross_entropy(z, labels, **o) for labels, o in cases])
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        for (labels, o), got in zip(cases, f(logits.astype(dtype))):
            assert got.dtype == dtype      # weights and probabilities take the logits' type
            np.testing.assert_allclose(got, _torch_cross_entropy(logits, labels, **o), rtol=rtol)
    weights = [rng.normal(size=np.shape(_torch_cross_entropy(logits, labels, **o)))
               for labels, o in cases]
    gc.check_grad(lambda z: sum(np.sum(w * gc.nn.cross_entropy(z, labels, **o))
                                for w, (labels, o) in zip(weights, cases)), logits)
    # every label ignored: a mean over nothing, nan (as PyTorch's)
    assert np.isnan(gc.jit(lambda z: gc.nn.cross_entropy(z, np.full(6, -1), ignore_index=-1))(
        logits))


@pytest.mark.parametrize("options, error, message", [
    (dict(reduction="avg"), ValueError, "reduction is 'mean', 'sum' or 'none', not 'avg'"),
    (dict(label_smoothing=1.5), ValueError, r"label_smoothing must be a number in \[0, 1\]"),
    (dict(weight=np.ones(3)), gc.ShapeError, r"one entry per class \(4,\), got \(3,\)"),
    (dict(ignore_index=-1), IndexError, r"\[0, 4\)"),         # -100 is not ignored
    (dict(labels=np.ones((2, 4)), ignore_index=0), ValueError,
     "ignore_index is for class indices, not class probabilities"),
    (dict(labels=np.ones((2, 4), int)), TypeError,
     r"labels of the logits' shape \(2, 4\) are class probabilities, a float array, not int64"),
])
def test_cross_entropy_refuses_bad_options_naming_them(options, error, message):
    labels = options.pop("labels", np.array([0, -100]))
    with pytest.raises(error, match=message + r".*test_nn.py:"):
        gc.jit(lambda z: gc.nn.cross_entropy(z, labels, **options))(np.zeros((2, 4)))


def test_nn_functions_work_eagerly_on_numpy_arrays():
    np.testing.assert_allclose(gc.nn.softmax(X), sp.softmax(X, axis=-1))
    assert gc.nn.cross_entropy(X, LABELS) == pytest.approx(_cross_entropy(X, LABELS))
