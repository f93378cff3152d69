"""Random parameter pytrees through gc.grad, gc.compile_step and gc.train.

Hypothesis draws a nested pytree of parameters (dicts with string keys, lists,
tuples and namedtuples, nested 1-3 deep, sometimes with a None or an empty container among
the children) holding 1-4 float arrays of rank 0-2 (sides 1-3), all float32 or
all float64. The loss touches every leaf and the batch:

    loss(params, x) = sum over leaves of  c(path) * sum(leaf**2) + mean(x) * sum(tanh(leaf))

where c(path) is a constant derived from the leaf's path in the tree (not from
its position in any flattening order), so a gradient or an update sent to the
wrong leaf is caught. Its gradient has a closed form,
2 * c(path) * leaf + mean(x) * (1 - tanh(leaf)**2), computed here in NumPy.

Checked: `gc.grad` returns the same structure (containers, keys, shapes,
dtypes) holding that gradient; one `compile_step` call with SGD returns the
loss before the update as a Python float and updates every leaf in place
(same array objects) to leaf - lr * grad; `gc.train` without shuffling equals
calling the step by hand over the same batches, and both equal a NumPy
replay of SGD. Each example compiles new code, so few examples run by default;
set GRAPHC_FUZZ_EXAMPLES to run more.
"""
import collections
import copy
import functools
import os
import zlib

import numpy as np
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphc as gc

EXAMPLES = int(os.environ.get("GRAPHC_FUZZ_EXAMPLES", "3"))  # each compiles 2-3 modules
LR = 0.1
DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-11, atol=1e-12)}


# --------------------------------------------------------------- the pytrees
def leaf_arrays(dtype):
    # width=32 values are exact in both dtypes; bounded so tanh and squares stay tame
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3),
                      elements=st.floats(-2, 2, width=32))


@functools.cache
def namedtuple_class(n_fields):
    """One class per field count, as a user's module defines it once."""
    return collections.namedtuple(f"Node{n_fields}", [f"f{i}" for i in range(n_fields)])


@st.composite
def subtrees(draw, n_leaves, depth, leaves):
    """A dict, list, tuple or namedtuple holding exactly `n_leaves` array leaves, nested at most
    `depth` containers deep (this one included)."""
    children = []
    remaining = n_leaves
    while remaining:
        take = draw(st.integers(1, remaining))
        remaining -= take
        if depth == 1:                        # no room to nest: the leaves sit here
            children.extend(draw(leaves) for _ in range(take))
        elif take == 1 and draw(st.booleans()):
            children.append(draw(leaves))
        else:
            children.append(draw(subtrees(take, depth - 1, leaves)))
    # now and then a child without leaves: None or an empty container
    for extra in draw(st.lists(st.sampled_from([None, "dict", "list", "tuple"]), max_size=1)):
        empty = {"dict": {}, "list": [], "tuple": ()}.get(extra)
        children.insert(draw(st.integers(0, len(children))), empty)
    kind = draw(st.sampled_from(["dict", "list", "tuple", "namedtuple"]))
    if kind == "dict":
        keys = draw(st.lists(st.text(max_size=3), min_size=len(children),
                             max_size=len(children), unique=True))
        return dict(zip(keys, children))
    if kind == "namedtuple":
        return namedtuple_class(len(children))(*children)
    return children if kind == "list" else tuple(children)


@st.composite
def param_trees(draw):
    """(params, dtype): 1-4 leaves of one float dtype, nested 1-3 deep."""
    dtype = draw(st.sampled_from(DTYPES))
    tree = draw(subtrees(draw(st.integers(1, 4)), draw(st.integers(1, 3)), leaf_arrays(dtype)))
    return tree, dtype


def batches(dtype, min_rows=1, max_rows=6):
    """A batch input x: (rows,) or (rows, features)."""
    return hnp.arrays(dtype, st.tuples(st.integers(min_rows, max_rows))
                      | st.tuples(st.integers(min_rows, max_rows), st.integers(1, 3)),
                      elements=st.floats(-2, 2, width=32))


