"""Graph -> Graph passes, run as an explicit list in order.

Each pass is a plain function of a Graph returning a Graph; `run` logs its
time and node count to the `graphc.passes` logger.
"""
from __future__ import annotations

import logging
import time

from graphc.ir import Graph
from graphc.passes.accumulate import accumulate_products
from graphc.passes.dce import eliminate_dead_code
from graphc.passes.factor_solves import solve_with_factors
from graphc.passes.fuse import fuse_elementwise
from graphc.passes.simplify import simplify
from graphc.passes.strided_stacks import read_stacks_by_strides
from graphc.passes.transposed_once import transpose_once

log = logging.getLogger("graphc.passes")

PIPELINE = [simplify, solve_with_factors, read_stacks_by_strides, transpose_once,
            accumulate_products, eliminate_dead_code, fuse_elementwise]


def run(graph: Graph, pipeline=None, verify=False) -> Graph:
    for pass_fn in PIPELINE if pipeline is None else pipeline:
        start = time.perf_counter()
        before = len(graph)
        graph = pass_fn(graph)
        if verify:
            graph.verify()
        log.debug("%s: %d -> %d nodes in %.2f ms", pass_fn.__name__, before, len(graph),
                  1e3 * (time.perf_counter() - start))
    return graph
