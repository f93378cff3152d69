"""pytree.flatten's cached fast paths (a dict of arrays, a call's arguments
of arrays and such dicts) against the general, uncached flattening, and
unflatten's written-out builders and the written-out flatteners of one tree
(pytree.flattener) against it too."""
import collections

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from graphc import pytree

Pair = collections.namedtuple("Pair", "a b")
KEYS = ["W", "b", "v", "W2", 3]


def _general(tree):
    leaves = []
    return leaves, pytree._flatten_into(tree, leaves)


# leaves: arrays mostly, sometimes a float or None; containers: dicts (of a few
# keys, in any insertion order), tuples, lists, namedtuples
leaves = st.sampled_from([np.zeros(2), np.ones(()), np.zeros(2, np.float32)]).map(
    np.copy) | st.sampled_from([1.5, None])
trees = st.recursive(
    leaves,
    lambda children: (
        st.dictionaries(st.sampled_from(KEYS), children, min_size=1, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.lists(children, max_size=3)
        | st.tuples(children, children).map(lambda ab: Pair(*ab))),
    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(trees, min_size=1, max_size=4).map(tuple))
def test_flatten_equals_the_general_flattening_every_call(args):
    for _ in range(3):      # the first call fills the caches, the next ones read them
        for tree in (args, *args):
            got_leaves, got_def = pytree.flatten(tree)
            want_leaves, want_def = _general(tree)
            assert got_def == want_def and hash(got_def) == hash(want_def)
            assert len(got_leaves) == len(want_leaves)
            assert all(a is b for a, b in zip(got_leaves, want_leaves))
            rebuilt_leaves, rebuilt_def = _general(pytree.unflatten(got_def, got_leaves))
            assert rebuilt_def == want_def
            assert all(a is b for a, b in zip(rebuilt_leaves, want_leaves))


def test_a_cached_dict_whose_values_change_kind_is_flattened_as_it_is_now():
    arrays = {"W": np.zeros(2), "b": np.ones(2)}
    nested = {"W": {"x": np.zeros(1)}, "b": np.ones(2)}
    for tree in [arrays, nested, arrays, {"W": 1.0, "b": np.ones(2)}, nested, arrays]:
        for args in [tree, (tree, np.zeros(3))]:
            got_leaves, got_def = pytree.flatten(args)
            want_leaves, want_def = _general(args)
            assert got_def == want_def
            assert [id(x) for x in got_leaves] == [id(x) for x in want_leaves]


def test_unflatten_rebuilds_a_tree_nested_deeper_than_an_expression_can_be():
    tree = leaf = np.zeros(1)
    for depth in range(220):     # past the parser's 200 nested brackets
        tree = {"child": tree} if depth % 3 else ([tree, None] if depth % 2 else (tree,))
    leaves, treedef = pytree.flatten(tree)
    assert len(leaves) == 1 and leaves[0] is leaf
    assert _general(pytree.unflatten(treedef, leaves))[1] == treedef
    assert _general(pytree.unflatten(treedef, iter(leaves)))[1] == treedef     # any iterable


def test_keys_equal_across_types_are_not_taken_for_each_other():
    # True == 1 and 1.0 == 1, but they are different keys that sort apart
    a, b = np.zeros(1), np.ones(1)
    for keys in [(1, 5), (True, 5), (1.0, 5), (5, 1), (5, True)]:
        tree = dict(zip(keys, (a, b)))
        for args in [tree, (tree, a)]:
            got_leaves, got_def = pytree.flatten(args)
            want_leaves, want_def = _general(args)
            assert repr(got_def) == repr(want_def)
            assert [id(x) for x in got_leaves] == [id(x) for x in want_leaves]


def test_keys_equal_to_strings_are_not_taken_for_them():
    # np.str_("a") == "a" and hashes alike: a dict cached with one is not the other
    a = np.zeros(1)
    for key in ["a", np.str_("a"), "a", np.str_("a")]:
        for args in [{key: a}, ({key: a}, a)]:
            got_leaves, got_def = pytree.flatten(args)
            want_leaves, want_def = _general(args)
            assert got_def == want_def and repr(got_def) == repr(want_def)
            inner = got_def.children[0] if isinstance(args, tuple) else got_def
            assert inner._key_types == (type(key),)


def test_unflatten_gives_back_each_tree_s_own_keys():
    # builders are cached by TreeDef, and a TreeDef of {1: .} must not equal {True: .}'s
    a = np.zeros(1)
    for tree in [{1: a}, {True: a}, {1.0: a}, {0: a, 1: a}, {False: a, True: a}, ({1: a}, a)]:
        leaves, treedef = pytree.flatten(tree)
        rebuilt = pytree.unflatten(treedef, leaves)
        inner, outer = (rebuilt[0], tree[0]) if isinstance(tree, tuple) else (rebuilt, tree)
        assert [(type(k), k) for k in inner] == [(type(k), k) for k in outer]


def _avals(leaves):
    return [(np.shape(x), np.asarray(x).dtype) for x in leaves]


def _all_keys(treedef):
    inner = [k for c in treedef.children for k in _all_keys(c)]
    return [*treedef.keys, *inner] if treedef.kind == "dict" else inner


@settings(max_examples=300, deadline=None)
@given(trees, st.lists(trees, max_size=6))
def test_a_flattener_flattens_its_own_tree_and_refuses_any_other(tree, others):
    want_leaves, want_def = _general(tree)
    flatten_tree = pytree.flattener(want_def, _avals(want_leaves))
    if flatten_tree is None:    # made for all but dicts with keys that are not strings
        assert any(type(k) is not str for k in _all_keys(want_def))
        return
    for other in [tree, *others]:
        got = flatten_tree(other)
        other_leaves, other_def = _general(other)
        same = (other_def == want_def and _avals(other_leaves) == _avals(want_leaves)
                and all(type(x) is np.ndarray for x in other_leaves))
        if not same:
            assert got is None
        else:
            assert [id(x) for x in got] == [id(x) for x in other_leaves]


def test_a_flattener_refuses_each_near_miss():
    W, b = np.zeros((2, 3)), np.zeros(3)
    tree = ({"W": W, "b": b}, [W, None], Pair(b, (b,)))
    leaves, treedef = pytree.flatten(tree)
    flatten_tree = pytree.flattener(treedef, _avals(leaves))
    assert [id(x) for x in flatten_tree(tree)] == [id(x) for x in leaves]
    reordered = ({"b": b, "W": W}, [W, None], Pair(b, (b,)))
    assert [id(x) for x in flatten_tree(reordered)] == [id(x) for x in leaves]
    misses = [
        ({"W": W, "c": b}, [W, None], Pair(b, (b,))),                  # a key renamed
        ({"W": W, "b": b, "c": b}, [W, None], Pair(b, (b,))),          # a key added
        ({"W": W}, [W, None], Pair(b, (b,))),                          # a key dropped
        ({"W": W, "b": W}, [W, None], Pair(b, (b,))),                  # a shape
        ({"W": W, "b": b.astype(np.float32)}, [W, None], Pair(b, (b,))),   # a dtype
        ({"W": W, "b": 1.0}, [W, None], Pair(b, (b,))),                # a float for an array
        ({"W": W, "b": b}, [W, b], Pair(b, (b,))),                     # an array for None
        ({"W": W, "b": b}, (W, None), Pair(b, (b,))),                  # a tuple for a list
        ({"W": W, "b": b}, [W, None], (b, (b,))),                      # a tuple for a namedtuple
        ({"W": W, "b": b}, [W, None], Pair(b, [b])),                   # a list for a tuple
        (collections.OrderedDict(W=W, b=b), [W, None], Pair(b, (b,))),   # a dict's subclass
        ({"W": W, "b": b}, [W, None], Pair(b, (b,)), b),               # one argument more
        ({"W": W, "b": b}, [W, None]),                                 # one fewer
        ({"W": W, "b": np.ma.masked_array(b)}, [W, None], Pair(b, (b,))),   # an array's subclass
        ({np.str_("W"): W, "b": b}, [W, None], Pair(b, (b,))),         # a key equal to a str
    ]
    for other in misses:
        assert flatten_tree(other) is None, other


def test_a_flattener_is_written_out_up_to_so_many_nodes():
    x = np.zeros(1)
    most = pytree.WRITTEN_OUT_AT_MOST
    for nones, made in [(most - 3, True), (most, False)]:
        tree = (x, [None] * nones)      # nodes: the tuple, x, the list and the Nones
        leaves, treedef = pytree.flatten(tree)
        flatten_tree = pytree.flattener(treedef, _avals(leaves))
        assert (flatten_tree is not None) == made
        if made:
            assert flatten_tree(tree)[0] is x


def test_a_flattener_takes_a_python_float_where_told_and_nothing_else():
    x = np.zeros(2)
    leaves, treedef = pytree.flatten((x, 0.5))
    flatten_tree = pytree.flattener(treedef, [(x.shape, x.dtype), float])
    got = flatten_tree((x, 0.25))
    assert got[0] is x and type(got[1]) is np.ndarray and got[1].dtype == np.float64
    assert got[1] == 0.25 and got[1].shape == ()
    for other in [np.float64(0.25), np.array(0.25), 1, True, np.float32(0.25), None]:
        assert flatten_tree((x, other)) is None, other
