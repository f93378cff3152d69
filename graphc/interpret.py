"""The NumPy reference interpreter: the test oracle for compiled code.

It runs each node's `OpDef.impl` in topological order; nothing else.
"""
from __future__ import annotations

import numpy as np

from graphc import errors
from graphc.ir import Graph
from graphc.ops import OPS


def interpret(graph: Graph, *inputs) -> list[np.ndarray]:
    """Evaluate `graph` on NumPy arrays; returns the list of outputs.

    >>> import numpy as np, graphc as gc
    >>> g = gc.trace(lambda x: np.sin(x) * 2.0, np.zeros(3))
    >>> interpret(g, np.ones(3))[0].round(3)
    array([1.683, 1.683, 1.683])
    """
    env = {}
    for node in graph.topo():
        if node.op == "input":
            env[node.id] = np.asarray(inputs[node.p["index"]], dtype=node.dtype)
        elif node.op == "const":
            env[node.id] = node.p["value"].array
        else:
            try:
                value = OPS[node.op].impl(*[env[i] for i in node.inputs], **node.p)
            except errors.GraphcError as e:
                raise type(e)(f"{e}{errors.at(node.loc)}") from None
            except errors.NATIVE_ERRORS as e:
                # NumPy's own refusal (np.power of integers to a negative
                # power): as the compiled code's, a GraphcError with the line
                raise errors.from_native(e, errors.at(node.loc)) from None
            env[node.id] = np.asarray(value, dtype=node.dtype)
    return [env[o] for o in graph.outputs]
