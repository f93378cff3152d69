"""Pytrees: nested dicts, lists, tuples and namedtuples (and None) with array leaves.

`flatten` gives the leaves in a deterministic order (dict keys sorted) and a
hashable `TreeDef`; `unflatten` rebuilds the same structure from new leaves.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TreeDef:
    kind: str                    # "leaf", "none", "tuple", "list", "dict", "namedtuple"
    keys: tuple = ()             # dict keys, sorted; a namedtuple's field names
    children: tuple = ()
    node_type: type | None = None  # the namedtuple's class, rebuilt by unflatten
    # a dict's key types: 1, 1.0 and True are equal keys but different trees
    # (their keys come back as they went in), so equal TreeDefs need these too
    _key_types: tuple = field(default=(), init=False, repr=False)
    # computed once: every compiled call looks its TreeDef up in a dict, and the
    # generated hash walks the whole tree each time
    _hash: int = field(default=0, init=False, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_key_types", tuple(map(type, self.keys)))
        object.__setattr__(self, "_hash", hash((self.kind, self.keys, self._key_types,
                                                self.children, self.node_type)))

    def __hash__(self) -> int:
        return self._hash

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    def __str__(self) -> str:
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        if self.kind == "dict":
            return "{" + ", ".join(f"{k!r}: {c}" for k, c in zip(self.keys, self.children)) + "}"
        if self.kind == "namedtuple":
            fields = ", ".join(f"{k}={c}" for k, c in zip(self.keys, self.children))
            return f"{self.node_type.__name__}({fields})"
        inner = ", ".join(str(c) for c in self.children)
        if self.kind == "list":
            return f"[{inner}]"
        return f"({inner},)" if len(self.children) == 1 else f"({inner})"


LEAF = TreeDef("leaf")


# A flat dict of arrays (the usual params) is flattened on every training step:
# remember its sorted key order, TreeDef (None for a dict of dicts) and key
# types (_key_types), keyed by its keys in insertion order.
_FLAT_DICTS: dict[tuple, tuple[tuple, TreeDef | None, tuple | None]] = {}
_FLAT_DICTS_MAX = 256


def _all_arrays(leaves) -> bool:
    for leaf in leaves:        # a loop, not all(<generator>): this runs on every step
        if type(leaf) is not np.ndarray:
            return False
    return True


def flatten(tree: Any) -> tuple[list, TreeDef]:
    if type(tree) is tuple:
        if _all_arrays(tree):
            return list(tree), _array_tuple(len(tree))      # a batch (x, y)
        flat = _flat_arguments(tree)
        if flat is not None:
            return flat
    if type(tree) is dict:
        leaves = []
        treedef = _flat_dict(tree, leaves)
        if treedef is not None:
            return leaves, treedef
    leaves = []
    return leaves, _flatten_into(tree, leaves)


def _flat_dict(tree: dict, leaves: list) -> TreeDef | None:
    """`tree`'s TreeDef, its arrays appended to `leaves`, when it is a dict of
    arrays (cached by its keys, in their order); else None, leaves untouched.
    A dict of dicts is remembered as such (None), so that its general
    flattening is not done twice each call. Keys that are not all strings
    are matched by type too: True == 1, but they sort apart."""
    keys = tuple(tree)
    hit = _FLAT_DICTS.get(keys)
    if hit is None:
        found: list = []
        treedef = _flatten_into(tree, found)
        nested = not all(c.kind == "leaf" for c in treedef.children)
        if len(_FLAT_DICTS) >= _FLAT_DICTS_MAX:
            _FLAT_DICTS.clear()
        _FLAT_DICTS[keys] = (treedef.keys, None if nested else treedef, _key_types(keys))
        if nested or not _all_arrays(found):
            return None
        leaves += found
        return treedef
    sorted_keys, treedef, key_types = hit
    if treedef is None or _key_types(keys) != key_types:    # ("a",) == (np.str_("a"),)
        return None
    start = len(leaves)
    for k in sorted_keys:
        leaf = tree[k]
        if type(leaf) is not np.ndarray:
            del leaves[start:]
            return None
        leaves.append(leaf)
    return treedef


def _key_types(keys: tuple) -> tuple | None:
    """None for string keys (which only strings equal), else each key's type."""
    for k in keys:
        if type(k) is not str:
            return tuple(map(type, keys))
    return None


