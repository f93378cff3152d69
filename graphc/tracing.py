"""Tracing: run the user's NumPy code on `Tracer`s and record a `Graph`.

A Tracer stands for one node of the graph being traced. Python operators,
NumPy ufuncs (`__array_ufunc__`) and NumPy functions (`__array_function__`)
on tracers call the front end in `numpy_api`, which binds primitives here.

`bind` puts the op into the innermost active trace. A tracer of an enclosing
trace (a closure over an outer variable) is captured as an extra input of
the inner graph; NumPy arrays and scalars become constants. With no tracer
among the operands the op simply runs eagerly on NumPy arrays.
"""
from __future__ import annotations

import contextlib
import linecache
import os
import re
import sys
import threading

import numpy as np

from graphc import errors, ir, randomness
from graphc import ops as _ops
from graphc import pytree

SUPPORTED_DTYPES = {np.dtype(t) for t in (
    np.bool_, np.int8, np.int16, np.int32, np.int64,
    np.uint8, np.uint16, np.uint32, np.uint64, np.float32, np.float64)}

_state = threading.local()


def _stack() -> list:
    if not hasattr(_state, "graphs"):
        _state.graphs, _state.locs = [], []
    return _state.graphs


_INSTEAD_OF_STORING = ("make the array with np.zeros_like(x) of a traced x, which takes "
                       "assignments, or collect the pieces in a list and np.stack or "
                       "np.concatenate them")
# Why NumPy converts a traced array, each with what to write instead; the
# user's line picks one when it shows the pattern (re.search), else all are
# said (but the first: the last's advice, for a table made and indexed on one line)
_INDEXING = ("indexing a NumPy array with it (pass that array as an argument: a traced "
             "one takes traced indices; a 1-d table is np.take_along_axis(table, y, axis=0); a "
             "one-hot is y[:, None] == np.arange(k))")
_CONVERSIONS = [
    (r"\bnp\.(asarray|array|asanyarray)\(.*\)\s*\[", _INDEXING),
    (r"\bnp\.(asarray|array|asanyarray)\(\s*\[",
     "np.array([...]) of traced values (np.stack([...]) them instead)"),
    (r"\bnp\.(asarray|array|asanyarray|ascontiguousarray)\(",
     "np.asarray(x) or np.array(x) (drop them: a traced array is an array already)"),
    (r"\bnp\.(sum|mean|max|min|prod|average)\(\s*\[",
     "np.sum or np.mean of a Python list of traced arrays (np.stack the list first)"),
    (r"\bnp\.eye\(.*\)\s*\[",
     "indexing a NumPy array with it (a one-hot as y[:, None] == np.arange(k), not "
     "np.eye(k)[y])"),
    (r"\]\s*([-+*/@%]|//|\*\*)?=(?!=)", f"a[i] = x into a NumPy array ({_INSTEAD_OF_STORING})"),
    (r"\w\s*\[", _INDEXING),
]


_MAKE_STATIC = ("make it static: gc.jit(fn, static_argnums=...) (outermost: "
                "gc.jit(gc.grad(fn), static_argnums=...)), or functools.partial(fn, ...) bound "
                "before gc.grad or compile_step, which have no static arguments")
# a list of numbers passed as an argument is a pytree: NumPy cannot convert its tracers
_LISTED_NUMBERS = ("a list (or tuple) of numbers passed as an argument is a pytree, traced a "
                   "number at a time, which NumPy cannot make an array of; pass np.asarray(the "
                   "list) instead")


def _conversion_advice() -> str:
    file, _, line = errors.user_location().rpartition(":")
    text = linecache.getline(file, int(line)) if line.isdigit() else ""
    for pattern, advice in _CONVERSIONS:
        if text and re.search(pattern, text):
            return f"Here NumPy converts it for {advice}"
    return ("NumPy converts it for " + "; for ".join(
        advice for _, advice in _CONVERSIONS[1:-1]) + ". Build the result from traced operations "
        "instead")


def _scipy_linalg_function() -> str | None:
    """The name of the scipy.linalg function on the stack: its own frame, or
    one a SciPy wrapper holds (which converts the arguments before calling it)."""
    frame = sys._getframe(1)
    while frame is not None:
        if f"{os.sep}scipy{os.sep}" in frame.f_code.co_filename:
            if f"{os.sep}scipy{os.sep}linalg{os.sep}" in frame.f_code.co_filename:
                return frame.f_code.co_name
            for value in frame.f_locals.values():
                if callable(value) and str(getattr(value, "__module__", "")).startswith(
                        "scipy.linalg"):
                    return getattr(value, "__name__", None)
        frame = frame.f_back
    return None


