"""A compiled step's steady-state call, written out as Python for its layout.

A training loop passes the same parameter and moment arrays every step and
batches of one shape. train._LastCall binds that step's arrays to a function
made here, which tests them by identity and calls the driver. The function's
source depends only on the layout: how many arrays each container holds,
how many optimizer slots and batch arrays there are, which inputs the driver
never reads, whether it takes a workspace and a thread count. The arrays,
keys and shapes are the factory's arguments, so a layout compiles once per
process and binding a new set of arrays costs a call.

Each test is written out: through loops over the containers and the batch,
W1's call spent 1.55 us in Python around its driver, 0.95 us so
(benchmarks/bench_call_overhead.py). It writes out what api._Entry's
`_call`, `take_workspace`, `give_back` and `tail_args` do: a change there
belongs here too.

    >>> print(source(Layout(n_keys=1, n_slots=0, n_batch=1, unread_batch=(),
    ...                     count_unread=True, workspace=False, parallel=False, n_consts=0)))
    ... # doctest: +ELLIPSIS
    def make(container, slots, keys, state, shapes, consts, entry, memory):
        k0, = keys
        s0, = state
    ...
            outs = driver(s0, unread, b0)
    ...
"""
from __future__ import annotations

import functools
import linecache
from typing import NamedTuple

import numpy as np

from graphc import api, codegen, errors, threads

COUNT_END = 2 ** 63     # the step count is an int64 in the driver


class Layout(NamedTuple):
    n_keys: int                 # arrays in the params' container (and in each slot's)
    n_slots: int                # optimizer moment slots (step.state[name]), sorted
    n_batch: int                # batch arrays after (params, step_state)
    unread_batch: tuple         # batch positions the driver never reads
    count_unread: bool          # the driver never reads the step count (SGD)
    workspace: bool             # the driver takes a workspace
    parallel: bool              # ... and a thread count
    n_consts: int               # constant arrays after the batch
    aux: bool = False           # return all the driver's outputs (loss, aux), not the loss


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def _unpack(names: list[str], value: str, indent: int = 4) -> str | None:
    """`a, b = value` (None, a line left out, when there are no names)."""
    targets = ", ".join(names) + ("," if len(names) == 1 else "")
    return f"{' ' * indent}{targets} = {value}" if names else None


def _container_test(value: str, state: list[str], keys: list[str]) -> list[str]:
    tests = ["type(d) is not container", f"len(d) != {len(keys)}"] + [
        f"d[{k}] is not {s}" for k, s in zip(keys, state)]
    return [f"            d = {value}",
            f"            if {' or '.join(tests)}:",
            "                return None"]


def _batch_test(b: str, shape: str) -> list[str]:
    # may_alias's common cases written out: an array owning its memory, a view of one
    return [f"        if type({b}) is not ndarray or {b}.shape != {shape}:",
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
    keys = _names("k", layout.n_keys)
    state = _names("s", layout.n_keys * (1 + layout.n_slots))
    slots, batch = _names("slot", layout.n_slots), _names("b", layout.n_batch)
    shapes, consts = _names("shape", layout.n_batch), _names("c", layout.n_consts)
    lines = ["def make(container, slots, keys, state, shapes, consts, entry, memory):",
             _unpack(keys, "keys"), _unpack(state, "state"), _unpack(slots, "slots"),
             _unpack(shapes, "shapes"), _unpack(consts, "consts"),
             "    driver, pool, keep = entry.driver, entry.workspaces, api.KEEP_WORKSPACE_BYTES",
             "    roots, may_alias = memory.roots, memory.may_alias",
             "    def call(params, step_state, batch):",
             f"        if len(batch) != {layout.n_batch}:",
             "            return None",
             _unpack(batch, "batch", indent=8),
             "        try:"]
    n = layout.n_keys
    lines += _container_test("params", state[:n], keys)
    for i, slot in enumerate(slots):
        lines += _container_test(f"step_state.get({slot})", state[(i + 1) * n:(i + 2) * n], keys)
    lines += ['            count = step_state["count"]',
              "        except (KeyError, TypeError, AttributeError):    # (step.state not a dict)",
              "            return None"]
    for b, shape in zip(batch, shapes):
        lines += _batch_test(b, shape)
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
    namespace = {"np": np, "ndarray": np.ndarray, "api": api, "threads": threads,
                 "refused_type": api.refused_type, "NATIVE_ERRORS": errors.NATIVE_ERRORS,
                 "from_native": errors.from_native, "SHAPES_CHANGED": codegen.SHAPES_CHANGED,
                 "unread": api.UNREAD, "COUNT_END": COUNT_END}
    text, filename = source(layout), f"<graphc steady call {tuple(layout)}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)  # tracebacks
    exec(compile(text, filename, "exec"), namespace)
    return namespace["make"]
