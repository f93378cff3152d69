"""Products of stacks read transposed operands where they lie
(passes/strided_stacks.py): no kernel copies them, and the results and
gradients equal NumPy's and the interpreter's."""
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc import passes, pytree
from graphc import prims as P
from graphc.passes.strided_stacks import read_stacks_by_strides

N, T, H, D = 2, 5, 3, 4     # sequences, tokens, heads, head width


def _attention(x, wq, wk, wv):
    def heads(t):
        return (x @ t).reshape(N, T, H, D).transpose(0, 2, 1, 3)
    q, k, v = heads(wq), heads(wk), heads(wv)
    a = np.tanh(q @ k.transpose(0, 1, 3, 2))
    o = (a @ v).transpose(0, 2, 1, 3).reshape(N * T, H * D)
    return np.sum(o * o)


def _weights(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(N * T, 6)).astype(dtype)] + [
        (0.4 * rng.normal(size=(6, H * D))).astype(dtype) for _ in range(3)]


# a block of a (n, T, H, d) array: one sequence's, one head's rows
_head_block = re.compile(r"\w+\[\w+, :, \w+, :\]$")


def _gemms(source: str) -> list[tuple[str, str, str]]:
    """The (a, b, c) operands of each blas.gemm call in generated code."""
    return [tuple(op.strip() for op in re.split(r",\s*(?![^\[]*\])", m)[:3])
            for m in re.findall(r"blas\.gemm\((.*)\)", source)]


def _transposes(f, args, monkeypatch=None) -> int:
    """The transpose kernels of the code of f's value and gradient for args
    (lowered, not compiled); without the pass when given a monkeypatch."""
    if monkeypatch is not None:
        monkeypatch.setattr(passes, "PIPELINE",
                            [p for p in passes.PIPELINE if p is not read_stacks_by_strides])
    g = gc.jit(gc.value_and_grad(f, argnums=tuple(range(len(args)))))
    return sum(k.ops == ["transpose"] for k in g.lower(*args).kernels)


def _assert_equal_to_the_interpreter(g, args, rtol):
    value, grads = g(*args)
    want, want_grads = g.interpret(*args)
    np.testing.assert_allclose(value, want, rtol=rtol)
    for got, expected in zip(pytree.flatten(grads)[0], pytree.flatten(want_grads)[0]):
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_attention_heads_are_read_in_place_by_their_products(dtype, monkeypatch):
    """Queries, keys (read transposed) and values go to their products as
    the dense layers wrote them, and the heads' outputs come out in the
    order the next dense layer reads, in the forward and in the backward."""
    args = _weights(dtype)
    g = gc.jit(gc.value_and_grad(_attention, argnums=(1, 2, 3)))
    _assert_equal_to_the_interpreter(g, args, 1e-12 if dtype == np.float64 else 2e-5)
    np.testing.assert_allclose(g(*args)[0], _attention(*args), rtol=1e-12 if dtype == np.float64
                               else 1e-6)
    # of 11 copies none left: q, k and v read where the dense layers wrote
    # them, the heads' output written where the next one reads it, and so
    # their gradients in the backward
    source = g.inspect(*args).source
    gemms = _gemms(source)
    assert any(_head_block.match(a) for a, _, _ in gemms)       # a head of q read in place
    assert any(_head_block.match(c) for _, _, c in gemms)       # the heads' output written so
    # blocks indexed, not Numba's .transpose(axes) views, whose checks compile
    # its error formatting (the transformer block's cold first call 4.1 -> 6.9 s)
    assert ".transpose((" not in source
    assert (_transposes(_attention, args), _transposes(_attention, args, monkeypatch)) == (0, 11)
    if dtype == np.float64:
        gc.check_grad(_attention, *args, argnums=(1, 2, 3))


