"""gc.jacobian and gc.hessian: full derivative matrices, by reverse mode.

A Jacobian has a row per output element: the gradient of that element,
pulled back from a unit cotangent. Traced, the rows are unrolled into one
graph, whose passes share the forward and fuse the rows' work: fast for a
few rows, but compiling it grows with them (Hessians of 10, 40 and 80
inputs took 2.0, 6.8 and 16 s; the fused kernels and the driver handle every
row). A call with arrays of a Jacobian of more than ROWS_UNROLLED_AT_MOST
rows instead compiles one VJP per output, with the cotangent an argument,
and calls it once per row: its compile time is the same at any size. Inside
a trace (jit of a jacobian, a grad through one) the rows are unrolled.
"""
from __future__ import annotations

import math

import numpy as np

from graphc import errors, pytree, tracing
from graphc import numpy_api as fnp
from graphc.api import (MAX_ENTRIES, Compiled, _argnums_tuple, _leaves_and_wrt, _signature_key,
                        _grad, _static_values, _vjp_traced, jit, one_argnum)

# A Jacobian of more rows than this (output elements, all outputs together)
# is computed a row per call of a compiled VJP; see the module's docstring
ROWS_UNROLLED_AT_MOST = 8


def jacobian(fn, argnums=0):
    """The full Jacobian, shape `out.shape + arg.shape` (reverse mode, one row per output).

    Pytrees as in JAX: for each output leaf, the argument's structure holding
    `out_leaf.shape + arg_leaf.shape` blocks (a tuple of them for a tuple of
    argnums), all in the output's structure.

    >>> import numpy as np, graphc as gc
    >>> gc.jacobian(lambda x: x * x)(np.array([1.0, 2.0]))
    array([[2., 0.],
           [0., 4.]])
    """
    def jacobian_fn(*args):
        nums = _argnums_tuple(argnums, len(args))
        # (inside a trace, a static Python number reaches fn as it is, as in _vjp_traced)
        graph = tracing.trace_fn(fn, args, _static_values(*_leaves_and_wrt(args, nums)))
        outs = [graph.node(o) for o in graph.outputs]
        _check_float(outs)
        blocks = []
        for j, out in enumerate(outs):
            rows = [_vjp_traced(fn, args, nums, _unit_cotangent(j, i), fn_name="jacobian")[1]
                    for i in range(max(out.size, 1))]     # one row even for no output: its dtype
            blocks.append(_blocks(rows, args, argnums, lambda rows_of_leaf, leaf: _stack_rows(
                rows_of_leaf, out, tuple(tracing.aval_of(leaf)[0]))))
        return pytree.unflatten(graph.meta["out_tree"], blocks)
    return _Jacobian(jacobian_fn, fn, argnums)


def hessian(fn, argnums=0):
    """`jacobian(grad(fn))`: second derivatives, shape `arg.shape + arg.shape`;
    pytrees and a tuple of argnums nest as in JAX (`H[i][j]`: d/d arg_i, then d/d arg_j)."""
    return jacobian(_grad(fn, argnums, False, "hessian"), argnums)


def _check_float(outs):
    for out in outs:
        if out.dtype.kind != "f":
            raise errors.GraphcTypeError(f"jacobian: the output must be float, got {out.type}"
                                         f"{errors.at(out.loc)}")


def _blocks(rows, args, argnums, stack):
    """One output's Jacobian blocks, in its arguments' structures, from its
    rows (each the tuple of gradient trees of args[argnums]): stack(rows of
    one argument leaf, the leaf) makes each block."""
    per_arg = []
    for k, a in enumerate(_argnums_tuple(argnums, len(args))):
        leaves, treedef = pytree.flatten(args[a])
        row_leaves = [pytree.flatten(row[k])[0] for row in rows]
        per_arg.append(pytree.unflatten(treedef, [
            stack([r[li] for r in row_leaves], leaf) for li, leaf in enumerate(leaves)]))
    return per_arg[0] if one_argnum(argnums) else tuple(per_arg)


