"""The workspace: one byte array a compiled function's intermediates are carved from.

`run` used to allocate every intermediate with np.empty and free it after
its last use: about 20 allocations in a W1 step, and an atomic reference
count update each time an array variable is copied or dropped. Instead the
caller passes `ws`, a uint8 array it allocated once for the signature
(graphc.api keeps a pool of them per compiled entry), and `run` takes
views of it (graphc.kernels.alloc.carve) that Numba neither allocates,
frees nor counts.

The plan is made from liveness, on the text of `run`'s body: an
intermediate is live from its allocation line to the last line naming it
or a reshaped view of it. Intermediates whose lives do not overlap share a
slot. Slot sizes are expressions of the arrays' runtime shapes (the max
over the slot's intermediates), so the generated text depends on shapes
only through their expressions: a new batch size reuses the compiled module.
They are evaluated in plain Python, by the module's `new_workspace`, which
writes the slots' offsets into a header at the start of the workspace
(graphc.kernels.alloc.make_workspace); `run` reads them from there.
Never carved: results handed to the caller (a later call would overwrite
them) and arrays whose shape reads another intermediate.
"""
from __future__ import annotations

import collections
import re
from dataclasses import dataclass

import numpy as np

_RESHAPE = re.compile(r"^\s*(v\d+) = alloc\.reshape\((\w+),")
_HANDED_OUT = re.compile(r"^\s*out\d+ = (\w+)\s*$")
_NAME = re.compile(r"\bv\d+\b")
_SHAPE_ENTRY = re.compile(r"\b\w+\.shape\[\d+\]")


@dataclass
class Scratch:
    """An intermediate `run` allocates, which the plan may carve instead."""
    line: str           # its allocation line in the body
    count: str          # the expression for its number of elements
    shape: str          # the expression for its shape tuple
    dtype: str          # as generated code names it (np.float32)
    itemsize: int
    ndim: int


@dataclass
class Plan:
    slots: list[list[str]]          # per slot, the intermediates sharing it, in order
    slot_of: dict[str, int]
    scratch: dict[str, Scratch]

    def slot_bytes(self, k: int) -> str:
        """The expression for slot k's bytes: the most any of its intermediates takes."""
        sizes = list(dict.fromkeys(f"({self.scratch[name].count}) * {self.scratch[name].itemsize}"
                                   for name in self.slots[k]))
        return sizes[0] if len(sizes) == 1 else f"max({', '.join(sizes)})"

    def dims_read(self) -> list[str]:
        """The shape entries the slots' sizes are computed from, as
        expressions: the workspace's header records them, and `run` checks
        them against its own inputs' (never none: Numba cannot index `()`)."""
        found = sorted(set(_SHAPE_ENTRY.findall(" ".join(
            self.slot_bytes(k) for k in range(len(self.slots))))))
        return found or ["0"]

    def header_read(self) -> tuple[list[str], list[str], list[str]]:
        """How `run` reads the header of `ws`: the line that reads it
        (alloc.workspace_header checks it was made for this many slots and
        shape entries), the conditions under which it was made for other
        shapes than `run`'s (codegen raises on them together with its own
        shape tests), and the lines binding the slots' offsets, one a slot.
        The sizes are computed in Python when the workspace is made: in `run`
        their arithmetic doubled a cold compile (W4: 6.7 s to 12.5 s)."""
        dims = self.dims_read()
        return ([f"    ws_h = alloc.workspace_header(ws, {len(self.slots)}, {len(dims)})"],
                [f"ws_h[{k}] != {d}" for k, d in enumerate(dims)],
                [f"    ws_o{k} = alloc.header_item(ws_h, {len(dims) + k})"
                 for k in range(len(self.slots))])

    def carved(self, body: list[str]) -> list[str]:
        """`body` with each planned allocation carved from its slot. A shape
        tuple carved more than once is built once, before the first carve,
        as `ws_shape<k>`: built at each carve, its tuple and shape reads cost
        Numba about 11 of the 18 ms a 2-D carve takes to compile (W2: 19 of its
        41 carves share 4 tuples). Carved shapes read only inputs' shapes."""
        by_line = {s.line: name for name, s in self.scratch.items() if name in self.slot_of}
        uses = collections.Counter(self.scratch[name].shape for name in by_line.values())
        shapes = {shape: f"ws_shape{k}" for k, shape in
                  enumerate(shape for shape in uses if uses[shape] > 1 and shape != "()")}
        named = [f"    {name} = {shape}" for shape, name in shapes.items()]
        out = []
        for line in body:
            name = by_line.get(line)
            if name is None:
                out.append(line)
                continue
            out += named        # before the first carve
            named = []
            s = self.scratch[name]
            out.append(f"    {name} = alloc.carve(ws, ws_o{self.slot_of[name]}, "
                       f"{shapes.get(s.shape, s.shape)}, {s.dtype})"
                       f"  # workspace slot {self.slot_of[name]}")
        return out

    def maker_function(self, params: list[str]) -> str:
        """`new_workspace`, plain Python: a workspace for `run` on arrays of
        these shapes (alloc.make_workspace lays it out)."""
        sizes = "".join(f"        {self.slot_bytes(k)},  # slot {k}\n" for k in range(len(self.slots)))
        return (f"def new_workspace({', '.join(params)}, fill=None):\n"
                '    """A workspace for `run` on arrays of these shapes (only their .shape is\n'
                '    read); `fill`: a byte to fill its slots with (tests poison them)."""\n'
                f"    return alloc.make_workspace((\n{sizes}    ), ({', '.join(self.dims_read())},), fill)\n")


def scratch(name: str, line: str, dims: list[str], dtype: str) -> Scratch | None:
    """The Scratch for an allocation line, or None when its shape reads an
    intermediate (the slots' sizes are computed before any exists)."""
    if any(_NAME.search(d) for d in dims):
        return None
    count = " * ".join(f"({d})" for d in dims) or "1"
    shape = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
    return Scratch(line, count, shape, dtype, np.dtype(dtype.removeprefix("np.")).itemsize,
                   len(dims))


def plan(body: list[str], candidates: dict[str, Scratch]) -> Plan:
    """Slots for `candidates` over `body` (run's complete body, results and
    write-backs included), from the lines where each is live."""
    root = {}
    for line in body:
        m = _RESHAPE.match(line)
        if m:
            src = root.get(m[2], m[2])
            if src in candidates:
                root[m[1]] = src
    handed_out = set()
    for line in body:
        m = _HANDED_OUT.match(line)
        if m:
            handed_out.add(root.get(m[1], m[1]))
    first, last = {}, {}
    for k, line in enumerate(body):
        for name in _NAME.findall(line):
            r = root.get(name, name)
            if r in candidates:
                first.setdefault(r, k)
                last[r] = k
    slots, slot_of, free_after = [], {}, []
    for name in sorted(first, key=first.get):
        if name in handed_out or candidates[name].line != body[first[name]]:
            continue        # handed out, or named before its allocation line
        s = candidates[name]
        free = [k for k in range(len(slots)) if free_after[k] < first[name]]
        # the same size expression first, then the same rank and type, then any
        same = [k for k in free if any(candidates[o].count == s.count and
                                       candidates[o].itemsize == s.itemsize for o in slots[k])]
        alike = [k for k in free if any(candidates[o].ndim == s.ndim for o in slots[k])]
        choice = (same or alike or free or [None])[0]
        if choice is None:
            choice = len(slots)
            slots.append([])
            free_after.append(-1)
        slots[choice].append(name)
        slot_of[name] = choice
        free_after[choice] = last[name]
    return Plan(slots, slot_of, candidates)
