"""Rewrites for indices that pick one column in each row.

`logp[np.arange(n), y]`, the pick of a cross-entropy written by hand, is
traced as a gather from the flattened (n, c) array at `i * c + y[i]`, and
its gradient as a scatter of the row gradients into a zeroed (n * c,)
buffer. A log-softmax backward then sums each row of that buffer. Since
each row receives exactly one element (the index_check puts y[i] in
[0, c)):

- the scattered buffer, seen as (n, c), is `where(y[:, None] == arange(c),
  g[:, None], 0)`: elementwise, so it fuses into the kernel that reads it
  (W1: no broadcast, zero fill and scatter kernels);
- the sum over a row of such a one-hot `where` is the row's own value: no
  row reduction.
"""
from __future__ import annotations

import numpy as np

from graphc import tracing
from graphc.ir import Graph
from graphc.ops import OPS
from graphc.passes.fuse import is_index_const


def _add(graph: Graph, op: str, inputs, params=None, loc="<unknown>") -> int:
    params = params or {}
    shape, dtype = OPS[op].infer([graph.node(i) for i in inputs], params)
    return graph.add(op, tuple(inputs), params, shape, dtype, loc=loc).id


def _reshape(graph: Graph, x: int, shape, loc) -> int:
    src = graph.node(x)
    if src.op == "reshape":         # of a reshape: of its source
        x = src.inputs[0]
    return x if graph.node(x).shape == tuple(shape) else _add(graph, "reshape", [x],
                                                             {"shape": tuple(shape)}, loc)


def _const(graph: Graph, nid: int):
    node = graph.node(nid)
    return node.p["value"].array if node.op == "const" else None


def _checked_columns(graph: Graph, nid: int, size: int) -> bool:
    """Whether `nid` holds indices an index_check has put in [0, size)."""
    node = graph.node(nid)
    return node.op == "index_check" and node.p["size"] == size


def _picked_columns(graph: Graph, flat_idx: int, rows: int, cols: int):
    """y when `flat_idx` is i * cols + y[i] for each row i of a (rows, cols)
    array, y checked in [0, cols): the flat indices of one element per row."""
    idx = graph.node(flat_idx)
    if idx.op != "add" or idx.shape != (rows,):
        return None
    for y, offsets in (idx.inputs, idx.inputs[::-1]):
        k = _const(graph, offsets)
        if (k is not None and k.shape == (rows,) and graph.node(y).shape == (rows,)
                and _checked_columns(graph, y, cols)
                and np.array_equal(k, np.arange(rows) * cols)):
            return y
    return None


def _column(graph: Graph, u: int, rows: int, loc) -> int:
    """u (rows,) as a (rows, 1) column, or as (1, 1) when it is a broadcast
    single value (the mean's gradient): where() broadcasts it, no copy."""
    node = graph.node(u)
    if node.op == "broadcast_to" and graph.node(node.inputs[0]).shape in ((), (1,)):
        return _reshape(graph, node.inputs[0], (1, 1), loc)
    return _reshape(graph, u, (rows, 1), loc)


def scatter_as_one_hot(graph: Graph, node, inputs):
    """reshape(scatter_add(u, i * c + y[i], size=n * c), (n, c)) as the
    one-hot where(), or None."""
    src = graph.node(inputs[0])
    if src.op != "scatter_add" or len(node.shape) != 2 or src.p["axis"] != 0:
        return None
    rows, cols = node.shape
    u, flat_idx = src.inputs
    if src.p["size"] != rows * cols or graph.node(u).shape != (rows,):
        return None
    y = _picked_columns(graph, flat_idx, rows, cols)
    if y is None:
        return None
    loc = node.loc
    classes = tracing.const(graph, np.arange(cols, dtype=graph.node(y).dtype), loc).id
    hit = _add(graph, "eq", [_reshape(graph, y, (rows, 1), loc), classes], loc=loc)
    zero = tracing.const(graph, np.zeros((), graph.node(u).dtype), loc).id
    return _add(graph, "where", [hit, _column(graph, u, rows, loc), zero], loc=loc)


def _one_hot_mask(graph: Graph, nid: int, shape) -> bool:
    """Whether `nid` is y[..., None] == arange(shape[-1]) (either way round)
    with y checked in [0, shape[-1]): exactly one True in each row."""
    node = graph.node(nid)
    if node.op != "eq" or node.shape != tuple(shape):
        return False
    cols = shape[-1]
    for col, classes in (node.inputs, node.inputs[::-1]):
        column = graph.node(col)
        if (is_index_const(graph.node(classes)) and graph.node(classes).shape == (cols,)
                and column.op == "reshape" and column.shape == tuple(shape[:-1]) + (1,)
                and _checked_columns(graph, column.inputs[0], cols)):
            return True
    return False


def row_sum_of_one_hot(graph: Graph, node, inputs):
    """sum(where(one-hot, v, 0), last axis) with v constant along that axis
    (its last dim 1): v itself, broadcast to the sum's shape; or None."""
    x = graph.node(inputs[0])
    rank = len(x.shape)
    if node.op != "sum" or not rank or node.p["axes"] != (rank - 1,) or x.op != "where":
        return None
    hit, value, zero = x.inputs
    z = _const(graph, zero)
    v = graph.node(value)
    if (z is None or z.shape != () or z != 0 or not _one_hot_mask(graph, hit, x.shape)
            or v.dtype != node.dtype or len(v.shape) > rank
            or (v.shape and v.shape[-1] != 1)):
        return None
    kept = x.shape[:-1] + (1,)
    out = _reshape(graph, value, (1,) * (rank - len(v.shape)) + v.shape, node.loc)
    if graph.node(out).shape != kept:
        out = _add(graph, "broadcast_to", [out], {"shape": kept}, node.loc)
    return _reshape(graph, out, node.shape, node.loc)