# ------------------------------------------------------ walking the pytrees
def walk(tree, path=()):
    """(path, leaf) for every array leaf, by our own traversal (not graphc's)."""
    if tree is None:
        return
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from walk(v, path + (k,))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from walk(v, path + (i,))
    else:
        yield path, tree


def coef(path):
    """A per-leaf constant in [0.25, 1.125], fixed by the leaf's path."""
    return 0.25 + (zlib.crc32(repr(path).encode()) % 8) / 8


def loss(params, x):
    m = np.mean(x)
    total = 0.0
    for path, leaf in walk(params):
        total = total + coef(path) * np.sum(leaf * leaf) + m * np.sum(np.tanh(leaf))
    return total


def reference(leaves, x):
    """The loss and {path: d loss / d leaf} in float64, from {path: leaf}."""
    m = np.mean(np.asarray(x, np.float64))
    v = {path: np.float64(leaf) for path, leaf in leaves.items()}
    value = sum(coef(p) * np.sum(a ** 2) + m * np.sum(np.tanh(a)) for p, a in v.items())
    return value, {p: 2 * coef(p) * a + m * (1 - np.tanh(a) ** 2) for p, a in v.items()}


def ref_loss(params, x):
    return reference(dict(walk(params)), x)[0]


def ref_grads(params, x):
    return reference(dict(walk(params)), x)[1]


