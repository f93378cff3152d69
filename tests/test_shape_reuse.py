"""A new batch size re-uses the compiled module: shapes are read at run time.

Counted, never timed: the same driver object, no new Numba signature, and
values equal to NumPy for every size.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc import codegen, dims, runtime
from graphc.benchmarks import workloads


def _driver_source(source: str) -> str:
    return source[source.index("def run("):]


def test_the_generated_code_holds_no_batch_size():
    f = gc.jit(lambda x, w: np.mean(np.tanh(x @ w), axis=0) + x.sum() / x.size)
    # never run: lower(), no Numba compile (code reading sizes from shapes
    # compiles and runs in the tests below)
    info = f.lower(np.ones((37, 3)), np.ones((3, 5)))
    # 37 appears nowhere: loop bounds, buffers and the mean's divisor come from shapes
    assert "37" not in info.source
    assert "numel" in [n.op for n in info.optimized.topo()]


def test_the_driver_reads_each_dim_of_its_arguments_once_at_the_top():
    f = gc.jit(lambda x, w: np.mean(np.tanh(x @ w), axis=0) + x.sum() / x.size)
    run = _driver_source(f.lower(np.ones((37, 3)), np.ones((3, 5))).source)
    reads = [line.strip() for line in run.splitlines() if ".shape[" in line]
    assert reads and all(r.split(" = ")[0] == r.split(" = ")[1].replace(".shape[", "_shape")[:-1]
                         for r in reads), reads
    assert len(set(reads)) == len(reads)


def test_shape_reads_are_named_only_for_arguments_and_outside_strings():
    defs, lines = codegen.shapes_read_once(
        ["    n = in0.shape[1] * (in0.shape[1] + c2.shape[0])",
         "    k = v5.shape[0]",
         "    raise ValueError('in0.shape[1] of ' + \"in0.shape[0]\")"], ["in0", "c2"])
    assert defs == ["    in0_shape1 = in0.shape[1]", "    c2_shape0 = c2.shape[0]"]
    assert lines == ["    n = in0_shape1 * (in0_shape1 + c2_shape0)",
                     "    k = v5.shape[0]",
                     "    raise ValueError('in0.shape[1] of ' + \"in0.shape[0]\")"]


def _colliding(x, w, idx):
    """Axes of 2, 3 and 5 besides the batch axis: a batch of the same size
    must not tie the batch axis to them."""
    h = np.tanh(x @ w)                                   # (n, 3)
    return np.sum(h[:, idx] ** 2) + np.sum(h[:, 1:]) + np.mean(h, axis=0).sum()


def test_a_batch_as_long_as_another_axis_gives_the_same_gradient_module():
    # the gradient reshapes (n,) to (1, n) and writes (n, 2) into x[:, 1:]:
    # both axes must keep their class rather than match an axis of equal size
    g = gc.jit(gc.grad(_colliding, argnums=(0, 1)))
    w, idx = np.ones((4, 3)), np.array([0, 2, 1, 1, 0])
    sources = {n: _driver_source(g.lower(np.ones((n, 4)), w, idx).source) for n in range(2, 8)}
    assert len(set(sources.values())) == 1, "batch sizes with their own module: " + str(
        [n for n in sources if sources[n] != sources[7]])


_D, _H = 8, 2      # width, heads (of width 4)


def _attention(p, x, y):
    """Heads split off the dense layers' (n*t, D) rows and merged back, and
    a mean over the tokens, whose gradient is broadcast to x's shape."""
    n, t = x.shape[:2]
    q, k, v = ((x @ p[w]).reshape(n, t, _H, _D // _H).transpose(0, 2, 1, 3)
               for w in ("Wq", "Wk", "Wv"))
    a = gc.nn.softmax(q @ k.transpose(0, 1, 3, 2), axis=-1)
    o = (a @ v).transpose(0, 2, 1, 3).reshape(n, t, _D) @ p["Wo"]
    return np.mean(((x + o).mean(axis=1) @ p["Wout"] - y) ** 2)


def test_an_attention_step_is_one_module_for_batches_as_long_as_its_other_axes(rng):
    # batches of 2 (heads), 4 (a head's width), 6 (tokens) and 8 (the width),
    # and other numbers of tokens: the split (n*t, D) -> (n, t, H, D/H) and the
    # broadcast (n, D) -> (n, t, D) once took another axis's class for an axis
    # of the batch's size, or the batch's for the heads, and compiled a module
    # of their own; the tokens were the traced number
    params = {w: rng.normal(size=(_D, _D)) for w in ("Wq", "Wk", "Wv", "Wo")}
    params["Wout"] = rng.normal(size=(_D, 1))
    sizes = [(2, 6), (3, 6), (4, 6), (5, 6), (6, 6), (8, 6), (5, 3), (5, 7)]
    sources = {(n, t): _driver_source(gc.compile_step(_attention, gc.optim.SGD(lr=0.1)).lower(
        params, rng.normal(size=(n, t, _D)), rng.normal(size=(n, 1))).source) for n, t in sizes}
    assert len(set(sources.values())) == 1, "sizes with their own module: " + str(
        [nt for nt in sources if sources[nt] != sources[5, 6]])
    # and that one module is right at sizes other than its trace's
    f = gc.jit(gc.value_and_grad(_attention))
    for n, t in [(6, 6), (5, 7), (2, 3)]:
        x, y = rng.normal(size=(n, t, _D)), rng.normal(size=(n, 1))
        (value, grads), (want, want_grads) = f(params, x, y), f.interpret(params, x, y)
        np.testing.assert_allclose(value, want, rtol=1e-12)
        for w in params:
            np.testing.assert_allclose(grads[w], want_grads[w], rtol=1e-10, atol=1e-12)
    assert len({entry.driver for entry in f._cache.values()}) == 1


def _time_major(y):
    """(t*n, 3) rows, time-major, split into (4, n, 3): the batch is not first."""
    return np.sum(np.tanh(y.reshape(4, -1, 3)).sum(axis=0) ** 2)


def _heads_of_the_batch(x, w):
    """(n, 4, 6) to (4, n, 2, 3): the product runs on (8n, 3) rows, split back."""
    return np.sum(np.tanh(x.transpose(1, 0, 2).reshape(4, -1, 2, 3) @ w) ** 2)


def _rows_regrouped(w, x):
    """(n, 2, 3) @ (3, 3) runs on (2n, 3) rows; (n, 6) regroups them. w comes
    first, so its axes of 3 are named before the batch's."""
    n = x.shape[0]
    h = (x @ w).reshape(n, 6)
    h = (h + h.mean(axis=0, keepdims=True))[:, 1:].transpose(1, 0).reshape(5 * n)
    return np.sum(np.tanh(h) ** 2)


def _product_over_a_reshaped_input(w, x):
    """(n, 2, 4) read as (n, 2, 2, 2) @ (2, 2): the product runs on the input's
    rows divided by w's 2, (4n, 2), and splits back, the batch first; at n = 2
    the batch took w's axis of 2 there."""
    h = x.reshape(x.shape[0], 2, 2, 2) @ w
    return np.sum(np.tanh(np.concatenate([h, np.tanh(h)], axis=0)) ** 2)


def _pairs_of_tokens(x):
    """(n, 4, 6) as (4n, 6) rows, then (2n, 2, 6) pairs of them: 2n takes n
    and a 2 of the tokens' 4, the next axis the other 2; a literal 2n was
    every batch's own module."""
    n = x.shape[0]
    h = x.reshape(n * 4, 6).reshape(n * 2, 2, 6)
    return np.sum((h + np.max(h, axis=2, keepdims=True)) ** 2)


@pytest.mark.parametrize("fn, args", [
    (_time_major, lambda n, rng: (rng.normal(size=(4 * n, 3)),)),
    (_pairs_of_tokens, lambda n, rng: (rng.normal(size=(n, 4, 6)),)),
    (_product_over_a_reshaped_input,
     lambda n, rng: (rng.normal(size=(2, 2)), rng.normal(size=(n, 2, 4)))),
    (_heads_of_the_batch, lambda n, rng: (rng.normal(size=(n, 4, 6)), rng.normal(size=(3, 3)))),
    (_rows_regrouped, lambda n, rng: (rng.normal(size=(3, 3)), rng.normal(size=(n, 2, 3)))),
])
def test_a_batch_split_off_as_a_later_axis_is_one_module(fn, args, rng):
    # an axis split with no structure to follow keeps its traced size, unless a
    # class of its size is made of the same arguments' axes as the axis split:
    # the batch here, which a literal gave a module per batch size
    f = gc.jit(gc.value_and_grad(fn, argnums=tuple(range(len(args(2, rng))))))
    sources = {n: _driver_source(f.lower(*args(n, rng)).source) for n in (2, 3, 5, 6, 7)}
    assert len(set(sources.values())) == 1, "batch sizes with their own module: " + str(
        [n for n in sources if sources[n] != sources[5]])
    for n in (2, 5):
        a = args(n, rng)
        (value, grads), (want, want_grads) = f(*a), f.interpret(*a)
        np.testing.assert_allclose(value, want, rtol=1e-12)
        for g, w in zip(grads, want_grads):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    assert len({entry.driver for entry in f._cache.values()}) == 1


def _batch_after_tokens(x):
    """(n, 4, 8) -> (4, n, 3) rows -> (12n,) -> (4, n, 3) -> (n, 12): no axis
    of the last split is 4 * 2 with n // 2 (which every even batch would
    write as its own literal): the batch is an argument's first axis."""
    n = x.shape[0]
    h = np.tanh(x @ np.swapaxes(x, -1, -2)).transpose(1, 0, 2)[:, :, 1:]
    return np.sum(h.reshape(4 * n * 3).reshape(-1, n, 3).reshape(n, -1) ** 2)


def test_the_batch_is_not_split_by_a_literal(rng):
    f = gc.jit(gc.value_and_grad(_batch_after_tokens))
    sources = {n: _driver_source(f.lower(rng.normal(size=(n, 4, 8))).source)
               for n in (3, 5, 6, 7, 8)}
    assert len(set(sources.values())) == 1, "batch sizes with their own module: " + str(
        [n for n in sources if sources[n] != sources[5]])
    x = rng.normal(size=(6, 4, 8))
    (value, grad), (want, want_grad) = f(x), f.interpret(x)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)