def current_graph():
    stack = _stack()
    return stack[-1] if stack else None


@contextlib.contextmanager
def location(loc: str):
    """Attribute the nodes bound inside to `loc` (replays and VJPs keep the user's line)."""
    _stack()
    _state.locs.append(loc)
    try:
        yield
    finally:
        _state.locs.pop()


@contextlib.contextmanager
def role(name: str):
    """Label the nodes created inside ("backward", "update"): pictures colour them."""
    _stack()
    previous = getattr(_state, "role", "forward")
    _state.role = name
    try:
        yield
    finally:
        _state.role = previous


def _current_loc() -> str:
    _stack()
    return _state.locs[-1] if _state.locs else errors.user_location()


class Tracer:
    """A traced array: shape and dtype are known, the values are not."""

    # base: the array a basic index (x[1:], x[0]) took this one from, as NumPy's
    # views are; views: weak references to this array's own; stale: an
    # assignment into the base came after (graphc/assignment.py)
    # argument: the traced function's own argument object (assigning into it
    # would change the caller's array in NumPy)
    __slots__ = ("graph", "node", "base", "views", "stale", "argument", "__weakref__")
    __array_priority__ = 1000

    def __init__(self, graph: ir.Graph, node: ir.Node):
        self.graph, self.node = graph, node
        self.base, self.views, self.stale, self.argument = None, None, False, False

    shape = property(lambda self: self.node.shape)
    dtype = property(lambda self: self.node.dtype)
    ndim = property(lambda self: len(self.node.shape))
    size = property(lambda self: self.node.size)
    weak = property(lambda self: self.node.weak)

    def __repr__(self):
        return f"Tracer<{self.node.type}>"

    def __len__(self):
        if not self.shape:
            raise errors.GraphcTypeError("len() of unsized object: a 0-d traced array"
                                         + errors.at(errors.user_location()))
        return self.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def _concrete_error(self, what, instead="Use np.where(cond, a, b) instead of if/else on "
                                             "array values", error=errors.TracerError):
        raise error(
            f"{what} needs the value of a traced array {self.node.type}, which is only known "
            f"when the compiled code runs{errors.at(errors.user_location())}. {instead}; or, "
            f"for a Python constant, {_MAKE_STATIC}.")

    def __bool__(self):
        self._concrete_error("Python control flow (if/while/and/or/bool())")

    def __format__(self, spec):
        if not spec:        # f"{x}", print: the tracer's type, as repr
            return repr(self)
        self._concrete_error(f"formatting it (f\"{{x:{spec}}}\")",
                             instead="Return the value (gc.value_and_grad(fn, has_aux=True) for "
                                     "a loss) and format it after the call")

    def __float__(self):
        self._concrete_error("float() (which math.cos and math's other functions call)",
                             "Use NumPy's functions (np.cos for math.cos), and np.where(cond, a, "
                             "b) instead of if/else on array values")

    def __int__(self):
        self._concrete_error("int()")

    def __index__(self):
        self._concrete_error("using a traced array as a Python index/int")

    def __complex__(self):
        self._concrete_error("complex()")

    def __array__(self, dtype=None, copy=None):
        scipy_function = errors.outermost_call_into("scipy")
        if scipy_function:
            linalg = _scipy_linalg_function()
            self._concrete_error(
                f"scipy's {linalg or scipy_function}, which converts its arguments to NumPy "
                f"arrays,",
                "graphc has np.linalg's solve, cholesky, inv, det, slogdet, eigh, svd and qr "
                "(a triangular solve is np.linalg.solve of the factor)" if linalg else
                "graphc has gc.nn.logsumexp, softmax, log_softmax, sigmoid and softplus; SciPy's "
                "ufuncs (scipy.special.expit, xlogy, erf, ...) trace as NumPy's do")
        if self.node.id in self.graph.meta.get("listed_numbers", ()):
            # a number of a list argument: NumPy makes an array of the list
            self._concrete_error("converting to a NumPy array",
                                 f"It is a Python number from the arguments: {_LISTED_NUMBERS}")
        # NumPy also asks for it when a traced array indexes a NumPy array
        # (np.eye(k)[y]): NumPy does not dispatch on an index
        self._concrete_error("converting to a NumPy array", _conversion_advice())

    def __setitem__(self, key, value):
        from graphc import assignment     # it imports this module
        assignment.setitem(self, key, value)

    def __hash__(self):
        return id(self)

    def __getattr__(self, name):
        # only for names Tracer lacks: say which, where, rather than "'Tracer'
        # object has no attribute" (x.argmax(), x.cumsum(), ...)
        # (an AttributeError as well, so hasattr() and getattr(x, name, None) still work)
        if name.startswith("_") or not hasattr(np.ndarray, name):
            raise AttributeError(f"'Tracer' object has no attribute {name!r}")
        if name in ("item", "tolist", "tobytes"):
            self._concrete_error(f"x.{name}()", "Return the array and convert it after the call",
                                 errors.UnsupportedMethodError)
        raise errors.UnsupportedMethodError(f"x.{name} of a traced array is not supported by "
                                            f"graphc{errors.at(errors.user_location())}")

    # Arithmetic and methods are attached by numpy_api (the NumPy front end).


