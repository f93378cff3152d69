"""np.einsum and np.tensordot: values against NumPy's, gradients against
central differences, on random subscripts (Hypothesis) and on the forms models
use (attention, batched layers, convolutions written as einsums)."""
import os

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import graphc as gc
from graphc import api

EXAMPLES = int(os.environ.get("GRAPHC_FUZZ_EXAMPLES", "60"))


@st.composite
def einsum_problems(draw):
    """(subscripts, operands): 1-3 operands of 0-3 distinct letters from 'abcde',
    each letter one size (1-3), sometimes a '...' of broadcast dims, and an
    explicit output (a random choice of the letters, in random order) or none."""
    sizes = {c: draw(st.integers(1, 3)) for c in "abcde"}
    n_ops = draw(st.integers(1, 3))
    with_ellipsis = draw(st.booleans())
    broadcast = draw(st.lists(st.integers(1, 2), max_size=2)) if with_ellipsis else []
    terms, shapes = [], []
    for _ in range(n_ops):
        letters = draw(st.lists(st.sampled_from("abcde"), max_size=3, unique=True))
        term, shape = "".join(letters), [sizes[c] for c in letters]
        if with_ellipsis:
            # this operand's trailing part of the broadcast dims, some of them 1
            tail = broadcast[len(broadcast) - draw(st.integers(0, len(broadcast))):]
            tail = [n if draw(st.booleans()) else 1 for n in tail]
            term, shape = "..." + term, tail + shape
        terms.append(term)
        shapes.append(tuple(shape))
    used = sorted(set("".join(terms)) - {"."})
    if draw(st.booleans()):
        out = "".join(draw(st.permutations(draw(st.lists(st.sampled_from(used), unique=True)))
                           if used else st.just([])))
        subscripts = ",".join(terms) + "->" + ("..." if with_ellipsis else "") + out
    else:
        subscripts = ",".join(terms)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return subscripts, [rng.normal(size=s) for s in shapes]


@settings(max_examples=EXAMPLES, deadline=None)
@given(einsum_problems())
def test_random_einsums_equal_numpys_with_their_gradients(problem):
    # on the interpreter (no compile per example); the compiled forms are below
    subscripts, operands = problem
    note(f"{subscripts} on {[a.shape for a in operands]}")
    want = np.einsum(subscripts, *operands)

    def f(*xs):
        return np.einsum(subscripts, *xs)

    got = gc.jit(f).interpret(*operands)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)

    def loss(*xs):                      # a nonlinear loss: each output element counts
        return np.sum(np.sin(f(*xs)))

    nums = tuple(range(len(operands)))
    api.check_grad_values(loss, operands, gc.grad(loss, argnums=nums).interpret(*operands), nums)


# the forms models write, compiled together in one module, in float32 only
# (compile time: both dtypes were 20 s; the random einsums above are float64)
MODEL_FORMS = [
    ("bqd,bkd->bqk", (2, 3, 4), (2, 5, 4)),             # attention scores
    ("bhqk,bhkd->bhqd", (2, 2, 3, 5), (2, 2, 5, 4)),    # heads times values
    ("nlc,kco->nlo", (2, 6, 3), (1, 3, 4)),             # a width-1 convolution
    ("...i,io->...o", (2, 3, 4), (4, 5)),               # a layer over any leading dims
]


def test_model_forms_compile_to_numpys_values_and_gradients():
    dtype = np.float32
    rng = np.random.default_rng(0)
    operands = [[rng.normal(size=s).astype(dtype) for s in shapes]
                for _, *shapes in MODEL_FORMS]

    def loss(operands):
        return sum(np.sum(np.tanh(np.einsum(sub, *ops)))
                   for (sub, *_), ops in zip(MODEL_FORMS, operands))

    value, grads = gc.value_and_grad(loss)(operands)
    expected, expected_grads = gc.value_and_grad(loss).interpret(operands)
    tol = dict(rtol=2e-5, atol=2e-6)
    assert value.dtype == dtype
    np.testing.assert_allclose(value, sum(np.sum(np.tanh(np.einsum(sub, *ops)))
                                          for (sub, *_), ops in zip(MODEL_FORMS, operands)),
                               **tol)
    for k, (form, g, want) in enumerate(zip(MODEL_FORMS, grads, expected_grads)):
        for j, (gj, wj) in enumerate(zip(g, want)):
            assert gj.dtype == dtype
            np.testing.assert_allclose(gj, wj, **tol, err_msg=f"{form[0]} operand {j}")


TRANSPOSED = [   # (subscripts, the operands' shapes before, the transposes applied in the trace)
    ("ijk,kj->i", (4, 3, 5), (3, 5), ((0, 2, 1), None)),          # the larger operand transposed
    ("ij,jki->k", (3, 2), (4, 3, 2), (None, (2, 0, 1))),          # the larger one second
    ("abc,cab->", (4, 2, 3), (2, 3, 4), ((1, 2, 0), (2, 0, 1))),   # both (the first is read as stored)
    ("bij,bjk->bik", (2, 4, 3), (2, 4, 5), ((0, 2, 1), None)),     # a batch letter
]


@pytest.mark.parametrize("subscripts, shapes, perms", [(t[0], t[1:3], t[3]) for t in TRANSPOSED],
                         ids=[t[0] for t in TRANSPOSED])