def test_new_batch_sizes_reuse_the_code_and_read_their_heads_right():
    """The heads' blocks are found from the shapes at run time: a compiled
    step called with other numbers of sequences reads and writes them
    right, without compiling again. (Sizes equal to another axis's, or a
    batch axis split by a reshape, make a new module: dims.py.)"""
    def attention(x, wq, wk, wv):      # x: (sequences, T, 6)
        def heads(t):
            return (x @ t).reshape(x.shape[0], T, H, D).transpose(0, 2, 1, 3)
        a = np.tanh(heads(wq) @ heads(wk).transpose(0, 1, 3, 2))
        return np.sum(np.sin((a @ heads(wv)).transpose(0, 2, 1, 3).reshape(x.shape[0], T, H * D)))
    rng = np.random.default_rng(4)
    _, *ws = _weights(np.float64)
    g = gc.jit(gc.value_and_grad(attention, argnums=(0, 1, 2, 3)))
    for sequences in (2, 7, 11):
        args = (rng.normal(size=(sequences, T, 6)), *ws)
        _assert_equal_to_the_interpreter(g, args, 1e-12)
        np.testing.assert_allclose(g(*args)[0], attention(*args), rtol=1e-12)
    drivers = {entry.driver for entry in g._cache.values()}
    assert len(drivers) == 1 and len(drivers.pop().signatures) == 1    # compiled once


@settings(max_examples=6, deadline=None)
@given(perm=st.permutations(range(4)).map(tuple), out_perm=st.permutations(range(4)).map(tuple),
       other=st.sampled_from(["plain", "flag"]), side=st.sampled_from("ab"),
       dtype=st.sampled_from([np.float64, np.float32]), seed=st.integers(0, 2 ** 16))
def test_products_reading_and_writing_any_transpose_of_a_stack_equal_numpy(
        perm, out_perm, other, side, dtype, seed):
    """Any permutation of a 4-D stack as either operand of a product, and of
    its result: those keeping the matrices' rows or columns last are read or
    written in place, the rest copied as before."""
    rng = np.random.default_rng(seed)
    sizes = (2, 3, 4, 5)        # the stack as the product reads it: (2, 3) of 4 x 5 matrices
    source = rng.normal(size=tuple(sizes[perm.index(d)] for d in range(4))).astype(dtype)
    if side == "a":     # (2, 3, 4, 5) @ (2, 3, 5, 6)
        partner = rng.normal(size=(2, 3, 6, 5) if other == "flag" else (2, 3, 5, 6))
    else:               # (2, 3, 6, 4) @ (2, 3, 4, 5)
        partner = rng.normal(size=(2, 3, 4, 6) if other == "flag" else (2, 3, 6, 4))
    partner = partner.astype(dtype)

    def f(s, p):
        stack = np.tanh(s).transpose(perm)
        p = np.swapaxes(p, -1, -2) if other == "flag" else p
        return np.sum(np.sin((stack @ p if side == "a" else p @ stack).transpose(out_perm)))
    g = gc.jit(gc.value_and_grad(f, argnums=(0, 1)))
    tol = 1e-11 if dtype == np.float64 else 2e-4
    _assert_equal_to_the_interpreter(g, (source, partner), tol)
    np.testing.assert_allclose(g(source, partner)[0], f(source, partner), rtol=tol)
    with pytest.MonkeyPatch.context() as without_the_pass:
        copies = _transposes(f, (source, partner)), _transposes(f, (source, partner),
                                                                without_the_pass)
    # A transpose of the last two axes alone is a flag (simplify) either way.
    # Each other one the pass takes is a copy in the forward and one in the
    # backward (the gradient transposed back): an operand's where its last
    # axis stays among the last two, the result's where the last is one of
    # the product's matrices' axes.
    # The transposes the backward makes of them (a.T's for b's gradient) are
    # taken with them, so that where both are, none is left.
    trivial = [p[:2] == (0, 1) for p in (perm, out_perm)]
    taken = [not trivial[0] and 3 in perm[-2:], not trivial[1] and out_perm[-1] in (2, 3)]
    assert copies[0] <= copies[1] - 2 * sum(taken), (copies, perm, out_perm)
    if all(t or s for t, s in zip(taken, trivial)):
        assert copies[0] == 0, (copies, perm, out_perm)
    assert copies[0] == copies[1] or any(taken), (copies, perm, out_perm)


