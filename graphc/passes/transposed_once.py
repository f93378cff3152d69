"""`transpose_once`: a matrix several products read transposed is copied
transposed once, and they read the copy.

simplify turns `g @ W.T` into a BLAS flag. Where that product runs faster on
a copy of W.T (kernels/blas.py `_plan`: OpenBLAS's kernels for a @ b.T are
the slow ones), the GEMM copies W.T into its scratch at every call: an
unrolled RNN's backward reads its recurrent weight transposed once per time
step, and copied it as many times (a 16-step LSTM: half of its 31 such
GEMMs' 240 us). One explicit transpose serves them all.
"""
from __future__ import annotations

from collections import Counter

from graphc.ir import Graph
from graphc.passes.rewrite import rewrite

# Products reading one matrix transposed, from which it is copied once
READERS_MIN = 2


def _reads_transposed(node) -> bool:
    return (node.op == "matmul" and node.p.get("transpose_b", False)
            and not node.p.get("transpose_a", False))


def transpose_once(graph: Graph) -> Graph:
    readers = Counter(n.inputs[1] for n in graph.topo()
                      if _reads_transposed(n) and len(graph.node(n.inputs[1]).shape) == 2)
    if max(readers.values(), default=0) < READERS_MIN:
        return graph        # (the rebuild would be 1-2 ms of a new batch size's trace)

    def rule(new: Graph, node, inputs):
        if not _reads_transposed(node) or readers[node.inputs[1]] < READERS_MIN:
            return None
        b = new.node(inputs[1])
        # (Graph.add gives every product the same transpose node)
        copy = new.add("transpose", (b.id,), {"perm": (1, 0)}, b.shape[::-1], b.dtype, b.weak,
                       node.loc).id
        params = {k: v for k, v in node.p.items() if k != "transpose_b"}
        return ("matmul", (inputs[0], copy), params)
    return rewrite(graph, rule)