# A call's arguments, f(params, x, y): a tuple of arrays and dicts of arrays,
# whose TreeDef is built once per combination of theirs (building it each
# call was about a third of a small gc.jit function's 11 us call).
_ARGUMENT_TUPLES: dict[tuple, TreeDef] = {}


def _flat_arguments(tree: tuple) -> tuple[list, TreeDef] | None:
    leaves: list = []
    children = []
    for item in tree:
        if type(item) is np.ndarray:
            leaves.append(item)
            children.append(LEAF)
        elif type(item) is dict:
            child = _flat_dict(item, leaves)
            if child is None:
                return None
            children.append(child)
        else:
            return None
    children = tuple(children)
    treedef = _ARGUMENT_TUPLES.get(children)
    if treedef is None:
        if len(_ARGUMENT_TUPLES) >= _FLAT_DICTS_MAX:
            _ARGUMENT_TUPLES.clear()
        treedef = _ARGUMENT_TUPLES[children] = TreeDef("tuple", (), children)
    return leaves, treedef


@functools.lru_cache(maxsize=64)
def _array_tuple(n: int) -> TreeDef:
    return TreeDef("tuple", (), (LEAF,) * n)


def _flatten_into(tree: Any, leaves: list) -> TreeDef:
    if tree is None:
        return TreeDef("none")
    if isinstance(tree, dict):
        keys = tuple(sorted(tree, key=repr))
        return TreeDef("dict", keys, tuple(_flatten_into(tree[k], leaves) for k in keys))
    if isinstance(tree, tuple) and hasattr(type(tree), "_fields"):
        return TreeDef("namedtuple", tuple(tree._fields),
                       tuple(_flatten_into(c, leaves) for c in tree), type(tree))
    if isinstance(tree, (tuple, list)):
        kind = "tuple" if isinstance(tree, tuple) else "list"
        return TreeDef(kind, (), tuple(_flatten_into(c, leaves) for c in tree))
    leaves.append(tree)
    return LEAF


def unflatten(treedef: TreeDef, leaves) -> Any:
    if type(leaves) is not list and type(leaves) is not tuple:
        leaves = list(leaves)
    return builder(treedef)(leaves)


# Functions written out for one tree (builder, flattener; api's outputs) are
# walked instead past this many leaves or nodes: compiling the Python costs
# about 23 us a leaf, once, more than the calls would save
WRITTEN_OUT_AT_MOST = 1000


def num_nodes(treedef: TreeDef) -> int:
    return 1 + sum(num_nodes(c) for c in treedef.children)


@functools.lru_cache(maxsize=256)
def builder(treedef: TreeDef):
    """A function of the leaves that builds `treedef`'s tree, one expression
    written out: every compiled call rebuilds its outputs' tree, and a walk
    of the TreeDef took 1.36 us for (loss, {"W": g, "b": g}), this 0.14.
    Trees nested over 50 deep (the parser takes 200 brackets) or of more
    than WRITTEN_OUT_AT_MOST leaves are walked."""
    if treedef.num_leaves > WRITTEN_OUT_AT_MOST or _depth(treedef) > 50:
        return lambda leaves: _build(treedef, iter(leaves))
    names: dict[str, Any] = {}
    count = iter(range(treedef.num_leaves))

    def expression(td: TreeDef) -> str:
        if td.kind == "leaf":
            return f"x[{next(count)}]"
        if td.kind == "none":
            return "None"
        items = [expression(c) for c in td.children]
        if td.kind == "dict":
            name = f"k{len(names)}"
            names[name] = td.keys
            return "{" + ", ".join(f"{name}[{i}]: {e}" for i, e in enumerate(items)) + "}"
        if td.kind == "namedtuple":
            name = f"c{len(names)}"
            names[name] = td.node_type
            return f"{name}({', '.join(items)})"
        if td.kind == "list":
            return "[" + ", ".join(items) + "]"
        return "(" + "".join(e + ", " for e in items) + ")"

    return eval(f"lambda x: {expression(treedef)}", names)