def test_a_products_permutations_have_its_shape_rule_reference_and_gradient():
    """matmul's perm_a, perm_b and perm_out (which only the pass writes) as a traced
    function binds them: the shape rule, the interpreter, the compiled code
    and the vjp against central differences."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 2, 3, 5))       # read as (2, 3, 4, 5)
    b = rng.normal(size=(6, 2, 3, 5))       # read as (2, 3, 5, 6) transposed: (2, 3, 6, 5).T
    weights = rng.normal(size=(4, 2, 3, 6))   # the product (2, 3, 4, 6) written as (4, 2, 3, 6)

    def f(a, b):
        product = P.bind("matmul", np.tanh(a), b, perm_a=(1, 2, 0, 3), perm_b=(1, 2, 0, 3),
                         transpose_b=True, perm_out=(2, 0, 1, 3))
        return np.sum(np.sin(product) * weights)

    def reference(a, b):
        return np.sum(np.sin((np.tanh(a).transpose(1, 2, 0, 3)
                              @ np.swapaxes(b.transpose(1, 2, 0, 3), -1, -2)).transpose(2, 0, 1, 3))
                      * weights)
    g = gc.jit(gc.value_and_grad(f, argnums=(0, 1)))
    np.testing.assert_allclose(g(a, b)[0], reference(a, b), rtol=1e-12)
    _assert_equal_to_the_interpreter(g, (a, b), 1e-12)
    gc.check_grad(f, a, b, argnums=(0, 1))
    with pytest.raises(gc.errors.ShapeError, match="do not line up"):
        gc.jit(lambda a, b: P.bind("matmul", a, b, perm_a=(0, 1, 3, 2)))(a, b)


def test_a_product_merged_with_an_equal_one_leaves_the_others_read_in_place():
    """Two spellings of one product become one node in the rebuilt graph,
    whose node ids then run behind the old graph's: the pass asks about the
    new graph's operands, not the old ids (a KeyError, or a fold skipped)."""
    rng = np.random.default_rng(5)
    x, z = rng.normal(size=(2, 5, 3, 4)), rng.normal(size=(2, 5, 3, 4))
    u, w = rng.normal(size=(2, 3, 6, 4)), rng.normal(size=(2, 3, 4, 6))

    def f(x, u, z, w):
        m1 = x.transpose(0, 2, 1, 3) @ np.swapaxes(u, -1, -2)
        m2 = np.swapaxes(u @ x.transpose(0, 2, 3, 1), -1, -2)      # m1 spelled otherwise
        m3 = np.tanh(z).transpose(0, 2, 1, 3) @ w
        return np.sum(m1) + np.sum(2 * m2) + np.sum(np.sin(m3))
    g = gc.jit(f)
    np.testing.assert_allclose(g(x, u, z, w), f(x, u, z, w), rtol=1e-12)
    assert any(_head_block.match(a) for a, _, _ in _gemms(g.inspect(x, u, z, w).source))
    assert not [k for k in g.lower(x, u, z, w).kernels if k.ops == ["transpose"]]


def test_simplify_leaves_a_permuted_operand_and_its_product_whole():
    """simplify's matmul rules (a swapped operand read as a flag; a swapped
    product computed as the swapped operands' product) do not apply where
    perm_a or perm_b reorders the operand first: the flag follows it."""
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(3, 3, 3, 3)), rng.normal(size=(3, 3, 3, 3))
    f = gc.jit(lambda x, y: P.bind("matmul", np.swapaxes(x, -1, -2), y, perm_a=(0, 2, 1, 3)))
    np.testing.assert_allclose(f(x, y), np.swapaxes(x, -1, -2).transpose(0, 2, 1, 3) @ y,
                               rtol=1e-12)
    a, b = rng.normal(size=(2, 5, 3, 4)), rng.normal(size=(2, 3, 4, 6))
    g = gc.jit(lambda a, b: np.swapaxes(P.bind("matmul", a, b, perm_a=(0, 2, 1, 3)), -1, -2))
    np.testing.assert_allclose(g(a, b), np.swapaxes(a.transpose(0, 2, 1, 3) @ b, -1, -2),
                               rtol=1e-12)