def assert_same_structure(got, want, where="params"):
    """Same container types, dict keys, list/tuple lengths, None, leaf shapes and dtypes."""
    if want is None:
        assert got is None, f"{where}: expected None, got {type(got).__name__}"
    elif isinstance(want, dict):
        assert type(got) is dict, f"{where}: expected a dict, got {type(got).__name__}"
        assert set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            assert_same_structure(got[k], want[k], f"{where}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want), \
            f"{where}: expected a {type(want).__name__}, got {type(got).__name__}"
        assert len(got) == len(want), f"{where}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_structure(g, w, f"{where}[{i}]")
    else:
        assert type(got) is np.ndarray, f"{where}: expected an ndarray, got {type(got).__name__}"
        assert got.shape == want.shape, f"{where}: shape {got.shape} != {want.shape}"
        assert got.dtype == want.dtype, f"{where}: dtype {got.dtype} != {want.dtype}"


def sgd_reference(params, batches_in_order):
    """Plain NumPy SGD in float64 over the batches: (losses, {path: final leaf})."""
    current = {path: np.float64(leaf) for path, leaf in walk(params)}
    losses = []
    for xb in batches_in_order:
        value, grads = reference(current, xb)
        losses.append(value)
        current = {p: v - LR * grads[p] for p, v in current.items()}
    return losses, current


# ------------------------------------------------------------------- tests
# on the interpreter: the structure is built while tracing, and no compile per
# example lets many more structures be drawn (compiled pytrees: the tests below)
@settings(max_examples=10 * EXAMPLES, deadline=None)
@given(data=st.data())
def test_grad_of_random_pytree_has_its_structure_and_the_analytic_values(data):
    params, dtype = data.draw(param_trees(), label="params")
    x = data.draw(batches(dtype), label="x")
    before = copy.deepcopy(params)

    grads = gc.grad(loss).interpret(params, x)

    assert_same_structure(grads, params, "grads")
    expected = ref_grads(params, x)
    for path, g in walk(grads):
        note(f"leaf {path}")
        np.testing.assert_allclose(g, expected[path], **TOL[dtype], err_msg=f"grad at {path}")
    assert len(list(walk(grads))) == len(expected)
    # grad does not touch its arguments
    for (path, leaf), (_, old) in zip(walk(params), walk(before)):
        np.testing.assert_array_equal(leaf, old, err_msg=f"params{path} changed")


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_compile_step_updates_every_leaf_of_random_pytree_in_place(data):
    params, dtype = data.draw(param_trees(), label="params")
    x1 = data.draw(batches(dtype), label="x1")
    x2 = data.draw(batches(dtype), label="x2")
    leaves_before = dict(walk(params))
    ids = {path: id(leaf) for path, leaf in leaves_before.items()}
    old_tree = copy.deepcopy(params)
    old = dict(walk(old_tree))

    step = gc.compile_step(loss, gc.optim.SGD(lr=LR))
    got = step(params, x1)

    assert type(got) is float
    np.testing.assert_allclose(got, ref_loss(old_tree, x1), **TOL[dtype])
    assert_same_structure(params, old_tree)
    expected = ref_grads(old_tree, x1)
    for path, leaf in walk(params):
        assert id(leaf) == ids[path], f"params{path} was replaced, not updated in place"
        np.testing.assert_allclose(leaf, np.float64(old[path]) - LR * expected[path],
                                   **TOL[dtype], err_msg=f"params{path} after one step")
    assert step.state["count"] == 1

    # a second step (maybe another batch shape) starts from the updated values
    mid_tree = copy.deepcopy(params)
    mid = dict(walk(mid_tree))
    got2 = step(params, x2)
    np.testing.assert_allclose(got2, ref_loss(mid_tree, x2), **TOL[dtype])
    expected2 = ref_grads(mid_tree, x2)
    for path, leaf in walk(params):
        assert leaf is leaves_before[path]
        np.testing.assert_allclose(leaf, np.float64(mid[path]) - LR * expected2[path],
                                   **TOL[dtype], err_msg=f"params{path} after two steps")
    assert step.state["count"] == 2


@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data())
def test_train_on_random_pytree_equals_calling_step_by_hand(data):
    params, dtype = data.draw(param_trees(), label="params")
    X = data.draw(batches(dtype, min_rows=2, max_rows=9), label="X")
    n = len(X)
    drop_last = data.draw(st.booleans(), label="drop_last")
    batch_size = data.draw(st.integers(1, n if drop_last else n + 2), label="batch_size")
    replay = copy.deepcopy(params)
    initial = copy.deepcopy(params)
    ids = {path: id(leaf) for path, leaf in walk(params)}

    history = gc.train(loss, params, (X,), gc.optim.SGD(lr=LR), batch_size=batch_size,
                       epochs=2, shuffle=False, drop_last=drop_last, progress=False)

    assert isinstance(history, np.ndarray) and history.shape == (2,)
    assert {path: id(leaf) for path, leaf in walk(params)} == ids, "train replaced a leaf"
    assert_same_structure(params, initial)
    # replay the two epochs by hand with one step object
    bs = batch_size if drop_last else min(batch_size, n)
    step = gc.compile_step(loss, gc.optim.SGD(lr=LR))
    order, expected_history = [], []
    for epoch in range(2):
        losses = []
        for start in range(0, n, bs):
            if start + bs > n and drop_last:
                break
            order.append(X[start:start + bs])
            losses.append(step(replay, X[start:start + bs]))
        expected_history.append(np.mean(losses))
    np.testing.assert_allclose(history, expected_history, rtol=1e-12)
    replayed = dict(walk(replay))
    for path, leaf in walk(params):
        np.testing.assert_allclose(leaf, replayed[path], rtol=1e-12, err_msg=f"params{path}")
    # and both follow SGD on the closed-form gradient
    ref_losses, ref_final = sgd_reference(initial, order)
    per_epoch = len(order) // 2
    np.testing.assert_allclose(history, [np.mean(ref_losses[:per_epoch]),
                                         np.mean(ref_losses[per_epoch:])], **TOL[dtype])
    for path, leaf in walk(params):
        np.testing.assert_allclose(leaf, ref_final[path], **TOL[dtype], err_msg=f"params{path}")
