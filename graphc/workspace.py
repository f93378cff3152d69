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
slot. Slot sizes are computed from the arrays' runtime shapes (the max over
the slot's intermediates), so the generated text depends on shapes only
through their expressions: a new batch size reuses the compiled module.
Never carved: results handed to the caller (a later call would overwrite
them) and arrays whose shape reads another intermediate.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from graphc.kernels.alloc import WORKSPACE_ALIGN

_RESHAPE = re.compile(r"^\s*(v\d+) = alloc\.reshape\((\w+),")
_HANDED_OUT = re.compile(r"^\s*out\d+ = (\w+)\s*$")
_NAME = re.compile(r"\bv\d+\b")


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
        sizes = [_padded_bytes(self.scratch[name]) for name in self.slots[k]]
        return sizes[0] if len(sizes) == 1 else f"max({', '.join(sizes)})"

    def sizes(self) -> list[str]:
        """Lines setting ws_n<k>, the bytes of slot k (the same text in Python and Numba)."""
        return [f"ws_n{k} = {self.slot_bytes(k)}" for k in range(len(self.slots))]

    def total(self) -> str:
        """The bytes needed, with room to align the first slot."""
        return " + ".join([f"ws_n{k}" for k in range(len(self.slots))] + [str(WORKSPACE_ALIGN)])

    def prologue(self) -> list[str]:
        """`run`'s first lines: the slots' offsets in `ws`, after checking its size."""
        lines = self.sizes() + [
            f"if ws.size < {self.total()}:",
            "    raise ValueError('graphc: the workspace passed is smaller than this call needs')",
            "ws_o0 = alloc.aligned_start(ws)"]
        lines += [f"ws_o{k} = ws_o{k - 1} + ws_n{k - 1}" for k in range(1, len(self.slots))]
        return ["    " + line for line in lines]

    def carved(self, body: list[str]) -> list[str]:
        """`body` with each planned allocation carved from its slot."""
        by_line = {s.line: name for name, s in self.scratch.items() if name in self.slot_of}
        out = []
        for line in body:
            name = by_line.get(line)
            if name is None:
                out.append(line)
                continue
            s = self.scratch[name]
            out.append(f"    {name} = alloc.carve(ws, ws_o{self.slot_of[name]}, {s.shape}, {s.dtype})"
                       f"  # workspace slot {self.slot_of[name]}")
        return out

    def size_function(self, params: list[str]) -> str:
        """`workspace_bytes`, plain Python: the size of `ws` for arrays of these shapes."""
        return "\n".join(
            [f"def workspace_bytes({', '.join(params)}):",
             '    """The bytes of `ws` that `run` needs for arrays of these shapes (only'
             ' their .shape is read)."""']
            + ["    " + line for line in self.sizes()]
            + [f"    return {self.total()}"]) + "\n"


def _padded_bytes(s: Scratch) -> str:
    """Its bytes, rounded up so the next slot stays aligned."""
    a = WORKSPACE_ALIGN
    return f"-(-({s.count}) * {s.itemsize} // {a}) * {a}"


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
