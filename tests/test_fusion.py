"""Fusion: kernel counts, convexity, and regressions found by the fuzzer."""
import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc import api, codegen, pytree, target
from graphc import prims as P
from graphc.benchmarks.workloads import softmax_cross_entropy


def test_a_six_op_elementwise_chain_is_one_kernel():
    f = gc.jit(lambda x, y: np.tanh(np.exp(x * 2.0 + y) - 1.0) / 3.0)
    x, y = np.ones((4, 5), np.float32), np.ones(5, np.float32)
    info = f.inspect(x, y)
    assert len(info.kernels) == 1
    assert info.kernels[0].ops == ["mul", "add", "exp", "sub", "tanh", "div"]
    np.testing.assert_allclose(f(x, y), np.tanh(np.exp(x * 2 + y) - 1) / 3, rtol=1e-6)


def test_generated_functions_skip_the_passes_that_find_nothing_in_them():
    """run, outlined kernels and train_epoch compile with dispatch.GeneratedCode:
    Numba's pipeline without InlineClosureLikes, NopythonRewrites and
    ReconstructSSA (their scans were 0.6-0.7 s of W2's cold compile)."""
    import uuid

    from numba.core.compiler import DefaultPassBuilder, Flags, StateDict

    from graphc.kernels import dispatch
    scale = 1.0 + uuid.uuid4().int % 10_000     # a new module: compiled, not loaded from disk
    f = gc.jit(lambda x: np.tanh(x) * scale)
    x = np.linspace(-2, 2, 5)
    np.testing.assert_allclose(f(x), np.tanh(x) * scale, rtol=1e-14)
    decorators = [line for line in f.inspect(x).source.splitlines() if line.startswith("@njit(cache=True")]
    assert decorators and all("pipeline_class=dispatch.GeneratedCode" in d for d in decorators)
    (entry,) = f._cache.values()
    (compiled,) = entry.driver.overloads.values()
    ran = {name.split("_", 1)[1] for name in compiled.metadata["pipeline_times"]["nopython"]}
    assert {"nopython_type_inference", "native_lowering"} <= ran
    assert not {"inline_closure_likes", "nopython_rewrites", "reconstruct_ssa"} & ran
    state = StateDict(flags=Flags(), func_ir=None)
    default = [p for p, _ in DefaultPassBuilder.define_nopython_pipeline(state).passes]
    assert set(dispatch.GeneratedCode.SKIPPED) <= set(default)     # what is skipped still exists


def test_a_large_driver_is_compiled_without_llvms_function_passes(monkeypatch):
    """A driver (`run`, `train_epoch`) of more than LARGE_DRIVER_LINES lines
    compiles with dispatch.GeneratedDriver: LLVM's module passes alone, not
    the function passes before them (four transformer blocks' `run`: 1.4 s),
    and computes the same."""
    import uuid

    from numba.core import config
    monkeypatch.setattr(config, "LLVM_PASS_TIMINGS", True)
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    passes = {}
    for lines, pipeline in ((10_000, "GeneratedCode"), (20, "GeneratedDriver")):
        monkeypatch.setattr(codegen, "LARGE_DRIVER_LINES", lines)
        scale = 1.0 + uuid.uuid4().int % 10_000     # a new module: compiled, not loaded from disk
        f = gc.jit(lambda x: np.sum(np.tanh(x * scale) ** 2) + np.max(x))
        np.testing.assert_allclose(f(x), np.sum(np.tanh(x * scale) ** 2) + np.max(x), rtol=1e-14)
        assert re.search(rf"pipeline_class=dispatch.{pipeline}\)\ndef run\(", f.inspect(x).source)
        (entry,) = f._cache.values()
        (compiled,) = entry.driver.overloads.values()
        passes[pipeline] = [name.split(" (")[0].split(" on ")[0]
                            for name in (r.name for r in compiled.metadata["llvm_pass_timings"])]
    assert "Function passes" in passes["GeneratedCode"]
    assert "Function passes" not in passes["GeneratedDriver"]
    assert "Module passes" in passes["GeneratedDriver"]
    histories = []
    for lines, pipeline in ((10_000, "GeneratedCode"), (20, "GeneratedDriver")):
        monkeypatch.setattr(codegen, "LARGE_DRIVER_LINES", lines)
        loss = lambda p, x: np.sum(np.tanh(x * p) ** 2)     # noqa: E731
        step = gc.compile_step(loss, gc.optim.SGD(0.1))
        assert re.search(rf"pipeline_class=dispatch.{pipeline}\)\ndef train_epoch\(",
                         step.inspect(np.ones(4), x).source)
        histories.append(gc.train(loss, np.ones(4), (x,), gc.optim.SGD(0.1), batch_size=2,
                                  epochs=2, seed=0, progress=False))
    np.testing.assert_array_equal(histories[0], histories[1])


def test_reduction_is_fused_as_the_groups_epilogue():
    f = gc.jit(lambda x: np.sum(np.exp(x - 1.0), axis=1))
    # never run: lower(), no Numba compile (a fused row sum compiles and runs
    # in test_shape_reuse's test_repeat_calls_take_the_fast_path_...)
    info = f.lower(np.ones((3, 4)))
    assert [k.ops for k in info.kernels] == [["sub", "exp", "sum"]]


def test_a_loop_never_reads_a_reduction_it_is_accumulating():
    # found by the fuzzer: a keepdims sum over a size-1 axis has the loop's own
    # shape, and a later merge pulled its consumer into the same loop
    def f(a):
        s = np.sin(a)
        m = np.sum(s - a, axis=-1, keepdims=True) / 1.0
        return np.sum(np.tanh(np.minimum(s + a, m))) + np.sum(np.tanh(m))

    x = np.array([0.3], np.float32)
    np.testing.assert_allclose(gc.jit(f)(x), f(x), rtol=1e-6)


def test_a_chain_over_many_operands_is_one_kernel():
    # found by the fuzzer when kernels were Numba calls: CPython passes over 30
    # arguments as f(*args), which Numba could not inline. Kernels are now
    # inlined as source, so any number of operands fuses into one loop.
    def f(*xs):
        total = xs[0]
        for k, x in enumerate(xs[1:]):
            total = total + np.sin(x) * float(k)
        return total

    xs = [np.full(4, 0.1 * k) for k in range(40)]
    info = gc.jit(f).inspect(*xs)
    assert len(info.kernels) == 1 and info.kernels[0].ops.count("sin") == 39
    np.testing.assert_allclose(gc.jit(f)(*xs), f(*xs), rtol=1e-12)


def test_concatenating_many_arrays_is_one_kernel():
    xs = [np.full((2, 1), float(k)) for k in range(31)]
    f = gc.jit(lambda *xs: np.concatenate(xs, axis=1) * 2.0)
    np.testing.assert_array_equal(f(*xs), np.concatenate(xs, axis=1) * 2.0)
    assert sum(k.ops == ["concatenate"] for k in f.inspect(*xs).kernels) == 1


