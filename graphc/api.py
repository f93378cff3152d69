"""The public transformations: jit, grad, value_and_grad, vjp (jacobian and hessian: jacobians).

`grad` is built on `value_and_grad`, built on `autodiff.vjp_into`. Each
returns a `Compiled` callable: called with NumPy values it traces, optimizes
and compiles once per signature; called with tracers (inside another trace)
it inlines itself, so transformations compose. Inside another trace it also
inlines when called with NumPy values if its function reads a value of the
enclosing trace (a closure): a module of its own could not be given it.
"""
from __future__ import annotations

import collections
import functools
import inspect
import operator
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from graphc import autodiff, codegen, errors, lowering, passes, pytree, runtime, threads, tracing
from graphc.interpret import interpret
from graphc.ir import Graph
from graphc.varying_constants import VaryingConstants


@dataclass
class Inspection:
    """What `.inspect(*args)` returns: every stage of one compiled signature.
    From `.lower(*args)`, compile_seconds is None while Numba has not yet
    compiled the source."""
    graph: Graph
    optimized: Graph
    source: str
    kernels: list
    compile_seconds: float | None


# Held by the first call of each entry: Numba compiles then, and once it has,
# the driver compiles nothing more (a thread already past `called` would be
# refused with "compilation disabled").
_FIRST_CALLS = threading.RLock()


def module_consts(optimized: Graph, module: codegen.Module) -> list[np.ndarray]:
    """The constants `module`'s run takes after its inputs (those its code reads):
    C-ordered, read-only arrays (ir.ConstValue), so one type each."""
    return [optimized.node(c).p["value"].array for c in module.const_ids]


class _ShapeOnly:
    """What a module's new_workspace reads of an input: its shape."""
    __slots__ = ("shape",)

    def __init__(self, shape):
        self.shape = shape


# What the driver is passed for an input it never reads: an int costs Numba's
# dispatcher 0.1 us to type, a 0-d array 0.43 us (a step's count, 3% of W1).
UNREAD = 0

# The pool of free workspaces each entry keeps. Tests swap in one that never
# keeps any, with new_workspace filling each with 0xFF bytes, so a kernel
# reading an intermediate before writing it gives NaNs and fails.
_workspace_pool = list

# Only workspaces up to this size are kept between calls: keeping saves a
# small step its allocations (W1, W4: 8% of a step), while a larger one is
# made per call, as its intermediates were before, so that memory is not
# held between calls (up to MAX_ENTRIES signatures' worth). W2's is 0.75 MB.
KEEP_WORKSPACE_BYTES = 1 << 20


def refused_type(e: TypeError) -> bool:
    """Whether a driver raised `e` because it was not compiled for an
    argument's type (it compiles one type only: see _Entry._first_run)."""
    return str(e).startswith("No matching definition")


_NOT_YET = object()