def flattener(treedef: TreeDef, avals) -> Any:
    """A function that flattens a tree of `treedef` whose leaves are arrays of
    `avals` ((shape, dtype) each; `float` for a Python float, which comes
    back a 0-d float64 array), as `flatten` would, and returns None for any
    other tree: `flatten`, then a signature key of the leaves and its
    look-up, cost a jitted function's call 2.1 us, this 0.6. The keys of a
    dict must be strings, not merely equal to them (np.str_("W") == "W", but
    a TreeDef keeps key types). None for a tree whose dicts have other keys
    (1 finds a key True, whose tree is another), or of over
    WRITTEN_OUT_AT_MOST nodes."""
    if num_nodes(treedef) > WRITTEN_OUT_AT_MOST:
        return None
    names: dict[str, Any] = {"nd": np.ndarray, "array": np.array}
    lines: list[str] = []
    leaves: list[str] = []

    def visit(td: TreeDef, var: str) -> bool:
        if td.kind == "leaf" and avals[len(leaves)] is float:
            leaves.append(f"array({var})")
            lines.append(f"if type({var}) is not float: return None")  # (np.float64 is strong)
            return True
        if td.kind == "leaf":
            k = len(leaves)
            leaves.append(var)
            names[f"s{k}"], names[f"d{k}"] = avals[k]
            # dtype by identity first: NumPy's built-in dtypes are one object each
            lines.append(f"if type({var}) is not nd or {var}.shape != s{k} or "
                         f"{var}.dtype is not d{k} and {var}.dtype != d{k}: return None")
            return True
        if td.kind == "none":
            lines.append(f"if {var} is not None: return None")
            return True
        if td.kind == "dict" and not all(type(key) is str for key in td.keys):
            return False
        kind = f"t{len(names)}"
        names[kind] = {"tuple": tuple, "list": list, "dict": dict}.get(td.kind, td.node_type)
        lines.append(f"if type({var}) is not {kind} or len({var}) != {len(td.children)}: "
                     f"return None")
        if td.kind == "dict":       # (a loop: 20 ns a key, where a set of types took 27)
            lines.extend([f"for key in {var}:", "    if type(key) is not str: return None"])
        indices = map(repr, td.keys) if td.kind == "dict" else map(str, range(len(td.children)))
        for index, child in zip(indices, td.children):
            name = f"v{len(lines)}"
            lines.append(f"{name} = {var}[{index}]")    # a dict without the key: KeyError
            if not visit(child, name):
                return False
        return True

    if not visit(treedef, "tree"):
        return None
    body = "\n        ".join(lines)
    source = (f"def flatten_tree(tree):\n    try:\n        {body}\n"
              f"    except KeyError:\n        return None\n"
              f"    return [{', '.join(leaves)}]\n")
    exec(source, names)
    return names["flatten_tree"]


def _depth(td: TreeDef) -> int:
    return 1 + max((_depth(c) for c in td.children), default=0)


def _build(td: TreeDef, it) -> Any:
    if td.kind == "leaf":
        return next(it)
    if td.kind == "none":
        return None
    children = [_build(c, it) for c in td.children]
    if td.kind == "dict":
        return dict(zip(td.keys, children))
    if td.kind == "namedtuple":
        return td.node_type(*children)
    return tuple(children) if td.kind == "tuple" else children


def without_namedtuples(treedef: TreeDef) -> TreeDef:
    """The same structure with each namedtuple a plain tuple (for code that
    cannot import the namedtuple's class, such as an exported module)."""
    if treedef.kind in ("leaf", "none"):
        return treedef
    kind = "tuple" if treedef.kind == "namedtuple" else treedef.kind
    keys = () if treedef.kind == "namedtuple" else treedef.keys
    return TreeDef(kind, keys, tuple(without_namedtuples(c) for c in treedef.children))


def leaf_suffixes(treedef: TreeDef) -> list[str]:
    """leaf_paths to write after a name (`params['W']`): "" for a tree that
    is one leaf."""
    return ["" if path == "<root>" else path for path in leaf_paths(treedef)]


def leaf_paths(treedef: TreeDef, prefix: str = "") -> list[str]:
    """Human-readable paths of the leaves, e.g. `['W1']`, `[0][1]`, `.w`."""
    if treedef.kind == "leaf":
        return [prefix or "<root>"]
    if treedef.kind == "none":
        return []
    out: list[str] = []
    if treedef.kind == "dict":
        labels = [f"[{k!r}]" for k in treedef.keys]
    elif treedef.kind == "namedtuple":
        labels = [f".{k}" for k in treedef.keys]
    else:
        labels = [f"[{i}]" for i in range(len(treedef.children))]
    for label, child in zip(labels, treedef.children):
        out.extend(leaf_paths(child, prefix + label))
    return out