def test_groups_are_convex():
    from graphc.passes.fuse import is_convex, successor_table

    def f(x):
        a = np.exp(x)
        b = np.sum(a, axis=1, keepdims=True)   # a reduction between two elementwise ops
        return a / b

    # the graph only: lower(), no Numba compile (a softmax's exp and row sum
    # compile and run in test_log_softmax's test_intermediates_the_user_also_returns_...)
    info = gc.jit(f).lower(np.ones((2, 3)))
    g = info.optimized
    position = {n.id: k for k, n in enumerate(g.topo())}
    for members in g.groups:
        others = [set(o) for o in g.groups if o != members]
        unit_of = {n: o for o in others for n in o}
        spans = [(min(map(position.get, o)), max(map(position.get, o))) for o in others]
        assert is_convex(successor_table(g), set(members), position, unit_of, spans)
    assert any(set(g.node(m).op for m in members) == {"exp", "sum"} for members in g.groups)


@pytest.mark.parametrize("fn, b_shape, transposes, products", [
    (lambda a, b: (a @ b).T + 1.0, (4, 5), 0, 1),
    (lambda a, b: (a.T.T @ b.T).T, (5, 4), 0, 1),               # flags flip back and forth
    (lambda a, b: np.swapaxes(np.stack([a, a]) @ np.stack([b, -b]), 1, 2), (4, 5), 0, 1),
    (lambda a, b: ((a @ b).T, a @ b), (4, 5), 1, 1),            # the product is read twice
], ids=["product", "flags-flip", "stacked", "read-twice"])
def test_transposes_around_a_product_are_blas_flags(fn, b_shape, transposes, products):
    a = np.arange(12.0).reshape(3, 4) / 7
    b = np.arange(20.0).reshape(b_shape) / 9
    f = gc.jit(fn)
    info = f.inspect(a, b)
    assert sum("transpose" in k.ops for k in info.kernels) == transposes
    assert sum("matmul" in k.ops for k in info.kernels) == products
    want = fn(a, b)
    for result in (f(a, b), f.interpret(a, b)):
        for got, expected in zip(*(r if isinstance(r, tuple) else (r,) for r in (result, want))):
            np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("fn, transposes", [
    (lambda x: x.transpose(1, 2, 0).transpose(2, 0, 1) * 2, 0),      # back as it was
    (lambda x: np.swapaxes(x.transpose(1, 0, 2), 1, 2) * 2, 1),
    (lambda x: x.T.transpose(0, 2, 1).T * 2, 1),
], ids=["cancel", "compose", "three"])
def test_a_transpose_of_a_transpose_is_one_transpose_or_none(fn, transposes):
    x = np.arange(24.0).reshape(2, 3, 4)
    f = gc.jit(fn)
    assert [n.op for n in f.lower(x).optimized.topo()].count("transpose") == transposes
    np.testing.assert_array_equal(f(x), fn(x))
    w = np.sin(np.arange(24.0)).reshape(fn(x).shape)
    # linear: the gradient is w moved back to where each element came from
    moved = fn(np.arange(24.0).reshape(x.shape)) / 2
    want = np.zeros(24)
    want[moved.astype(int).ravel()] = 2 * w.ravel()
    np.testing.assert_array_equal(gc.grad(lambda x: np.sum(fn(x) * w))(x), want.reshape(x.shape))