class _Entry:
    """One compiled signature: the module's driver and how to call it."""

    def __init__(self, graph: Graph, optimized: Graph, module: codegen.Module, driver,
                 compile_seconds: float, write_back=None, new_workspace=None):
        self.graph, self.optimized, self.module, self.driver = graph, optimized, module, driver
        self.train_epoch = None
        # output position -> input position the driver writes into
        self.write_back = dict(write_back or {})
        self.consts = module_consts(optimized, module)
        self.in_avals = [(graph.node(i).shape, graph.node(i).dtype) for i in graph.inputs]
        # the driver returns 0-d results as scalars (see codegen): their dtypes
        returned = [optimized.node(o) for k, o in enumerate(optimized.outputs)
                    if k not in self.write_back]
        self.scalar_dtypes = {k: node.dtype for k, node in enumerate(returned) if node.shape == ()}
        self.compile_seconds = compile_seconds
        self.called = False   # Numba compiles on the first call: that time counts as compile
        self.one_type = False  # the driver then refuses any type but the one it compiled
        self.convert_next = False  # it refused the last call's arrays as they were
        self.parallel = module.parallel      # the driver's last argument is a thread count
        self.unread = sorted(module.unread_inputs)  # positions passed as UNREAD
        self.int_checks = int_argument_checks(graph)
        self.outputs = _outputs_function(graph.meta["out_tree"], len(graph.outputs),
                                         self.write_back, self.scalar_dtypes)
        # pytree.flattener of the call's arguments for Compiled._hot (None:
        # none could be made), made at the first call that finds this entry
        # by its arrays' signature
        self.hot_flattener = _NOT_YET
        self.hot_key = None     # the _array_signature_key the flattener was made for
        # The driver's workspace (graphc.workspace): the ones free for a call
        # to take (one per call running at once), and their size in bytes
        self.workspaces = _workspace_pool()
        self.workspace_size = None
        if module.workspace:
            self._new_workspace = functools.partial(
                new_workspace, *(_ShapeOnly(shape) for shape, _ in self.in_avals), *self.consts)
            first = self.new_workspace()
            self.workspace_size = first.size
            self.workspaces.append(first)   # for the first call, which follows at once

    def new_workspace(self, fill=None) -> np.ndarray:
        """A workspace laid out for this signature's shapes (`fill`: see the module's
        new_workspace)."""
        return self._new_workspace(fill=fill)

    def take_workspace(self) -> np.ndarray | None:
        """A free workspace for one call (None when the driver takes none); give
        it back after the call. list.pop and append are atomic: calls running
        at once in several threads each take their own."""
        if self.workspace_size is None:
            return None
        try:
            return self.workspaces.pop()
        except IndexError:
            return self.new_workspace()

    def give_back(self, ws) -> None:
        """Keep `ws` for a later call if it is small (KEEP_WORKSPACE_BYTES)."""
        if ws is not None and ws.size <= KEEP_WORKSPACE_BYTES:
            self.workspaces.append(ws)

    def tail_args(self, ws, n_threads=None) -> tuple:
        """The driver's arguments after the constants: the workspace and the
        thread count (threads.count() unless given), those it takes."""
        return ((ws,) if self.workspace_size is not None else ()) + (
            (threads.count() if n_threads is None else n_threads,) if self.parallel else ())

    def inputs(self, leaves, first=0) -> list[np.ndarray]:
        """`leaves` (the inputs from position `first` on) as C-contiguous, aligned,
        writable arrays of the traced dtypes: the one type the driver takes (for
        a read-only array Numba would compile the whole driver again). An
        input the driver never reads (an SGD step's count) is passed as UNREAD."""
        if self.int_checks:
            check_int_arguments(self.int_checks, leaves, first)
        converted = [leaf if type(leaf) is np.ndarray and leaf.dtype == dtype and
                     leaf.flags.c_contiguous and leaf.flags.behaved
                     else np.array(leaf, dtype=dtype, order="C")
                     for leaf, (_, dtype) in zip(leaves, self.in_avals[first:])]
        return self.with_unread(converted, first)

    def with_unread(self, leaves, first=0) -> list:
        """`leaves` (from input position `first` on) with UNREAD for the inputs the
        driver never reads: it was compiled for an int there, and refuses an array."""
        leaves = list(leaves)
        for k in self.unread:
            if k >= first:
                leaves[k - first] = UNREAD
        return leaves

    def passed_as_is(self, inputs, leaves, first=0) -> bool:
        """Whether `inputs` (from inputs()) are `leaves` themselves, but for UNREAD ones."""
        return len(inputs) == len(leaves) and all(
            x is y or k + first in self.unread for k, (x, y) in enumerate(zip(inputs, leaves)))

    def run(self, inputs):
        """The driver's raw outputs; the first call's time counts as compile time."""
        if not self.called:
            with _FIRST_CALLS:      # another thread's first call may be compiling it
                if not self.called:
                    return self._first_run(inputs)
        return self._call(inputs)

    def _first_run(self, inputs):
        start = time.perf_counter()
        try:
            with runtime.gc_paused(self.driver):    # Numba compiles (or loads) now
                return self._call(inputs)
        finally:
            self.called = True
            self.compile_seconds += time.perf_counter() - start
            # Every call passes the same types (inputs() converts): any
            # other is a TypeError now, never a silent second compile.
            if self.driver.signatures:
                self.driver.disable_compile()
                self.one_type = True

    # (graphc/steady_call.py writes out what _call, take_workspace, give_back
    # and tail_args do, for a training step's steady calls: change both)
    def _call(self, inputs):
        try:
            if self.workspace_size is None:
                if self.parallel:
                    return self.driver(*inputs, *self.consts, threads.count())
                return self.driver(*inputs, *self.consts)
            ws = self.take_workspace()
            outs = (self.driver(*inputs, *self.consts, ws, threads.count()) if self.parallel
                    else self.driver(*inputs, *self.consts, ws))
            self.give_back(ws)      # not after an error: a new one is made
            return outs
        except errors.NATIVE_ERRORS as e:
            raise errors.from_native(e, graph=self.optimized) from None

    def __call__(self, leaves, plain_arrays=False):
        """`plain_arrays`: every leaf is an np.ndarray, which may then go to
        the driver as it is (Numba's refusal of anything else, such as a
        masked array or a Python float, raises or costs 30-40 us)."""
        outs = None
        if plain_arrays and self.one_type and not self.convert_next:
            outs = self.run_unconverted(self.with_unread(leaves) if self.unread else leaves)
            self.convert_next = outs is None    # refused: convert first next time
        if outs is None:
            inputs = self.inputs(leaves)
            if self.convert_next and self.passed_as_is(inputs, leaves):
                self.convert_next = False       # nothing needed converting after all
            outs = self.run(inputs)
        else:
            inputs = leaves
        return self.outputs(outs, inputs)

    def run_unconverted(self, leaves):
        """The driver's outputs for `leaves` (arrays) passed unconverted, or None
        when it refused their types (it takes only the one it was compiled for,
        see _first_run): checking dtypes and flags in Python cost about 0.5 us
        an array, a sixth of a small function's call. Numba types every array
        as aligned, so an unaligned one goes through too; x86 loads it as is."""
        try:
            return self._call(leaves)
        except TypeError as e:
            if refused_type(e):
                return None
            raise

    def inspection(self) -> Inspection:
        return Inspection(self.graph, self.optimized, self.module.source, self.module.kernels,
                          self.compile_seconds if self.called else None)