class WeakScalar(np.ndarray):
    """A Python number converted to the dtype of the operation it takes part
    in (numpy_api.to_operand). As a constant in the graph it stays weakly
    typed, as NumPy 2 types the Python number: `x * (s * 0.5)` with a Python
    float `s` keeps a float32 `x` float32 (it was float64)."""


def aval_of(x):
    """(shape, dtype, weak) of an argument leaf, as graphc will type it."""
    if isinstance(x, Tracer):
        return x.shape, x.dtype, x.weak
    if isinstance(x, np.float64):   # a float subclass, but a NumPy scalar: strongly typed
        return (), np.dtype(np.float64), False
    if isinstance(x, bool):
        return (), np.dtype(np.bool_), True
    if isinstance(x, int):
        return (), np.dtype(np.int64), True
    if isinstance(x, float):
        return (), np.dtype(np.float64), True
    if isinstance(x, WeakScalar):
        return (), np.dtype(x.dtype), True
    if isinstance(x, (np.ndarray, np.generic)):
        refuse_subclass(x)
        dtype = np.dtype(x.dtype)
        if dtype not in SUPPORTED_DTYPES:
            other_order = (f" ({dtype.newbyteorder('=').name} of the other byte order: "
                           f"x.astype(np.{dtype.newbyteorder('=').name}))"
                           if not dtype.isnative and dtype.newbyteorder("=") in SUPPORTED_DTYPES
                           else "")
            raise errors.GraphcTypeError(
                f"arrays of dtype {dtype}{other_order} are not supported; use float32/float64 "
                f"for values and integer or bool arrays for labels and masks"
                f"{errors.at(errors.user_location())}")
        return tuple(np.shape(x)), dtype, False
    if isinstance(x, (list, tuple)):
        raise errors.GraphcTypeError(
            f"a Python {type(x).__name__} where an array goes: np.stack a list of traced arrays; "
            f"{_LISTED_NUMBERS}{errors.at(errors.user_location())}")
    raise errors.GraphcTypeError(
        f"cannot use an argument of type {type(x).__name__} in a traced function; pass NumPy "
        f"arrays or Python numbers (in dicts, lists, tuples or namedtuples: an object's "
        f"attributes are not traced), or {_MAKE_STATIC}{errors.at(errors.user_location())}")


# ndarray subclasses whose values or operators are not their data's: graphc
# would read the data and compute as for a plain array (a masked mean over
# the masked elements too; np.matrix's `*`, a product, elementwise)
_SUBCLASS_ADVICE = {
    np.ma.MaskedArray: "graphc reads an array's data, not its mask: pass x.filled(value) "
                       "and the mask as a bool array of its own (np.ma.getmaskarray(x)), and "
                       "use np.where or a weighted sum in the function",
    np.matrix: "np.matrix's `*` and `**` are matrix products, NumPy's arrays' are "
               "elementwise: pass np.asarray(m) and write products with @",
}


