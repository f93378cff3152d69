"""gc.export: write a compiled step as a standalone module (NumPy + Numba only).

The module holds the generated Numba source of every signature the step was
called with (renamed so they can sit side by side), the constants and the
optimizer state at export time (as an embedded .npz), and a small `step`
function with the same semantics as graphc's: validate, run, copy in place.
As graphc's step, it tests a call with the arrays of the call before by
identity and skips the rest of the validation, in the function
graphc.steady_call writes out for the signature's layout (the module
carries its source, and graphc.state_memory's).
"""
from __future__ import annotations

import ast
import base64
import importlib
import inspect
import io
import re

import numpy as np

from graphc import api, code_files, codegen, errors, pytree, state_memory, steady_call

_TEMPLATE = '''\
\"\"\"Standalone training step exported by graphc {version}.

Needs NumPy and Numba, and SciPy where the step uses np.linalg (Numba calls
SciPy's LAPACK). `step(params, *batch) -> loss` updates `params`
in place and continues from `state` (the optimizer state at export time).
Supported signatures (parameter and batch shapes) are those the step was
called with before export.
\"\"\"
import base64
import functools
import io
import operator
import os
import sys
from types import ModuleType, SimpleNamespace

import numpy as np
from numba import njit



class _Names(ModuleType):
    """A module whose attributes are this module's names, for importlib's spec
    recipe (module_from_spec, exec_module), which puts this module in no
    sys.modules. It goes there in its place: Numba's cache pickles functions
    by their module."""

    def __getattr__(self, name):
        try:
            return globals()[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):     # (module.state = ...)
        globals()[name] = value


_SELF = sys.modules.get(__name__)
if _SELF is None or vars(_SELF) is not globals():     # not imported
    _THERE, _SELF = _SELF, _Names(__name__)
    if _THERE is None or type(_THERE).__name__ == "_Names":   # (an earlier load's)
        sys.modules[__name__] = _SELF

# ---- graphc.code_files, embedded ---------------------------------------
{code_files}
# ---- end of graphc.code_files ------------------------------------------

# The graphc.kernels modules that `run` calls, run as one module of their own
# (code_files.kernels_module): Numba keeps their compiled code beside a file
# named by a hash of this text in graphc's cache directory (else in this
# module's __pycache__), so every exported step embedding these kernels
# compiles them once.
_KERNELS = {embedded}
_HERE = globals().get("__file__")
{kernel_names} = kernels_module(
    _KERNELS, _HERE and os.path.join(os.path.dirname(os.path.abspath(_HERE)), "__pycache__"))

{kernels}

# ---- graphc.state_memory, embedded -------------------------------------
{state_memory}
# ---- end of graphc.state_memory ----------------------------------------

# ---------------------------------------------------------------- steady calls
# graphc.steady_call's factories for this step's layouts: a call with the
# arrays of the checked call before it (a training loop's steady state)
# tests them by identity and calls `run` (W1: 9.4 -> 6.4 us a step). The
# names they read:
ndarray = np.ndarray
unread = 0      # passed for an input `run` never reads: it was compiled for an int there
COUNT_END = 2 ** 63     # the step count is an int64 in `run`
KEEP_WORKSPACE_BYTES = {keep_bytes}   # only workspaces this small are kept between calls
SHAPES_CHANGED = {shapes_changed!r}
NATIVE_ERRORS = (IndexError, ValueError, OverflowError, np.linalg.LinAlgError)


def refused_type(e):
    \"\"\"Whether `run` raised `e` for an argument of a type it was not compiled for.\"\"\"
    return str(e).startswith("No matching definition")


def from_native(e, graph=None):
    return e


{steady}

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
_PATHS = {paths!r}      # each params leaf's, as graphc names them
_HAS_AUX = {has_aux!r}      # the step returns (loss, aux): aux trees per signature, as _STRUCTURE


class _Signature:
    \"\"\"One exported signature: its `run` and what calling it takes.\"\"\"

    def __init__(self, run, consts, maker, aux, unread_inputs, make_steady):
        self.driver, self.maker, self.make_steady = run, maker, make_steady
        self.consts = [_ARRAYS[c] for c in consts]
        self.aux = aux                  # (structure, dtypes) of a has_aux step's aux
        self.unread = unread_inputs     # input positions passed as `unread`
        self.workspaces = []            # free ones: list.pop/append are atomic
        self.new_workspace = None       # a workspace for the last checked call's shapes
        self.optimized = None           # (graphc's errors name its graph here)


_SIGNATURES = {{
{signatures}
}}


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
def _shape_of(tree, key=lambda k: k):
    if isinstance(tree, dict):
        return {{key(k): _shape_of(v, key) for k, v in tree.items()}}
    if isinstance(tree, (list, tuple)):
        return (list if isinstance(tree, list) else tuple)(_shape_of(v, key) for v in tree)
    return None if tree is None else 1


def _unflatten(structure, leaves):
    if isinstance(structure, dict):
        return {{k: _unflatten(structure[k], leaves) for k in sorted(structure, key=repr)}}
    if isinstance(structure, (list, tuple)):
        return type(structure)(_unflatten(c, leaves) for c in structure)
    return None if structure is None else leaves.pop(0)


# graphc.steady_call.containers, for the steady calls' types and keys
{containers}

_SLOT_ORDER = sorted(_SLOTS)    # the state's order: params, then each slot's arrays
# the structure with the keys' reprs: 1, 1.0 and True (or 'a' and np.str_('a'))
# are equal keys, but _flatten orders them by their reprs
_STRUCTURE_BY_REPR = _shape_of(_STRUCTURE, repr)

state = {{"count": {count}}}
for _name in _SLOTS:
    state[_name] = _unflatten(_STRUCTURE, [_ARRAYS[f"{{_name}}_{{i}}"].copy()
                                           for i in range({num_params})])
_OWNED = [state]    # the state the step writes: one assigned to the module is copied first


def _take_assigned_state():
    """A state assigned to the module (`module.state = checkpoint`), copied as
    graphc's step.state is, so that the step writes arrays of its own, never
    the checkpoint's; moments in the exported dtypes, a count as an int."""
    global state
    if not isinstance(state, dict):
        raise TypeError(f"state is a {{type(state).__name__}}; it is a dict")
    own = dict(state)
    for name in _SLOT_ORDER:
        tree = own.get(name)
        if tree is not None and _shape_of(tree, repr) == _STRUCTURE_BY_REPR:
            own[name] = _unflatten(_STRUCTURE, [
                _copied_moment(leaf, _ARRAYS[f"{{name}}_{{i}}"])
                for i, leaf in enumerate(_flatten(tree, []))])
    if not isinstance(own.get("count"), (bool, np.bool_)):
        try:
            own["count"] = operator.index(own.get("count"))
        except TypeError:
            pass        # (refused by _checked_count, naming it)
    state = _OWNED[0] = own


def _copied_moment(leaf, exported):
    if not isinstance(leaf, np.ndarray):
        return leaf
    cast = leaf.dtype.kind == "f" and leaf.shape == exported.shape
    return np.array(leaf, dtype=exported.dtype if cast else leaf.dtype, order="C")


def _shapes(signature):
    return "(" + ", ".join(f"{{_dtype_name(dtype)}}{{list(shape)}}"
                           for shape, dtype in signature) + ")"


def _dtype_name(dtype):
    dtype = np.dtype(dtype)
    return dtype.name if dtype.isnative else dtype.str     # >f8: float64 of the other order


def _checked_count():
    \"\"\"state["count"] as `run`'s 0-d int64, refused before anything runs as graphc does.\"\"\"
    count = state["count"]
    try:
        count = operator.index(count) if not isinstance(count, (bool, np.bool_)) else None
    except TypeError:
        count = None
    if count is None:
        raise TypeError(f"state['count'] is {{state['count']!r}}; it counts the steps taken, "
                        f"an int >= 0")
    if not 0 <= count < COUNT_END:
        raise ValueError(f"state['count'] is {{count}}; it counts the steps taken, an int >= 0")
    return np.asarray(count, np.int64)


def _as_input(b):
    # C-contiguous, aligned and writable: the one type `run` was compiled for
    # (not np.ascontiguousarray alone: it makes a 0-d array, a scalar argument, 1-d)
    b = np.asarray(b)
    return b if b.flags.c_contiguous and b.flags.behaved else np.array(b, order="C")


def _refuse_shared(state_leaves):
    for k, leaf in enumerate(state_leaves):
        if any(np.may_share_memory(leaf, other) for other in state_leaves[:k]):
            raise ValueError("two parameters or moment slots share memory; the step "
                             "writes each one in place, pass separate arrays (x.copy())")


def _state_differs(key, batch_key):
    \"\"\"Which params or moment array differs from every signature of the batch's.\"\"\"
    names = [f"params{{path}}" for path in _PATHS] + [
        f"state[{{name!r}}]{{path}}" for name in _SLOT_ORDER for path in _PATHS]
    exported = [k for k in _SIGNATURES if k[len(k) - len(batch_key):] == batch_key]
    for i, name in enumerate(names):
        if all(k[i] != key[i] for k in exported):
            return (f"{{name}}, {{_shapes([key[i]])[1:-1]}} (exported: "
                    f"{{', '.join(sorted({{_shapes([k[i]])[1:-1] for k in exported}}))}})")
    return "the params' shapes or dtypes"


# The steady call made by the last checked call for its arrays, and its signature
_LAST = []


def _checked_step(params, batch):
    \"\"\"The step's outputs and signature, every argument checked and converted;
    then the steady call for these arrays is made, for the next call (an
    error leaves the last one: it tests the arrays it was made for).\"\"\"
    if state is not _OWNED[0]:
        _take_assigned_state()
    if _shape_of(params, repr) != _STRUCTURE_BY_REPR:
        raise TypeError(f"params have structure {{_shape_of(params)}}, expected {{_STRUCTURE}}")
    for name in _SLOT_ORDER:
        if _shape_of(state[name], repr) != _STRUCTURE_BY_REPR:
            raise TypeError(f"state[{{name!r}}] does not have the params' structure {{_STRUCTURE}}")
    leaves = _flatten(params, [])
    slot_leaves = [leaf for name in _SLOT_ORDER for leaf in _flatten(state[name], [])]
    count = _checked_count()
    batch_leaves = _flatten(list(batch), [])
    for leaf in leaves + slot_leaves + batch_leaves:
        if isinstance(leaf, (np.ma.MaskedArray, np.matrix)):      # as graphc refuses them
            raise TypeError(f"an argument is a {{type(leaf).__name__}}, which this step cannot "
                            f"take: it reads an array's data alone, not a mask, and computes "
                            f"* elementwise; pass x.filled(value) or np.asarray(m)")
    data = [_as_input(b) for b in batch_leaves]
    inputs = leaves + slot_leaves + [count] + data
    key = tuple((tuple(a.shape), np.asarray(a).dtype.str) for a in inputs)
    if key not in _SIGNATURES:
        # name the part that differs: the batch (most often), else the params
        batches = [k[len(k) - len(data):] for k in _SIGNATURES]
        batch_key = key[len(key) - len(data):]
        what = (_state_differs(key, batch_key) if batch_key in batches
                else f"the batch {{_shapes(batch_key)}}")
        raise TypeError(f"no exported signature matches {{what}}; exported batches: "
                        + "; ".join(_shapes(b) for b in batches))
    sig = _SIGNATURES[key]
    state_leaves = leaves + slot_leaves
    for leaf in state_leaves:
        if not leaf.flags.writeable or not leaf.flags.c_contiguous:
            raise ValueError("parameters and moment slots must be writable C-contiguous arrays")
    _refuse_shared(state_leaves)
    memory = StateMemory(state_leaves)
    data = memory.unaliased(data)
    args = [unread if k in sig.unread else a
            for k, a in enumerate(state_leaves + [count] + data)]
    if sig.maker is None:
        outs = sig.driver(*args, *sig.consts)
    else:
        # the scratch memory `run` carves its intermediates from, kept for the next call
        sig.new_workspace = functools.partial(
            sig.maker, *(SimpleNamespace(shape=a.shape) for a in inputs), *sig.consts)
        try:
            ws = sig.workspaces.pop()
        except IndexError:
            ws = sig.new_workspace()
        outs = sig.driver(*args, *sig.consts, ws)
        if ws.size <= KEEP_WORKSPACE_BYTES:
            sig.workspaces.append(ws)
    # any other type is a TypeError now, never a silent second compile
    sig.driver.disable_compile()
    # (a batch converted here fails the steady call's tests, or `run`'s types, next time)
    kinds, keys = [], []
    for tree in [params] + [state[name] for name in _SLOT_ORDER]:
        containers(tree, kinds, keys)
    first = len(state_leaves) + 1       # the batch's first input
    unread_dtypes = [data[k - first].dtype for k in sorted(sig.unread) if k >= first]
    _LAST[:] = [(sig.make_steady(kinds, _SLOT_ORDER, keys, state_leaves,
                                 [leaf.shape for leaf in state_leaves], [b.shape for b in data],
                                 unread_dtypes, sig.consts, sig, memory), sig)]
    return outs, sig


def step(params, *batch):
    \"\"\"One fused forward + backward + update; returns the loss before the update
    (with the aux, computed before it too, for a step made with has_aux=True).\"\"\"
    outs = None
    if _LAST:
        call, sig = _LAST[0]
        outs = call(params, state, batch)
    if outs is None:
        outs, sig = _checked_step(params, batch)
    state["count"] += 1
    if not _HAS_AUX:
        return float(outs[0])
    # the loss and the aux tree, whose 0-d results come back as scalars
    structure, dtypes = sig.aux
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


def _embedded(name: str) -> str:
    """The source of graphc.kernels.<name>, bound to `name` in the exported module
    (its imports of other kernel modules dropped: they are embedded too, and
    bound to their names the same way)."""
    return (f"# ---- graphc.kernels.{name}, embedded " + "-" * 40 + "\n"
            + _KERNEL_IMPORT.sub("", _kernel_source(name))
            + f"\n{name} = _SELF   # the kernels call {name}.<function>(...)\n"
            + f"# ---- end of graphc.kernels.{name} " + "-" * 43 + "\n")


_KERNELS_HEADER = '''"""graphc.kernels modules embedded in a step exported by graphc {version}."""
import sys

