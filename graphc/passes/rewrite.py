"""`rewrite`: rebuild a graph node by node, letting a rule replace nodes.

The shared mechanism of the simplifying passes: `rule(graph, node, inputs)`
sees each node with its operands already rewritten and returns None (keep
it), an existing new-graph node id (alias it; the rule may have built it),
or `(op, inputs, params)`.
"""
from __future__ import annotations

from graphc import tracing
from graphc.ir import Graph
from graphc.ops import OPS


def rewrite(graph: Graph, rule) -> Graph:
    out = Graph()
    out.meta = dict(graph.meta)
    new_id: dict[int, int] = {}
    for node in graph.topo():
        inputs = tuple(new_id[i] for i in node.inputs)
        if node.op == "input":
            new_id[node.id] = out.add_input(node.shape, node.dtype, node.weak, node.loc).id
            continue
        first_added = out.next_id
        replacement = rule(out, node, inputs) if node.op != "const" else None
        for added in range(first_added, out.next_id):    # nodes the rule built
            out.keep_role(added, graph.role(node.id))
        if isinstance(replacement, int):
            new_id[node.id] = replacement
            continue
        op, inputs, params = replacement if replacement else (node.op, inputs, node.p)
        if op == "const" or (not replacement and _same_types(graph, node.inputs, out, inputs)):
            shape, dtype = node.shape, node.dtype   # a shape rule reads its operands' types only
        else:
            with tracing.location(node.loc):
                shape, dtype = OPS[op].infer([out.node(i) for i in inputs], params)
        new_id[node.id] = out.add(op, inputs, params, shape, dtype, node.weak, node.loc).id
        out.keep_role(new_id[node.id], graph.role(node.id))
    out.outputs = [new_id[o] for o in graph.outputs]
    return out


def sole_user(graph: Graph, nid: int) -> int | None:
    """The one node reading node `nid`, if exactly one does and `nid` is not
    a graph output; else None. (graph.users names a reader once however
    many of its operands are `nid`.)"""
    users = graph.users(nid)
    return users[0] if len(users) == 1 and nid not in graph.outputs else None


def _same_types(graph: Graph, ids, out: Graph, new_ids) -> bool:
    """Whether the nodes `new_ids` of `out` have the shapes and dtypes of `ids` in `graph`."""
    for i, j in zip(ids, new_ids):
        a, b = graph.node(i), out.node(j)
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
    return True
