"""Numbers a trace makes from its arguments' shapes, passed to `run` rather
than written into its code.

`np.sum(r ** 2) / x.shape[0]` (or `/ len(x)`, or a Gaussian likelihood's
`0.5 * n * np.log(2 * np.pi)`) puts the batch size into the graph as a
constant. Written into the generated code as a literal, it made each batch
size's code differ, so each new batch size compiled again (0.25 s for a
small model, where the rule is a new batch size without a compile).
Tracing cannot keep where such a number came from: len() returns a plain
int, and `0.5 * n` is float's own arithmetic. So a function's traces are
compared instead. Where a new trace is an earlier one but for the shapes
and the values of some 0-d float constants, those constants are made
opaque (`OPAQUE` among their params): passes do not read their values, and
`run` takes them as 0-d arrays, as it takes larger constants. The second
batch size compiles once more; later ones reuse that code where their
trace has the same structure. Not where a size-made number equals another
constant (tracing makes equal constants one node: n = 2 in a loss using
2 * n and n ** 2), where it is an int (`x + len(x)` on int arrays), or
where it changes the graph (a pow's exponent of 0.5 or 1). An opaque
constant keeps its value, so the results are the same either way: a
constant made opaque without need costs only a literal.
"""
from __future__ import annotations

import dataclasses
import threading

from graphc.ir import Graph, Node

OPAQUE = ("opaque", True)       # a const node's param: see the module docstring


def is_opaque(node: Node) -> bool:
    return OPAQUE in node.params


def _float_scalar(node: Node) -> bool:
    return node.op == "const" and node.shape == () and node.dtype.kind == "f"


def _without_sizes(params: tuple) -> tuple:
    """A node's params with each int (a scatter's size) as "int" and each
    shape (a reshape's, a broadcast's) as its rank: sizes made from the batch
    size, which codegen writes from the arrays' runtime shapes where it can."""
    def masked(value):
        if isinstance(value, int):
            return "int"
        if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
            return ("rank", len(value))
        return value
    return tuple((name, masked(value)) for name, value in params)


def _structure(graph: Graph) -> tuple | None:
    """What two traces that differ only in batch size share: every node but
    its shape (its rank kept), its int params and the value of a constant
    (a 0-d int's kept). None where a param cannot be compared. (Only which
    constants to make opaque hangs on it, never a result.)"""
    try:
        # (a constant's value: a 0-d float one's is compared below; an array
        # is passed to `run`, never written into it: np.eye(n), the indices
        # of a diagonal)
        key = (tuple((n.op, n.inputs, n.dtype.str if n.op == "const" and (
                          n.shape != () or n.dtype.kind == "f") else _without_sizes(n.params),
                      len(n.shape), n.dtype, n.weak) for n in graph.topo()),
               tuple(graph.inputs), tuple(graph.outputs))
        hash(key)
    except TypeError:
        return None
    return key


class VaryingConstants:
    """One function's traces, by structure: the 0-d float constants whose
    values have differed between two of them, which later ones get opaque."""

    def __init__(self):
        self._seen = {}     # structure -> (the first trace's constants, ids of those that varied)
        self._lock = threading.Lock()

    def opaque(self, graph: Graph) -> Graph:
        """`graph`, with the constants that varied between traces of its
        structure made opaque."""
        key = _structure(graph)
        if key is None:
            return graph
        values = {n.id: n.params for n in graph.topo() if _float_scalar(n)}
        with self._lock:
            first, varied = self._seen.setdefault(key, (values, frozenset()))
            varied |= {i for i, v in values.items() if v != first[i]}
            self._seen[key] = (first, varied)
        if not varied:
            return graph
        return graph.mapped(
            lambda n: dataclasses.replace(n, params=tuple(sorted(n.params + (OPAQUE,))))
            if n.id in varied and not is_opaque(n) else n)
