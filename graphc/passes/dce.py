"""Dead-code elimination: keep only nodes that an output depends on."""
from __future__ import annotations

from graphc.ir import Graph


def eliminate_dead_code(graph: Graph) -> Graph:
    # One sweep from the last node back: a node's inputs come before it (ir.Graph.topo).
    live = set(graph.outputs)
    for node in reversed(graph.topo()):
        if node.id in live:
            live.update(node.inputs)
    return graph if len(live) == len(graph) else graph.subgraph(live)
