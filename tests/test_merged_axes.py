"""Elementwise kernels over 3 axes or more loop over their leading axes merged
where every operand broadcasts along them alike (graphc/merged_axes.py):
which axes merge, and compiled results (values, gradients, new batch sizes,
threads) equal the interpreter's."""
import re

import numpy as np
import pytest

import graphc as gc
from graphc import codegen, merged_axes, threads
from test_threads import _threaded_from

SPACE = (4, 3, 5, 6)


def _groups(*operand_shapes, space=SPACE, reduce_axes=None):
    """The merge plan's groups for `x + operand + ...` (and a sum over
    `reduce_axes` of it), x of `space`; None where nothing merges."""
    def f(x, *ops):
        y = x
        for o in ops:
            y = y * o + 1.0
        return y if reduce_axes is None else np.sum(y, axis=reduce_axes)
    args = [np.ones(space)] + [np.ones(s) for s in operand_shapes]
    graph = gc.jit(f).lower(*args).optimized
    units = [u for u in codegen._units(graph) if graph.node(u[0]).op not in ("input", "const")]
    (members,) = [u for u in units if len(u) > 1 or graph.node(u[0]).op != "reshape"]
    plan = merged_axes.plan(graph, members, codegen._space_of(graph, members))
    return None if plan is None else plan.groups


def test_axes_merge_where_every_operand_spans_them_or_is_broadcast_along_them():
    assert _groups((6,)) == [[0, 1, 2], [3]]                 # a bias
    assert _groups(SPACE) == [[0, 1, 2], [3]]
    assert _groups((5, 6), (3, 1, 1)) is None               # no two neighbours alike
    assert _groups((3, 5, 1)) == [[0], [1, 2], [3]]          # spans 1 and 2, not 0
    assert _groups((4, 1, 1, 6)) == [[0], [1, 2], [3]]
    assert _groups((6,), space=(5, 6)) is None               # two axes: nothing to merge
    assert _groups((6,), reduce_axes=-1) == [[0, 1, 2], [3]]
    assert _groups((6,), reduce_axes=(1, 2)) == [[0], [1, 2], [3]]
    # sums over axis 0 become the column-sum form: slower for short rows, not for long
    assert _groups((6,), reduce_axes=(0, 1, 2)) is None
    long_rows = (4, 3, merged_axes.COLUMN_SUM_ROWS_MIN)
    assert _groups(long_rows[-1:], space=long_rows, reduce_axes=(0, 1)) == [[0, 1], [2]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_bias_gradient_over_long_rows_is_a_column_sum_over_the_merged_rows(dtype):
    """A transformer's bias and layer-norm gradients: sums over (batch,
    tokens) of rows of 64 or more, as one column sum over batch x tokens
    rows (float32's in blocks folded into float64 totals), at batches 2, 9, 1."""
    rng = np.random.default_rng(3)
    b = rng.normal(size=96).astype(dtype)
    c = rng.normal(size=96).astype(dtype)

    def loss(b, x):
        return np.sum(np.tanh(x * c + b) ** 2)
    f = gc.jit(gc.grad(loss))
    for batch in (2, 9, 1):
        x = rng.normal(size=(batch, 300, 96)).astype(dtype)       # 2700 rows: several blocks
        got, want = f(b, x), f.interpret(b, x)
        assert got.dtype == dtype
        tol = 2e-4 if dtype == np.float32 else 1e-10
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    run = f.lower(b, x[[0, 0]]).source.split("def run(")[1]     # (batch 1: a pattern of its own)
    assert ("sums.fold_rows" in run) == (dtype == np.float32)
    assert re.search(r"k\d+_i1 in", run) and not re.search(r"k\d+_i2 in", run)   # 2 loops, not 3


CASES = [   # one a line: a failure names its line
    lambda x, b, c: np.maximum(x + b, 0.0),
    lambda x, b, c: np.tanh(x * c + b) * x,
    lambda x, b, c: np.exp(x - x.max(axis=-1, keepdims=True)),
    lambda x, b, c: np.sum(np.sin(x) * b, axis=-1),
    lambda x, b, c: np.sum(x * c, axis=(1, 2), keepdims=True),
    lambda x, b, c: np.mean((x - c) ** 2, axis=(1, 2)),
    lambda x, b, c: np.where(x > c, x, b),
    lambda x, b, c: x * np.arange(6.0),                      # a loop-index constant
    # a reduction's result read by the next kernel is an operand like any other
    lambda x, b, c: x / np.sum(x * x, axis=(1, 2), keepdims=True),
    lambda x, b, c: np.var(x, axis=(0, 2), ddof=1),
]


def _args(batch=4, dtype=np.float64):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((batch, 3, 5, 6)).astype(dtype),
            rng.standard_normal(6).astype(dtype),
            rng.standard_normal((3, 5, 1)).astype(dtype))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"line{c.__code__.co_firstlineno}")
def test_merged_kernels_equal_the_interpreter_with_gradients(case):
    def loss(x, b, c):
        return np.sum(np.cos(case(x, b, c)))
    f = gc.jit(lambda x, b, c: (case(x, b, c), gc.grad(loss, argnums=(0, 1, 2))(x, b, c)))
    for batch in (4, 7, 1):          # new batch sizes re-use the compiled module
        args = _args(batch)
        got, grads = f(*args)
        want, want_grads = f.interpret(*args)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        for g, w in zip(grads, want_grads):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_a_conv_like_relu_runs_as_two_loops():
    x, b, _ = _args(dtype=np.float32)
    source = gc.jit(lambda x, b: np.maximum(x + b, 0.0)).inspect(x, b).source
    run = source[source.index("def run("):]
    assert run.count("for ") == 2, run
    assert "k0_n0 = (in0_shape0) * (in0_shape1) * (in0_shape2)" in run, run


@pytest.mark.skipif(threads.count() < 2, reason="one thread here")
def test_merged_kernels_split_over_threads_equal_the_interpreter():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 20, 5, 16))
    b = rng.standard_normal(16)
    with _threaded_from(20_000):
        f = gc.jit(lambda x, b: (np.tanh(x * b + 1.0), np.sum(np.exp(x - b), axis=-1)))
        assert any(k.parallel for k in f.inspect(x, b).kernels)
        for got, want in zip(f(x, b), f.interpret(x, b)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