def _mean_over_a_head_s_tokens(x, w):
    n, t, d = x.shape           # (n, 4, 4): heads of (n, 2, 4, 2)
    h = (x.reshape(n * t, d) @ w).reshape(n, t, 2, d // 2).transpose(0, 2, 1, 3)
    return np.sum(h.mean(axis=2, keepdims=True) * h)


def _mean_over_pairs_of_tokens(x, w):
    n, t, d = x.shape           # (n, 4, 4) -> (n, 2, 2, 4)
    return np.sum(np.tanh(x @ w).reshape(n, t // 2, 2, d).mean(axis=2) ** 2)


def _sum_of_a_slice(x, w):
    return np.sum((x @ w).sum(axis=2)[:, 1:] ** 2)      # its gradient widens (n, 3) to (n, 4)


@pytest.mark.parametrize("fn", [_mean_over_a_head_s_tokens, _mean_over_pairs_of_tokens,
                                _sum_of_a_slice])
def test_a_gradient_broadcast_back_to_a_shape_takes_its_axes_at_every_batch(fn, rng):
    # the gradient's broadcast (or widening) to a forward node's shape meets
    # axes no rule reaches: at a batch of 2 or 4, the size of one of them,
    # guessing among the classes of that size took the batch's
    f = gc.jit(gc.grad(fn))
    w = rng.normal(size=(4, 4))
    sources = {n: _driver_source(f.lower(rng.normal(size=(n, 4, 4)), w).source)
               for n in (2, 3, 4, 5)}
    assert len(set(sources.values())) == 1, "batch sizes with their own module: " + str(
        [n for n in sources if sources[n] != sources[5]])
    x = rng.normal(size=(4, 4, 4))
    np.testing.assert_allclose(f(x, w), f.interpret(x, w), rtol=1e-10, atol=1e-12)


def _recurrent(p, xs, y):
    """A step from a zero state: h @ Wh, whose gradient reads h.T."""
    h = np.zeros((xs.shape[1], p["Wh"].shape[0]))
    for x in xs:
        h = np.tanh(x @ p["Wx"] + h @ p["Wh"])
    return np.mean((h @ p["Wy"] - y) ** 2)


def test_a_recurrent_step_is_one_module_for_a_batch_as_wide_as_its_state(rng):
    # the zero state (n, 4) and its transpose in Wh's gradient were one
    # constant at n == 4 only (equal constants are one node): a graph of
    # its own at that batch size
    params = {"Wx": rng.normal(size=(3, 4)), "Wh": rng.normal(size=(4, 4)),
              "Wy": rng.normal(size=(4, 1))}
    sources = {n: _driver_source(gc.compile_step(_recurrent, gc.optim.SGD(lr=0.1)).lower(
        params, rng.normal(size=(2, n, 3)), rng.normal(size=(n, 1))).source) for n in (3, 4, 5)}
    assert len(set(sources.values())) == 1, "batch sizes with their own module: " + str(
        [n for n in sources if sources[n] != sources[5]])
    f = gc.jit(gc.value_and_grad(_recurrent))
    for n in (4, 5):
        xs, y = rng.normal(size=(2, n, 3)), rng.normal(size=(n, 1))
        (value, grads), (want, want_grads) = f(params, xs, y), f.interpret(params, xs, y)
        np.testing.assert_allclose(value, want, rtol=1e-12)
        for w in params:
            np.testing.assert_allclose(grads[w], want_grads[w], rtol=1e-10, atol=1e-12)
    assert len({entry.driver for entry in f._cache.values()}) == 1


@pytest.mark.parametrize("expr, factors", [
    ("(in0.shape[0] * in0.shape[1])", ["in0.shape[0]", "in0.shape[1]"]),
    ("(3 * (in2.shape[2] // 3) * (in2.shape[0] + in2.shape[0]))",
     ["3", "(in2.shape[2] // 3)", "(in2.shape[0] + in2.shape[0])"]),   # a quotient within its own
    ("((in0.shape[0] * in0.shape[1]) // 2)",     # a quotient: one factor
     ["((in0.shape[0] * in0.shape[1]) // 2)"]),
    ("(in0.shape[0] * in0.shape[1] // 2)", ["(in0.shape[0] * in0.shape[1] // 2)"]),
    ("((a) // (b) * c)", ["((a) // (b) * c)"]),        # "(a) // (b)" is no factor of its own
    ("in0.shape[0]", ["in0.shape[0]"]),
])
def test_the_factors_of_a_merged_axis(expr, factors):
    assert dims._factors(expr) == factors


@pytest.mark.parametrize("src, out, kept", [
    ((4, 6), (1, 4, 6, 1), [(1, 0), (2, 1)]),        # 1s added
    ((1, 5), (5,), [(0, 1)]),                        # 1s dropped
    ((6, 3), (18,), []),                             # merged
    ((2, 6), (2, 3, 2), [(0, 0)]),                   # split
    ((2, 3, 4), (3, 2, 4), [(2, 2)]),                # permuted sizes: a merge and a split
    ((0, 3), (3, 0), []),                            # empty: any grouping fits
])
def test_a_reshape_keeps_the_axes_it_leaves_whole(src, out, kept):
    assert dims._kept_axes(src, out) == kept


def test_a_new_batch_size_reuses_the_compiled_driver(rng):
    f = gc.jit(lambda x, w: np.mean((x @ w - 1.0) ** 2, axis=0))
    w = rng.normal(size=(4, 3))
    x8, x5 = rng.normal(size=(8, 4)), rng.normal(size=(5, 4))
    np.testing.assert_allclose(f(x8, w), np.mean((x8 @ w - 1.0) ** 2, axis=0), rtol=1e-12)
    modules = len(runtime._modules)
    np.testing.assert_allclose(f(x5, w), np.mean((x5 @ w - 1.0) ** 2, axis=0), rtol=1e-12)
    first, second = (entry.driver for entry in f._cache.values())
    assert first is second                      # the same compiled function
    assert len(first.signatures) == 1           # and Numba compiled it once
    assert len(runtime._modules) == modules     # no new module was imported


def test_a_stack_of_rows_times_a_weight_is_one_gemm_for_every_batch_size(rng):
    """(B, T, D) @ (D, F): one GEMM over B*T rows, forward and for the
    weight's gradient (no batch of GEMMs, no copies of w), one module."""
    def loss(w, x):
        return np.sum(np.tanh(x @ w) ** 2)
    w = rng.normal(size=(4, 3))
    graph = gc.trace(gc.grad(loss), w, rng.normal(size=(2, 5, 4)))
    products = [n for n in graph.topo() if n.op == "matmul"]
    assert len(products) >= 2 and all(len(n.shape) == 2 for n in products)
    assert not [n for n in graph.topo() if len(n.shape) > 2 and n.shape[-2:] == w.shape]
    f = gc.jit(gc.grad(loss))
    for batch in (2, 7, 1):     # 1: a broadcast pattern of its own
        x = rng.normal(size=(batch, 5, 4))
        expected = np.einsum("btd,btf->df", x, 2 * np.tanh(x @ w) / np.cosh(x @ w) ** 2)
        np.testing.assert_allclose(f(w, x), expected, rtol=1e-12)
        if batch == 7:
            assert len({entry.driver for entry in f._cache.values()}) == 1


@pytest.mark.parametrize("channels", [1, 8])      # an element per index; rows of channels
def test_a_convolution_over_windows_reuses_its_module_at_a_new_batch_size(channels, rng):
    """einsum merges the batch and window positions into a GEMM's rows,
    (n, 6, 6, ...) -> (36n, ...): that size is the product of the axes
    merged, not the traced number (a new module at every batch size)."""
    swv = np.lib.stride_tricks.sliding_window_view

    def loss(k, x):
        h = np.einsum("bijckl,klcd->bijd", swv(x, (3, 3), axis=(1, 2)), k)
        return np.mean(np.maximum(h, 0).reshape(x.shape[0], -1) ** 2)
    k = rng.normal(size=(3, 3, channels, 4))
    f = gc.jit(gc.value_and_grad(loss))
    for batch in (5, 2):     # (a batch of 6, the windows' rows, may share their class)
        x = rng.normal(size=(batch, 8, 8, channels))
        value, grad = f(k, x)
        want, want_grad = f.interpret(k, x)
        np.testing.assert_allclose(value, want, rtol=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)
    first, second = (entry.driver for entry in f._cache.values())
    assert first is second and len(first.signatures) == 1


def test_a_training_step_with_megabyte_buffers_reuses_its_module_at_half_the_batch(rng):
    # no decision in the generated code may depend on the traced batch size
    # (an epoch loop hoisting buffers up to a byte budget at the traced shapes
    # compiled a new module, 6.7 s for W2, at half the batch)
    def loss(p, x, y):
        return np.mean((np.tanh(x @ p["W"]) @ p["v"] - y) ** 2)
    params = {"W": rng.normal(size=(128, 256)) * 0.1, "v": rng.normal(size=256) * 0.1}
    step = gc.compile_step(loss, gc.optim.SGD(0.01))
    x, y = rng.normal(size=(256, 128)), rng.normal(size=256)
    step(params, x, y)
    modules = len(runtime._modules)
    step(params, x[:128], y[:128])
    first, second = (entry.driver for entry in step._entries.values())
    assert first is second and len(first.signatures) == 1
    assert len(runtime._modules) == modules


@pytest.mark.parametrize("sizes", [(16, 7, 1, 16), (6, 12, 24, 6)],
                         ids=["smaller-then-1", "batch-equals-a-layer-width"])
def test_training_step_is_right_for_every_batch_size(sizes, rng):
    """An MLP with cross-entropy: each batch size against NumPy's hand-written step.

    A batch of 1 changes the broadcast pattern and a batch equal to a layer's
    width makes the shape guesses ambiguous: both may compile anew, and must
    still be right."""
    wl = workloads.WORKLOADS["W2"]
    params, (x, y) = wl.make("float64", size="tiny")
    # nonzero biases: a ReLU input of exactly 0 is a kink where graphc (like
    # finite differences) takes the mean slope 0.5 and the hand-written step 0
    params = {k: v + 0.1 * rng.normal(size=v.shape) for k, v in params.items()}
    x = rng.normal(size=(max(sizes), x.shape[1]))
    y = rng.integers(0, params["b2"].shape[0], size=max(sizes))
    width = params["b0"].shape[0]
    sizes = tuple(width if s == 24 else s for s in sizes)
    reference = {k: v.copy() for k, v in params.items()}
    step = gc.compile_step(wl.loss_fn, gc.optim.SGD(wl.lr))
    for n in sizes:
        loss = step(params, x[:n], y[:n])
        expected = wl.numpy_step(reference, x[:n], y[:n], wl.lr)
        assert loss == pytest.approx(expected, rel=1e-10)
        for k in params:
            np.testing.assert_allclose(params[k], reference[k], rtol=1e-10, atol=1e-12)
    drivers = {id(e.driver) for e in step._compiled._cache.values()}
    assert len(drivers) < len(set(sizes))       # at least two sizes shared one module


def test_gc_train_with_a_short_last_batch_compiles_one_module(rng):
    X = rng.normal(size=(50, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    params = {"w": np.zeros(3)}
    loss = lambda p, x, t: np.mean((x @ p["w"] - t) ** 2) * 0.987   # noqa: E731 (unique code)
    modules = len(runtime._modules)
    gc.train(loss, params, (X, y), gc.optim.SGD(0.1), batch_size=16, epochs=2, progress=False)
    assert len(runtime._modules) - modules == 1   # full batches and the tail of 2 share it


def _layout_mix(x, w, idx):
    """Reshapes that merge and split the batch axis, a concatenation along it,
    a slice, a gather and the reductions whose divisors come from shapes."""
    n = x.shape[0]
    h = np.tanh(x @ w)                                   # (n, 3)
    flat = h.reshape(-1)                                 # (3n,): merged
    back = flat.reshape(n, 3)                            # split again
    both = np.concatenate([back, h * 2.0], axis=0)       # (2n, 3)
    picked = both[:, idx]                                # gather columns (a static bound)
    return (np.mean(both, axis=0) + np.var(picked, axis=0).sum() + back[:, 1:].sum()
            + np.mean(flat ** 2))


@given(sizes=st.lists(st.integers(2, 9), min_size=2, max_size=4), seed=st.integers(0, 2 ** 16))
@settings(max_examples=5)     # each example checks gradients at every size: 61 s in CI with 10
def test_layout_ops_are_right_and_shared_across_batch_sizes(sizes, seed):
    rng = np.random.default_rng(seed)
    f = gc.jit(_layout_mix)
    w = rng.normal(size=(4, 3))
    modules = len(runtime._modules)
    for n in sizes:
        x = rng.normal(size=(n, 4))
        idx = rng.integers(-3, 3, size=5)
        np.testing.assert_allclose(f(x, w, idx), _layout_mix(x, w, idx), rtol=1e-12)
        # idx an argument, as in f: one gradient module for every example
        # (a captured idx is a constant, a new module each: test_random_shapes'
        # take tests differentiate those)
        gc.check_grad(lambda x, w, i: np.sum(_layout_mix(x, w, i)), x, w, idx, argnums=(0, 1))
    assert len({id(e.driver) for e in f._cache.values()}) == 1
    # f's module, and the gradient's in the first example only (sizes equal
    # to another axis used to give the gradient a module of their own)
    assert len(runtime._modules) - modules <= 2


# slices along the batch axis written from its end, and a concatenation along
# it: their gradients used to write the batch size into the generated code
_BATCH_SLICES = {
    "x[1:]": lambda x: np.sum(x[1:] ** 2),
    "differences": lambda x: np.sum((x[1:] - x[:-1]) ** 2),
    "x[-3:]": lambda x: np.sum(np.tanh(x[-3:])),
    "x[-1]": lambda x: np.sum(x[-1] * x[0]),
    "x[::-1]": lambda x: np.sum(x[::-1] * np.cos(x)),
    "x[::2]": lambda x: np.sum(np.sin(x[::2])),
    "x[-2::-2]": lambda x: np.sum(x[-2::-2] ** 2),
    "concatenate": lambda x: np.sum(np.concatenate([x, np.tanh(x)]) ** 2),
}


@pytest.mark.parametrize("name", list(_BATCH_SLICES))
def test_gradients_of_slices_and_concatenations_share_one_module_across_batch_sizes(name, rng):
    g = gc.jit(gc.grad(_BATCH_SLICES[name]))
    for n in (6, 9, 7):
        x = rng.normal(size=(n, 3))
        np.testing.assert_allclose(g(x), g.interpret(x), rtol=1e-12, atol=1e-15)
    gc.check_grad(_BATCH_SLICES[name], x)
    assert len({id(e.driver) for e in g._cache.values()}) == 1


@given(n=st.integers(0, 7), start=st.one_of(st.none(), st.integers(-9, 9)),
       stop=st.one_of(st.none(), st.integers(-9, 9)),
       step=st.sampled_from([None, 1, 2, 3, -1, -2]))
@settings(max_examples=6)        # each example compiles one module, or two
def test_any_slice_of_any_size_equals_numpy_with_its_gradient(n, start, stop, step):
    key = slice(start, stop, step)
    f = gc.jit(lambda x: (x[key] * 2.0, gc.grad(lambda x: np.sum(x[key] ** 2))(x)))
    for size in (n, n + 3):
        x = np.arange(size * 2, dtype=np.float64).reshape(size, 2) - 3.5
        expected = np.zeros_like(x)
        expected[key] = 2 * x[key]
        value, grad = f(x)
        np.testing.assert_array_equal(value, x[key] * 2.0)
        np.testing.assert_array_equal(grad, expected)


def test_a_split_axis_divided_by_a_quotient_is_right_and_its_gradient_too(rng):
    # (x @ w) split into heads, transposed and merged back: the last reshape's
    # size is a quotient of a quotient, once written without its parentheses
    def loss(w, x):
        h = (x @ w).reshape(x.shape[0], 2, -1).transpose(0, 2, 1)
        return np.sum(h.reshape(x.shape[0], -1)[:, :3] ** 2)
    w = rng.normal(size=(5, 8))
    for n in (16, 7):
        x = rng.normal(size=(n, 5))
        np.testing.assert_allclose(gc.jit(loss)(w, x), loss(w, x), rtol=1e-12)
        gc.check_grad(loss, w, x)


def test_a_reshape_of_an_empty_array_keeps_the_traced_size_of_its_free_axis():
    def f(x):
        s = np.sum(x, axis=0)           # (0, 5) -> (1, 0, 5): the 5 is no quotient of sizes
        return np.tanh(s.reshape(1, x.shape[0], s.size // x.shape[0] if s.size else 5)) + 1.0
    for shape in [(0, 0, 5), (2, 3, 4)]:
        x = np.ones(shape)
        got = gc.jit(f)(x)
        assert got.shape == f(x).shape
        np.testing.assert_allclose(got, f(x), rtol=1e-15)


def test_repeat_calls_take_the_fast_path_and_still_convert_their_inputs():
    f = gc.jit(lambda x: np.sum(x * 2.0, axis=1))
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(f(x), np.sum(x * 2.0, axis=1))
    strided = np.arange(24.0).reshape(3, 8)[:, ::2]          # same shape and dtype, not contiguous
    np.testing.assert_array_equal(f(strided), np.sum(strided * 2.0, axis=1))
    np.testing.assert_array_equal(f(x.astype(np.float32)), np.sum(x * 2.0, axis=1))  # new dtype
    assert len(f._cache) == 2


def test_a_driver_compiles_one_type_and_refuses_others():
    """Read-only, strided and byte-swapped inputs are converted before the call
    (a read-only batch used to compile the whole driver a second time), and
    the driver itself refuses any other type rather than compiling it."""
    params, (x, y) = workloads.WORKLOADS["W1"].make("float64", seed=0, size="tiny")
    step = gc.compile_step(workloads.WORKLOADS["W1"].loss_fn, gc.optim.SGD(lr=0.1))
    reference = gc.compile_step(workloads.WORKLOADS["W1"].loss_fn, gc.optim.SGD(lr=0.1))
    ref_params = {k: v.copy() for k, v in params.items()}
    frozen = x.copy()
    frozen.setflags(write=False)
    for batch_x in (x, frozen, np.asfortranarray(x), np.repeat(x, 2, axis=1)[:, ::2], x):
        assert step(params, batch_x, y) == reference(ref_params, x, y)
    for k in params:
        np.testing.assert_array_equal(params[k], ref_params[k])
    entry = next(iter(step._entries.values()))
    assert len(entry.driver.signatures) == 1
    assert step._last.count_unread      # SGD: the driver takes a stand-in for the count
    args = ([*step._last.leaves, gc.api.UNREAD, x, y] + entry.consts
            + list(entry.tail_args(entry.take_workspace())))
    args[0] = np.asfortranarray(args[0])            # a weight in another layout
    with pytest.raises(TypeError, match="No matching definition"):
        entry.driver(*args)

    f = gc.jit(lambda a: np.tanh(a) * 2.0)
    np.testing.assert_allclose(f(frozen), np.tanh(x) * 2.0)
    np.testing.assert_allclose(f(x), np.tanh(x) * 2.0)
    assert len(next(iter(f._cache.values())).driver.signatures) == 1


def test_eigh_blocks_take_their_size_from_the_matrices():
    # eigh's (n + 1, n) blocks: n + 1 is written from a's shape, not a literal
    # (stacks of b matrices with b != n: the gradient's unslice of v[..., 0, :]
    # guesses its axis of n, as any unslice, from the first axis of that size)
    def loss(a):
        w, v = np.linalg.eigh(a + np.swapaxes(a, -1, -2))
        return np.sum(w * v[..., 0, :] ** 2)
    g = gc.jit(gc.grad(loss))
    sources = {(b, n): _driver_source(g.lower(np.ones((b, n, n))).source)
               for b in (2, 7) for n in (3, 4, 5)}
    assert len(set(sources.values())) == 1
