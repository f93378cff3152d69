"""Indices picking one column per row (passes/picks.py), and broadcast_to
operands read as their source (passes/simplify.py)."""
import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.benchmarks.workloads import softmax_cross_entropy


def cross_entropy_grad(logits, labels):
    """d mean(-log softmax(logits)[i, labels[i]]) / d logits, in NumPy."""
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    probs[np.arange(len(labels)), labels] -= 1
    return probs / len(labels)


def kernel_ops(f, *args):
    return [k.ops for k in f.inspect(*args).kernels]


def test_the_cross_entropy_backward_is_one_kernel_without_a_scatter():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    y = rng.integers(0, 5, size=8)
    f = gc.jit(gc.grad(softmax_cross_entropy))
    ops = kernel_ops(f, x, y)
    flat = [op for k in ops for op in k]
    assert "scatter_add" not in flat and "broadcast_to" not in flat
    # the gradient: the one-hot, the softmax and their difference, one pass
    backward = [k for k in ops if "eq" in k]
    assert len(backward) == 1 and {"where", "exp", "mul", "sub"} <= set(backward[0])
    # and no row sum of the scattered gradient before it (the loss is not computed)
    assert ["sum"] not in ops
    np.testing.assert_allclose(f(x, y), cross_entropy_grad(x.astype(np.float64), y),
                               rtol=1e-5, atol=1e-7)


# each example compiles a module of its own (3-4 s): arange(rows) * cols is a
# constant. Few in the normal suite, which must stay near 10 minutes in CI;
# many under GRAPHC_FUZZ_EXAMPLES.
@settings(max_examples=int(os.environ.get("GRAPHC_FUZZ_EXAMPLES", "5")))
@given(rows=st.integers(1, 40), cols=st.integers(1, 20), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_the_pick_gradient_matches_the_interpreter_and_numpy(rows, cols, seed, dtype):
    rng = np.random.default_rng(seed)
    x = (3 * rng.normal(size=(rows, cols))).astype(dtype)
    y = rng.integers(-cols, cols, size=rows)        # negative labels wrap, as in NumPy
    f = gc.jit(gc.value_and_grad(softmax_cross_entropy))
    loss, g = f(x, y)
    ref_loss, ref_g = f.interpret(x, y)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(loss, ref_loss, **tol)
    np.testing.assert_allclose(g, ref_g, **tol)
    np.testing.assert_allclose(g, cross_entropy_grad(x.astype(np.float64), y % cols),
                               **(tol if dtype == np.float64 else dict(rtol=1e-4, atol=1e-6)))


def test_the_pick_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 4))
    y = np.array([0, 3, -1, 2, 1, -4])
    gc.check_grad(softmax_cross_entropy, x, y)
    gc.check_grad(lambda v: gc.nn.cross_entropy(v, y % 4), x)


def test_picks_that_are_not_one_per_row_keep_the_scatter():
    """Near misses of the rule: flat indices i * c + y[i] whose labels are not
    checked against the row length (one reaches into the next row), and a
    pick from fewer rows than the array has (the last rows get nothing)."""
    x = np.arange(20.0).reshape(5, 4)
    w = np.array([1.0, 2.0, 3.0])

    def scatter_kept(f, *args):
        assert "scatter_add" in [op for k in kernel_ops(f, x, *args) for op in k]

    g = gc.jit(gc.grad(lambda v, y: np.sum(v.reshape(-1)[np.arange(3) * 4 + y] * w)))
    y = np.array([1, 7, 0])         # 7 reaches into the next row
    scatter_kept(g, y)
    expected = np.zeros(20)
    np.add.at(expected, np.arange(3) * 4 + y, w)
    np.testing.assert_array_equal(g(x, y), expected.reshape(5, 4))
    h = gc.jit(gc.grad(lambda v, y: np.sum(v[np.arange(3), y] * w)))
    y = np.array([3, 0, 2])
    scatter_kept(h, y)
    expected = np.zeros((5, 4))
    expected[np.arange(3), y] = w
    np.testing.assert_array_equal(h(x, y), expected)


def test_an_elementwise_op_reads_a_broadcast_operand_in_place():
    f = gc.jit(lambda x, b: x * np.broadcast_to(b, x.shape) + 1.0)
    x, b = np.ones((4, 3)), np.arange(3.0)
    assert kernel_ops(f, x, b) == [["mul", "add"]]
    np.testing.assert_array_equal(f(x, b), x * b + 1)
    gc.check_grad(lambda x, b: np.sum(np.sin(x * np.broadcast_to(b, x.shape))), x, b,
                  argnums=(0, 1))
