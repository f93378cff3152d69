"""Algebraic simplification on the compiled graph.

- A transpose of the last two axes feeding a matmul becomes a flag on the
  matmul: BLAS reads the operand as a transposed view, no copy.
- reshape(reshape(x)) is one reshape.
- An index_check of an index_check's output with the same bound is dropped.
"""
from __future__ import annotations

from graphc.ir import Graph
from graphc.passes.rewrite import rewrite


def _swaps_last_two(node) -> bool:
    perm = node.p.get("perm", ())
    n = len(perm)
    return node.op == "transpose" and n >= 2 and perm == tuple(range(n - 2)) + (n - 1, n - 2)


def _rule(graph: Graph, node, inputs):
    if node.op == "matmul":
        params, changed = dict(node.p), False
        new_inputs = list(inputs)
        for k, flag in ((0, "transpose_a"), (1, "transpose_b")):
            src = graph.node(inputs[k])
            if _swaps_last_two(src) and not params.get(flag, False):
                new_inputs[k], params[flag], changed = src.inputs[0], True, True
        return ("matmul", tuple(new_inputs), params) if changed else None
    if node.op == "reshape":
        src = graph.node(inputs[0])
        if src.shape == node.shape:
            return inputs[0]
        if src.op == "reshape":
            return ("reshape", src.inputs, node.p)
    if node.op == "index_check":
        src = graph.node(inputs[0])
        if src.op == "index_check" and src.p["size"] == node.p["size"]:
            return inputs[0]
    return None


def simplify(graph: Graph) -> Graph:
    return rewrite(graph, _rule)
