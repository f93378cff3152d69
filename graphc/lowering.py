"""A traced graph -> its optimized graph, generated module and loaded code,
shared by traces that come out the same.

Every `compile_step`, `gc.train` and new `gc.jit` traces its function again,
so that a notebook that edits a helper gets the new model
(tests/test_fresh_traces.py). Most re-traces give the graph of the last one:
`gc.train` called again with the same loss and optimizer spent 30 ms before
its first epoch on the demo's MLP (two signatures: full batches and the short
last one), three fifths of it in the passes and code generation, which are a
function of the graph alone. This keeps their results for graphs equal in
every node (op, inputs, parameters with constants by value, shape, dtype),
inputs, outputs, roles, pytree structures and code generation options, on
the same vector width and thread count.

The user's source lines are not in the generated code (errors name nodes,
and the entry's optimized graph names their lines), so a trace of the same
code from other lines (the demo calls gc.train twice, and an optimizer's ops
carry the line that called it) shares the code and gets a copy of the
optimized graph naming its own lines.

The key also holds the identity of every module-level name of the passes
and code generation (their rules and thresholds): a script or test that
sets codegen.PARALLEL_MIN_WORK or swaps a rule in a running process gets
code made under the new one. A graph's constants stay alive while it is
kept (a loss closing over a data set holds it): graphs with more than
MAX_CONST_BYTES of them are not kept, and the oldest are dropped past
MAX_KEPT graphs or MAX_KEPT_CONST_BYTES in all.

The shared objects are read, never changed, by the entries holding them.
A lowering made under the rules graphc was imported with is also kept on
disk for later processes (graphc/stored_lowerings.py).
"""
from __future__ import annotations

import collections
import sys
import threading

from graphc import (codegen, dims, errors, ir, merged_axes, ops, passes, prims, pytree, randomness,
                    repeats, runtime, stored_lowerings, target, threads, tracing,
                    varying_constants, workspace)
from graphc.ir import Graph

# graphs whose lowering is kept (a few compile_step signatures each), and
# the bytes of constants they may hold: one graph's, all of them
MAX_KEPT = 64
MAX_CONST_BYTES = 8 << 20
MAX_KEPT_CONST_BYTES = 64 << 20

_kept: collections.OrderedDict = collections.OrderedDict()   # key -> lowering, lines, bytes
_lock = threading.Lock()

# the modules whose names decide how a graph is lowered
_RULES = (codegen, dims, errors, ir, merged_axes, ops, prims, pytree, randomness, repeats, target,
          tracing, varying_constants, workspace)


class _Same:
    """A value compared by identity, and held: an id alone could be reused
    by a new object once the old one is freed (a rule rebound twice)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return type(other) is _Same and other.value is self.value

    def __hash__(self):
        return id(self.value)


def _rules() -> tuple:
    """Each module-level value of the passes and code generation by
    identity, a list's items too (passes.PIPELINE): rebinding any of them
    (or editing a list of them) gives another tuple. Tables edited in place
    (ops.OPS) are not seen."""
    modules = _RULES + tuple(m for name, m in sys.modules.items()
                             if name.startswith("graphc.passes") and m is not None)
    return tuple((_Same(v), tuple(map(_Same, v)) if isinstance(v, list) else ())
                 for m in modules for v in vars(m).values())


def _const_bytes(graph: Graph) -> int:
    return sum(n.p["value"].array.nbytes for n in graph.topo() if n.op == "const")


def _frozen(value):
    """A hashable stand-in for `value` (dicts, lists and sets by content)."""
    if isinstance(value, dict):
        return ("dict",) + tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__,) + tuple(_frozen(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return ("set",) + tuple(sorted(_frozen(v) for v in value))
    hash(value)     # TypeError for anything else unhashable
    return value


def _key(graph: Graph, options: dict):
    """What the lowering of `graph` depends on besides the rules, or None
    when some part of it cannot be compared (then nothing is shared)."""
    nodes = graph.topo()
    meta = dict(graph.meta)
    if "int_bounds" in meta:    # (dtype, the user's line) pairs: the entry reads its own graph's
        meta["int_bounds"] = {k: [dtype for dtype, _ in v] for k, v in meta["int_bounds"].items()}
    try:
        key = (tuple((n.op, n.inputs, n.params, n.shape, n.dtype, n.weak) for n in nodes),
               tuple(graph.inputs), tuple(graph.outputs), tuple(graph.role(n.id) for n in nodes),
               _frozen(meta), _frozen(options), target.full_width(), threads.count())
        hash(key)
    except TypeError:
        return None
    return key


def _new_lines(old: tuple, new: tuple) -> dict | None:
    """{old line: new line} for the nodes' lines of two equal traces, or None
    where one old line became several (then the optimized graph's nodes,
    which carry the lines of the nodes they came from, cannot be renamed)."""
    mapping = {}
    for a, b in zip(old, new):
        if mapping.setdefault(a, b) != b:
            return None
    return mapping


def _relocated(optimized: Graph, kept_lines: tuple, lines: tuple) -> Graph | None:
    """`optimized`, made from a trace with `kept_lines`, for an equal trace
    with `lines`; None where its lines cannot be renamed."""
    if kept_lines == lines:
        return optimized
    mapping = _new_lines(kept_lines, lines)
    return optimized.relocated(mapping) if mapping is not None else None


def lower(graph: Graph, options: dict):
    """(optimized graph, codegen.Module, loaded module) for `graph` compiled
    with codegen `options`: kept from an equal graph's in this process or
    on disk (graphc.stored_lowerings), or made now."""
    rules, key = _rules(), _key(graph, options)
    if key is not None:
        key = key + (rules,)
    lines = tuple(n.loc for n in graph.topo())
    with _lock:
        kept = _kept.get(key) if key is not None else None
        if kept is not None:
            _kept.move_to_end(key)
    if kept is not None:
        optimized, module, loaded, kept_lines, size = kept
        optimized = _relocated(optimized, kept_lines, lines)
        if optimized is not None:
            if optimized is not kept[0]:    # kept with these lines: the next trace is likely here
                with _lock:
                    _kept[key] = optimized, module, loaded, lines, size
            return optimized, module, loaded
    size = _const_bytes(graph)
    stored = stored_lowerings.name(key[:-1], rules, size) if key is not None else None
    found = stored_lowerings.read(stored, graph.meta) if stored is not None else None
    optimized = _relocated(found[0], found[2], lines) if found is not None else None
    if optimized is not None:
        module = found[1]
    else:
        optimized = passes.run(graph)
        module = codegen.generate(optimized, **options)
        if stored is not None:
            stored_lowerings.write(stored, optimized, module, lines)
    loaded = runtime.load(module.source)
    if key is not None and size <= MAX_CONST_BYTES:
        with _lock:
            _kept[key] = optimized, module, loaded, lines, size
            while len(_kept) > MAX_KEPT or sum(k[-1] for k in _kept.values()) > \
                    MAX_KEPT_CONST_BYTES:
                _kept.popitem(last=False)
    return optimized, module, loaded


def forget() -> None:
    """Drop every kept lowering (tests that change code generation call it)."""
    with _lock:
        _kept.clear()