def _outputs_function(out_tree, n_outputs: int, write_back: dict, scalar_dtypes: dict):
    """A function of the driver's raw outputs and its inputs that returns the
    user's output tree: the outputs the driver wrote into an input array
    (`write_back`) are those inputs, 0-d results (returned as scalars) are 0-d
    arrays, as documented. Written out as one expression: a loop over the
    outputs took 0.8 us of a small function's 10 us call, this 0.4."""
    if n_outputs > pytree.WRITTEN_OUT_AT_MOST:
        return functools.partial(_outputs_walked, out_tree, n_outputs, write_back, scalar_dtypes)
    returned = iter(range(n_outputs - len(write_back)))
    leaves = []
    for k in range(n_outputs):
        if k in write_back:
            leaves.append(f"inputs[{write_back[k]}]")
            continue
        r = next(returned)
        leaves.append(f"array(outs[{r}], d{r})" if r in scalar_dtypes else f"outs[{r}]")
    names = {"array": np.array, "build": pytree.builder(out_tree),
             **{f"d{r}": dtype for r, dtype in scalar_dtypes.items()}}
    return eval(f"lambda outs, inputs: build([{', '.join(leaves)}])", names)


def _outputs_walked(out_tree, n_outputs, write_back, scalar_dtypes, outs, inputs):
    """_outputs_function's function, by a walk over the outputs."""
    outs = list(outs)
    for k, dtype in scalar_dtypes.items():
        outs[k] = np.array(outs[k], dtype)
    if write_back:
        returned = iter(outs)
        outs = [inputs[write_back[k]] if k in write_back else next(returned)
                for k in range(n_outputs)]
    return pytree.unflatten(out_tree, outs)


def int_argument_checks(graph: Graph) -> list[tuple]:
    """(input position, lowest, highest, dtype, the user's line) for each Python
    int argument and each integer type it is converted to (tracing.note_int_bounds),
    one per type, the narrowest first; such an argument is traced as int64
    (NumPy's type for it), so that bounds it too. Captured inputs (positions
    from num_args on) are an outer trace's values, checked there."""
    num_args = graph.meta.get("num_args", len(graph.inputs))
    found = {}
    for k, converted in graph.meta.get("int_bounds", {}).items():
        for dtype, loc in converted:
            found.setdefault((k, dtype), loc)
    for k, i in enumerate(graph.inputs[:num_args]):
        if graph.node(i).weak and graph.node(i).dtype.kind in "iu":
            found.setdefault((k, graph.node(i).dtype), graph.node(i).loc)
    checks = [(k, int(np.iinfo(d).min), int(np.iinfo(d).max), d, loc)
              for (k, d), loc in found.items() if k < num_args]
    return sorted(checks, key=lambda c: (c[0], c[2] - c[1]))


def check_int_arguments(checks: list[tuple], leaves, first=0) -> None:
    """NumPy's refusal of a Python integer that its array's type cannot hold
    (`np.uint8 array + -1`): a compiled conversion would wrap it silently."""
    for k, lowest, highest, dtype, loc in checks:
        if first <= k < first + len(leaves):
            value = leaves[k - first]
            if isinstance(value, int) and not lowest <= value <= highest:
                raise errors.GraphcOverflowError(
                    f"Python integer {value} out of bounds for {dtype}" + errors.at(loc))


def _signature_key(leaves) -> tuple:
    return tuple(tracing.aval_of(leaf) for leaf in leaves)


_PYTHON_FLOAT = ((), np.dtype(np.float64), True)      # tracing.aval_of(1.5)


def _array_signature_key(leaves) -> tuple | None:
    """`_signature_key` when every leaf is a plain ndarray or a Python float
    (a learning rate: the per-call fast path), else None."""
    key = []
    for leaf in leaves:
        kind = type(leaf)
        if kind is np.ndarray:
            key.append((leaf.shape, leaf.dtype, False))
        elif kind is float:
            key.append(_PYTHON_FLOAT)
        else:
            return None
    return tuple(key)


def _plain(leaves, key) -> list:
    """`leaves` as the driver takes them: _as_arrays when a Python float is among them."""
    return _as_arrays(leaves, key) if _PYTHON_FLOAT in key else leaves


def _as_arrays(leaves, key) -> list:
    """`leaves` of `key` (_array_signature_key's) with each Python float a 0-d
    array, the type the driver takes (a float it refuses: 30-40 us)."""
    return [np.array(leaf) if aval is _PYTHON_FLOAT else leaf for leaf, aval in zip(leaves, key)]


def _static_key(value):
    """A static argument's value with its type, all the way down: 2, 2.0,
    np.float64(2) and True are equal and hash alike, but trace to different
    dtypes; 0.0 and -0.0 as well (by their bits, so a nan equals itself)."""
    try:
        hash(value)
    except TypeError:
        raise errors.GraphcTypeError(
            f"static argument {value!r} must be hashable (a number, string or tuple: "
            f"tuple(...) of a list){errors.at(errors.user_location())}") from None
    if isinstance(value, (tuple, frozenset)):
        return type(value), type(value)(_static_key(v) for v in value)
    if isinstance(value, (float, np.floating)):
        return type(value), float(value).hex()
    return type(value), value


class _ReadsEnclosingTrace(errors.GraphcTypeError):
    """Tracing found the function reading a value of an enclosing trace: it
    is inlined there instead (Compiled.__call__); only .inspect(), .lower()
    and .interpret() let this through, as it says."""


class RecompileWarning(UserWarning):
    """A compiled function keeps seeing new signatures, so it keeps compiling."""


# A function compiled for this many signatures warns once; the oldest entries
# beyond MAX_ENTRIES are dropped (their modules stay in the disk cache).
WARN_AFTER_SIGNATURES = 8
MAX_ENTRIES = 32


