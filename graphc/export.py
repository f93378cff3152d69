"""gc.export: write a compiled step as a standalone module (NumPy + Numba only).

The module holds the generated Numba source of every signature the step was
called with (renamed so they can sit side by side), the constants and the
optimizer state at export time (as an embedded .npz), and a small `step`
function with the same semantics as graphc's: validate, run, copy in place.
As graphc's step, it tests a call with the arrays of the call before by
identity and skips the rest of the validation.
"""
from __future__ import annotations

import base64
import importlib
import inspect
import io
import re

import numpy as np

from graphc import api, codegen, errors, pytree

_TEMPLATE = '''\
"""Standalone training step exported by graphc {version}.

Needs only NumPy and Numba. `step(params, *batch) -> loss` updates `params`
in place and continues from `state` (the optimizer state at export time).
Supported signatures (parameter and batch shapes) are those the step was
called with before export.
"""
import base64
import io
import sys

import numpy as np
from numba import njit

{embedded}
{kernels}

# ---------------------------------------------------------------- data
# The optimizer state and constants at export time, as an embedded .npz.
_BLOB = (
{blob}
)
# decoded once: an NpzFile reads and parses its zip member at each lookup
# (45 of W1's 64 us a step, when `step` looked its constants up there)
with np.load(io.BytesIO(base64.b64decode(_BLOB))) as _npz:
    _ARRAYS = dict(_npz)
_STRUCTURE = {structure!r}      # the params pytree: 1 at each leaf, None where params hold None
_SLOTS = {slots!r}
_HAS_AUX = {has_aux!r}      # the step returns (loss, aux): aux trees per signature, as _STRUCTURE
_SIGNATURES = {{
{signatures}
}}
_WORKSPACES = {{}}
_KEEP_WORKSPACE_BYTES = {keep_bytes}   # only workspaces this small are kept between calls


def _flatten(tree, out):
    if isinstance(tree, dict):
        for key in sorted(tree, key=repr):
            _flatten(tree[key], out)
    elif isinstance(tree, (list, tuple)):
        for child in tree:
            _flatten(child, out)
    elif tree is not None:
        out.append(tree)
    return out


# a namedtuple's fields are compared, and rebuilt, as a plain tuple's: this
# module cannot import the class it was exported with
def _shape_of(tree):
    if isinstance(tree, dict):
        return {{k: _shape_of(v) for k, v in tree.items()}}
    if isinstance(tree, (list, tuple)):
        return (list if isinstance(tree, list) else tuple)(_shape_of(v) for v in tree)
    return None if tree is None else 1


def _unflatten(structure, leaves):
    if isinstance(structure, dict):
        return {{k: _unflatten(structure[k], leaves) for k in sorted(structure, key=repr)}}
    if isinstance(structure, (list, tuple)):
        return type(structure)(_unflatten(c, leaves) for c in structure)
    return None if structure is None else leaves.pop(0)


_NUM_PARAMS = {num_params}
_SLOT_ORDER = sorted(_SLOTS)    # the state's order: params, then each slot's arrays
# params in one container of arrays: the keys its leaves are flattened in
if isinstance(_STRUCTURE, dict) and all(v == 1 for v in _STRUCTURE.values()):
    _FLAT_KEYS = sorted(_STRUCTURE, key=repr)
elif isinstance(_STRUCTURE, (list, tuple)) and all(v == 1 for v in _STRUCTURE):
    _FLAT_KEYS = range(_NUM_PARAMS)
else:
    _FLAT_KEYS = None

state = {{"count": {count}}}
for _name in _SLOTS:
    state[_name] = _unflatten(_STRUCTURE, [_ARRAYS[f"{{_name}}_{{i}}"].copy()
                                           for i in range({num_params})])


def _shapes(signature):
    return "(" + ", ".join(f"{{np.dtype(dtype).name}}{{list(shape)}}"
                           for shape, dtype in signature) + ")"


def _contiguous(b):
    # not np.ascontiguousarray alone: it makes a 0-d array (a scalar argument) 1-d
    b = np.asarray(b)
    return b if b.flags.c_contiguous else np.ascontiguousarray(b)


def _owner(a):
    """The object that owns `a`'s memory: the end of its chain of `.base`s."""
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


def _unaliased(data, state):
    """`data` with a copy of each array that shares memory with a state array
    (params and moment slots: `run` writes those in place, and the batch is
    read as it was at the call); two state arrays sharing memory are refused.
    Arrays whose owners differ and are arrays share no memory: only arrays
    of one owner, or of other buffers (memory-mapped files), are compared."""
    owners = [_owner(s) for s in state]
    ids = {{id(o) for o in owners}}
    arrays_own = all(type(o) is np.ndarray for o in owners)
    if len(ids) < len(state) or not arrays_own:
        for k, leaf in enumerate(state):
            if any(np.may_share_memory(leaf, other) for other in state[:k]):
                raise ValueError("two parameters or moment slots share memory; the step "
                                 "writes each one in place, pass separate arrays (x.copy())")
    for k, b in enumerate(data):
        owner = _owner(b)
        if (id(owner) in ids or not (arrays_own or type(owner) is np.ndarray)) and any(
                np.may_share_memory(b, s) for s in state):
            data[k] = b.copy()
    return data


# The last checked call: a training loop passes the same params and state
# arrays each step, and batches of one signature; such a call skips the
# flattening into a signature key and the lookup (W1: 64 -> 9 us a step).
# One entry, (state arrays, their (shape, dtype)s, the batch's, the ids of
# the state arrays' memory owners, the signature's (run, consts,
# new_workspace, free workspaces)); it holds the state arrays, as graphc's
# step does, so that their ids stay theirs.
_LAST = []


def _steady_inputs(params, batch):
    """The inputs for `run` when params and state hold the arrays of the last
    checked call, unchanged in shape, dtype and layout, and the batch is
    arrays of that call's batch signature owning memory apart from the
    state's; else None (the checked path converts, copies or explains)."""
    if not _LAST:
        return None
    state_leaves, state_avals, batch_avals, state_owners, entry = _LAST[0]
    n = _NUM_PARAMS
    if not _holds_leaves(params, state_leaves[:n]):
        return None
    for k, name in enumerate(_SLOT_ORDER, 1):
        if not _holds_leaves(state[name], state_leaves[k * n:(k + 1) * n]):
            return None
    # each can change in place; the slots too (the checked path's signature
    # lookup covers their shapes and dtypes, and `run` writes them)
    for leaf, (shape, dtype) in zip(state_leaves, state_avals):
        flags = leaf.flags
        if leaf.shape != shape or leaf.dtype != dtype or not (
                flags.writeable and flags.c_contiguous):
            return None
    data = _flatten(list(batch), [])
    if len(data) != len(batch_avals):
        return None
    for b, (shape, dtype) in zip(data, batch_avals):
        if type(b) is not np.ndarray or b.shape != shape or b.dtype != dtype or not (
                b.flags.c_contiguous):
            return None
        owner = _owner(b)
        if type(owner) is not np.ndarray or id(owner) in state_owners:
            return None     # may share memory with the state: copied on the checked path
    count = np.asarray(state["count"], np.int64)
    if count.shape:
        return None     # the checked path says no signature takes it
    return state_leaves + [count] + data, entry


def _holds_leaves(tree, leaves):
    """Whether `tree` has the params' structure and `leaves` as its leaves, the
    same objects; a container of arrays is tested by key, without flattening."""
    if _FLAT_KEYS is not None and (type(tree) is type(_STRUCTURE) or (
            type(_STRUCTURE) is tuple and isinstance(tree, tuple))):    # a namedtuple too
        if len(tree) != _NUM_PARAMS:
            return False
        for key, leaf in zip(_FLAT_KEYS, leaves):
            if tree.get(key) is not leaf if type(tree) is dict else tree[key] is not leaf:
                return False
        return True
    return _shape_of(tree) == _STRUCTURE and all(
        a is b for a, b in zip(_flatten(tree, []), leaves))


def _checked_inputs(params, batch):
    """The inputs for `run` and its signature's entry, every argument checked."""
    if _shape_of(params) != _STRUCTURE:
        raise TypeError(f"params have structure {{_shape_of(params)}}, expected {{_STRUCTURE}}")
    leaves = _flatten(params, [])
    slot_leaves = [leaf for name in _SLOT_ORDER for leaf in _flatten(state[name], [])]
    count = np.asarray(state["count"], np.int64)
    data = [_contiguous(b) for b in _flatten(list(batch), [])]
    inputs = leaves + slot_leaves + [count] + data
    key = tuple((tuple(a.shape), np.asarray(a).dtype.str) for a in inputs)
    if key not in _SIGNATURES:
        # name the part that differs: the batch (most often), else the params
        batches = [k[len(k) - len(data):] for k in _SIGNATURES]
        batch = key[len(key) - len(data):]
        what = ("the params' shapes or dtypes" if batch in batches
                else f"the batch {{_shapes(batch)}}")
        raise TypeError(f"no exported signature matches {{what}}; exported batches: "
                        + "; ".join(_shapes(b) for b in batches))
    run, consts, new_workspace, aux = _SIGNATURES[key]
    for leaf in leaves:
        if not leaf.flags.writeable or not leaf.flags.c_contiguous:
            raise ValueError("parameters must be writable C-contiguous arrays")
    state_leaves = leaves + slot_leaves
    data = _unaliased(data, state_leaves)
    entry = (run, [_ARRAYS[c] for c in consts], new_workspace, _WORKSPACES.setdefault(key, []),
             aux)
    owners = [_owner(s) for s in state_leaves]
    if all(type(o) is np.ndarray for o in owners):
        _LAST[:] = [(state_leaves, [(s.shape, s.dtype) for s in state_leaves],
                     [(b.shape, b.dtype) for b in data], {{id(o) for o in owners}}, entry)]
    return state_leaves + [count] + data, entry


def step(params, *batch):
    """One fused forward + backward + update; returns the loss before the update
    (with the aux, computed before it too, for a step made with has_aux=True)."""
    inputs, (run, consts, new_workspace, free, aux) = (
        _steady_inputs(params, batch) or _checked_inputs(params, batch))
    # `run` writes the new params and moment slots into their arrays itself
    if new_workspace is None:
        outs = run(*inputs, *consts)
    else:
        # the scratch memory `run` carves its intermediates from, kept for the
        # next call (one per call running at once: list.pop/append are atomic)
        try:
            ws = free.pop()
        except IndexError:
            ws = new_workspace(*inputs, *consts)
        outs = run(*inputs, *consts, ws)
        if ws.size <= _KEEP_WORKSPACE_BYTES:
            free.append(ws)
    state["count"] += 1
    if not _HAS_AUX:
        return float(outs[0])
    # the loss and the aux tree, whose 0-d results come back as scalars
    structure, dtypes = aux
    return float(outs[0]), _unflatten(structure, [out if dtype is None else np.array(out, dtype)
                                                  for out, dtype in zip(outs[1:], dtypes)])
'''