@pytest.mark.parametrize("pieces, tiled", [
    ([(None, 2), (2, 5), (5, None)], True),      # z[:, :2], z[:, 2:5], z[:, 5:]: an LSTM's gates
    ([(5, None), (None, 2), (2, 5)], True),      # summed in another order
    ([(None, 2), (3, None)], False),             # a gap
    ([(None, 3), (2, None)], False),             # an overlap
], ids=["tiled", "reordered", "gap", "overlap"])
def test_gradients_of_slices_tiling_an_array_are_their_concatenation(pieces, tiled):
    z = np.linspace(-1.0, 1.0, 21).reshape(3, 7)

    def loss(z):
        return sum(np.sum(np.tanh(z[:, a:b] * (k + 1)) ** 2) for k, (a, b) in enumerate(pieces))
    grad = gc.jit(gc.grad(loss))
    ops = [n.op for n in grad.lower(z).optimized.topo()]
    assert ("concatenate" in ops and "unslice" not in ops) == tiled, ops
    numeric = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        hi, lo = z.copy(), z.copy()
        hi[i] += 1e-6
        lo[i] -= 1e-6
        numeric[i] = (loss(hi) - loss(lo)) / 2e-6
    np.testing.assert_allclose(grad(z), numeric, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(grad(z), grad.interpret(z), rtol=1e-12)


@pytest.mark.parametrize("readers", [1, 2, 4])
def test_a_matrix_several_products_read_transposed_is_transposed_once(readers):
    """h @ W.T at every step of an unrolled loop (and an RNN's backward
    through h @ W): one copy of W.T that every product reads, not a BLAS
    flag on each, where the GEMM copied W.T at every call; one reader keeps
    the flag."""
    rng = np.random.default_rng(5)
    w, h0 = rng.normal(size=(6, 6)) / 3, rng.normal(size=(4, 6))

    def loss(w, h):
        for _ in range(readers):
            h = np.tanh(h @ w.T)
        return np.sum(h ** 2)
    f = gc.jit(gc.value_and_grad(loss))
    graph = f.lower(w, h0).optimized
    products = [n for n in graph.topo() if n.op in ("matmul", "matmul_add")]
    copies = [n for n in graph.topo() if n.op == "transpose"]
    if readers >= 2:
        assert len(copies) == 1 and graph.node(copies[0].inputs[0]).op == "input"
        assert not any(n.p.get("transpose_b") for n in products)
    else:
        assert not copies and any(n.p.get("transpose_b") for n in products)
    value, grad = f(w, h0)
    want, want_grad = f.interpret(w, h0)
    np.testing.assert_allclose(value, loss(w, h0), rtol=1e-13)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-14)
    numeric = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        hi, lo = w.copy(), w.copy()
        hi[i] += 1e-6
        lo[i] -= 1e-6
        numeric[i] = (loss(hi, h0) - loss(lo, h0)) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_a_sum_of_products_is_one_buffer_that_each_gemm_adds_into(steps):
    """An unrolled RNN's weight gradient sums one product h_t.T @ dz_t per
    step: matmul_add nodes (passes/accumulate.py), whose GEMMs add into the
    first product's buffer (beta = 1); no buffer per product, no loop adding
    them up. The forward's h @ w + x[t] @ u is one too."""
    rng = np.random.default_rng(7)
    w, u = rng.normal(size=(6, 6)) / 3, rng.normal(size=(3, 6)) / 3
    h0, x = rng.normal(size=(4, 6)), rng.normal(size=(steps, 4, 3))

    def loss(w, u, h, x):
        for t in range(steps):
            h = np.tanh(h @ w + x[t] @ u)
        return np.sum(h ** 2)
    f = gc.jit(gc.value_and_grad(loss, argnums=(0, 1)))
    info = f.lower(w, u, h0, x)
    graph = info.optimized
    ops = [n.op for n in graph.topo()]
    # per step the forward's sum; from the second step on, each weight's gradient's
    assert ops.count("matmul_add") == steps + 2 * (steps - 1)
    assert not any(n.op == "add" and "matmul" in graph.node(i).op
                   for n in graph.topo() for i in n.inputs)
    gemms = [line.split("(")[1].split(", ") for line in info.source.splitlines()
             if "blas.gemm(" in line]
    adding = [args[2] for args in gemms if args[6].startswith("1.0")]
    assert len(adding) == ops.count("matmul_add")
    # the products of w's gradient, h_t.T @ dz_t, go into one buffer, and u's, x_t.T @ dz_t
    into = [args[2] for args in gemms if args[3] == "True"]
    assert len(into) == 2 * steps and len(set(into)) == 2
    value, (gw, gu) = f(w, u, h0, x)
    want, (want_w, want_u) = f.interpret(w, u, h0, x)
    np.testing.assert_allclose(value, want, rtol=1e-13)
    for got, expected in ((gw, want_w), (gu, want_u)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    api.check_grad_values(loss, (w, u, h0, x), (gw, gu), (0, 1), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("fn, folded", [
    (lambda c, a, b: c + a @ b, 0),                               # c is the caller's
    (lambda c, a, b: (np.tanh(c) + a @ b) * np.tanh(c), 0),       # tanh(c) is read again
    (lambda c, a, b: np.tanh(c.reshape(6)).reshape(2, 3) + a @ b, 0),   # a view
    (lambda c, a, b: np.tanh(c) + a @ b, 1),
    (lambda c, a, b: a @ b + (2 * a) @ b, 1),                     # into the first product
], ids=["input", "read-again", "a-view", "owned", "two-products"])
def test_a_product_is_added_into_an_addend_only_where_nothing_else_reads_it(fn, folded):
    """The GEMM overwrites its addend's buffer: the pass folds `c + a @ b`
    only where the sum alone reads c and c owns its buffer."""
    rng = np.random.default_rng(3)
    c, a, b = rng.normal(size=(2, 3)), rng.normal(size=(2, 4)), rng.normal(size=(4, 3))
    f = gc.jit(fn)
    ops = [n.op for n in f.lower(c, a, b).optimized.topo()]
    assert ops.count("matmul_add") == folded and ops.count("add") == 1 - folded
    np.testing.assert_allclose(f(c, a, b), fn(c, a, b), rtol=1e-13)


@pytest.mark.parametrize("pieces, copied, read_again", [
    (lambda x, h: [x * 2, x * x, h - 1, h + 1], [], False),
    (lambda x, h: [np.tanh(x) * 2, x * x, np.sin(h), h + 1], ["0", "2"], False),
    (lambda x, h: [x * 2, x * x, h - 1, h + 1], None, True),
], ids=["written", "some-copied", "a-piece-read-again"])
def test_fused_loops_write_their_pieces_of_a_concatenation_into_it(pieces, copied, read_again):
    """An LSTM's backward concatenates its gates' gradients for the GEMMs:
    the fused loops making the pieces write each straight into the
    concatenation's columns, and no loop copies them. A loop over flat
    blocks (a transcendental one) keeps its piece, which is copied in; and
    where another node reads a piece, the concatenation copies them all."""
    rng = np.random.default_rng(4)
    x, w, v = rng.normal(size=(3, 5)), rng.normal(size=(5, 5)), rng.normal(size=(20, 3))

    def f(x, w, v):
        parts = pieces(x, x @ w)
        return np.concatenate(parts, axis=1) @ v + (parts[1][:, 1:4] if read_again else 0)
    jitted = gc.jit(f)
    source = jitted.lower(x, w, v).source
    assert bool(re.search(r"# k\d+_concatenate", source)) == read_again
    written = re.findall(r"\[\w+, \w+ \+ (\d) \* \w+\] = ", source)
    if read_again:      # the concatenation's kernel copies them all
        assert not written and "copy_columns(" not in source
    else:
        assert sorted(re.findall(r"pieces\.copy_columns\(\w+, (\d) \*", source)) == copied
        assert sorted(written + copied) == ["0", "1", "2", "3"]
    np.testing.assert_allclose(jitted(x, w, v), f(x, w, v), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jitted(x, w, v), jitted.interpret(x, w, v), rtol=1e-12, atol=1e-12)


def test_a_gemm_never_adds_into_its_own_operand():
    """matmul_add(t, t, w): t is both the addend and the product's left
    operand, and graph.users names the reader once: codegen must copy t
    (accumulate.may_add_into), not have the GEMM write into what it reads."""
    rng = np.random.default_rng(5)
    x, w = rng.normal(size=(64, 64)), rng.normal(size=(64, 64))
    f = gc.jit(lambda x, w: (lambda t: P.matmul_add(t, t, w))(np.tanh(x)))
    np.testing.assert_allclose(f(x, w), np.tanh(x) + np.tanh(x) @ w, rtol=1e-12, atol=1e-12)


# pieces of a concatenation: arithmetic loops write theirs in place, loops
# over flat blocks (transcendental, rows shorter than SHORT_ROW) have theirs copied
_PIECES = [lambda t: t * 2, lambda t: t - 1, np.tanh, np.exp]


@settings(max_examples=6, deadline=None)
@given(products=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=4),
       pieces=st.lists(st.integers(0, len(_PIECES) - 1), min_size=1, max_size=4),
       read_again=st.integers(-1, 3), seed=st.integers(0, 2 ** 16))
def test_random_sums_of_products_and_concatenations_equal_the_interpreter(
        products, pieces, read_again, seed):
    """matmul_add adds into its addend's buffer, and fused loops write into a
    concatenation's: both reuse memory, where a wrong choice computes garbage
    quietly. Sums of products (each operand maybe transposed), concatenated
    functions of the sum, one maybe read again, and their gradients (sums
    of products and concatenations again), against NumPy and the interpreter."""
    rng = np.random.default_rng(seed)
    m, k, n = 3, 4, 5
    x = rng.normal(size=(m, n))
    mats = [(rng.normal(size=(k, m) if ta else (m, k)), rng.normal(size=(n, k) if tb else (k, n)))
            for ta, tb in products]

    def f(x, mats):
        total = np.tanh(x)
        for (a, b), (ta, tb) in zip(mats, products):
            total = total + (a.T if ta else a) @ (b.T if tb else b)
        parts = [_PIECES[p](total) for p in pieces]
        again = np.sum(parts[read_again] ** 2) if read_again < len(parts) else 0.0
        return np.sum(np.sin(np.concatenate(parts, axis=1))) + again
    g = gc.jit(gc.value_and_grad(f, argnums=(0, 1)))
    value, grads = g(x, mats)
    want, want_grads = g.interpret(x, mats)
    # sin(exp(t)) carries exp's rounding times exp(t): e^4 or more, over 15
    # terms, gave 1.4e-11 of -1.47 in float64 (seed 47963); garbage is O(1)
    np.testing.assert_allclose(value, f(x, mats), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(value, want, rtol=1e-12, atol=1e-10)
    for got, expected in zip(pytree.flatten(grads)[0], pytree.flatten(want_grads)[0]):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fn", [lambda g, x: g.T @ x, lambda g, x: (x.T @ g).T],
                         ids=["flag", "transposed-product"])
def test_a_products_flops_count_its_inner_axis_through_the_flags(fn):
    g, x = np.ones((100, 6)), np.ones((100, 5))
    # never run: lower(), no Numba compile (g.T @ x as a flag runs in
    # test_train's test_layers_written_x_at_w_transposed_update_in_one_gemm_...)
    (kernel,) = gc.jit(fn).lower(g, x).kernels
    assert kernel.ops == ["matmul"] and kernel.flops == 2 * 6 * 5 * 100


def test_long_float32_sums_are_fast_blocks_and_accurate():
    # float32 partial sums over blocks of SUM_BLOCK, added in float64: a float32
    # loop keeps its full vector width and the result its accuracy
    from graphc.codegen import SUM_BLOCK

    f = gc.jit(lambda x: np.sum(np.log1p(np.exp(x))))
    rng = np.random.default_rng(0)
    for n in (0, 1, SUM_BLOCK - 1, SUM_BLOCK, SUM_BLOCK + 1, 3 * SUM_BLOCK + 5, 1_000_003):
        x = rng.normal(size=n).astype(np.float32)
        exact = np.sum(np.log1p(np.exp(x.astype(np.float64))))
        got = f(x)
        assert got.dtype == np.float32
        assert abs(float(got) - exact) <= 2e-7 * max(exact, 1.0), n   # about one float32 ulp
    assert f"// {SUM_BLOCK})" in f.inspect(x).source    # the loop over blocks


def test_float32_column_sums_add_in_blocks_of_rows_and_stay_accurate():
    # a sum over axis 0 (a bias gradient) adds in float32 straight into its
    # output, folding each SUM_ROWS rows into float64: NumPy's own float32
    # column sum drifts with the row count (3.5e-5 relative at 1e6 rows)
    from graphc.codegen import SUM_ROWS

    rng = np.random.default_rng(0)
    cases = [(lambda x: np.sum(np.exp(x) * 0.5, axis=0), (3,)),
             (lambda x: np.sum(np.exp(x) * 0.5, axis=0, keepdims=True), (3,)),
             (lambda x: np.sum(np.exp(x) * 0.5, axis=0), (2, 3))]
    for fn, row in cases:
        f = gc.jit(fn)
        for n in (0, 1, SUM_ROWS - 1, SUM_ROWS, SUM_ROWS + 1, 3 * SUM_ROWS + 5, 1_000_003):
            x = rng.normal(size=(n, *row)).astype(np.float32)
            exact = fn(x.astype(np.float64))
            got = f(x)
            assert got.dtype == np.float32 and got.shape == exact.shape
            bound = 1e-6 if n > 100 * SUM_ROWS else 4e-6     # ~1e-6 within one block
            np.testing.assert_array_less(np.abs(got - exact), bound * np.maximum(exact, 1.0))
        assert f"sums.fold_rows(" in f.inspect(x).source


@pytest.mark.parametrize("row", [(3,), (2, 3)])
def test_two_float32_column_sums_in_one_kernel(row):
    # two sums over axis 0 in one fused loop (a layer's bias gradients): each
    # folds inside the row loop, and both copy their totals out after it
    from graphc.codegen import SUM_ROWS

    def fn(x):
        e = np.exp(x) * 0.5
        return np.sum(e, axis=0), np.sum(e * x, axis=0)
    f = gc.jit(fn)
    rng = np.random.default_rng(1)
    for n in (5, SUM_ROWS + 1, 3 * SUM_ROWS + 5):
        x = rng.normal(size=(n, *row)).astype(np.float32)
        assert len(f.inspect(x).kernels) == 1
        for got, exact in zip(f(x), fn(x.astype(np.float64))):
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, exact, rtol=4e-6)