def test_operands_transposed_in_the_trace_equal_numpy_and_are_read_as_stored(
        subscripts, shapes, perms):
    rng = np.random.default_rng(1)
    operands = [rng.normal(size=s) for s in shapes]

    def f(*ops):
        return np.einsum(subscripts, *(o if p is None else o.transpose(p)
                                       for o, p in zip(ops, perms)))
    np.testing.assert_allclose(gc.jit(f)(*operands), f(*operands), rtol=1e-12, atol=1e-12)
    grads = gc.grad(lambda *ops: np.sum(np.sin(f(*ops))), argnums=(0, 1))(*operands)
    for k, (x, g) in enumerate(zip(operands, grads)):
        numeric = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            hi, lo = [o.copy() for o in operands], [o.copy() for o in operands]
            hi[k][i] += 1e-6
            lo[k][i] -= 1e-6
            numeric[i] = (np.sum(np.sin(f(*hi))) - np.sum(np.sin(f(*lo)))) / 2e-6
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8, err_msg=f"operand {k}")
    # the larger operand's transpose cancels with the one into the contraction's order
    larger = int(np.prod(shapes[1]) > np.prod(shapes[0]))
    optimized = gc.jit(f).lower(*operands).optimized
    assert not any(n.op == "transpose" and n.inputs[0] == optimized.inputs[larger]
                   for n in optimized.topo())


DIAGONALS = [("ii->", (3, 3)), ("ii->i", (3, 3)), ("ii", (3, 3)), ("iij->j", (2, 2, 4)),
             ("ij,jj->i", (2, 3), (3, 3)), ("iji->j", (3, 2, 3)), ("iii->i", (2, 2, 2)),
             ("...ii->...i", (2, 3, 3)), ("ijij->ij", (2, 3, 2, 3))]


@pytest.mark.parametrize("subscripts, shapes", [(d[0], d[1:]) for d in DIAGONALS],
                         ids=[d[0] for d in DIAGONALS])
def test_a_letter_repeated_in_an_operand_takes_its_diagonal(subscripts, shapes):
    # a trace ('ii->'), a diagonal ('ii->i'), and more: on the interpreter
    operands = [np.random.default_rng(2).normal(size=s) for s in shapes]

    def loss(*xs):
        return np.sum(np.sin(np.einsum(subscripts, *xs)))

    got = gc.jit(lambda *xs: np.einsum(subscripts, *xs)).interpret(*operands)
    want = np.einsum(subscripts, *operands)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    nums = tuple(range(len(operands)))
    api.check_grad_values(loss, operands, gc.grad(loss, argnums=nums).interpret(*operands), nums)


def test_tensordot_refuses_what_numpy_refuses():
    a, b = np.ones((2, 1)), np.ones((3, 4))
    with pytest.raises(ValueError, match="np.tensordot: shape-mismatch for sum"):
        gc.trace(lambda a, b: np.tensordot(a, b, axes=([1], [0])), a, b)
    with pytest.raises(ValueError, match=r"np.tensordot: axes \[0, 0\] of a are out of range or "
                                         r"repeated"):
        gc.trace(lambda a, b: np.tensordot(a, b, axes=([0, 0], [0, 1])), a, b)


def test_tensordot_is_the_einsum_it_names():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(3, 4, 5))
    for axes in (2, ([1, 2], [0, 1]), ([2], [1]), 0):
        bb = b if axes != ([2], [1]) else rng.normal(size=(3, 4, 2))
        got = gc.jit(lambda a, b: np.tensordot(a, b, axes=axes)).interpret(a, bb)
        np.testing.assert_allclose(got, np.tensordot(a, bb, axes=axes), rtol=1e-12)


def test_einsum_keeps_numpys_result_types():
    # found in review: a path ending in a sum took np.sum's accumulator (int8
    # did not wrap, bool counted), and a Python number stayed weak
    i8, b = np.array([100, 100, 50], np.int8), np.array([[True, False], [False, False]])
    cases = [(lambda x: np.einsum("i->", x), i8),
             (lambda x: np.einsum("ij->i", x), b),
             (lambda x: np.einsum("ij->i", x), b.astype(np.int32)),
             (lambda x: np.einsum("ij,jk->", x, x), b),
             (lambda x: np.einsum("i,->i", x, 2.0), np.ones(2, np.float32)),   # float64
             (lambda x: np.einsum("i,->i", x, 2), np.arange(2, dtype=np.int32))]  # int64
    for f, x in cases:
        got, want = gc.jit(f).interpret(x), f(x)
        where = f"line {f.__code__.co_firstlineno}"
        assert got.dtype == want.dtype, where
        np.testing.assert_array_equal(got, want, err_msg=where)


@pytest.mark.parametrize("subscripts, shapes, error, message", [
    ("ii->i", [(2, 3)], ValueError, "letter 'i' has sizes 2 and 3"),
    ("ij,jk->il", [(2, 3), (3, 4)], ValueError, "output 'il'"),
    ("ij,jk->ik", [(2, 3), (4, 5)], ValueError, "letter 'j' has sizes 3 and 4"),
    ("ijk->i", [(2, 3)], ValueError, "'ijk' has 3 letters for an operand of 2 dims"),
    ("ij,jk->ik", [(2, 3)], ValueError, "names 2 operands, but 1 were given"),
    ("...i->i", [(2, 3)], ValueError, "the output 'i' has no '...' for them"),
])
def test_einsum_errors_name_the_problem_and_the_line(subscripts, shapes, error, message):
    with pytest.raises(error, match=message) as e:
        gc.trace(lambda *xs: np.einsum(subscripts, *xs), *[np.ones(s) for s in shapes])
    assert "test_einsum.py:" in str(e.value)