def _renamed(source: str, k: int) -> str:
    """Module source with `run`, its parts and the kernels renamed for signature k,
    imports dropped."""
    body = source.split("FASTMATH = ", 1)[1].split("\n", 1)[1]
    body = re.split(r"^(?:@.*\n)+def train_epoch\(", body, maxsplit=1, flags=re.M)[0]   # and its decorators
    body = re.sub(r"\bk(\d+)_", rf"s{k}_k\1_", body)
    body = re.sub(r"\brun_part(\d+)\b", rf"s{k}_run_part\1", body)     # graphc.repeats
    body = body.replace("def run(", f"def run_{k}(")
    body = body.replace("def new_workspace(", f"def new_workspace_{k}(")
    return body


# the graphc.kernels modules an exported step may call, each after those it imports
_KERNEL_MODULES = ("dispatch", "vmath", "trig", "transpose", "mkl_library", "blas_library",
                   "small_gemm", "blas", "alloc", "sums", "softmax", "shapes", "order", "linalg",
                   "pieces")
_KERNEL_IMPORT = re.compile(r"^from graphc\.kernels import (\w+(?:, \w+)*)\n", re.M)


def _kernel_source(name: str) -> str:
    return inspect.getsource(importlib.import_module(f"graphc.kernels.{name}"))


