"""Dead-code elimination: keep only nodes that an output depends on."""
from __future__ import annotations

import networkx as nx

from graphc.ir import Graph


def eliminate_dead_code(graph: Graph) -> Graph:
    live = set(graph.outputs).union(*(nx.ancestors(graph.nx, o) for o in graph.outputs))
    return graph if len(live) == len(graph) else graph.subgraph(live)