def _short_rows_model(x, r, c):
    e = np.exp(x)                   # reads only x: computed in the flat loop first
    h = e * r - np.tanh(x * c)      # a row and a column broadcast: in the rows
    return h, np.sum(h, axis=-2), np.log1p(e)


@settings(max_examples=12)
@given(rows=st.integers(0, 40), cols=st.integers(1, 80), lead=st.sampled_from([(), (3,)]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2 ** 16))
# whole vectors of 32 bytes (AVX2's) but not of 64
@example(rows=30, cols=24, lead=(), dtype=np.float32, seed=0)
@example(rows=30, cols=12, lead=(), dtype=np.float64, seed=0)
def test_short_rows_compute_their_transcendentals_in_a_flat_loop(rows, cols, lead, dtype, seed):
    # rows shorter than a vector (classes) leave a transcendental inside them
    # to scalar code; a flat loop over each block of rows computes it first
    rng = np.random.default_rng(seed)
    args = (rng.standard_normal(lead + (rows, cols)).astype(dtype),
            rng.standard_normal((rows, 1)).astype(dtype), rng.standard_normal(cols).astype(dtype))
    f = gc.jit(_short_rows_model)
    source = f.inspect(*args).source
    # not rows of whole vectors (the CPU's: 8 float32 on AVX2): they vectorize as they are
    lanes = target.vector_bytes() // np.dtype(dtype).itemsize
    whole_vectors = cols % lanes == 0
    assert ("_blk[" in source) == (cols < codegen.SHORT_ROW and not whole_vectors)
    # float32: the column sum adds in another order than the interpreter
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for got, ref in zip(f(*args), f.interpret(*args)):
        assert got.dtype == ref.dtype and got.shape == ref.shape
        np.testing.assert_allclose(got, ref, **tol)