def _kernels_needed(kernels: list[str]) -> list[str]:
    """The kernel modules the generated code calls (vmath.exp, blas.gemm, ...) and
    the ones they import, in _KERNEL_MODULES order."""
    needed = {name for name in _KERNEL_MODULES if any(f"{name}." in k for k in kernels)}
    for name in reversed(_KERNEL_MODULES):      # importers come after what they import
        if name in needed:
            for imported in _KERNEL_IMPORT.findall(_kernel_source(name)):
                needed.update(imported.split(", "))
    return [name for name in _KERNEL_MODULES if name in needed]


def _embedded(name: str) -> str:
    """The source of graphc.kernels.<name>, bound to `name` in the exported module
    (its imports of other kernel modules dropped: they are embedded too, and
    bound to their names the same way)."""
    return (f"# ---- graphc.kernels.{name}, embedded " + "-" * 40 + "\n"
            + _KERNEL_IMPORT.sub("", _kernel_source(name))
            + f"\n{name} = sys.modules[__name__]   # the kernels call {name}.<function>(...)\n"
            + f"# ---- end of graphc.kernels.{name} " + "-" * 43 + "\n")


def _structure(treedef):
    """A pytree as the exported module writes it: 1 at each leaf, None for a
    None, namedtuples as tuples (the module cannot import their classes)."""
    return pytree.unflatten(pytree.without_namedtuples(treedef), [1] * treedef.num_leaves)