def refuse_subclass(x) -> None:
    for kind, advice in _SUBCLASS_ADVICE.items():
        if isinstance(x, kind):
            raise errors.GraphcTypeError(
                f"an array is a {type(x).__module__}.{type(x).__name__}, which graphc cannot "
                f"trace; {advice}{errors.at(errors.user_location())}")


def const(graph: ir.Graph, value, loc) -> ir.Node:
    weak = isinstance(value, WeakScalar)
    refuse_subclass(value)
    arr = np.asarray(value)
    if np.dtype(arr.dtype) not in SUPPORTED_DTYPES:
        raise errors.GraphcTypeError(f"constant of dtype {arr.dtype} is not supported{errors.at(loc)}")
    return graph.add("const", (), {"value": ir.ConstValue(arr)}, arr.shape, arr.dtype, weak, loc)


def _capture(graph: ir.Graph, tracer: Tracer) -> int:
    """Make an outer trace's tracer an extra input of `graph`."""
    captures = graph.meta.setdefault("captures", {})
    key = (id(tracer.graph), tracer.node.id)
    if key not in captures:
        node = graph.add_input(tracer.shape, tracer.dtype, tracer.weak, tracer.node.loc)
        captures[key] = (node.id, tracer)
    return captures[key][0]


def _refuse_stale(x) -> None:
    if isinstance(x, Tracer) and x.stale:
        raise errors.UnsupportedOpError(
            f"this array was taken out of another (v = x[...], x.T, x.reshape(...)) before x was "
            f"assigned into; NumPy's view would show the assignment, graphc's copy does not: "
            f"take it from x again after assigning{errors.at(errors.user_location())}")


def bind(op: str, *operands, **params):
    """Apply primitive `op`: record it when tracing, else run it on NumPy arrays.
    `_weak=False` records a strongly typed result whatever the operands are."""
    weak_result = params.pop("_weak", None)
    opdef = _ops.OPS[op]
    graph = current_graph()
    has_tracer = any(isinstance(x, Tracer) for x in operands)
    if not has_tracer and graph is not None and (
            _expands(opdef, operands, params) or _transposes_a_matrix(op, operands)):
        # Constant folding that would materialize a bigger array (a gradient seed
        # broadcast over the batch): record it instead, as a cheap broadcast read.
        # A matrix's transpose too: folded, a square one is the same constant
        # (equal constants are one node), so an RNN's zero state np.zeros((n, k))
        # read as h and as h.T in the gradient was one node at n == k only: a
        # graph, and a module, of its own at that batch size. Recorded, the
        # product reads it with its transpose flag, at every size alike.
        has_tracer = True
    if not has_tracer:
        arrays = [np.asarray(x) for x in operands]
        loc = _current_loc() if graph is not None else None
        _infer(opdef, arrays, params, loc)
        # a gradient's constants (the log of a negative base, for d/dy of
        # (-2.0) ** y) are graphc's, not the user's code: NumPy's warnings
        # about them would point into graphc
        quiet = getattr(_state, "role", "forward") == "backward"
        try:
            with np.errstate(all="ignore") if quiet else contextlib.nullcontext():
                return np.asarray(opdef.impl(*arrays, **params))
        except errors.GraphcError as e:
            raise type(e)(f"{e}{errors.at(loc or errors.user_location())}") from None
    if graph is None:
        raise errors.TracerError("a traced value escaped its trace (was it stored in a global "
                                 "or returned through a side channel?); return it instead")
    loc = _current_loc()
    ids = []
    for x in operands:
        _refuse_stale(x)
        if isinstance(x, Tracer):
            ids.append(x.node.id if x.graph is graph else _capture(graph, x))
        else:
            ids.append(const(graph, x, loc).id)
    avals = [graph.node(i) for i in ids]
    shape, dtype = _infer(opdef, avals, params, loc)
    weak = all(a.weak for a in avals) if weak_result is None else weak_result
    node = graph.add(op, ids, params, shape, dtype, weak, loc)
    graph.keep_role(node.id, getattr(_state, "role", "forward"))
    return Tracer(graph, node)


def strongly_typed(x):
    """`x` as a NumPy function returns it: strongly typed. np.multiply(s, 0.5)
    of a Python float `s` is an np.float64, where `s * 0.5` is a Python float."""
    if isinstance(x, (list, tuple)):
        values = [strongly_typed(v) for v in x]
        return type(x)(*values) if hasattr(x, "_fields") else type(x)(values)   # a namedtuple
    if isinstance(x, Tracer) and x.weak:
        return bind("convert", x, dtype=x.dtype, _weak=False)
    if isinstance(x, WeakScalar):
        return np.asarray(x)
    return x