_SELF = sys.modules[__name__]      # each module below is bound to this one's name
'''


def _string_literal(text: str) -> str:
    """`text` as a raw triple-quoted literal, readable as the code it holds
    (repr's one line where that cannot hold it)."""
    literal = "r'''" + text + "'''"
    try:
        if ast.literal_eval(literal) == text:
            return literal
    except (SyntaxError, ValueError):     # (''' or a backslash before the end)
        pass
    return repr(text)


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
    if not entries or step._treedef is None:
        raise errors.GraphcValueError("export: this step has never been called, so there is no "
                                      "compiled signature to export; call it once first")
    arrays = {}
    treedef = step._treedef
    state = step._settled_state()       # (one set since the last call: as that call would take it)
    leaves_by_slot = {name: pytree.flatten(state[name])[0] for name in step.optimizer.slots}
    for name, leaves in leaves_by_slot.items():
        for i, leaf in enumerate(leaves):
            arrays[f"{name}_{i}"] = leaf
    kernels, signatures, layouts = [], [], {}
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
        # all of `run`'s outputs: the exported step makes a has_aux step's aux
        layout = steady_call.layout_of(treedef, len(step.optimizer.slots), module,
                                       len(entry.in_avals), len(const_names), aux=True)
        make_steady = layouts.setdefault(layout, f"_make_steady_{len(layouts)}")
        signatures.append(f"    {key!r}: _Signature(run_{k}, {const_names!r}, {maker}, {aux!r}, "
                          f"{sorted(module.unread_inputs)!r}, {make_steady}),")
    steady = "\n\n".join(steady_call.source(layout).replace("def make(", f"def {name}(")
                          for layout, name in layouts.items())
    # the graphc.kernels modules (vmath.exp, blas.gemm, alloc.empty), carried
    # along so graphc is not needed: all of them, whichever this step calls,
    # so every step this graphc exports shares one compiled copy
    embedded = _KERNELS_HEADER.format(version=graphc.__version__) + "".join(
        _embedded(name) for name in _KERNEL_MODULES)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    blob = "\n".join(f'    "{encoded[i:i + 96]}"' for i in range(0, len(encoded), 96)) or '    ""'
    structure = _structure(treedef)
    source = _TEMPLATE.format(
        version=graphc.__version__, embedded=_string_literal(embedded),
        kernel_names=" = ".join(_KERNEL_MODULES), code_files=inspect.getsource(code_files),
        kernels="FASTMATH = " + codegen.FASTMATH + "\n" + "\n".join(kernels), blob=blob,
        structure=structure, slots=tuple(step.optimizer.slots), has_aux=step.has_aux,
        signatures="\n".join(signatures), count=int(state["count"]),
        num_params=treedef.num_leaves, keep_bytes=api.KEEP_WORKSPACE_BYTES,
        state_memory=inspect.getsource(state_memory), steady=steady,
        containers=inspect.getsource(steady_call.containers),
        paths=pytree.leaf_suffixes(treedef),
        shapes_changed=codegen.SHAPES_CHANGED)
    with open(path, "w") as f:
        f.write(source)