def export(step, path) -> None:
    """Write `step` as a standalone module at `path` (see the module docstring)."""
    import graphc

    from graphc.train import Step, aux_tree
    if not isinstance(step, Step):
        raise errors.GraphcTypeError(f"export takes a step made by gc.compile_step, got "
                                     f"{type(step).__name__}")
    entries = list(step._compiled._cache.values())
    if not entries or step.state is None:
        raise errors.GraphcValueError("export: this step has never been called, so there is no "
                                      "compiled signature to export; call it once first")
    arrays = {}
    treedef = step._treedef
    leaves_by_slot = {name: pytree.flatten(step.state[name])[0] for name in step.optimizer.slots}
    for name, leaves in leaves_by_slot.items():
        for i, leaf in enumerate(leaves):
            arrays[f"{name}_{i}"] = leaf
    kernels, signatures = [], []
    for k, entry in enumerate(entries):
        # serial code: a standalone module cannot know when threads are safe
        # (graphc.threads); threaded kernels would also slow its first compile
        module = entry.module if not entry.module.parallel else codegen.generate(
            entry.optimized, write_back=entry.write_back, parallel=False)
        # errors name the lines of the loss as it was traced
        # (after _renamed, whose renaming would reach into file names)
        kernels.append(errors.with_locations(_renamed(module.source, k), entry.optimized,
                                             in_literals=True))
        const_names = []
        for j, c in enumerate(api.module_consts(entry.optimized, module)):
            arrays[f"c{k}_{j}"] = c
            const_names.append(f"c{k}_{j}")
        key = tuple((tuple(shape), np.dtype(dtype).str) for shape, dtype in entry.in_avals)
        maker = f"new_workspace_{k}" if module.workspace else None
        # a has_aux step's aux outputs follow the loss: their tree (which may
        # differ by signature) and the dtypes of its 0-d ones
        aux = (_structure(aux_tree(entry)),
               [entry.scalar_dtypes[r].str if r in entry.scalar_dtypes else None
                for r in range(1, len(entry.graph.outputs) - len(entry.write_back))]
               ) if step.has_aux else None
        signatures.append(f"    {key!r}: (run_{k}, {const_names!r}, {maker}, {aux!r}),")
    # the graphc.kernels modules the kernels call (vmath.exp, blas.gemm, alloc.empty),
    # carried along so graphc is not needed
    embedded = "".join(_embedded(name) for name in _kernels_needed(kernels))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    blob = "\n".join(f'    "{encoded[i:i + 96]}"' for i in range(0, len(encoded), 96)) or '    ""'
    structure = _structure(treedef)
    source = _TEMPLATE.format(
        version=graphc.__version__, embedded=embedded,
        kernels="FASTMATH = " + codegen.FASTMATH + "\n" + "\n".join(kernels), blob=blob,
        structure=structure, slots=tuple(step.optimizer.slots), has_aux=step.has_aux,
        signatures="\n".join(signatures), count=int(step.state["count"]),
        num_params=treedef.num_leaves, keep_bytes=api.KEEP_WORKSPACE_BYTES)
    with open(path, "w") as f:
        f.write(source)