def _transposes_a_matrix(op: str, operands) -> bool:
    return op == "transpose" and np.ndim(operands[0]) >= 2 and np.size(operands[0]) > 1


def _expands(opdef, operands, params) -> bool:
    arrays = [np.asarray(x) for x in operands]
    try:
        shape, _ = opdef.infer(arrays, params)
    except errors.GraphcError:
        return False          # the eager path raises it, naming the user's line
    return int(np.prod(shape, dtype=np.int64)) > max([a.size for a in arrays] + [1])


def _infer(opdef, avals, params, loc):
    try:
        return opdef.infer(avals, params)
    except errors.GraphcError as e:
        raise type(e)(f"{e}{errors.at(loc or errors.user_location())}") from None


@contextlib.contextmanager
def _tracing(graph: ir.Graph):
    stack = _stack()
    stack.append(graph)
    try:
        yield graph
    finally:
        stack.pop()


def note_int_bounds(x: Tracer, dtype, loc: str | None = None) -> Tracer:
    """`x`, about to be converted to `dtype`, checked as NumPy checks a Python
    int converted to a narrower integer type (`u8 + n`): NumPy refuses one
    outside that type (OverflowError), where a compiled conversion would wrap.
    For a Python int argument the graph records the type and the user's
    line, and every call checks the argument before anything runs
    (api.check_int_arguments). A Python int computed in the function
    (`u8 + (n - 1)`) is checked in the graph (ops int_range_check)."""
    dtype = np.dtype(dtype)
    if not (x.weak and x.dtype.kind in "iu" and dtype.kind in "iu" and dtype != x.dtype):
        return x
    if x.node.op == "input":
        bounds = x.graph.meta.setdefault("int_bounds", {})
        bounds.setdefault(x.node.p["index"], []).append((dtype, loc or errors.user_location()))
        return x
    return bind("int_range_check", x, dtype=dtype)


def _pass_int_bounds_out(graph: ir.Graph, leaves: list) -> None:
    """A nested trace (grad, jacobian) whose inputs stand for outer tracers:
    the conversions it recorded hold for those tracers' own arguments, and
    an outer value computed in the function is checked in the outer graph:
    `graph.meta["checked"]` holds it, for bound_values to put in its place."""
    outer = dict(enumerate(leaves))
    outer.update((graph.meta["num_args"] + k, t) for k, t in enumerate(graph.meta["captures"]))
    checked = graph.meta["checked"] = {}
    for k, converted in graph.meta.get("int_bounds", {}).items():
        if isinstance(outer.get(k), Tracer):
            value = outer[k]
            for dtype, loc in converted:
                value = note_int_bounds(value, dtype, loc)
            if value is not outer[k]:
                checked[k] = value


