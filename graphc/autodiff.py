"""Reverse-mode autodiff as a graph transformation.

`vjp_into` replays a traced graph into the current trace and walks it in
reverse topological order, applying each op's VJP rule. This driver, not the
rules, accumulates fan-out (`x*x` gets both contributions), sums broadcast
gradients back to each input's shape and casts them to its dtype. The VJPs
emit ordinary traced ops, so a backward graph can be differentiated again.
"""
from __future__ import annotations

import numpy as np

from graphc import pytree, tracing
from graphc import prims as P
from graphc.ir import Graph
from graphc.ops import OPS


def unbroadcast(ct, shape):
    """Sum `ct` over the axes along which a value of `shape` was broadcast."""
    shape = tuple(shape)
    if tuple(ct.shape) == shape:
        return ct
    lead = len(ct.shape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and ct.shape[lead + i] != 1)
    return P.reshape(P.reduce_sum(ct, axes, keepdims=False), shape)


def _is_float(node) -> bool:
    return np.dtype(node.dtype).kind == "f"


def vjp_into(graph: Graph, inputs: list, wrt: list[int], out_cts: list):
    """Replay `graph` on `inputs` and pull `out_cts` back to the inputs in `wrt`.

    Returns (outputs, grads): grads[k] is d<outputs, out_cts>/d inputs[wrt[k]].
    """
    env = {}
    outs = tracing.evaluate(graph, inputs, on_node=lambda n, v: env.__setitem__(n.id, v))
    wrt_ids = [graph.inputs[k] for k in wrt]
    live = set(wrt_ids)         # the nodes that depend on some input in `wrt`
    for node in graph.topo():   # inputs before users: one sweep
        if not live.isdisjoint(node.inputs):
            live.add(node.id)
    cts: dict[int, object] = {}

    def accumulate(nid, ct):
        node = graph.node(nid)
        ct = P.convert(unbroadcast(ct, node.shape), node.dtype)
        cts[nid] = P.add(cts[nid], ct) if nid in cts else ct

    for o, ct in zip(graph.outputs, out_cts):
        if ct is not None and o in live:
            accumulate(o, ct)
    for node in reversed(graph.topo()):
        if node.id not in cts or node.op in ("input", "const") or OPS[node.op].vjp is None:
            continue
        with tracing.location(node.loc), tracing.role("backward"):
            in_cts = OPS[node.op].vjp(cts[node.id], env[node.id],
                                      *[env[i] for i in node.inputs], **node.p)
            for i, ct in zip(node.inputs, in_cts):
                if ct is not None and i in live and _is_float(graph.node(i)):
                    accumulate(i, ct)
    grads = [cts[w] if w in cts else np.zeros(graph.node(w).shape, graph.node(w).dtype)
             for w in wrt_ids]
    return outs, grads


def backward(graph: Graph, wrt=None) -> Graph:
    """The forward+backward graph of `graph` as a new Graph (a REPL-friendly stage).

    Inputs: the original inputs, then one cotangent per output. Outputs: the
    original outputs, then the gradient for each input position in `wrt`
    (default: every float input).

    >>> import numpy as np, graphc as gc
    >>> g = gc.trace(lambda x: (x * x).sum(), np.ones(3))
    >>> print(backward(g))  # doctest: +ELLIPSIS
    %0:f64[3] = input 0
    ...
    """
    n_in = len(graph.inputs)
    if wrt is None:
        wrt = [k for k, i in enumerate(graph.inputs) if _is_float(graph.node(i))]
    avals = [graph.node(i) for i in graph.inputs] + [graph.node(o) for o in graph.outputs]
    args = [np.zeros(a.shape, a.dtype) for a in avals]

    def fwd_bwd(*leaves):
        outs, grads = vjp_into(graph, list(leaves[:n_in]), list(wrt), list(leaves[n_in:]))
        return list(outs) + list(grads)

    out = tracing.trace_fn(fwd_bwd, tuple(args))
    out.meta["in_tree"] = pytree.flatten(tuple(args))[1]
    return out