@pytest.mark.parametrize("shape", [(1000, 13), (3, 500, 13), (2, 3, 900, 7)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_rows_over_several_blocks_of_scratch(shape, dtype):
    # the flat loop fills scratch of FLAT_BLOCK elements' worth of rows at a
    # time: whole blocks, a partial last one, and the column sums' folds
    # every SUM_ROWS rows all cross block boundaries here
    rng = np.random.default_rng(3)
    args = (rng.standard_normal(shape).astype(dtype),
            rng.standard_normal((shape[-2], 1)).astype(dtype),
            rng.standard_normal(shape[-1]).astype(dtype))
    f = gc.jit(_short_rows_model)
    source = f.inspect(*args).source
    assert "_blk[" in source and shape[-2] * shape[-1] > codegen.FLAT_BLOCK
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-11)
    for got, ref in zip(f(*args), f.interpret(*args)):
        np.testing.assert_allclose(got, ref, **tol)



ONE_HOT_SCRATCH = r"\bk\d+_hot\d+\["     # _flat_rows' one-hot mask


def _classifier_loss(b, x, y):       # logits plus a bias: its gradient sums over the rows
    return softmax_cross_entropy(x + b, y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_softmax_backward_in_short_rows_runs_flat_with_the_row_loops_sums(dtype, monkeypatch):
    # rows shorter than a vector, a one-hot and a column sum: one flat loop a
    # block of rows, its one-hot from scratch, its column sums added row by
    # row afterwards, so the same sums (bit for bit) as the row loop's
    grad = gc.grad(_classifier_loss, argnums=(0, 1))
    rng = np.random.default_rng(5)
    cases = []
    # blocks of 256 rows, and of 128 (rows of 20), where the column sums fold as the rows' do
    for rows, cols in [(1, 10), (7, 10), (300, 10), (1000, 13), (600, 20),
                       (codegen.SUM_ROWS + 3, 3)]:
        cases.append((rng.standard_normal(cols).astype(dtype),
                      (4 * rng.standard_normal((rows, cols))).astype(dtype),
                      rng.integers(-cols, cols, size=rows)))
    flat = gc.jit(grad)
    assert re.search(ONE_HOT_SCRATCH, flat.inspect(*cases[0]).source)
    got = [flat(*args) for args in cases]
    monkeypatch.setattr(codegen, "_one_hots", lambda *a: None)     # the row loop
    rows = gc.jit(grad)
    assert not re.search(ONE_HOT_SCRATCH, rows.inspect(*cases[0]).source)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    for args, (db, dx) in zip(cases, got):
        ref_db, ref_dx = rows(*args)
        np.testing.assert_array_equal(db, ref_db)
        np.testing.assert_array_equal(dx, ref_dx)
        for g, ref in zip((db, dx), flat.interpret(*args)):
            np.testing.assert_allclose(g, ref, **tol)


def _one_hot_model(x, y):
    hot = y[:, None] == np.arange(x.shape[1])
    e = np.exp(x)
    h = np.where(hot, e, -0.5 * e)
    return h, np.sum(h * x, axis=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_one_hot_of_labels_out_of_range_is_false_in_the_flat_loop(dtype):
    # NumPy compares: -1 and cols match no column (no wrap, no error)
    rng = np.random.default_rng(6)
    f = gc.jit(_one_hot_model)
    for rows, cols in [(5, 10), (600, 7)]:
        x = rng.standard_normal((rows, cols)).astype(dtype)
        y = rng.integers(-2, cols + 2, size=rows)
        assert re.search(ONE_HOT_SCRATCH, f.inspect(x, y).source)
        tol = dict(rtol=2e-6, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
        exacts = _one_hot_model(x.astype(np.float64), y)
        for got, ref, exact in zip(f(x, y), f.interpret(x, y), exacts):
            np.testing.assert_allclose(got, ref, **tol)
            np.testing.assert_allclose(got, exact, **tol)

def _trig_in_rows_model(x, r, c):
    h = np.exp(x) * r - np.cos(x * c) + np.sin(x)  # cos reads a column broadcast: in the rows
    return h, np.sum(h, axis=-2)


@pytest.mark.parametrize("cols", [3, 10, 15, 22])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_trig_call_in_rows_of_8_to_15_keeps_them_from_a_flat_loop(cols, dtype):
    # with sin or cos left in such rows, a flat loop for exp (or sin) first
    # made LLVM run the rows as scalar code, trig's scalar calls and all
    # (where the rows are at least a vector long)
    rng = np.random.default_rng(cols)
    args = (rng.standard_normal((700, cols)).astype(dtype),
            rng.standard_normal((700, 1)).astype(dtype), rng.standard_normal(cols).astype(dtype))
    f = gc.jit(_trig_in_rows_model)
    inspection = f.inspect(*args)
    source = inspection.source
    assert len(inspection.kernels) == 1
    lanes = target.vector_bytes() // np.dtype(dtype).itemsize
    # rows shorter than a vector are scalar code either way: the flat loop pays there
    flat = (cols not in codegen.TRIG_IN_ROWS or cols < lanes) and cols % lanes != 0
    assert ("_blk[" in source) == flat
    if flat:    # sin is a transcendental the flat loop computes
        assert re.search(r"= trig\.sin\(k\d+_a\d+_blk\[", source)
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-11)
    for got, ref in zip(f(*args), f.interpret(*args)):
        np.testing.assert_allclose(got, ref, **tol)


def test_only_the_constants_the_code_reads_are_arguments():
    # scalars are written into the code as literals; passing them anyway cost
    # the dispatcher about 0.25 us each per call (W2 passed 4 it never read)
    def f(x, y):
        return -np.mean((x * 2.0 + 1.0)[np.arange(len(y)), y])

    x, y = np.ones((4, 3)), np.array([0, 2, 1, 0])
    info = gc.jit(f).inspect(x, y)
    # one constant: the row offsets of the fancy index (not 2.0, 1.0 or the mean's -1)
    # then the workspace; no thread count, as no loop here is big enough for threads
    assert re.search(r"def run\(in0, in1, c\d+, ws\):", info.source)
    np.testing.assert_allclose(gc.jit(f)(x, y), f(x, y))


def _tanh_layers(params, x):
    for w, b in params:
        x = np.tanh(x @ w + b)
    return x


def _outlined_kernels(source):
    """The kernels the module compiles as functions of their own (not threaded ones)."""
    return [name for name in re.findall(r"^def (k\d+_\w+)\(", source, re.M)
            if not name.endswith(("_chunk", "_par"))]


@pytest.mark.parametrize("layers", [codegen.OUTLINE_REPEATS - 1, codegen.OUTLINE_REPEATS, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_kernel_repeated_in_several_layers_is_compiled_once(layers, dtype):
    # identical layers fuse to kernels that differ only in their node ids:
    # from OUTLINE_REPEATS copies on, each is one function `run` calls
    rng = np.random.default_rng(0)
    params = [(rng.standard_normal((6, 6)).astype(dtype) * 0.5,
               rng.standard_normal(6).astype(dtype)) for _ in range(layers)]
    x = rng.standard_normal((5, 6)).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    # OUTLINE_REPEATS layers are the boundary, outlined forward and inlined
    # backward: checked whole. Below it the forward, above it the backward
    # (the other pass takes the path it takes at the boundary).
    if layers <= codegen.OUTLINE_REPEATS:
        f = gc.jit(_tanh_layers)
        source = f.inspect(params, x).source
        outlined = _outlined_kernels(source)
        repeated = layers >= codegen.OUTLINE_REPEATS
        assert len(outlined) == (1 if repeated else 0)
        if repeated:
            assert len(re.findall(rf"^    {outlined[0]}\(", source, re.M)) == layers
        np.testing.assert_allclose(f(params, x), f.interpret(params, x), **tol)
    if layers < codegen.OUTLINE_REPEATS:
        return
    # and through the backward pass, whose inner layers repeat too (the last
    # fuses with the loss, the first has no input gradient)
    grad = gc.jit(gc.grad(lambda p, v: np.sum(_tanh_layers(p, v) ** 2)))
    assert bool(_outlined_kernels(grad.inspect(params, x).source)) == (layers >= 5)
    for got, ref in zip(gc.pytree.flatten(grad(params, x))[0],
                        gc.pytree.flatten(grad.interpret(params, x))[0]):
        np.testing.assert_allclose(got, ref, **tol)


def test_a_kernel_writing_many_arrays_is_a_function_of_its_own_whose_arrays_do_not_overlap():
    """A fused loop storing OUTLINE_WRITES arrays or more is compiled apart
    (dispatch.GeneratedKernel: its arrays noalias, so LLVM vectorizes it with
    no overlap tests), even where it runs once; so is an LSTM's gate kernel,
    whose step and gradient equal the interpreter's."""
    def chain(x, n):        # one fused loop storing each of its n steps (all returned)
        steps = [np.tanh(x)]
        for k in range(1, n):
            steps.append(np.tanh(steps[-1] * k + x))
        return steps
    x = np.linspace(-2.0, 2.0, 24).reshape(4, 6)
    many = gc.jit(lambda x: chain(x, codegen.OUTLINE_WRITES))
    source = many.inspect(x).source
    (kernel,) = _outlined_kernels(source)
    assert re.search(rf"pipeline_class=dispatch.GeneratedKernel\)\ndef {kernel}\(", source)
    assert not _outlined_kernels(gc.jit(lambda x: chain(x, codegen.OUTLINE_WRITES - 1)).inspect(x).source)
    for got, want in zip(many(x), chain(x, codegen.OUTLINE_WRITES)):
        np.testing.assert_allclose(got, want, rtol=1e-14)

    def lstm(p, xs):
        h = c = np.zeros((xs.shape[1], 3))
        for x in xs:
            z = x @ p["W"] + h @ p["U"]
            i, f, o = (1 / (1 + np.exp(-z[:, k * 3:(k + 1) * 3])) for k in range(3))
            c = f * c + i * np.tanh(z[:, 9:])
            h = o * np.tanh(c)
        return np.sum(h ** 2)
    rng = np.random.default_rng(4)
    p = {"W": rng.normal(size=(2, 12)), "U": rng.normal(size=(3, 12))}
    xs = rng.normal(size=(2, 5, 2))
    step = gc.jit(gc.value_and_grad(lstm))
    assert _outlined_kernels(step.inspect(p, xs).source)
    value, grads = step(p, xs)
    want, want_grads = step.interpret(p, xs)
    np.testing.assert_allclose(value, want, rtol=1e-13)
    for name in p:
        np.testing.assert_allclose(grads[name], want_grads[name], rtol=1e-12, atol=1e-13)


def test_an_outlined_kernel_compiles_once(tmp_path, monkeypatch):
    # Numba compiles a function again for each literal int and each argument
    # type it is passed, so those keep kernels of the same code apart: sizes
    # written as literals (slices of 2, 3, 4 and 5 columns; found in review:
    # one function compiled four times, a slower cold call than inlining),
    # float32 against float64 operands, constants (read-only) against inputs
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))   # compiled here, not loaded
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 40)).astype(np.float32)
    consts = [rng.standard_normal(7) for _ in range(3)]

    def f(a, singles, doubles):
        slices = [np.tanh(a[:, i:i + w]) for i, w in ((0, 2), (2, 3), (5, 4), (9, 5))]
        return slices + [np.tanh(v) for v in singles + doubles] + [
            np.tanh(doubles[0] + w) for w in consts + doubles[1:]]

    singles = [rng.standard_normal(7).astype(np.float32) for _ in range(3)]
    doubles = [rng.standard_normal(7) for _ in range(4)]
    jitted = gc.jit(f)
    got, ref = jitted(x, singles, doubles), jitted.interpret(x, singles, doubles)
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-6)
    entry = next(iter(jitted._cache.values()))
    module = entry.driver.py_func.__globals__
    outlined = _outlined_kernels(entry.module.source)
    # tanh of float32, of float64, of a sum with a constant, of a sum of inputs,
    # and the slices starting at columns 2, 5 and 9 (their starts passed at run time)
    assert len(outlined) == 5 and sum("_slice" in name for name in outlined) == 1
    for name in outlined:
        assert len(module[name].signatures) == 1, (name, module[name].signatures)