def trace_fn(fn, args: tuple, as_they_are=frozenset()) -> ir.Graph:
    """Trace `fn(*args)` into a new Graph.

    graph.meta holds `in_tree`, `out_tree`, `num_args` (explicit input leaves)
    and `captures` (outer tracers that became extra inputs, in input order).
    The leaves at positions `as_they_are` reach `fn` as they are, not as
    tracers (each still has its input, which nothing reads).
    """
    leaves, in_tree = pytree.flatten(tuple(args))
    graph = ir.Graph()
    loc = errors.user_location()
    with _tracing(graph):
        tracers = []
        for k, leaf in enumerate(leaves):
            shape, dtype, weak = _input_aval(leaf, k in as_they_are)
            tracers.append(Tracer(graph, graph.add_input(shape, dtype, weak, loc)))
            # a Python number is no array; an outer trace's argument (through grad) still is
            tracers[-1].argument = isinstance(leaf, np.ndarray) or (
                isinstance(leaf, Tracer) and leaf.argument)
        # the inputs of Python numbers in a list or tuple (see Tracer.__array__),
        # an outer trace's too (through grad)
        graph.meta["listed_numbers"] = {
            tracer.node.id for tracer, leaf, listed in zip(tracers, leaves, _in_sequences(in_tree))
            if listed and isinstance(leaf, (int, float)) or isinstance(leaf, Tracer) and (
                leaf.node.id in leaf.graph.meta.get("listed_numbers", ()))}
        passed = [leaf if k in as_they_are else tracer
                  for k, (leaf, tracer) in enumerate(zip(leaves, tracers))]
        draws = randomness.Draws(fn)
        try:
            out = fn(*pytree.unflatten(in_tree, passed))
        except errors.GraphcError as e:
            errors.name_users_line(e)
            raise
        except ValueError as e:
            _refuse_a_stored_tracer(e)
            raise
        draws.check()
        out_leaves, out_tree = pytree.flatten(out)
        out_ids = []
        for leaf in out_leaves:
            _refuse_stale(leaf)
            if isinstance(leaf, Tracer):
                out_ids.append(leaf.node.id if leaf.graph is graph else _capture(graph, leaf))
            else:
                try:
                    aval_of(leaf)
                except errors.GraphcTypeError:
                    raise errors.GraphcTypeError(
                        f"the function returned a {type(leaf).__name__} ({leaf!r:.40}): a traced "
                        f"function returns arrays and Python numbers (in dicts, lists, tuples or "
                        f"namedtuples); return the rest from a function around it"
                        f"{errors.at(errors.user_location())}") from None
                out_ids.append(const(graph, leaf, loc).id)
    graph.outputs = out_ids
    graph.meta.update(in_tree=in_tree, out_tree=out_tree, num_args=len(leaves))
    graph.meta["captures"] = [t for _, t in sorted(graph.meta.get("captures", {}).values(),
                                                    key=lambda p: p[0])]
    _pass_int_bounds_out(graph, leaves)
    return graph


def _refuse_a_stored_tracer(e: ValueError) -> None:
    """NumPy's own error for `a[i] = x` of a 0-d traced x into a NumPy array
    (it asks x for a float, which Tracer refuses, then takes it for a
    sequence), which names no line: a TracerError that does, with the advice
    for a[i] = x."""
    if "setting an array element with a sequence" not in str(e):
        return
    raise errors.TracerError(
        f"NumPy could not store a value in a NumPy array ({str(e).rstrip('.')})"
        f"{errors.at(errors.users_line_in(e.__traceback__))}: a traced value cannot be stored "
        f"in one, as its value is only known when the compiled code runs; "
        f"{_INSTEAD_OF_STORING}") from e


def capture_values(graph: ir.Graph) -> list:
    """The outer values bound to `graph`'s captured inputs, in input order."""
    return list(graph.meta.get("captures", []))


def _in_sequences(in_tree) -> list[bool]:
    """For each leaf of a call's arguments (`in_tree`, their tuple), whether
    it sits in a list or tuple (not a namedtuple) inside an argument."""
    out: list[bool] = []

    def visit(td, in_sequence):
        if td.kind == "leaf":
            out.append(in_sequence)
        for child in td.children:
            visit(child, td.kind in ("list", "tuple"))

    for argument in in_tree.children:
        visit(argument, False)
    return out


def _input_aval(leaf, as_it_is: bool):
    """aval_of(leaf); for a leaf passed as it is that has none (a static str),
    that of a bool: its input is never read."""
    try:
        return aval_of(leaf)
    except errors.GraphcTypeError:
        if not as_it_is:
            raise
        return (), np.dtype(np.bool_), True


def bound_values(graph: ir.Graph, leaves) -> list:
    """The outer values bound to all of a nested trace's inputs: its argument
    `leaves`, then its captures, each checked where _pass_int_bounds_out
    checked it (unused, the check would be dropped as dead code)."""
    values = list(leaves) + capture_values(graph)
    for k, value in graph.meta.get("checked", {}).items():
        values[k] = value
    return values


def evaluate(graph: ir.Graph, inputs, on_node=None) -> list:
    """Replay `graph` on `inputs` (tracers: inline into the current trace;
    arrays: evaluate eagerly). `on_node(node, value)` sees every value."""
    env = {}
    for node in graph.topo():
        if node.op == "input":
            value = inputs[node.p["index"]]
        elif node.op == "const":
            value = node.p["value"].array
        else:
            with location(node.loc):
                value = bind(node.op, *[env[i] for i in node.inputs], **node.p)
        env[node.id] = value
        if on_node is not None:
            on_node(node, value)
    return [env[o] for o in graph.outputs]
