"""Elementwise fusion: group nodes that share one iteration space into one loop.

A group is a set of elementwise nodes of the same output shape, plus
reductions of such nodes as *sinks* (epilogues): the loop accumulates them
and nothing else in the group may read them. A node joins the group of an
operand only if the result is convex: no path leaves the group and comes
back in (else the group's kernel would need a value computed after it).
The graph itself is unchanged; `graph.groups` lists the fused node sets, in
which codegen emits one loop nest per group.
"""
from __future__ import annotations

import numpy as np

from graphc.ir import Graph
from graphc.ops import OPS
from graphc.varying_constants import is_opaque


def _kind(node):
    return OPS[node.op].kind if node.op in OPS else node.op


def is_scalar_const(node) -> bool:
    """A 0-d constant: written into the kernel as a literal, not passed to it
    (unless opaque: a number made from a shape, graphc/varying_constants.py)."""
    return node.op == "const" and node.shape == () and not is_opaque(node)


def is_index_const(node) -> bool:
    """A 1-D integer constant 0, 1, ..., n - 1 (the classes a one-hot compares
    with): a fused loop reads it as its loop index, not passed to it."""
    if node.op != "const" or len(node.shape) != 1 or node.shape[0] < 2 \
            or np.dtype(node.dtype).kind not in "iu":
        return False
    return bool(np.array_equal(node.p["value"].array, np.arange(node.shape[0])))


def escaping(graph: Graph, members) -> list[int]:
    """The members of a fused group stored to memory: outputs of the graph, and
    values read by a node outside the group (a `numel` reads only the shape)."""
    member_set = set(members)
    return [m for m in members if _kind(graph.node(m)) != "reduce" and (
        m in graph.outputs or any(u not in member_set and _kind(graph.node(u)) != "shape"
                                  for u in graph.users(m)))]


def successor_table(graph: Graph) -> dict:
    """Each node id's users' ids, as is_convex reads them (a plain dict walks
    several times faster than networkx's adjacency views)."""
    return {nid: tuple(users) for nid, users in graph.nx.succ.items()}


def is_convex(successors: dict, members: set, position: dict, unit_of: dict, spans) -> bool:
    """True if no path leaves `members` and re-enters it, with the other fused
    groups contracted: a path may enter one of them at any member and leave
    at any other. (Checking each group alone is not enough: two convex groups
    can reach each other both ways, and then no kernel order exists.)

    `successors` maps each node id to its users' ids; `unit_of` a node of a
    fused group to the group's node set (a node in none stands alone; the
    groups inside `members` are never looked up); `spans` are the other
    groups' (first, last) positions.
    """
    # Past `bound` no path can get back to a member: positions only fall by a
    # jump inside a group, and every group that straddles `bound` is inside it.
    bound = max(position[m] for m in members)
    for lo, hi in sorted(spans):
        if lo <= bound:
            bound = max(bound, hi)
    frontier = [s for m in members for s in successors[m] if s not in members]
    seen = set()
    while frontier:
        n = frontier.pop()
        if n in seen:
            continue
        unit = unit_of.get(n, (n,))
        seen.update(unit)
        if (position[n] if len(unit) == 1 else min(map(position.get, unit))) > bound:
            continue
        for u in unit:
            for s in successors[u]:
                if s in members:
                    return False
                frontier.append(s)
    return True


def fuse_elementwise(graph: Graph) -> Graph:
    """Partition elementwise nodes and reduction epilogues into convex loop groups."""
    order = graph.topo()
    position = {n.id: k for k, n in enumerate(order)}
    successors = successor_table(graph)
    group_of: dict[int, int] = {}
    groups: list[dict] = []     # {"space": shape, "nodes": set, "sinks": set, "span": [lo, hi]}
    unit_of: dict[int, set] = {}    # each grouped node's group's "nodes" (see is_convex)

    def new_group(node, space, sinks):
        members = {node.id}
        groups.append({"space": space, "nodes": members, "sinks": sinks,
                       "span": [position[node.id]] * 2})
        group_of[node.id], unit_of[node.id] = len(groups) - 1, members

    def convex(trial, *joined):
        spans = [g["span"] for k, g in enumerate(groups)
                 if len(g["nodes"]) > 1 and k not in joined]
        return is_convex(successors, trial, position, unit_of, spans)

    def try_join(node, gi, as_sink=False):
        g = groups[gi]
        if not convex(g["nodes"] | {node.id}, gi):
            return False
        g["nodes"].add(node.id)
        if as_sink:
            g["sinks"].add(node.id)
        group_of[node.id], unit_of[node.id] = gi, g["nodes"]
        g["span"] = [min(g["span"][0], position[node.id]), max(g["span"][1], position[node.id])]
        return True

    def reads_a_sink(members, sinks):
        # a loop cannot read a reduction it is still accumulating
        return any(i in sinks for m in members for i in graph.node(m).inputs)

    def merge(into, other):
        g, o = groups[into], groups[other]
        if (reads_a_sink(g["nodes"] | o["nodes"], g["sinks"] | o["sinks"])
                or not convex(g["nodes"] | o["nodes"], into, other)):
            return False
        g["nodes"] |= o["nodes"]
        for nid in o["nodes"]:
            group_of[nid], unit_of[nid] = into, g["nodes"]
        g["sinks"] |= o["sinks"]
        g["span"] = [min(g["span"][0], o["span"][0]), max(g["span"][1], o["span"][1])]
        o["nodes"], o["sinks"] = set(), set()
        return True

    for node in order:
        kind = _kind(node)
        if kind == "elementwise":
            joinable = []
            for i in node.inputs:
                gi = group_of.get(i)
                if gi is None or gi in joinable or groups[gi]["space"] != node.shape:
                    continue
                joinable.append(gi)
            # never read a reduction inside the loop that is still accumulating it
            joinable = [gi for gi in joinable
                        if not any(i in groups[gi]["sinks"] for i in node.inputs)]
            home = next((gi for gi in joinable if try_join(node, gi)), None)
            if home is None:
                new_group(node, node.shape, set())
                continue
            for gi in joinable:
                if gi != home and groups[gi]["nodes"]:
                    merge(home, gi)
        elif kind == "reduce":
            x = graph.node(node.inputs[0])
            gi = group_of.get(x.id)
            if gi is None or x.id in groups[gi]["sinks"] or not try_join(node, gi, as_sink=True):
                new_group(node, x.shape, {node.id})
    out = graph.subgraph(graph.nx.nodes)
    out.groups = [tuple(sorted(g["nodes"], key=position.get)) for g in groups if g["nodes"]]
    return out
