"""Pytrees: nested dicts, lists and tuples (and None) with array leaves.

`flatten` gives the leaves in a deterministic order (dict keys sorted) and a
hashable `TreeDef`; `unflatten` rebuilds the same structure from new leaves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TreeDef:
    kind: str                    # "leaf", "none", "tuple", "list", "dict"
    keys: tuple = ()             # dict keys, sorted
    children: tuple = ()

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
        inner = ", ".join(str(c) for c in self.children)
        return f"({inner},)" if self.kind == "tuple" else f"[{inner}]"


LEAF = TreeDef("leaf")


def flatten(tree: Any) -> tuple[list, TreeDef]:
    leaves: list = []
    return leaves, _flatten_into(tree, leaves)


def _flatten_into(tree: Any, leaves: list) -> TreeDef:
    if tree is None:
        return TreeDef("none")
    if isinstance(tree, dict):
        keys = tuple(sorted(tree, key=repr))
        return TreeDef("dict", keys, tuple(_flatten_into(tree[k], leaves) for k in keys))
    if isinstance(tree, (tuple, list)) and not hasattr(tree, "_fields"):
        kind = "tuple" if isinstance(tree, tuple) else "list"
        return TreeDef(kind, (), tuple(_flatten_into(c, leaves) for c in tree))
    leaves.append(tree)
    return LEAF


def unflatten(treedef: TreeDef, leaves) -> Any:
    it = iter(leaves)
    out = _build(treedef, it)
    return out


def _build(td: TreeDef, it) -> Any:
    if td.kind == "leaf":
        return next(it)
    if td.kind == "none":
        return None
    children = [_build(c, it) for c in td.children]
    if td.kind == "dict":
        return dict(zip(td.keys, children))
    return tuple(children) if td.kind == "tuple" else children


def leaf_paths(treedef: TreeDef, prefix: str = "") -> list[str]:
    """Human-readable paths of the leaves, e.g. `['W1']`, `[0][1]`."""
    if treedef.kind == "leaf":
        return [prefix or "<root>"]
    if treedef.kind == "none":
        return []
    out: list[str] = []
    labels = [f"[{k!r}]" for k in treedef.keys] if treedef.kind == "dict" else [
        f"[{i}]" for i in range(len(treedef.children))]
    for label, child in zip(labels, treedef.children):
        out.extend(leaf_paths(child, prefix + label))
    return out
