"""A compiled step's steady-state call, written out as Python for its layout.

A training loop passes the same parameter and moment arrays every step and
batches of one shape. train._LastCall binds that step's arrays to a function
made here, which tests them by identity and calls the driver. The function's
source depends only on the layout: the shape of the params' tree (see
tree_shape), how many optimizer slots and batch arrays there are, which
inputs the driver never reads, whether it takes a workspace and a thread
count. The arrays, container types, keys and shapes are the factory's
arguments, so a layout compiles once per process and binding a new set of
arrays costs a call. Exported steps (graphc/export.py) carry the factory's
source for their layouts.

Each test is written out: through loops over the containers and the batch,
W1's call spent 1.55 us in Python around its driver, 0.95 us so
(benchmarks/bench_call_overhead.py). It writes out what api._Entry's
`_call`, `take_workspace`, `give_back` and `tail_args` do: a change there
belongs here too.

    >>> print(source(Layout(tree=(True, LEAF, LEAF), n_slots=0, n_batch=1, unread_batch=(),
    ...                     count_unread=True, workspace=False, parallel=False, n_consts=0)))
    ... # doctest: +ELLIPSIS
    def make(types, slots, keys, state, state_shapes, shapes, dtypes, consts, entry, memory):
        t0, = types
        k0, k1 = keys
        s0, s1 = state
    ...
            if type(d) is not t0 or len(d) != 2 or d[k0] is not s0 or d[k1] is not s1:
                return None
    ...
            outs = driver(s0, s1, unread, b0)
    ...
"""
from __future__ import annotations

import functools
import itertools
import linecache
from typing import NamedTuple

import numpy as np

from graphc import api, codegen, errors, pytree, threads

COUNT_END = 2 ** 63     # the step count is an int64 in the driver


class Layout(NamedTuple):
    tree: object                # the params' tree_shape (each slot's is the same)
    n_slots: int                # optimizer moment slots (step.state[name]), sorted
    n_batch: int                # batch arrays after (params, step_state)
    unread_batch: tuple         # batch positions the driver never reads
    count_unread: bool          # the driver never reads the step count (SGD)
    workspace: bool             # the driver takes a workspace
    parallel: bool              # ... and a thread count
    n_consts: int               # constant arrays after the batch
    aux: bool = False           # return all the driver's outputs (loss, aux), not the loss
    untied: tuple = ()          # state arrays whose shapes the driver cannot see change


LEAF, NONE = "leaf", "none"


def layout_of(treedef: pytree.TreeDef, n_slots: int, module: codegen.Module, n_inputs: int,
              n_consts: int, aux: bool) -> Layout:
    """The layout of a step whose driver is `module`'s `run`, of `n_inputs`
    inputs: the state arrays (params, then each slot's), the count, the batch."""
    n_state = treedef.num_leaves * (1 + n_slots)
    first = n_state + 1             # the batch's first input position
    return Layout(
        tree=tree_shape(treedef), n_slots=n_slots, n_batch=n_inputs - first,
        unread_batch=tuple(sorted(k - first for k in module.unread_inputs if k >= first)),
        count_unread=n_state in module.unread_inputs, workspace=bool(module.workspace),
        parallel=module.parallel, n_consts=n_consts, aux=aux,
        untied=tuple(sorted(k for k in module.untied_inputs if k < n_state)))


def tree_shape(treedef: pytree.TreeDef):
    """What the written-out tests of a params tree depend on: LEAF, NONE, or
    for a container (whether it is a dict, its children's shapes...). The
    containers' types and the dicts' keys are the factory's arguments (see
    containers), so trees of one shape share a layout."""
    if treedef.kind in (LEAF, NONE):
        return treedef.kind
    return (treedef.kind == "dict", *map(tree_shape, treedef.children))


