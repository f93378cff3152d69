"""Lowerings kept on disk: a new process skips the passes and code generation
of a graph an earlier one lowered.

graphc.lowering shares an optimized graph and generated module between
equal traces in one process. A new process traced, optimized and generated
its code again, then found the module in the disk cache (graphc.runtime)
and Numba's compiled code beside it. For a 16-step LSTM the passes and the
code generation were 0.5 s of a 0.9 s warm first call. This file keeps them
beside the module: `graphc_<key>.lowered`, a pickle of the optimized graph
and the codegen.Module, under a header holding a hash of its body.

The key is a hash of everything the in-process key compares, written out
value by value (`_encoded`: types and values, never `hash()`, which differs
between processes), and of what a process gets from elsewhere: graphc's and
its kernels' sources, the Python, NumPy, Numba and networkx versions, and
the CPU's features. Only the rules graphc was imported with count: after a
test or script rebinds a name of a module the passes and code generation
read (lowering._RULES; `codegen.SHORT_ROW = 8`), its lowerings are made in
the process and kept there alone. Nor is a graph kept whose key holds a value
`_encoded` does not know (a Python object of the user's), or one with more
than MAX_CONST_BYTES of constants: a data set the loss closes over would be
written again for every new draw.

The file is a pickle, which runs code when read, so it is read only from
the private cache directory and only if no other user could have written it
(runtime.checked_body). The optimized graph is stored without its `meta`
(pytree structures, which may name the user's classes): the passes copy it
from the trace unchanged, so the reading process puts its own trace's there.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import pathlib
import pickle
import platform
import struct
import sys

import numpy as np

import graphc
from graphc import cache_limit, codegen, pytree, runtime, target
from graphc.ir import ConstValue, Graph

MAX_CONST_BYTES = 1 << 20
_FORMAT = b"graphc-lowering 1\n"

_shipped_rules = None       # lowering._rules() as graphc was imported


def note_shipped_rules(rules: tuple) -> None:
    """Remember the rules graphc was imported with (graphc/__init__.py)."""
    global _shipped_rules
    _shipped_rules = rules


class _Unknown(Exception):
    """A value whose encoding would not say the same thing in every process."""


def _encoded(value, out: list) -> None:
    """Append a byte encoding of `value` to `out`, equal in every process
    exactly when the values are equal (with their types: 1, 1.0 and True
    differ)."""
    kind = type(value)
    if value is None or value is Ellipsis:
        out.append(b"N" if value is None else b"E")
    elif kind is bool:
        out.append(b"T" if value else b"F")
    elif kind is int:
        out.append(b"i%d;" % value)
    elif kind is float:
        out.append(b"f" + struct.pack("<d", value))
    elif kind is complex:
        out.append(b"c" + struct.pack("<dd", value.real, value.imag))
    elif kind is str or kind is bytes:
        data = value.encode("utf-8", "surrogatepass") if kind is str else value
        out.append(b"s%d:" % len(data) if kind is str else b"b%d:" % len(data))
        out.append(data)
    elif kind is tuple or kind is list:
        out.append(b"(%d:" % len(value) if kind is tuple else b"[%d:" % len(value))
        for item in value:
            _encoded(item, out)
    elif kind is slice:
        out.append(b"S")
        _encoded((value.start, value.stop, value.step), out)
    elif kind is ConstValue:
        out.append(b"C")
        _encoded(value._key, out)       # dtype, shape and a digest of the bytes
    elif isinstance(value, np.dtype):
        out.append(b"D")
        _encoded(repr(value), out)      # names a structured dtype's fields too
    elif isinstance(value, np.generic):
        out.append(b"G")
        _encoded((repr(value.dtype), value.tobytes()), out)
    elif kind is pytree.TreeDef:
        out.append(b"P")
        _encoded((value.kind, value.keys, value.children, value.node_type), out)
    elif kind is type:
        out.append(b"t")                # a namedtuple's class: its fields are the TreeDef's keys
        _encoded((value.__module__, value.__qualname__), out)
    else:
        raise _Unknown(kind.__name__)


@functools.cache
def _environment() -> bytes:
    """What a lowering depends on beyond the graph, for this process."""
    import networkx
    import numba
    from graphc import kernels
    sources = kernels.files_fingerprint(pathlib.Path(graphc.__file__).resolve().parent, "**/*.py")
    out: list = []
    _encoded((graphc.__version__, sources, runtime.kernels_fingerprint(), sys.version,
              np.__version__, numba.__version__, networkx.__version__, platform.machine(),
              sorted((target.host_features() or {}).items())), out)
    return b"".join(out)


def name(key: tuple, rules: tuple, const_bytes: int) -> str | None:
    """The file name of the lowering of a graph with the in-process key
    `key` made under `rules` (lowering._rules()), or None when it is not
    kept on disk."""
    if rules != _shipped_rules or const_bytes > MAX_CONST_BYTES:     # by identity: lowering._Same
        return None
    out = [_environment()]
    try:
        _encoded(key, out)
    except _Unknown:
        return None
    return f"graphc_{hashlib.sha256(b''.join(out)).hexdigest()[:32]}.lowered"


def read(file_name: str, meta: dict):
    """(optimized graph, codegen.Module, the trace's lines) stored under
    `file_name`, the graph given `meta`; None if there is none to use."""
    path = runtime.usable_dir() / file_name
    body = runtime.checked_body(path, _FORMAT)
    if body is None:
        return None
    cache_limit.mark_used(path)
    try:
        optimized, module, lines = pickle.loads(body)
    except Exception:   # noqa: BLE001 - not one graphc wrote as this key says: made again
        return None
    if not (isinstance(optimized, Graph) and isinstance(module, codegen.Module)
            and isinstance(lines, tuple)):
        return None
    optimized.meta = dict(meta)
    return optimized, module, lines


def write(file_name: str, optimized, module, lines: tuple) -> None:
    """Store a lowering for later processes (nothing if it cannot be)."""
    bare = copy.copy(optimized)
    bare.meta = {}
    try:
        body = pickle.dumps((bare, module, lines), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:   # noqa: BLE001 - a value pickle cannot take: this lowering stays in the process
        return
    directory = runtime.usable_dir()
    if runtime.write_checked(directory / file_name, _FORMAT, body):
        cache_limit.after_write(directory)