def test_kernels_differing_only_in_node_ids_have_one_canonical_text():
    params = ("a0", "o0", "n0")
    one = codegen._canonical(params, ("for i0 in range(n0):", "    t5 = a0[i0,] * 2.0",
                                      "    o0[i0,] = t5"))
    same = codegen._canonical(params, ("for i0 in range(n0):", "    t9 = a0[i0,] * 2.0",
                                       "    o0[i0,] = t9"))
    other = codegen._canonical(params, ("for i0 in range(n0):", "    t9 = a0[i0,] * 3.0",
                                        "    o0[i0,] = t9"))
    assert one == same and one != other
    assert "t_1 = a0[i_0,] * 2.0" in "\n".join(one[1])


SPECIAL = [0.0, -0.0, 1e-40, 1e-20, 1e-310, np.inf, -np.inf, np.nan, 1.0, -2.5, 7.0, 3e38]


def _same(got, want, dtype, ulps=4, case=""):
    """Equal within a few ulp, nan where NumPy has nan, zeros with NumPy's sign."""
    np.testing.assert_allclose(got, want, rtol=ulps * np.finfo(dtype).eps, atol=0, err_msg=case)
    zeros = (got == 0) & (want == 0)
    np.testing.assert_array_equal(np.signbit(got[zeros]), np.signbit(want[zeros]), err_msg=case)