def containers(tree, types: list, keys: list) -> None:
    """Append each container's type and each dict's keys (sorted by repr, as
    pytree flattens them) in `tree`, in the order the tests name them (a
    container, then its keys, then the containers among its children): the
    factory's `types` and `keys` are these of the params, then of each slot's
    tree. A key equal to one of these but of another type (np.str_("W") for
    "W") finds the same array, which the step then updates: the call stays
    steady, though the checked path refuses such a tree (it flattens in
    another order); a test of every key's type cost W4's call 0.45 us.
    Plain Python: exported steps carry its source."""
    if isinstance(tree, dict):
        types.append(type(tree))
        ordered = sorted(tree, key=repr)
        keys.extend(ordered)
        for key in ordered:
            containers(tree[key], types, keys)
    elif isinstance(tree, (list, tuple)):
        types.append(type(tree))
        for child in tree:
            containers(child, types, keys)


def num_leaves(shape) -> int:
    return 1 if shape == LEAF else 0 if shape == NONE else sum(map(num_leaves, shape[1:]))


def num_names(shape) -> tuple[int, int]:
    """How many containers and dict keys a tree of `shape` has."""
    if shape in (LEAF, NONE):
        return 0, 0
    inner = [num_names(child) for child in shape[1:]]
    return (1 + sum(t for t, _ in inner),
            (len(shape) - 1 if shape[0] else 0) + sum(k for _, k in inner))


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def _unpack(names: list[str], value: str, indent: int = 4) -> str | None:
    """`a, b = value` (None, a line left out, when there are no names)."""
    targets = ", ".join(names) + ("," if len(names) == 1 else "")
    return f"{' ' * indent}{targets} = {value}" if names else None


def _tree_test(value: str, shape, state: list[str], types, keys) -> list[str]:
    """Lines (in the call's `try`) that return None unless `value` is a tree
    of `shape` with the containers' types t<i>, the dicts' keys k<j> (i and j
    taken from the counters `types` and `keys`) and the leaves `state` (the
    same objects), in the order of `containers`."""
    lines: list[str] = []

    def visit(var: str, shape, leaves: list[str]) -> None:
        if shape in (LEAF, NONE):      # the params are one array, or None
            held = leaves[0] if shape == LEAF else "None"
            lines.extend([f"            if {var} is not {held}:", "                return None"])
            return
        children = shape[1:]
        tests = [f"type({var}) is not t{next(types)}", f"len({var}) != {len(children)}"]
        indices = [f"k{next(keys)}" if shape[0] else str(i) for i in range(len(children))]
        inner, first = [], 0
        for index, child in zip(indices, children):
            own = leaves[first:first + num_leaves(child)]     # the leaves in flatten order
            first += len(own)
            if child == LEAF:
                tests.append(f"{var}[{index}] is not {own[0]}")
            elif child == NONE:
                tests.append(f"{var}[{index}] is not None")
            else:
                inner.append((f"{var}[{index}]", child, own))
        lines.extend([f"            if {' or '.join(tests)}:", "                return None"])
        for item, child, own in inner:
            name = f"d{len(lines)}"
            lines.append(f"            {name} = {item}")
            visit(name, child, own)

    lines.append(f"            d = {value}")
    visit("d", shape, state)
    return lines


def _batch_test(b: str, shape: str, dtype: str | None) -> list[str]:
    # `dtype` for an input the driver never reads, which cannot refuse another;
    # may_alias's common cases written out: an array owning its memory, a view of one
    of_dtype = f" or {b}.dtype != {dtype}" if dtype else ""
    return [f"        if type({b}) is not ndarray or {b}.shape != {shape}{of_dtype}:",
            "            return None",
            f"        base = {b}.base",
            "        if base is None:",
            f"            if id({b}) in roots:",
            "                return None     # the checked path copies it",
            "        elif type(base) is not ndarray or base.base is not None or id(base) in roots:",
            f"            if may_alias({b}):",
            "                return None"]