class Compiled:
    """A function compiled per signature (pytree structure, shapes, dtypes, statics)."""

    def __init__(self, fn, static_argnums=(), name=None, codegen_options=None, user_fn=None):
        self.fn = fn
        # whose parameters keyword arguments name: the user's, also through
        # another transform (jit(grad(f)), hessian = jacobian(grad(f)))
        user_fn = user_fn or fn
        self.user_fn = getattr(user_fn, "user_fn", user_fn)
        self._signature = None      # of user_fn, read at the first call with keywords
        # codegen_options(n_input_leaves) -> extra keyword arguments of codegen.generate
        self.codegen_options = codegen_options
        self.static_argnums = (static_argnums,) if isinstance(static_argnums, int) \
            else tuple(static_argnums)
        functools.update_wrapper(self, fn, updated=())
        self.__name__ = name or getattr(fn, "__name__", "fn")     # not grad_fn: grad(loss)
        self._cache: collections.OrderedDict = collections.OrderedDict()   # LRU of entries
        self._graphs: dict = {}       # traced only, for interpret()
        self._signatures_seen = 0
        self._lock = threading.Lock()
        self._varying = VaryingConstants()    # numbers made from shapes: passed, not written
        # (entry.hot_flattener, entry) of the last call that found its entry
        # by its arrays' signature (a new signature's first call does not),
        # while that entry is in _cache: a call of the same is flattened and
        # checked in one go. (One: signatures that take turns call by call
        # pay a failed flattening each, about 0.5 us.)
        self._hot = None
        # (static values, flattener of the other arguments, entry): _hot for a
        # function with static arguments, whose calls' general path cost 18 us
        self._hot_static = None
        self._place_list = _NOT_YET   # _places(), once
        self._positions = {}          # count of arguments -> (static positions, the others)
        self._keyword_plans = {}      # see positional

    def _static_positions(self, n: int) -> tuple:
        """The static argnums among a call's n arguments; a negative one counts
        from the end of the function's positional parameters (as in JAX), so
        it can name one left to its default."""
        places = self._places()
        if places is None:
            nums = self.static_argnums
            static = tuple(a % n for a in nums if -n <= a < n)
        else:
            nums = tuple(a + len(places) if a < 0 else a for a in self.static_argnums)
            static = tuple(a for a in nums if 0 <= a < n)
        if len(static) < len(nums):
            self._check_static_argnums(nums, n)
        return static

    def _places(self):
        """The user function's positional parameters (None without a signature,
        or with *args); read at the first call."""
        if self._place_list is _NOT_YET:
            self._place_list = None
            if self._signature is None:
                try:
                    self._signature = inspect.signature(self.user_fn)
                except (TypeError, ValueError):
                    return None
            params = self._signature.parameters.values()
            if not any(p.kind == p.VAR_POSITIONAL for p in params):
                self._place_list = [p for p in params
                                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return self._place_list

    def _statics_of(self, args) -> tuple[tuple, tuple]:
        """(the static arguments' key, the others)."""
        positions = self._positions.get(len(args))
        if positions is None:       # (a call's count of arguments: once each)
            static = self._static_positions(len(args))
            positions = self._positions[len(args)] = (
                sorted(static), [i for i in range(len(args)) if i not in static])
        static, others = positions
        return (tuple([(i, _static_key(args[i])) for i in static]),
                tuple([args[i] for i in others]))

    def _split(self, args):
        statics, dynamic = self._statics_of(args)
        static = {i for i, _ in statics}

        def call(*dyn):     # fn of the others, the statics put back in their places
            it = iter(dyn)
            return self.fn(*[args[i] if i in static else next(it) for i in range(len(args))])

        return statics, dynamic, call

    def _check_static_argnums(self, nums, n_args):
        """A static argnum beyond the call's arguments must name a parameter
        left to its default (JAX refuses one that names no parameter)."""
        places = self._places()
        if places is None:          # no signature to check against
            return
        for a, given in zip(nums, self.static_argnums):
            if not 0 <= a < n_args and not (
                    0 <= a < len(places) and places[a].default is not places[a].empty):
                raise errors.GraphcValueError(
                    f"{self.__name__}: static_argnums {given} is out of range: the call passed "
                    f"{n_args} argument(s), and the function has {len(places)} positional "
                    f"parameter(s)"
                    f"{errors.at(errors.user_location())}")

    def _entry(self, args) -> tuple[_Entry, list]:
        statics, dynamic, call = self._split(args)
        leaves, treedef = pytree.flatten(dynamic)
        key = (treedef, _signature_key(leaves), statics)
        entry = self._cache.get(key)
        if entry is None:
            with self._lock:
                entry = self._cache.get(key)
                if entry is None:
                    entry = self._compile(call, dynamic, leaves)
                    self._remember(key, entry)
        return entry, leaves

    def _remember(self, key, entry):
        self._cache[key] = entry
        self._signatures_seen += 1
        if self._signatures_seen == WARN_AFTER_SIGNATURES:
            warnings.warn(
                f"{self.__name__} has been called with {WARN_AFTER_SIGNATURES} different "
                f"signatures (shapes, dtypes or static values); each new one is traced again, "
                f"and compiled again unless a module compiled before fits it (most new batch "
                f"sizes do not compile). Keep shapes fixed (pad the last batch, or "
                f"drop_last=True) or pass Python values that change as array arguments "
                f"instead of static ones.",
                RecompileWarning, stacklevel=errors.users_stacklevel())
        while len(self._cache) > MAX_ENTRIES:
            self._cache.popitem(last=False)
            self._hot = self._hot_static = None   # (perhaps the one it held: only cached
            # entries run)

    def _compile(self, call, dynamic, leaves) -> _Entry:
        start = time.perf_counter()
        with runtime.gc_paused():
            graph = self._varying.opaque(_own_trace(call, dynamic, self))
            options = self.codegen_options(len(graph.inputs)) if self.codegen_options else {}
            optimized, module, loaded = lowering.lower(graph, options)
        entry = _Entry(graph, optimized, module, loaded.run, time.perf_counter() - start,
                       options.get("write_back"), getattr(loaded, "new_workspace", None))
        entry.train_epoch = getattr(loaded, "train_epoch", None)
        return entry

    def _positional(self, args, kwargs) -> tuple:
        try:
            if self._signature is None:
                self._signature = inspect.signature(self.user_fn)
        except (TypeError, ValueError) as e:
            raise errors.GraphcTypeError(f"{self.__name__}: {e}") from None
        return positional(self._signature, self.__name__, args, kwargs, self._keyword_plans)

    def __call__(self, *args, **kwargs):
        if kwargs:
            args = self._positional(args, kwargs)
        # (the two fast paths below cannot meet a function that reads an
        # enclosing trace: such a one was inlined, never compiled)
        hot = self._hot
        if hot is not None:     # the arrays' signature of the last call that had one
            leaves = hot[0](args)
            if leaves is not None:
                return hot[1](leaves, plain_arrays=True)
        if self.static_argnums:
            return self._call_with_statics(args)
        leaves, treedef = pytree.flatten(args)
        # plain arrays of a signature compiled before: straight to its entry
        # (the general path below costs ~20 us of Python per call)
        entry = self._entry_of_arrays(leaves, treedef, ())
        if entry is not None:
            self._hot = (entry.hot_flattener, entry) if entry.hot_flattener else None
            return entry(_plain(leaves, entry.hot_key), plain_arrays=True)
        return self._general_call(args, leaves)

    def _entry_of_arrays(self, leaves, treedef, statics):
        """The entry compiled before for these leaves, when they are arrays (or
        Python floats) of a signature it has; its flattener made on the way."""
        key = _array_signature_key(leaves)
        entry = self._cache.get((treedef, key, statics)) if key is not None else None
        if entry is not None and entry.hot_flattener is _NOT_YET:
            entry.hot_key = key
            entry.hot_flattener = pytree.flattener(
                treedef, [float if aval is _PYTHON_FLOAT else aval[:2] for aval in key])
        return entry

    def _call_with_statics(self, args):
        """A call of a function with static arguments: _hot_static's entry
        when they equal its statics and the others fit its flattener."""
        try:
            statics, dynamic = self._statics_of(args)
        except errors.GraphcTypeError:      # unhashable: inlined in a trace, else explained
            return self._general_call(args, pytree.flatten(args)[0])
        hot = self._hot_static
        if hot is not None and hot[0] == statics:
            leaves = hot[1](dynamic)
            if leaves is not None:
                return hot[2](leaves, plain_arrays=True)
        leaves, treedef = pytree.flatten(dynamic)
        entry = self._entry_of_arrays(leaves, treedef, statics)
        if entry is not None:
            self._hot_static = (statics, entry.hot_flattener, entry) if (
                entry.hot_flattener) else None
            return entry(_plain(leaves, entry.hot_key), plain_arrays=True)
        return self._general_call(args, pytree.flatten(args)[0])

    def _general_call(self, args, leaves):
        if any(isinstance(leaf, tracing.Tracer) for leaf in leaves):
            if self.static_argnums:
                self._static_positions(len(args))      # its range check
            return self.fn(*args)     # inside another trace: inline
        try:
            entry, leaves = self._entry(args)
        except _ReadsEnclosingTrace as e:   # NumPy values, but fn reads the enclosing trace
            if e.owner is not self:         # (not a function called inside fn)
                raise
            return self.fn(*args)
        return entry(leaves)

    def inspect(self, *args) -> Inspection:
        """Every stage for this signature: graph, optimized, source, kernels, compile_seconds."""
        entry, leaves = self._entry(args)
        if not entry.called:    # compile the native code now, so compile_seconds counts it
            if entry.write_back:    # a training step: never update the caller's arrays here
                leaves = [leaf.copy() if isinstance(leaf, np.ndarray) else leaf for leaf in leaves]
            entry(leaves)
        return entry.inspection()

    def lower(self, *args) -> Inspection:
        """inspect() without Numba's compile: the graphs, the generated source
        and its kernels in milliseconds, where compiling takes a second or
        more (as JAX's `jit(f).lower(*args)`). compile_seconds is None until
        a call or inspect() compiles this signature."""
        return self._entry(args)[0].inspection()

    def interpret(self, *args):
        """Run the traced graph with the NumPy reference interpreter (the oracle)."""
        statics, dynamic, call = self._split(args)
        leaves, treedef = pytree.flatten(dynamic)
        key = (treedef, _signature_key(leaves), statics)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = _own_trace(call, dynamic, self)
        check_int_arguments(int_argument_checks(graph), leaves)
        inputs = [np.asarray(leaf, graph.node(i).dtype) for leaf, i in zip(leaves, graph.inputs)]
        return pytree.unflatten(graph.meta["out_tree"], interpret(graph, *inputs))

    def __repr__(self):
        return f"<graphc compiled {self.__name__}>"


def _own_trace(call, dynamic, owner: Compiled):
    """The graph of a function compiled (or interpreted) on its own: one that
    reads a value of an enclosing trace has an input nobody could pass."""
    graph = tracing.trace_fn(call, dynamic)
    if graph.meta["captures"]:
        error = _ReadsEnclosingTrace(
            f"{owner.__name__} reads a value traced by an enclosing function; call it there "
            f"(it is then traced into the enclosing graph), not .inspect(), .lower() or "
            f".interpret(){errors.at(errors.user_location())}")
        error.owner = owner
        raise error
    return graph


def jit(fn, static_argnums=()):
    """Compile `fn` with Numba, once per signature.

    >>> import numpy as np, graphc as gc
    >>> f = gc.jit(lambda x: np.tanh(x) * 2.0)
    >>> f(np.zeros(3, np.float32)).dtype
    dtype('float32')
    """
    return Compiled(fn, static_argnums)


def trace(fn, *args) -> Graph:
    """The traced Graph of `fn(*args)`, without compiling.

    >>> import numpy as np, graphc as gc
    >>> print(gc.trace(lambda x: x * 2.0, np.ones(3, np.float32)))
    %0:f32[3] = input 0
    %1:f32[] = const 2.0
    %2:f32[3] = mul %0 %1
    return %2
    """
    return tracing.trace_fn(fn, args)


# --------------------------------------------------------------- differentiation
def one_argnum(argnums) -> bool:
    """Whether `argnums` names one argument (an int: the gradient is its
    own, not a tuple of one)."""
    return not isinstance(argnums, (tuple, list))


def _argnums_tuple(argnums, nargs):
    given = (argnums,) if one_argnum(argnums) else argnums
    try:
        if any(isinstance(a, (bool, np.bool_)) for a in given):
            raise TypeError         # (True is an int: argnum 1)
        nums = tuple(operator.index(a) for a in given)
    except TypeError:
        raise errors.GraphcTypeError(f"argnums must be an int or a tuple of ints, got "
                                     f"{argnums!r}{errors.at(errors.user_location())}") from None
    for a in nums:
        if not -nargs <= a < nargs:
            raise errors.GraphcValueError(f"argnums {a} is out of range for {nargs} arguments"
                                          f"{errors.at(errors.user_location())}")
    return tuple(a % nargs for a in nums)


def positional(signature: inspect.Signature, name: str, args: tuple, kwargs: dict,
               plans: dict | None = None) -> tuple:
    """Keyword arguments put in their places among a user function's
    parameters (JAX's transforms take them too); statics count by place. A
    parameter skipped before a later keyword takes its default. `name` is
    the caller's, for errors. `plans` keeps, per count of arguments and
    keyword names, where each place's value comes from: binding the
    signature cost a jitted predict's call 6 us, a plan's use 1."""
    if plans is not None:
        shape = (len(args), tuple(kwargs))
        plan = plans.get(shape)
        if plan is None:
            marks = tuple(_Place("arg", i) for i in range(len(args)))
            keyword_marks = {k: _Place("keyword", k) for k in kwargs}
            bound = positional(signature, name, marks, keyword_marks)
            plan = plans[shape] = [v if isinstance(v, _Place) else _Place("default", v)
                                   for v in bound]
        return tuple(args[p.at] if p.source == "arg" else kwargs[p.at]
                     if p.source == "keyword" else p.at for p in plan)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as e:
        raise errors.GraphcTypeError(f"{name}: {e}") from None
    params = signature.parameters
    places = [n for n, p in params.items()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    given = bound.arguments
    if not any(n in bound.kwargs for n in places):
        in_places, rest = bound.args, bound.kwargs
    else:   # BoundArguments.args stops at the first parameter not given
        last = max(places.index(n) for n in given if n in places)
        in_places = tuple(given[n] if n in given else params[n].default
                           for n in places[:last + 1])
        rest = {n: v for n, v in given.items() if n not in places}
    if rest:
        raise errors.GraphcTypeError(f"{name}: keyword-only and **kwargs parameters "
                                     f"({', '.join(rest)}) are not supported; pass their "
                                     f"values as positional parameters, or bind them first "
                                     f"with functools.partial{errors.at(errors.user_location())}")
    return in_places


class _Place(NamedTuple):
    """Where a place's value comes from in a call: its arguments, its keyword
    arguments, or the parameter's default (`at`: the position, name or value)."""
    source: str
    at: Any


def _leaf_ranges(args):
    ranges, start = [], 0
    for a in args:
        n = len(pytree.flatten(a)[0])
        ranges.append(range(start, start + n))
        start += n
    return ranges


def _check_differentiable(args, nums, fn_name):
    for a in nums:
        leaves, treedef = pytree.flatten(args[a])
        for leaf, path in zip(leaves, pytree.leaf_suffixes(treedef)):
            dtype = tracing.aval_of(leaf)[1]
            if dtype.kind != "f":
                where = f" at {path}" if path else ""
                instead = ("close over it (functools.partial(fn, ...)): vjp differentiates "
                           "every primal" if fn_name == "vjp" else "leave it out of argnums")
                raise errors.GraphcTypeError(
                    f"{fn_name}: argument {a}{where} has dtype {dtype}; only float arrays can be "
                    f"differentiated. Pass it as float (x.astype(np.float32)) or {instead}"
                    f"{errors.at(errors.user_location())}")


def _vjp_traced(fn, args, nums, out_cts_fn, has_aux=False, fn_name="grad"):
    """Trace `fn(*args)` and pull cotangents back to `args[nums]` (inside a trace)."""
    _check_differentiable(args, nums, fn_name)
    leaves, wrt = _leaves_and_wrt(args, nums)
    # simplified before differentiating: a recognised log-softmax gets its own
    # compact gradient (see passes.simplify)
    graph = passes.run(tracing.trace_fn(fn, args, _static_values(leaves, wrt)),
                       [passes.simplify, passes.eliminate_dead_code])
    out_tree = graph.meta["out_tree"]
    n_out = len(graph.outputs)
    primal_ids = list(range(n_out))
    if has_aux:
        if out_tree.kind not in ("tuple", "list", "namedtuple") or len(out_tree.children) != 2:
            got = "one array" if out_tree.kind == "leaf" else f"structure {out_tree}"
            raise errors.GraphcTypeError(f"{fn_name}(has_aux=True): the function must return a "
                                         f"pair (value, aux), got {got}"
                                         f"{errors.at(errors.user_location())}")
        primal_ids = list(range(out_tree.children[0].num_leaves))
    out_nodes = [graph.node(graph.outputs[i]) for i in primal_ids]
    cts = out_cts_fn(out_nodes) + [None] * (n_out - len(primal_ids))
    values = tracing.bound_values(graph, leaves)
    for k in wrt:   # a Python number differentiated inside a trace (a literal): VJPs read dtypes
        if not isinstance(values[k], (tracing.Tracer, np.ndarray)):
            values[k] = np.asarray(values[k], graph.node(graph.inputs[k]).dtype).view(
                tracing.WeakScalar)
    outs, grads = autodiff.vjp_into(graph, values, wrt, cts)
    grad_trees, k = [], 0
    for a in nums:
        treedef = pytree.flatten(args[a])[1]
        grad_trees.append(pytree.unflatten(treedef, grads[k:k + treedef.num_leaves]))
        k += treedef.num_leaves
    return pytree.unflatten(out_tree, outs), grad_trees


def _leaves_and_wrt(args, nums) -> tuple[list, list]:
    """The leaves of `args` and the positions among them of args[nums]'s."""
    ranges = _leaf_ranges(args)
    return pytree.flatten(tuple(args))[0], [i for a in nums for i in ranges[a]]


def _static_values(leaves, wrt) -> frozenset:
    """Inside another trace, the positions of the leaves that are neither
    arrays nor differentiated: that trace's dynamic values are tracers, so
    these are its static ones (jit(value_and_grad(loss), static_argnums=...):
    a `train` flag, a mode string), and reach the function as they are, for
    Python's `if` to read."""
    if tracing.current_graph() is None:
        return frozenset()
    differentiated = set(wrt)
    return frozenset(k for k, leaf in enumerate(leaves) if k not in differentiated
                     and not isinstance(leaf, (tracing.Tracer, np.ndarray)))


def _scalar_cotangent(fn_name):
    def cts(out_nodes):
        if len(out_nodes) != 1 or out_nodes[0].size != 1 or out_nodes[0].dtype.kind != "f":
            desc = ", ".join(n.type for n in out_nodes) or "nothing"
            pair = (f"; a function that returns (loss, aux) takes {fn_name}(..., has_aux=True)"
                    if len(out_nodes) > 1 and fn_name != "hessian" else "")
            vector = "" if fn_name == "hessian" else ", or use gc.jacobian for vector outputs"
            raise errors.GraphcTypeError(
                f"{fn_name}: the function must return a float scalar (0-d or size 1) to be "
                f"differentiated, but it returned {desc}; reduce it first (e.g. .sum() or "
                f".mean()){vector}{pair}"
                f"{errors.at(out_nodes[0].loc if out_nodes else None)}")
        return [np.ones(out_nodes[0].shape, out_nodes[0].dtype)]
    return cts


def value_and_grad(fn, argnums=0, has_aux=False):
    """`(value, grad)` of a scalar function; with has_aux `((value, aux), grad)`.

    >>> import numpy as np, graphc as gc
    >>> v, g = gc.value_and_grad(lambda q: 0.5 * q**2 + 3 * q + 10)(4.0)
    >>> float(v), float(g)
    (30.0, 7.0)
    """
    return Compiled(_value_and_grad_fn(fn, argnums, has_aux, "value_and_grad"),
                    name=f"value_and_grad({getattr(fn, '__name__', 'fn')})", user_fn=fn)


def _value_and_grad_fn(fn, argnums, has_aux, fn_name):
    """The traced function of value_and_grad and grad; errors name `fn_name`,
    the transform the user called."""
    def value_and_grad_fn(*args):
        nums = _argnums_tuple(argnums, len(args))
        out, grads = _vjp_traced(fn, args, nums, _scalar_cotangent(fn_name), has_aux, fn_name)
        g = grads[0] if one_argnum(argnums) else tuple(grads)
        return (out, g)
    return value_and_grad_fn


def grad(fn, argnums=0, has_aux=False):
    """d fn / d args[argnums], the same structure and dtype as that argument.

    >>> import numpy as np, graphc as gc
    >>> float(gc.grad(lambda q: 0.5 * q**2 + 3 * q + 10)(4.0))
    7.0
    """
    return _grad(fn, argnums, has_aux, "grad")


def _grad(fn, argnums, has_aux, fn_name):
    """grad, whose errors name `fn_name` (gc.hessian's are its own)."""
    value_and_grad_fn = _value_and_grad_fn(fn, argnums, has_aux, fn_name)

    def grad_fn(*args):
        (value, g) = value_and_grad_fn(*args)
        return (g, value[1]) if has_aux else g
    return Compiled(grad_fn, name=f"grad({getattr(fn, '__name__', 'fn')})", user_fn=fn)


def vjp(fn, *primals):
    """`(out, vjp_fn)`: `vjp_fn(ct)` returns the cotangents of every primal (a tuple)."""
    out = jit(fn)(*primals)

    def pulled(*args):
        ct_leaves = pytree.flatten(args[-1])[0]
        _, grads = _vjp_traced(fn, args[:-1], tuple(range(len(args) - 1)),
                               lambda nodes: list(ct_leaves), fn_name="vjp")
        return tuple(grads)
    pulled = jit(pulled)    # one for every call of vjp_fn (a new one traced each call: 1.6 ms)
    out_leaves, out_tree = pytree.flatten(out)

    def vjp_fn(ct):
        # as JAX: the output's structure and shapes (a missing leaf was taken
        # as 0, an extra axis summed away by the broadcast's pullback)
        ct_leaves, ct_tree = pytree.flatten(ct)
        if ct_tree != out_tree:
            raise errors.GraphcTypeError(
                f"vjp: the cotangent has structure {ct_tree}, but the function's output has "
                f"{out_tree}: pass one of the output's structure{errors.at(errors.user_location())}")
        for path, c, o in zip(pytree.leaf_suffixes(out_tree), ct_leaves, out_leaves):
            if np.shape(c) != np.shape(o):
                where = f" at {path}" if path else ""
                raise errors.ShapeError(
                    f"vjp: the cotangent{where} has shape {np.shape(c)}, but the output's is "
                    f"{np.shape(o)}{errors.at(errors.user_location())}")
        return pulled(*primals, ct)
    return out, vjp_fn


def check_grad(fn, *args, argnums=0, eps=None, rtol=None, atol=None):
    """Compare `gc.grad` with central finite differences at `args`.

    The numeric side runs in float64 on the NumPy reference interpreter.
    Raises AssertionError naming the worst element; returns None on success.

    >>> import numpy as np, graphc as gc
    >>> gc.check_grad(lambda x: np.sum(np.tanh(x) ** 2), np.linspace(-1, 1, 5))
    """
    nums = _argnums_tuple(argnums, len(args))
    check_grad_values(fn, args, grad(fn, argnums=nums)(*args), nums, eps, rtol, atol)


def check_grad_values(fn, args, analytic, argnums, eps=None, rtol=None, atol=None):
    """check_grad for gradients already computed: `analytic[k]` is the
    gradient with respect to args[argnums[k]] (a tuple of ints). For a test
    that compiles the gradient together with other values in one module."""
    f64_args = [pytree.unflatten(pytree.flatten(a)[1], [
        np.asarray(x, np.float64) if tracing.aval_of(x)[1].kind == "f" else x
        for x in pytree.flatten(a)[0]]) for a in args]
    f_ref = jit(fn)

    def f_at(at):
        with np.errstate(all="ignore"):     # a step past a kink or a domain's edge (sqrt(-h))
            return float(np.sum(np.asarray(pytree.flatten(f_ref.interpret(*at))[0][0],
                                           np.float64)))

    for k, a in enumerate(argnums):
        leaves, treedef = pytree.flatten(f64_args[a])
        a_leaves = pytree.flatten(analytic[k])[0]
        low_precision = any(tracing.aval_of(x)[1] == np.float32 for x in pytree.flatten(args[a])[0])
        h = eps or (1e-3 if low_precision else 1e-6)
        r_tol = rtol if rtol is not None else (2e-2 if low_precision else 1e-5)
        a_tol = atol if atol is not None else (2e-3 if low_precision else 1e-7)
        for li, (leaf, path) in enumerate(zip(leaves, pytree.leaf_suffixes(treedef))):
            numeric = np.zeros(np.shape(leaf))
            base = np.array(leaf, np.float64)
            for idx in np.ndindex(base.shape):
                plus, minus = base.copy(), base.copy()
                plus[idx] += h
                minus[idx] -= h
                at_p, at_m = list(f64_args), list(f64_args)
                at_p[a] = pytree.unflatten(treedef, leaves[:li] + [plus] + leaves[li + 1:])
                at_m[a] = pytree.unflatten(treedef, leaves[:li] + [minus] + leaves[li + 1:])
                numeric[idx] = (f_at(at_p) - f_at(at_m)) / (2 * h)
            got = np.asarray(a_leaves[li], np.float64)
            with np.errstate(invalid="ignore"):     # (inf - inf)
                err = np.abs(got - numeric) - (a_tol + r_tol * np.abs(numeric))
            # where either is not finite they agree only when equal (an inf
            # of one sign, or nan and nan), as np.testing.assert_allclose's
            same_special = (got == numeric) | (np.isnan(got) & np.isnan(numeric))
            err = np.where(np.isfinite(got) & np.isfinite(numeric), err,
                           np.where(same_special, -1.0, np.inf))
            if err.size and np.max(err) > 0:
                worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.ndim else ()
                where = f" leaf {path}" if path else ""
                raise AssertionError(
                    f"check_grad: argument {a}{where} index {tuple(int(i) for i in worst)}: "
                    f"analytic {float(got[worst])!r} vs numeric {float(numeric[worst])!r} "
                    f"(rtol={r_tol}, atol={a_tol}, eps={h})")
    return None
