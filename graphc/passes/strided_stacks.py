"""`read_stacks_by_strides`: a product of stacks of matrices reads a
transposed operand where it lies, not a copy of the transpose.

Multi-head attention writes `(x @ Wq).reshape(n, T, H, d).transpose(0, 2, 1, 3)`:
head h of sequence i is the (T, d) block of rows [i, :, h, :], each row d
adjacent elements, the rows H * d apart. BLAS reads such a block in place by
its leading dimension (kernels/blas.py gemm), so the product takes the
transpose's source with the permutation as a parameter (ops.py perm_a,
perm_b) and no kernel copies it. A transpose moving the source's last axis
to second-to-last is read the same way, transposed (transpose_a/_b): keys
in `q @ k.transpose(0, 1, 3, 2)`. One whose matrices' rows would not be
adjacent elements is left, copied as before.

A product's result transposed back, `(a @ v).transpose(0, 2, 1, 3)`, the
product read by the transpose alone, is written in that order in the first
place (perm_out): each matrix of the stack a block of the result (or of its
transpose: the backward's gradient of the keys).
"""
from __future__ import annotations

from graphc.ir import Graph
from graphc.passes.rewrite import rewrite, sole_user


def _read_in_place(perm: tuple, transposed: bool) -> tuple[tuple, bool] | None:
    """(the product's perm, its transpose flag) for an operand read through a
    transpose `perm` of its source, or None where its matrices' rows are not
    the source's last axis."""
    last = len(perm) - 1
    if perm[-1] == last:
        return perm, transposed
    if perm[-2] == last:        # the source's matrices read transposed
        return perm[:-2] + (perm[-1], perm[-2]), not transposed
    return None


def _folded(graph: Graph, node, inputs):
    inputs, params = list(inputs), dict(node.p)
    for k, name in enumerate("ab"):
        source = graph.node(inputs[k])
        if source.op != "transpose" or f"perm_{name}" in params:
            continue
        read = _read_in_place(tuple(source.p["perm"]), params.get(f"transpose_{name}", False))
        if read is None:
            continue
        inputs[k] = source.inputs[0]
        params[f"perm_{name}"], params[f"transpose_{name}"] = read
        if not params[f"transpose_{name}"]:
            del params[f"transpose_{name}"]     # one spelling of "not transposed"
    return ("matmul", tuple(inputs), params) if params != node.p else None


def _writing_in_order(product, perm: tuple):
    """The product writing its result as transpose(result, perm), whose last
    axis is the result's last or second-to-last: where it is the second to
    last, the transposed product op(b).T @ op(a).T writes it."""
    last = len(perm) - 1
    if perm[-1] == last:
        return ("matmul", product.inputs, {**product.p, "perm_out": perm})
    a, b = product.inputs
    p = product.p
    swapped = {"transpose_a": not p.get("transpose_b", False),
               "transpose_b": not p.get("transpose_a", False),
               "perm_a": p.get("perm_b"), "perm_b": p.get("perm_a"),
               # (axes last - 1 and last of the product are the other way round)
               "perm_out": tuple({last - 1: last, last: last - 1}.get(d, d) for d in perm)}
    return ("matmul", (b, a), {k: v for k, v in swapped.items() if v})


def _product_of_stacks(node) -> bool:
    return node.op == "matmul" and len(node.shape) >= 3 and node.dtype.kind == "f"


def _written_in_place(graph: Graph, node) -> bool:
    """Whether `node` transposes a product of stacks that only it reads into
    an order whose rows are the product's rows or its columns (its last or
    second-to-last axis last): the product can write its matrices there
    itself, or their transposes."""
    if node.op != "transpose" or node.p["perm"][-1] < len(node.shape) - 2:
        return False
    product = graph.node(node.inputs[0])
    return (_product_of_stacks(product) and "perm_out" not in product.p
            and sole_user(graph, product.id) == node.id)


def _reads_a_stack_transposed(graph: Graph, node, inputs) -> bool:
    """Whether `node` is a product of stacks reading a transpose among its
    `inputs`, node ids of `graph`."""
    return _product_of_stacks(node) and any(graph.node(i).op == "transpose" for i in inputs)


def read_stacks_by_strides(graph: Graph) -> Graph:
    if not any(_reads_a_stack_transposed(graph, n, n.inputs) or _written_in_place(graph, n)
               for n in graph.topo()):
        return graph        # (a rebuild for nothing would cost every trace 1-2 ms)

    def rule(new: Graph, node, inputs):
        # (node and its ids are the graph's as it was; inputs are new's ids,
        # which differ once the rebuild has merged two equal nodes)
        if _written_in_place(graph, node):
            return _writing_in_order(new.node(inputs[0]), tuple(node.p["perm"]))
        return _folded(new, node, inputs) if _reads_a_stack_transposed(new, node, inputs) else None
    return rewrite(graph, rule)
