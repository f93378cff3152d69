"""`accumulate_products`: `c + a @ b` becomes one GEMM adding into c's buffer.

A sum of matrix products is common in a training step: an unrolled RNN's
weight gradient sums one product per time step (a 16-step LSTM's `Wh` sums
16), a residual block's backward adds `g @ W.T` to the gradient that went
around the block, and `x @ Wx + h @ Wh` adds two products in the forward.
Each product had a buffer of its own, and one loop then read them all:
(((p1 + p2) + p3) + ...). As `matmul_add` nodes, the first product's buffer
is the sum's, and each further GEMM adds into it (BLAS's beta = 1), in the
same order: no other buffer, and no loop over them.

Only where codegen can add in place (`may_add_into`, which codegen asks
again of the matmul_add): elsewhere the copy matmul_add would make first
costs what the add did.
"""
from __future__ import annotations

from graphc.ir import Graph
from graphc.passes.rewrite import rewrite, sole_user

# ops whose result is not a buffer of its own (inputs and constants are the
# user's; a reshape is a view of its operand)
_NOT_OWNED = ("input", "const", "reshape")


def may_add_into(graph: Graph, addend: int, reader: int) -> bool:
    """Whether `reader` may write into `addend`'s buffer: the addend owns one,
    no output is it, and `reader` alone reads it, once (graph.users names a
    reader once however many of its operands are the addend: in
    matmul_add(t, t, w) the GEMM would write into its own operand)."""
    return (graph.node(addend).op not in _NOT_OWNED and sole_user(graph, addend) == reader
            and graph.node(reader).inputs.count(addend) == 1)


def _product_folded(original: Graph, node) -> tuple[int, int] | None:
    """(addend position, product position) in `node`'s inputs: an add of a
    2-D float product and an addend, both of its shape and dtype and both
    read by it alone. The second operand is folded where both could be."""
    if node.op != "add" or node.dtype.kind != "f" or len(node.shape) != 2:
        return None
    operands = [original.node(i) for i in node.inputs]
    if any(o.shape != node.shape or o.dtype != node.dtype for o in operands):
        return None
    for addend, product in ((0, 1), (1, 0)):
        if (operands[product].op == "matmul"
                and sole_user(original, operands[product].id) == node.id
                and may_add_into(original, operands[addend].id, node.id)):
            return addend, product
    return None


def accumulate_products(graph: Graph) -> Graph:
    if not any(_product_folded(graph, n) for n in graph.topo()):
        return graph        # (the rebuild would be 1-2 ms of a new batch size's trace)

    def rule(new: Graph, node, inputs):
        folded = _product_folded(graph, node)
        if folded is None:
            return None
        addend, product = folded
        mm = new.node(inputs[product])      # (left unread: dead-code elimination drops it)
        return ("matmul_add", (inputs[addend], *mm.inputs), dict(mm.p))
    return rewrite(graph, rule)
