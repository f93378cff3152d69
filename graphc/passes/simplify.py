"""Algebraic simplification on the compiled graph.

- A transpose of the last two axes feeding a matmul becomes a flag on the
  matmul: BLAS reads the operand as a transposed view, no copy. A transpose
  of a matmul's result that nothing else reads is the product of the
  transposed operands, swapped.
- reshape(reshape(x)) is one reshape; transpose(transpose(x)) one transpose, or
  none (sliding windows whose einsum reads them in the order they were taken).
- An elementwise op reads a broadcast_to operand's source, broadcasting it itself.
- An index_check of an index_check's output with the same bound is dropped.
- A sum of slices' gradients (unslices) that tile an array along one axis is
  the concatenation of the slices' gradients.
- Indices that pick one column per row (`logp[np.arange(n), y]`): the
  gradient's scatter becomes a one-hot where(), and a row sum of a one-hot
  where() its value (passes/picks.py).
- The stable log-softmax as users write it, z - log(sum(exp(z))) with
  z = x - max(x) over the last axis, is the `log_softmax` primitive: one
  kernel instead of four, and, run before autodiff, a gradient without the
  max's tie handling (the peak's terms cancel exactly). The stable softmax,
  exp(z) / sum(exp(z)), is the `softmax` primitive for the same reasons.
- The sigmoid as users write it, 1 / (1 + exp(-x)), is the `sigmoid`
  primitive: one vector call, and, run before autodiff, its gradient
  s(x) s(-x) without a division, finite where exp(-x) overflows (the chain
  rule through the written form gives inf / inf there, nan).
"""
from __future__ import annotations

from graphc.ir import Graph
from graphc.ops import OPS, broadcast_shapes
from graphc.passes import picks
from graphc.passes.fuse import is_scalar_const
from graphc.passes.rewrite import rewrite, sole_user


def swaps_last_two(node) -> bool:
    perm = node.p.get("perm", ())
    n = len(perm)
    return node.op == "transpose" and n >= 2 and perm == tuple(range(n - 2)) + (n - 1, n - 2)


def _over_last_axis(node, op, rank) -> bool:
    return node.op == op and node.p["axes"] == (rank - 1,) and node.p["keepdims"]


def _log_softmax_operand(graph: Graph, inputs):
    """x when `z - l` is x - max(x) - log(sum(exp(x - max(x)))) over the last axis."""
    z, l = (graph.node(i) for i in inputs)
    rank = len(z.shape)
    if not rank or z.op != "sub" or l.op != "log":
        return None
    total = graph.node(l.inputs[0])
    if not _over_last_axis(total, "sum", rank):
        return None
    e = graph.node(total.inputs[0])
    if e.op != "exp" or e.inputs[0] != z.id:
        return None
    return _shifted_by_peak(graph, z)


def _softmax_operand(graph: Graph, inputs):
    """x when `e / s` is exp(x - max(x)) / sum(exp(x - max(x))) over the last axis."""
    e, total = (graph.node(i) for i in inputs)
    if not e.shape or e.op != "exp" or not _over_last_axis(total, "sum", len(e.shape)) \
            or total.inputs[0] != e.id:
        return None
    return _shifted_by_peak(graph, graph.node(e.inputs[0]))


def _shifted_by_peak(graph: Graph, z):
    """x when z is x - max(x) over the last axis (the max maybe under stop_gradient)."""
    if z.op != "sub":
        return None
    rank = len(z.shape)
    x, peak = z.inputs
    peak = graph.node(peak)
    if peak.op == "stop_gradient":
        peak = graph.node(peak.inputs[0])
    if not _over_last_axis(peak, "max", rank) or peak.inputs[0] != x \
            or graph.node(x).shape != z.shape:
        return None
    return x


def _is_one(node) -> bool:
    return is_scalar_const(node) and node.p["value"].array == 1


def _sigmoid_operand(graph: Graph, node, inputs):
    """x when `node`, a division, is 1 / (1 + exp(-x)) in x's shape and dtype."""
    one, total = (graph.node(i) for i in inputs)
    if not _is_one(one) or total.op != "add":
        return None
    for e, other in (total.inputs, total.inputs[::-1]):
        e, other = graph.node(e), graph.node(other)
        if _is_one(other) and e.op == "exp" and graph.node(e.inputs[0]).op == "neg":
            x = graph.node(graph.node(e.inputs[0]).inputs[0])
            if x.shape == node.shape and x.dtype == node.dtype:
                return x.id
    return None


def _unbroadcast(graph: Graph, node, inputs):
    """An elementwise op broadcasts its operands itself: a broadcast_to
    operand it would broadcast the same way is read as its source (no copy,
    nor a kernel of its own when its shape is not the op's loop)."""
    sources = tuple(graph.node(i).inputs[0] if graph.node(i).op == "broadcast_to" else i
                    for i in inputs)
    if sources == tuple(inputs) or broadcast_shapes(
            node.op, *(graph.node(i).shape for i in sources)) != node.shape:
        return None
    return (node.op, sources, node.p)


