"""Fewer loops for a fused kernel: its leading axes merged where every
array it reads broadcasts along them alike.

A fused elementwise group over (128, 6, 6, 16), a convolution's activations
plus a bias of (16,), runs as a loop per axis, the innermost over 16; every
array it reads or writes is C-contiguous (inputs are converted, the rest are
allocated so), so the same elements are (4608, 16) views, and one loop over
4608 rows runs the same body with less loop overhead (bench_conv.py's relu
and its masks: 19 -> 13 us). The last axis is never merged: the inner loop,
short-row forms and loop-index constants all work on it as it is.

`plan` finds the groups of axes to merge; codegen then emits the kernel
against `MergedAxes.view` (the group's nodes with merged shapes, its
reductions' axes counted in groups) and passes it views of its arrays in
those shapes.
"""
from __future__ import annotations

import dataclasses
import math

from graphc.ir import Graph, Node
from graphc.ops import OPS


def _is_reduction(node: Node) -> bool:
    return node.op in OPS and OPS[node.op].kind == "reduce"      # (inputs and constants are not)


def _spans(shape: tuple, space: tuple, d: int) -> bool:
    """Whether an operand of `shape` (aligned right, as broadcasting does) runs
    along axis `d` of `space` rather than being broadcast along it."""
    j = d - (len(space) - len(shape))
    return j >= 0 and shape[j] == space[d]


@dataclasses.dataclass
class MergedAxes:
    graph: Graph
    space_id: int
    groups: list[list[int]]     # the space's axes, merged in runs: [[0, 1, 2], [3]]
    reductions: set[int]        # the group's reductions (an operand may be one too: not these)
    nodes: dict[int, Node] = dataclasses.field(default_factory=dict)   # as the kernel sees them

    @property
    def space(self) -> tuple:
        return self.graph.node(self.space_id).shape

    def _kept(self, node: Node) -> list:
        """Per group, for a reduction: True where it keeps the axes, 1 where
        keepdims leaves them as 1, None where they go."""
        axes, keep = node.p["axes"], node.p["keepdims"]
        return [True if g[0] not in axes else 1 if keep else None for g in self.groups]

    def _merged(self, node: Node, per_axis: list) -> list:
        """`per_axis` (one entry an axis of `node`, ints or expressions) merged:
        a group's product (a list of its entries) where `node` spans it, 1
        where it is broadcast along it or a reduction keeps it as 1, nothing
        where it lacks the group or a reduction drops it."""
        if node.id in self.reductions:      # per_axis: the space's
            return [[per_axis[d] for d in g] if kept is True else 1
                    for g, kept in zip(self.groups, self._kept(node)) if kept is not None]
        lead = len(self.space) - len(node.shape)
        return [[per_axis[d - lead] for d in g if d >= lead]
                if _spans(node.shape, self.space, g[0]) else 1
                for g in self.groups if g[-1] >= lead]

    def merged_dims(self, nid: int, dims) -> list[str]:
        """Node `nid`'s merged shape as run-time expressions; `dims`: the
        DimTable (a reduction's come from the space's)."""
        node = self.graph.node(nid)
        own = dims[self.space_id] if nid in self.reductions else dims[nid]
        return [" * ".join(f"({e})" for e in m) if isinstance(m, list) else "1"
                for m in self._merged(node, own)]

    def add(self, node: Node):
        """Record how the kernel sees `node`: its shape merged, and a reduction's
        axes counted in groups."""
        per_axis = self.space if node.id in self.reductions else node.shape
        shape = tuple(math.prod(m) if isinstance(m, list) else m
                      for m in self._merged(node, list(per_axis)))
        changes = {"shape": shape}
        if node.id in self.reductions:
            kept = self._kept(node)
            params = dict(node.params)
            params["axes"] = tuple(k for k, keep in enumerate(kept) if keep is not True)
            changes["params"] = tuple(sorted(params.items()))
        self.nodes[node.id] = dataclasses.replace(node, **changes)

    @property
    def view(self) -> "_View":
        return _View(self.graph, self.nodes)


class _View:
    """`graph` with the nodes in `nodes` replaced (other shapes and params)."""

    def __init__(self, graph: Graph, nodes: dict[int, Node]):
        self._graph, self._nodes = graph, nodes

    def node(self, nid: int) -> Node:
        return self._nodes.get(nid) or self._graph.node(nid)

    def __getattr__(self, name):
        return getattr(self._graph, name)


# A reduction over axis 0 (and the axes merged with it) takes the merged form,
# codegen's column sum over rows, for rows of at least this many: for short
# rows it is slower (a bias gradient over (128, 6, 6, 16): 20 us against 17 as
# a loop per axis), for rows of 64 and 128 faster (a transformer block's bias
# and layer-norm gradients over (16, 32, 64) and (16, 32, 128), in the cycle
# profiler: 4.4 -> 2.3, 6.4 -> 2.9, 10.9 -> 6.9 and 18.3 -> 15.7 us).
COLUMN_SUM_ROWS_MIN = 64


def plan(graph: Graph, members, space_id: int) -> MergedAxes | None:
    """How to merge the axes of a fused group's space, or None: a space of
    fewer than 3 axes; an elementwise member of another shape than the
    space's or a 0-d one, or a reduction of another operand or over axis 0
    of rows shorter than COLUMN_SUM_ROWS_MIN; or no two
    neighbouring axes (before the last) along which every operand runs or is
    broadcast alike, and which every reduction sums over or keeps alike."""
    space = graph.node(space_id).shape
    nodes = [graph.node(m) for m in members]
    reductions = [n for n in nodes if _is_reduction(n)]
    if len(space) < 3 or any(
            graph.node(n.inputs[0]).shape != space
            or (0 in n.p["axes"] and space[-1] < COLUMN_SUM_ROWS_MIN) if _is_reduction(n)
            else n.shape not in (space, ()) for n in nodes):
        return None
    member_ids = set(members)
    operands = {i for n in nodes for i in n.inputs if i not in member_ids}

    def alike(d):       # axes d - 1 and d, as every operand and reduction sees them
        return all(_spans(graph.node(i).shape, space, d) == _spans(graph.node(i).shape, space, d - 1)
                   for i in operands) and all(
            (d in n.p["axes"]) == (d - 1 in n.p["axes"]) for n in reductions)
    groups = [[0]]
    for d in range(1, len(space) - 1):
        if alike(d):
            groups[-1].append(d)
        else:
            groups.append([d])
    groups.append([len(space) - 1])
    if len(groups) == len(space):
        return None
    merged = MergedAxes(graph, space_id, groups, {n.id for n in reductions})
    for i in sorted(operands | member_ids):
        if graph.node(i).shape or i in merged.reductions:
            merged.add(graph.node(i))
    return merged
