"""Equal traces share their optimized graph and generated module
(graphc.lowering); any difference in what the code depends on keeps them apart."""
import re

import numpy as np
import pytest

import graphc as gc
from graphc import codegen, lowering


def _entries(compiled):
    return list(compiled._cache.values())


def _mse(p, x, y):
    return np.mean((np.tanh(x @ p["w"]) - y) ** 2)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=3)}, rng.normal(size=(8, 3)), rng.normal(size=8)


def test_a_second_compile_step_of_the_same_loss_reuses_the_lowering():
    params, x, y = _data()
    first, second = (gc.compile_step(_mse, gc.optim.Adam(0.01)) for _ in range(2))
    p1, p2 = {"w": params["w"].copy()}, {"w": params["w"].copy()}
    losses = [(first(p1, x, y), second(p2, x, y)) for _ in range(3)]
    (a,), (b,) = _entries(first._compiled), _entries(second._compiled)
    assert a.graph is not b.graph                   # traced again (tests/test_fresh_traces.py)
    assert a.optimized is b.optimized and a.module is b.module and a.driver is b.driver
    assert all(l1 == l2 for l1, l2 in losses)       # each its own state and workspace
    np.testing.assert_array_equal(p1["w"], p2["w"])


def test_gc_train_called_again_reuses_both_signatures_lowerings():
    params, x, y = _data()
    x, y = np.concatenate([x] * 3)[:20], np.concatenate([y] * 3)[:20]    # batches of 8, 8, 4
    runs = []
    for _ in range(2):
        p = {"w": params["w"].copy()}
        history = gc.train(_mse, p, (x, y), gc.optim.SGD(0.1), batch_size=8, epochs=2,
                           seed=0, progress=False)
        runs.append((p["w"], history))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert len(lowering._kept) == 2         # full batches and the short last one, once each


def test_a_new_constant_or_output_structure_gets_its_own_lowering():
    x = np.linspace(-1, 1, 6)
    fns = [lambda x: {"a": np.tanh(x) * 2.0},
           lambda x: {"a": np.tanh(x) * 3.0},      # a constant
           lambda x: {"b": np.tanh(x) * 2.0},      # the output's structure
           lambda x: (np.tanh(x) * 2.0,)]
    jitted = [gc.jit(f) for f in fns]
    results = [f(x) for f in jitted]
    modules = [_entries(f)[0].module for f in jitted]
    assert len({id(m) for m in modules}) == len(fns)
    for f, got in zip(fns, results):
        (got_leaves, got_tree), (want_leaves, want_tree) = map(gc.pytree.flatten, (got, f(x)))
        assert got_tree == want_tree
        np.testing.assert_allclose(got_leaves, want_leaves, rtol=1e-12)
    again = gc.jit(fns[0])
    again(x)
    assert _entries(again)[0].module is modules[0]


def test_the_same_code_on_other_lines_shares_the_code_and_names_its_own_lines(raised_line):
    first = gc.jit(lambda x, i: x[i] * 2.0)
    second = gc.jit(lambda x, i: x[i] * 2.0)
    x = np.arange(5.0)
    for f in (first, second):
        np.testing.assert_array_equal(f(x, np.array([1, -2])), [2.0, 6.0])
    a, b = _entries(first)[0], _entries(second)[0]
    assert a.module is b.module and a.optimized is not b.optimized
    first_line, second_line = (
        raised_line(lambda: f(x, np.array([1, 7])), IndexError, r"index out of range \[-5, 5\)")
        for f in (first, second))
    assert second_line == first_line + 1


def test_another_vector_width_gets_its_own_lowering(monkeypatch):
    x = np.linspace(-1, 1, 6)
    wide = gc.jit(lambda x: np.exp(x) + 1.0)
    wide(x)
    monkeypatch.setenv("GRAPHC_VECTOR_WIDTH", "256")
    narrow = gc.jit(wide.fn)
    np.testing.assert_allclose(narrow(x), np.exp(x) + 1.0)
    assert "vectors_of_256_bits()" in _entries(narrow)[0].module.source
    assert "vectors_of_256_bits()" not in _entries(wide)[0].module.source


def test_graphs_that_cannot_be_compared_are_lowered_each_time(monkeypatch):
    monkeypatch.setattr(lowering, "_key", lambda graph, options: None)
    f, g = gc.jit(lambda x: np.tanh(x)), gc.jit(lambda x: np.tanh(x))
    x = np.ones(3)
    np.testing.assert_array_equal(f(x), g(x))
    assert _entries(f)[0].optimized is not _entries(g)[0].optimized
    assert not lowering._kept


def test_a_code_generation_setting_changed_in_the_process_gets_new_code(monkeypatch):
    x = np.random.default_rng(1).standard_normal((40, 10))
    f = gc.jit(lambda x: np.exp(x) * 2.0)
    assert "_blk[" in f.inspect(x).source            # rows of 10 are short: flat
    monkeypatch.setattr(codegen, "SHORT_ROW", 8)     # now they are not
    g = gc.jit(f.fn)
    assert "_blk[" not in g.inspect(x).source
    np.testing.assert_allclose(g(x), np.exp(x) * 2.0, rtol=1e-12)


def test_graphs_holding_large_constants_are_not_kept():
    table = np.random.default_rng(2).standard_normal(lowering.MAX_CONST_BYTES // 8 + 1)
    small = gc.jit(lambda v: np.sum(np.tanh(v) * 3.0))
    big = gc.jit(lambda v: np.sum(table * v[0]))
    v = np.ones(4)
    small(v)
    np.testing.assert_allclose(big(v), table.sum(), rtol=1e-12)
    assert len(lowering._kept) == 1     # the small one's


def test_a_python_int_argument_checked_on_other_lines_shares_the_code(raised_line):
    first = gc.jit(lambda x, n: x + n)
    second = gc.jit(lambda x, n: x + n)
    x = np.arange(4, dtype=np.uint8)
    for f in (first, second):
        np.testing.assert_array_equal(f(x, 3), x + 3)
    assert _entries(first)[0].module is _entries(second)[0].module
    # NumPy refuses -1 for uint8; each names its own line
    first_line, second_line = (raised_line(lambda: f(x, -1), OverflowError, "")
                               for f in (first, second))
    assert second_line == first_line + 1


def test_slices_at_different_places_are_one_compiled_kernel():
    """An unrolled loop's x[t] (and the gradient's scatter back) differ only
    in where they start: passed at run time, so one function serves them."""
    def loss(w, xs):
        h = np.zeros(xs.shape[1:])
        for t in range(1, 6):
            h = np.tanh(xs[t] * w + h[::-1] + xs[t, :, 5::-2].sum())
        return np.sum(h ** 2)
    rng = np.random.default_rng(0)
    w, xs = rng.normal(size=9), rng.normal(size=(6, 4, 9))
    f = gc.jit(gc.value_and_grad(loss))
    source = f.lower(w, xs).source
    run = source[source.index("def run("):]
    calls = re.findall(r"(k\d+_(?:un)?slice)\(", run)
    assert len(calls) >= 15 and len(set(calls)) <= 4       # 5 of each of three kinds
    assert "np.uintp(5)" in run and "np.uintp(1)" in run
    value, grad = f(w, xs)
    np.testing.assert_allclose(value, loss(w, xs), rtol=1e-12)
    gc.check_grad(loss, w, xs)