def _matmul_reading_transposes(graph: Graph, inputs, params):
    """matmul(a, b) with each operand that transposes its last two axes
    replaced by its source and that operand's flag toggled: no copy. (Not
    an operand read through a permutation, perm_a or perm_b, which the flag
    follows.)"""
    inputs, params = list(inputs), dict(params)
    for k, flag in ((0, "transpose_a"), (1, "transpose_b")):
        if f"perm_{'ab'[k]}" in params:
            continue
        while swaps_last_two(src := graph.node(inputs[k])):
            inputs[k], params[flag] = src.inputs[0], not params.get(flag, False)
        if not params.get(flag, True):
            del params[flag]            # one spelling of "not transposed"
    return ("matmul", tuple(inputs), params)


def _unslice_leaves(graph: Graph, nid: int, shape) -> list | None:
    """The unslices an add tree of `shape` sums, or None where a leaf is not one."""
    node = graph.node(nid)
    if node.op == "add" and node.shape == shape:
        leaves = [_unslice_leaves(graph, i, shape) for i in node.inputs]
        return None if None in leaves else [leaf for part in leaves for leaf in part]
    return [node] if node.op == "unslice" else None


def _tiling_unslices(graph: Graph, node, inputs):
    """A sum of unslices whose pieces tile their base along one axis (the
    gradient of an LSTM's gates, z[:, :H] ... z[:, 3H:]) as the pieces'
    concatenation: one copy, not a zero-padded array per piece and their
    sums. None where the sum is not that."""
    pieces = [_unslice_leaves(graph, i, node.shape) for i in inputs]
    if None in pieces:
        return None
    pieces = [p for part in pieces for p in part]
    base = node.shape
    if any(p.p["base_shape"] != base or p.dtype != node.dtype or set(p.p["steps"]) != {1}
           for p in pieces):
        return None
    sizes = {p.id: graph.node(p.inputs[0]).shape for p in pieces}
    partial = {d for p in pieces for d, n in enumerate(sizes[p.id]) if n != base[d]}
    if len(partial) != 1:
        return None
    (axis,) = partial
    if any(s for p in pieces for d, s in enumerate(p.p["starts"]) if d != axis):
        return None
    pieces.sort(key=lambda p: p.p["starts"][axis])
    end = 0
    for p in pieces:
        if p.p["starts"][axis] != end:
            return None         # a gap or an overlap
        end += sizes[p.id][axis]
    if end != base[axis]:
        return None
    return ("concatenate", tuple(p.inputs[0] for p in pieces), {"axis": axis})


def _rule(graph: Graph, node, inputs, original: Graph):
    if OPS[node.op].kind == "elementwise" and node.op != "broadcast_to":
        unbroadcast = _unbroadcast(graph, node, inputs)
        if unbroadcast is not None:
            return unbroadcast
    if node.op == "add":
        tiled = _tiling_unslices(graph, node, inputs)
        if tiled is not None:
            return tiled
    if node.op == "div" and (x := _sigmoid_operand(graph, node, inputs)) is not None:
        return ("sigmoid", (x,), {})
    if node.op in ("sub", "div"):
        op, operand = (("log_softmax", _log_softmax_operand) if node.op == "sub"
                       else ("softmax", _softmax_operand))
        x = operand(graph, inputs)
        # (not where a sum's dtype= made the result another dtype than x's)
        if x is not None and graph.node(x).dtype == node.dtype:
            return (op, (x,), {"axis": len(node.shape) - 1, "finite_peak": False})
    if node.op == "matmul":
        folded = _matmul_reading_transposes(graph, inputs, node.p)
        return folded if folded[1:] != (tuple(inputs), node.p) else None
    if node.op == "transpose" and graph.node(inputs[0]).op == "transpose":
        inner = graph.node(inputs[0])   # (axis j of the result is axis p1[p2[j]] of the source)
        perm = tuple(inner.p["perm"][j] for j in node.p["perm"])
        if perm == tuple(range(len(perm))):
            return inner.inputs[0]
        return ("transpose", inner.inputs, {"perm": perm})
    if node.op == "transpose" and swaps_last_two(node):
        product = graph.node(inputs[0])
        # Readers are counted in the original graph: the new one's are not
        # built yet. (Two original nodes the rebuild makes one, such as a @ b
        # and a.T.T @ b, can still leave the product read twice: correct, one
        # GEMM more.)
        if (product.op == "matmul" and sole_user(original, node.inputs[0]) == node.id
                and not any(k.startswith("perm_") for k in product.p)):
            # (op(a) @ op(b)).T = op(b).T @ op(a).T: the gradient of x @ W.T
            # (a PyTorch-style layer) for W is g.T @ x, not a copy of x.T @ g
            a, b = product.inputs
            return _matmul_reading_transposes(graph, (b, a), {
                "transpose_a": not product.p.get("transpose_b", False),
                "transpose_b": not product.p.get("transpose_a", False)})
    if node.op == "sum":
        return picks.row_sum_of_one_hot(graph, node, inputs)
    if node.op == "reshape":
        one_hot = picks.scatter_as_one_hot(graph, node, inputs)
        if one_hot is not None:
            return one_hot
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
    return rewrite(graph, lambda new, node, inputs: _rule(new, node, inputs, graph))
