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

The shared objects are read, never changed, by the entries holding them.
"""
from __future__ import annotations

import collections
import threading

from graphc import codegen, passes, runtime, target, threads
from graphc.ir import Graph

# graphs whose lowering is kept (a few compile_step signatures each)
MAX_KEPT = 64

_kept: collections.OrderedDict = collections.OrderedDict()
_lock = threading.Lock()


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
    """What the lowering of `graph` depends on, or None when some part of it
    cannot be compared (then nothing is shared)."""
    nodes = graph.topo()
    try:
        key = (tuple((n.op, n.inputs, n.params, n.shape, n.dtype, n.weak) for n in nodes),
               tuple(graph.inputs), tuple(graph.outputs), tuple(graph.role(n.id) for n in nodes),
               _frozen(graph.meta), _frozen(options), target.full_width(), threads.count())
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


def lower(graph: Graph, options: dict):
    """(optimized graph, codegen.Module, loaded module) for `graph` compiled
    with codegen `options`: kept from an equal graph's, or made now."""
    key = _key(graph, options)
    lines = tuple(n.loc for n in graph.topo())
    with _lock:
        kept = _kept.get(key) if key is not None else None
        if kept is not None:
            _kept.move_to_end(key)
    if kept is not None:
        optimized, module, loaded, kept_lines = kept
        if kept_lines == lines:
            return optimized, module, loaded
        mapping = _new_lines(kept_lines, lines)
        if mapping is not None:     # kept with these lines: the next trace is likely from here
            relocated = optimized.relocated(mapping), module, loaded
            with _lock:
                _kept[key] = relocated + (lines,)
            return relocated
    optimized = passes.run(graph)
    module = codegen.generate(optimized, **options)
    loaded = runtime.load(module.source)
    if key is not None:
        with _lock:
            _kept[key] = optimized, module, loaded, lines
            while len(_kept) > MAX_KEPT:
                _kept.popitem(last=False)
    return optimized, module, loaded


def forget() -> None:
    """Drop every kept lowering (tests that change code generation call it)."""
    with _lock:
        _kept.clear()