# Each case broke under one fast-math flag graphc used to pass: arcp (x / sqrt(y)
# as an rsqrt estimate), afn (x ** -1.5 as powi(x, -2) * sqrt(x)), contract
# (x*x - y*y as an FMA), nsz (the sign of zero; (x + y) - y folded to x),
# reassoc (products regrouped: an overflow moved). The vector loop (rows of
# 64+) and its scalar remainder (rows of 2 and 4) are both checked.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_math_keeps_numpys_special_values(dtype):
    special = np.array(SPECIAL, dtype)
    x, y = (a.ravel() for a in np.meshgrid(special, special))
    rng = np.random.default_rng(0)
    pairs = {
        "x / sqrt(y)": lambda x, y: x / np.sqrt(y),
        "x / y": lambda x, y: x / y,
        "sqrt(y) * x": lambda x, y: np.sqrt(y) * x,
        "(x + y) - y": lambda x, y: (x + y) - y,
        "1 / (-x + y)": lambda x, y: 1 / (-x + y),
        "sqrt(x*x - y*y)": lambda x, y: np.sqrt(x * x - y * y),
    }
    big = np.full(100, np.finfo(dtype).max / 3, dtype)
    powers = (0, 1, 2, 3, -1, -2, -3, 16, -16, 17, 0.5, -0.5, 1.5, -1.5, 2.5)

    def like(reference, ulps=4):        # a check: _same as reference(*args)
        return lambda got, args, case: _same(got, reference(*args), dtype, ulps, case)

    def no_nan(got, args, case):
        assert not np.isnan(got).any(), case

    def every_power(got, args, case):
        for power, result in zip(powers, got):
            _same(result, args[0] ** dtype(power), dtype, ulps=16, case=f"{case}: ** {power}")

    # One module per dtype for every case (compile time: a module per
    # function was 36 in all), called once per argument set a case has (its
    # shapes there compile to the same code). Each function has inputs of
    # its own, so it is its own kernel, written as when alone (checked below).
    cases = {}      # name -> (function, [(the rest of the name, arguments), ...], check)
    for name, fn in pairs.items():
        cases[f"{name} in rows"] = fn, [(f" of {n}", (x.reshape(-1, n), y.reshape(-1, n)))
                                        for n in (4, 2)], like(fn)
        cases[f"{name} in a row"] = fn, [(f" of {len(x)}", (x.reshape(1, -1), y.reshape(1, -1)))
                                         ], like(fn)
    for name, fn in {"(x / y) * y": lambda x, y: (x / y) * y,
                     "x * 2 * 0.5": lambda x, y: x * 2 * 0.5 + y,
                     "x * y / y": lambda x, y: x * y / y}.items():
        cases[name] = fn, [(" at (big, big)", (big, big)),
                           (" at (big, 4)", (big, np.full(100, 4, dtype))),
                           (" at (big / 2, 1 / big)", (big / 2, 1 / big))], like(fn)
    same = rng.normal(size=100).astype(dtype)       # x == y: NumPy gives exactly 0
    cases["sqrt(x*x - y*y) at x == y"] = pairs["sqrt(x*x - y*y)"], [("", (same, same.copy()))
                                                                    ], no_nan
    # every power (each its own kernel, written as when alone)
    cases["powers"] = (lambda v: tuple(v ** k for k in powers)), [
        (f" of {n} elements", (np.resize(special, n),)) for n in (100, 3)], every_power
    # the gradient of x ** -0.5 computes x ** -1.5
    cases["gradient of x ** -0.5"] = gc.grad(lambda v: np.sum(v ** -0.5)), [
        ("", (np.resize(np.array([0.0, np.inf, 1e-20, 4.0], dtype), 100),))], like(
        lambda v: -0.5 * v ** dtype(-1.5))
    fns = [fn for fn, _, _ in cases.values()]
    f = gc.jit(lambda args: [fn(*a) for fn, a in zip(fns, args)])
    calls = [[sets[min(k, len(sets) - 1)][1] for _, sets, _ in cases.values()]
             for k in range(max(len(sets) for _, sets, _ in cases.values()))]
    # the module's kernels are each function's when alone (none fused with
    # another's), inlined as then (none repeats OUTLINE_REPEATS times, which
    # would make it a function of its own): lower(), no compile
    module = f.lower(calls[0])
    assert not _outlined_kernels(module.source)
    assert sorted(k.ops for k in module.kernels) == sorted(
        k.ops for fn, sets, _ in cases.values() for k in gc.jit(fn).lower(*sets[0][1]).kernels)
    with np.errstate(all="ignore"):
        results = [f(args) for args in calls]
        for n, (name, (fn, sets, check)) in enumerate(cases.items()):
            for k, (rest, args) in enumerate(sets):
                check(results[k][n], args, name + rest)


def test_small_integer_powers_are_products():
    # without afn a pow left to Numba is a libm call per element (x ** 3 on 1e6
    # float32: about 20x slower); codegen writes small integer powers as products
    # the source only: lower(), no Numba compile (these powers compile and run
    # in test_fast_math_keeps_numpys_special_values)
    src = gc.jit(lambda v: v ** 3 + v ** -2 + v ** 2.5).lower(np.ones(4)).source
    powers = [line for line in src.splitlines() if "**" in line and not line.strip().startswith("#")]
    assert powers and all("** np.float64(2.5)" in line for line in powers)


def _one_loop(monkeypatch):
    """Codegen as it was before staging: every 1-D loop body in one loop."""
    monkeypatch.setattr(codegen, "_staged_transcendentals", lambda graph, nodes, space: [])


def _logistic_loss_and_grad(w, x, y):
    z = -y * (w * x)
    e = np.exp(z)
    return np.sum(np.log1p(e) + 5e-4 * w * w), w - 0.1 * (1e-3 * w + e / (1 + e) * -y * x)