def _unit_cotangent(j, i):
    """Cotangents selecting element i of output j (none for the other outputs)."""
    def cts(out_nodes):
        out = out_nodes[j]
        onehot = np.zeros(out.size, out.dtype)
        onehot[i:i + 1] = 1
        return [onehot.reshape(out.shape) if k == j else None for k in range(len(out_nodes))]
    return cts


def _stack_rows(rows, out, arg_shape):
    """One Jacobian block, out.shape + arg_shape, from its rows (one per output element)."""
    stacked = fnp.stack(rows, axis=0)
    if not out.size:
        stacked = fnp.getitem(stacked, slice(0, 0))
    return fnp.reshape(stacked, out.shape + arg_shape)


class _Jacobian(Compiled):
    """jacobian's compiled function: unrolled rows (Compiled's own path), or,
    past ROWS_UNROLLED_AT_MOST rows and called with no tracers, a call of a
    compiled VJP per row. Which one is decided at a signature's first call
    (a new ROWS_UNROLLED_AT_MOST reaches new signatures). inspect(), lower()
    and interpret() show the unrolled rows."""

    def __init__(self, jacobian_fn, fn, argnums):
        super().__init__(jacobian_fn, name=f"jacobian({getattr(fn, '__name__', 'fn')})",
                         user_fn=fn)
        self._of, self._argnums = fn, argnums
        # signature -> the outputs' (tree, [(shape, dtype)]) when taken by rows, else None
        self._by_rows: dict = {}
        self._pulls: dict = {}     # output position -> jit of its VJP (cotangent last)

    def __call__(self, *args, **kwargs):
        if kwargs:
            args = self._positional(args, kwargs)
        leaves, treedef = pytree.flatten(args)
        if not any(isinstance(leaf, tracing.Tracer) for leaf in leaves):
            key = (treedef, _signature_key(leaves))
            outputs = self._by_rows.get(key, False)
            if outputs is False:
                if len(self._by_rows) >= MAX_ENTRIES:
                    self._by_rows.clear()
                outputs = self._by_rows[key] = self._outputs_if_many(args)
            if outputs is not None:
                return self._rows(args, *outputs)
        return super().__call__(*args)

    def _outputs_if_many(self, args):
        """The outputs' tree and avals when they hold more than
        ROWS_UNROLLED_AT_MOST elements, all float; else None (unrolled: an
        output that is not float is refused there, as inside a trace)."""
        graph = tracing.trace_fn(self._of, args)
        outs = [graph.node(o) for o in graph.outputs]
        if sum(out.size for out in outs) <= ROWS_UNROLLED_AT_MOST or any(
                out.dtype.kind != "f" for out in outs):
            return None
        return graph.meta["out_tree"], [(out.shape, out.dtype) for out in outs]

    def _pull(self, j):
        """jit of f(*args, ct): the cotangents of args[argnums] from ct on output j."""
        if j not in self._pulls:
            def pulled(*args_and_ct):
                args, ct = args_and_ct[:-1], args_and_ct[-1]
                nums = _argnums_tuple(self._argnums, len(args))
                return tuple(_vjp_traced(
                    self._of, args, nums,
                    lambda outs: [ct if k == j else None for k in range(len(outs))],
                    fn_name="jacobian")[1])
            self._pulls[j] = jit(pulled)
        return self._pulls[j]

    def _rows(self, args, out_tree, outputs):
        blocks = []
        for j, (shape, dtype) in enumerate(outputs):
            pull, size = self._pull(j), math.prod(shape)
            rows, unit = [], np.zeros(size, dtype)
            for i in range(max(size, 1)):   # one row for no output too: its dtype
                unit[i:i + 1] = 1       # (a compiled call's outputs are new arrays, never unit)
                rows.append(pull(*args, unit.reshape(shape)))
                unit[i:i + 1] = 0
            blocks.append(_blocks(rows, args, self._argnums, lambda rows_of_leaf, leaf: np.stack(
                rows_of_leaf)[:size].reshape(shape + np.shape(leaf))))
        return pytree.unflatten(out_tree, blocks)