@functools.lru_cache(maxsize=256)
def source(layout: Layout) -> str:
    """The factory `make(...)` for `layout`: it returns call(params,
    step_state, batch), the step's loss (with layout.aux, all the driver's
    outputs: the loss, then the aux) when these are the arrays it was made
    with, else None, and then nothing has run or been written (the checked
    path converts or explains)."""
    n, trees = num_leaves(layout.tree), 1 + layout.n_slots
    n_types, n_keys = num_names(layout.tree)
    types, keys = _names("t", n_types * trees), _names("k", n_keys * trees)
    state = _names("s", n * (1 + layout.n_slots))
    slots, batch = _names("slot", layout.n_slots), _names("b", layout.n_batch)
    state_shapes = _names("z", len(state))
    shapes, consts = _names("shape", layout.n_batch), _names("c", layout.n_consts)
    dtypes = [f"dtype{i}" for i in layout.unread_batch]
    lines = ["def make(types, slots, keys, state, state_shapes, shapes, dtypes, consts, entry, "
             "memory):",
             _unpack(types, "types"), _unpack(keys, "keys"), _unpack(state, "state"),
             _unpack(state_shapes, "state_shapes"), _unpack(slots, "slots"),
             _unpack(shapes, "shapes"), _unpack(dtypes, "dtypes"), _unpack(consts, "consts"),
             "    driver, pool, keep = entry.driver, entry.workspaces, KEEP_WORKSPACE_BYTES",
             "    roots, may_alias = memory.roots, memory.may_alias",
             "    def call(params, step_state, batch):",
             f"        if len(batch) != {layout.n_batch}:",
             "            return None",
             _unpack(batch, "batch", indent=8),
             "        try:"]
    type_count, key_count = itertools.count(), itertools.count()
    for i, tree in enumerate(["params"] + [f"step_state[{slot}]" for slot in slots]):
        lines += _tree_test(tree, layout.tree, state[i * n:(i + 1) * n], type_count, key_count)
    lines += ['            count = step_state["count"]',
              "        except (KeyError, TypeError, AttributeError):    # (step.state not a dict)",
              "            return None"]
    # an array reshaped in place (a.shape = ...) whose dims the driver compares
    # with no other's (codegen.Module.untied_inputs): 50 ns a test
    for first in range(0, len(layout.untied), 4):
        tests = [f"{state[k]}.shape != {state_shapes[k]}" for k in layout.untied[first:first + 4]]
        lines += [f"        if {' or '.join(tests)}:", "            return None"]
    unread = dict(zip(layout.unread_batch, dtypes))
    for i, (b, shape) in enumerate(zip(batch, shapes)):
        lines += _batch_test(b, shape, unread.get(i))
    lines += ["        if type(count) is not int or not 0 <= count < COUNT_END:",
              "            return None         # the checked path says what is wrong with it"]
    count_arg = "unread" if layout.count_unread else "np.array(count, np.int64)"
    passed = ["unread" if i in layout.unread_batch else b for i, b in enumerate(batch)]
    tail = ["ws"] * layout.workspace + ["threads.count()"] * layout.parallel
    if layout.workspace:
        lines += ["        try:",
                  "            ws = pool.pop()",
                  "        except IndexError:",
                  "            ws = entry.new_workspace()"]
    lines += ["        try:",
              f"            outs = driver({', '.join(state + [count_arg] + passed + consts + tail)})",
              "        except TypeError as e:",
              "            if refused_type(e):",
              "                return None",
              "            raise",
              "        except NATIVE_ERRORS as e:",
              "            if str(e).startswith(SHAPES_CHANGED):     # nothing ran",
              "                return None",
              "            raise from_native(e, graph=entry.optimized) from None"]
    if layout.workspace:    # not after an error: see _Entry.give_back
        lines += ["        if ws.size <= keep:",
                  "            pool.append(ws)"]
    lines += ["        return outs" if layout.aux else "        return outs[0]",
              "    return call"]
    return "\n".join(line for line in lines if line is not None) + "\n"


@functools.lru_cache(maxsize=256)
def factory(layout: Layout):
    """`source(layout)`'s make, compiled once per process."""
    namespace = {"np": np, "ndarray": np.ndarray, "threads": threads,
                 "KEEP_WORKSPACE_BYTES": api.KEEP_WORKSPACE_BYTES,
                 "refused_type": api.refused_type, "NATIVE_ERRORS": errors.NATIVE_ERRORS,
                 "from_native": errors.from_native, "SHAPES_CHANGED": codegen.SHAPES_CHANGED,
                 "unread": api.UNREAD, "COUNT_END": COUNT_END}
    text, filename = source(layout), f"<graphc steady call {tuple(layout)}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)  # tracebacks
    exec(compile(text, filename, "exec"), namespace)
    return namespace["make"]