@pytest.mark.parametrize("n", [0, 5, 63, codegen.SUM_BLOCK - 1, codegen.SUM_BLOCK,
                               2 * codegen.SUM_BLOCK + 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_transcendental_under_another_runs_first_block_by_block(n, dtype, monkeypatch):
    """W5's exp (read by its log1p) gets a loop of its own over each block
    of SUM_BLOCK elements (the two in one loop body spill): the stored
    results bit for bit as the one loop's and the sum
    within rounding (LLVM orders a block's additions by the loop body),
    whole blocks and a partial last one, and the interpreter's within
    rounding."""
    rng = np.random.default_rng(n)
    args = tuple(rng.standard_normal(n).astype(dtype) for _ in range(3))
    results = {}
    for staging in (True, False):
        if not staging:
            _one_loop(monkeypatch)
        f = gc.jit(_logistic_loss_and_grad)
        source = f.inspect(*args).source
        assert bool(re.search(r"hf\d+\[\w*jb\] = \w*t\d+\n", source)) == staging
        results[staging] = f(*args)
    loss, w = results[True]
    np.testing.assert_array_equal(w, results[False][1])
    np.testing.assert_allclose(loss, results[False][0], rtol=1e-5 if dtype == np.float32 else 1e-14)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for got, ref in zip(results[True], gc.jit(_logistic_loss_and_grad).interpret(*args)):
        np.testing.assert_allclose(got, ref, **tol)


@pytest.mark.parametrize("n", [63, 1000, codegen.SUM_BLOCK - 1])
def test_a_staged_sgd_step_updates_in_place_as_one_loop_does(n, monkeypatch):
    """W5's float32 step with its block split three ways: the same updated
    weights bit for bit as the one loop, the loss of both within float32
    rounding of float64 (not bit for bit: LLVM orders a block's additions
    by the loop body)."""
    def loss(p, x, y):
        return np.sum(np.log1p(np.exp(-y * (p["w"] * x))) + 0.5e-3 * p["w"] ** 2)
    rng = np.random.default_rng(n)
    w, x = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
    y = rng.choice(np.array([-1.0, 1.0], np.float32), n)
    results = {}
    for staging in (True, False):
        if not staging:
            _one_loop(monkeypatch)
        params = {"w": w.copy()}
        value = gc.compile_step(loss, gc.optim.SGD(0.1))(params, x, y)
        results[staging] = (float(value), params["w"])
    np.testing.assert_array_equal(results[True][1], results[False][1])
    reference = loss({"w": w.astype(np.float64)}, x.astype(np.float64), y.astype(np.float64))
    for value, _ in results.values():      # 4095: 3301.0586 split, 3301.0642 one loop
        np.testing.assert_allclose(value, reference, rtol=1e-5)


def _block_loops(source: str) -> list[str]:
    """The bodies of the loops over a block's elements (`for ... jb in`), in order."""
    return [m[2] for m in re.finditer(
        r"^( *)for \w*jb in range\(.*\):\n((?:\1 +.*\n)+)", source, re.M)]


def test_a_staged_blocks_reductions_and_outputs_run_apart():
    """W5's shape: after the staged exp, the loss's log1p and sum run in one
    loop of each block and the gradient's division and the stored update in
    the next, the last (results: the test above)."""
    args = tuple(np.linspace(-2, 2, 3 * codegen.SUM_BLOCK, dtype=np.float32) for _ in range(3))
    # the source only: lower(), no Numba compile (the same staged float32 code
    # compiles and runs in the test above)
    loops = _block_loops(gc.jit(_logistic_loss_and_grad).lower(*args).source)
    calls = [set(re.findall(r"(?<=vmath\.)\w+(?=\()| / ", body)) for body in loops]
    # each block (the partial last one in the same loop): exp; log1p and the sum; the division
    assert calls == [{"exp"}, {"log1p", "radd"}, {" / "}]
    # indexed blk * SUM_BLOCK + jb, never from n0 - n0 % SUM_BLOCK: LLVM could not
    # see such indices as non-negative, and an outlined kernel ran them as gathers
    assert all(re.search(rf"i0 = \w*blk \* {codegen.SUM_BLOCK} \+ \w*jb\n", body) for body in loops)
    assert "n0 % " not in gc.jit(_logistic_loss_and_grad).lower(*args).source
    assert all(re.search(r"^ *\w+\[\w*i0,?\] = ", body, re.M) for body in loops[2::3])
    assert not any(re.search(r"^ *\w+\[\w*i0,?\] = ", body, re.M)
                   for k, body in enumerate(loops) if k % 3 != 2)


def test_a_staged_block_keeps_cheap_outputs_with_its_reductions():
    # the stored output costs a multiply-add: a loop of its own would only
    # read the block again
    x = np.linspace(-3, 3, 100)
    f = gc.jit(lambda v: (np.sum(np.log1p(np.exp(v))), 2 * np.exp(v) + 1))
    loops = _block_loops(f.inspect(x).source)
    assert [set(re.findall(r"vmath\.(\w+)\(", body)) for body in loops] == [
        {"exp"}, {"log1p", "radd"}]
    loss, out = f(x)
    np.testing.assert_allclose(loss, np.sum(np.log1p(np.exp(x))), rtol=1e-12)
    np.testing.assert_allclose(out, 2 * np.exp(x) + 1, rtol=1e-12)


def test_only_a_transcendental_read_by_another_is_staged():
    # exp read by log1p is staged; the tanh beside it, read by nothing
    # transcendental, and the log1p itself stay in the loop
    x = np.linspace(-3, 3, 100)
    f = gc.jit(lambda v: (np.log1p(np.exp(v)) + np.tanh(v), np.exp(2 * v)))
    source = f.inspect(x).source
    staged = set(re.findall(r"(hf\d+)\[\w*jb\] = (\w+)", source))
    assert len(staged) == 1
    (scratch, value), = staged
    # the first loop of a block, up to its store into the scratch, calls exp alone
    first_loop = re.search(rf"for \w*jb in range\(.*?{scratch}\[\w*jb\] = ", source, re.S)[0]
    assert re.findall(r"vmath\.\w+\(", first_loop) == ["vmath.exp("]
    assert re.search(rf"{value} = vmath\.exp\(", first_loop)
    np.testing.assert_allclose(f(x)[0], np.log1p(np.exp(x)) + np.tanh(x), rtol=1e-12)


def test_a_sine_under_an_exp_is_staged_too():
    # trig's functions are transcendentals as vmath's are: sin read by exp is
    # computed first (1e6 float32 exp(sin(x)) + cos(x): 6.47 -> 6.25 ms)
    x = np.linspace(-3, 3, 5000)
    f = gc.jit(lambda v: np.exp(np.sin(v)) + np.cos(v))
    source = f.inspect(x).source
    (scratch, value), = set(re.findall(r"(hf\d+)\[\w*jb\] = (\w+)", source))
    first_loop = re.search(rf"for \w*jb in range\(.*?{scratch}\[\w*jb\] = ", source, re.S)[0]
    assert re.findall(r"(?:vmath|trig)\.\w+\(", first_loop) == ["trig.sin("]
    np.testing.assert_allclose(f(x), np.exp(np.sin(x)) + np.cos(x), rtol=1e-14, atol=1e-15)


def test_kernels_that_wait_for_each_other_are_refused_not_dropped():
    # fusion never makes such groups; if it did, codegen must not emit a
    # module without them (exp -> neg -> tanh with exp and tanh in one group)
    from graphc import codegen
    from graphc.ir import Graph
    g = Graph()
    x = g.add_input((3,), np.float32).id
    a = g.add("exp", (x,), {}, (3,), np.float32).id
    b = g.add("neg", (a,), {}, (3,), np.float32).id
    c = g.add("tanh", (b,), {}, (3,), np.float32).id
    g.outputs = [c]
    g.groups = [(a, c)]
    with pytest.raises(gc.GraphcError, match="internal: fused kernels form a cycle; 2 cannot"):
        list(codegen._units(g))
    g.groups = [(a, b, c)]
    assert [tuple(u) for u in codegen._units(g)] == [(x,), (a, b, c)]


def test_a_few_pieces_are_copied_each_in_the_loop_order_of_its_traced_width():
    # a piece of 8 columns along its rows, one of 1 down its column: one loop
    # nest a piece (both orders are right for any width; each costs a compile)
    def f(x, y):
        return np.concatenate([x * 2, y * 3], axis=1)
    x, y = np.ones((5, 8)), np.arange(5.0).reshape(5, 1)
    w = np.arange(45.0).reshape(5, 9)
    grad = gc.jit(gc.grad(lambda x, y: np.sum(f(x, y) * w), argnums=(0, 1)))
    along_rows = r"for (\w+)_i0 in range\(\1_\w+\.shape\[0\]\):\n\s+for \1_i1 in range"
    down_columns = r"for (\w+)_i1 in range\(\1_part\.shape\[1\]\):\n\s+for \1_i0 in range"
    # the concatenation's pieces, and its gradient's (concat_piece), wide one first
    for source in (gc.jit(f).lower(x, y).source, grad.lower(x, y).source):
        assert len(re.findall(along_rows, source)) == 1 and len(re.findall(down_columns, source)) == 1
        assert re.search(along_rows, source).start() < re.search(down_columns, source).start()
        assert "NARROW_PIECE" not in source
    np.testing.assert_array_equal(gc.jit(f)(x, y), f(x, y))
    gx, gy = grad(x, y)
    np.testing.assert_array_equal(gx, 2 * w[:, :8])
    np.testing.assert_array_equal(gy, 3 * w[:, 8:])
