"""graphc: a just-in-time compiler for NumPy training code.

Trace a NumPy function into a networkx IR, differentiate it by the chain rule,
and run it as Numba-compiled code:

>>> import numpy as np, graphc as gc
>>> float(gc.grad(lambda w: np.sum(w ** 2))(np.array(3.0)))
6.0
"""
__version__ = "0.1.0"

from graphc import nn, optim
from graphc.export import export
from graphc.train import compile_step, train
from graphc.api import check_grad, grad, jit, trace, value_and_grad, vjp
from graphc.jacobians import hessian, jacobian
from graphc.errors import (GraphcError, ShapeError, TracerError, UnsupportedOpError)
from graphc.ir import Graph
from graphc import lowering as _lowering, stored_lowerings as _stored_lowerings

_stored_lowerings.note_shipped_rules(_lowering._rules())    # see graphc/stored_lowerings.py
del _lowering, _stored_lowerings

__all__ = [
    "jit", "grad", "value_and_grad", "vjp", "jacobian", "hessian", "trace", "check_grad",
    "compile_step", "train", "export", "optim", "Graph", "nn", "GraphcError", "TracerError", "ShapeError", "UnsupportedOpError",
]
