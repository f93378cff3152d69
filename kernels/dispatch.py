"""How the kernels' Numba dispatchers are called from generated code, and
how generated code is compiled."""
import ctypes
import functools
import importlib
import os
import warnings

import llvmlite.binding as llvm_binding
import llvmlite.ir as llvm_ir
from numba import types
from numba.extending import intrinsic
from numba.core import cgutils, imputils
from numba.core.caching import FunctionCache
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import PassManager
from numba.core.runtime import rtsys
from numba.core.typed_passes import NopythonRewrites
from numba.core.untyped_passes import InlineClosureLikes, ReconstructSSA


def unliteral_calls(dispatcher):
    """Make `dispatcher` compile for the types of constants, not their values.

    Called from compiled code with a constant (`alloc.workspace_header(ws, 5,
    2)`, a literal shape, gemm's transpose flags), a Numba dispatcher
    compiles a version for that one value: a new model with a new slot
    count compiled workspace_header again. Typed as int64 or bool they compile
    once per type, and the caller casts its constants to those types. (The
    test suite's time barely moved: 20m38s to 20m32s of CPU cold.)"""
    resolve = dispatcher.get_call_template

    def get_call_template(args, kws):
        return resolve(tuple(types.unliteral(a) for a in args),
                       {k: types.unliteral(v) for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template
    return dispatcher


class GeneratedCode(CompilerBase):
    """Numba's nopython pipeline, less three passes that find nothing to do in
    graphc's generated functions (`pipeline_class=` of their @njit), each a
    scan of the whole function:
      - InlineClosureLikes: they define no closures or comprehensions;
      - NopythonRewrites: their loops work on scalars, so there are no array
        expressions to fuse (its other rewrites are for string literals);
      - ReconstructSSA: a generated variable has one type wherever it is
        assigned (typed constants, explicit casts), so type inference needs
        no SSA form, whose renaming scans the function once per variable
        assigned more than once (loop indices, accumulators).
    In W2's cold compile they took 0.18-0.23, 0.17-0.20 and 0.21-0.33 s of
    about 4.4 s. Functions Numba compiles for parallel loops keep the whole
    pipeline."""
    SKIPPED = (InlineClosureLikes, NopythonRewrites, ReconstructSSA)

    def define_pipelines(self):
        default = DefaultPassBuilder.define_nopython_pipeline(self.state)
        if self.state.flags.auto_parallel.enabled:
            return [default]
        pipeline = PassManager(default.pipeline_name)
        for pass_class, description in default.passes:
            if pass_class not in self.SKIPPED:
                pipeline.add_pass(pass_class, description)
        pipeline.finalize()
        return [pipeline]


class GeneratedKernel(GeneratedCode):
    """GeneratedCode for a kernel `run` calls: its array arguments' data
    pointers are `noalias` (Numba's flag of that name). Each is a buffer of
    its own (codegen gives an array passed twice one parameter, and never
    carves an output over an operand of the same kernel), and LLVM, told so,
    vectorizes loops it otherwise guards with a runtime overlap test per pair
    of arrays; past some number of tests it gives up and runs them scalar (an
    LSTM's gate kernel, 5 arrays read and 15 written: 108 -> 6.0 us a call)."""

    def define_pipelines(self):
        self.state.flags.noalias = True
        return super().define_pipelines()


class GeneratedDriver(GeneratedCode):
    """GeneratedCode for a large driver (`run`, `train_epoch`), without
    LLVM's function passes. Numba runs them on each function as it joins
    its library, to shrink it before the module passes, which then run the
    whole optimization pipeline over the final module again. On a driver's
    glue (calls, views of the workspace) the module passes alone give as
    fast a step: four transformer blocks' `run` spent 1.4 s in its function
    passes; its cold first call about 1 s shorter (9.0-9.7 -> 8.0-8.8 s in
    two sets of runs), its step 4.9-5.1 ms either way. The library is made
    here, of a class without them, where Numba's lowering would make one of
    its own; a Numba whose library class is not as this one's gets its own."""

    def define_pipelines(self):
        if self.state.library is None:
            codegen = self.state.targetctx.codegen()
            library_class = _without_function_passes(getattr(codegen, "_library_class", None))
            if library_class is not None:
                self.state.library = library_class(codegen, self.state.func_id.func_qualname)
                self.state.library.enable_object_caching()     # as Numba's lowering does
        return super().define_pipelines()


@functools.cache
def _without_function_passes(library_class):
    """A subclass of Numba's library class running no function passes, or
    None where that class has no `_optimize_functions` to replace."""
    if library_class is None or not hasattr(library_class, "_optimize_functions"):
        return None

    class LibraryWithoutFunctionPasses(library_class):
        def _optimize_functions(self, ll_module):
            ll_module.data_layout = self._codegen._data_layout      # all Numba's did but passes

    return LibraryWithoutFunctionPasses


class _LoadWithoutRefresh(FunctionCache):
    """Numba's on-disk cache of a function, less the registry refresh that
    Numba runs before every load. The refresh imports and installs all of
    Numba's typing and lowering registries (numba.np.arraymath, linalg, the
    typed containers, ...), which only compiling uses, and a compile runs
    it itself. In a new process with a warm cache it was most of the first
    call: W2's went from about 0.52 to 0.31 s, Numba's import aside. Loaded
    code still needs Numba's runtime (NRT: allocation and reference counts),
    so that is initialized first, as the refresh would have."""

    def load_overload(self, sig, target_context):
        load = getattr(self, "_load_overload", None)
        guard = getattr(self, "_guard_against_spurious_io_errors", None)
        if load is None or guard is None:    # another Numba's internals: its own way
            return super().load_overload(sig, target_context)
        rtsys.initialize(target_context)
        with guard():
            try:
                return load(sig, target_context)
            except Exception as error:      # Numba's own raises: a damaged entry stops every process
                warnings.warn(f"graphc: Numba's cached code of {self._name} could not be loaded "
                              f"({type(error).__name__}: {error}); compiling it again",
                              RuntimeWarning, stacklevel=2)
                return None                 # compiled, and saved over the entry

    def save_overload(self, sig, data):
        # A cfunc compiles with Numba's no_compile flag, which leaves its
        # library's reload hooks (called_by_symbol's) out of the result saved
        # (tests/test_call_by_symbol.py: a C function calling one)
        reload_init = getattr(data, "reload_init", None)
        if isinstance(reload_init, list):
            reload_init.extend(h for h in data.library._reload_init if h not in reload_init)
        try:
            return super().save_overload(sig, data)
        except Exception:       # Numba's save reads the index first: a damaged one raised
            if not self._index_damaged():
                raise
            os.unlink(self._cache_file._index_path)    # (what it named compiles again when asked)
            return super().save_overload(sig, data)

    def _index_damaged(self) -> bool:
        """Whether this function's Numba index is there and cannot be read."""
        cache_file = getattr(self, "_cache_file", None)
        index = getattr(cache_file, "_index_path", None)
        if index is None or not os.path.exists(index):      # another Numba's layout, or none
            return False
        try:
            cache_file._load_index()
        except Exception:
            return True
        return False


def load_without_refresh(compiled):
    """Give an njit dispatcher or a CFunc made with cache=True (not compiled
    yet) the cache above; returns it. For functions called from Python,
    whose load from disk is the first compiled code a process runs."""
    compiled._cache = _LoadWithoutRefresh(getattr(compiled, "py_func", None) or compiled._pyfunc)
    return compiled


# ---------------------------------------------------------------------------
# Functions called by symbol (generated kernels and loop parts, and the
# kernels here with loops). When compiled code calls a Numba function, Numba
# links the callee's LLVM IR into the caller's module, where LLVM optimizes
# and compiles it again: each kernel `run` calls was compiled twice, and a
# part of an unrolled loop (repeats.py) three times (itself, in run, and
# its kernels in it). A callee made `called_by_symbol` is compiled
# once; callers declare it under a name of its own (`_alias`) that the
# process's symbol table resolves to the callee's code when the caller is
# loaded. A caller loaded from Numba's disk cache is not typed again, so it
# carries (in Numba's reload hooks, run before its code is loaded) how to
# load or compile each callee and register its name first.

_CALLEE_LIBRARIES = []      # callees' code lives as long as the process: callers jump into it
# callees by (source file, name): two exported steps imported one after the
# other under one module name each find their own
_CALLEES = {}


def _source(dispatcher) -> tuple:
    return dispatcher.py_func.__code__.co_filename, dispatcher.py_func.__qualname__


def load_callee(module: str, source: tuple, argtypes: tuple, alias: str) -> None:
    """Make `alias` name the code of the function `source` (file, name) of
    `module` compiled for `argtypes` (loaded from Numba's disk cache, or
    compiled). A reload hook of callers."""
    dispatcher = _CALLEES.get(source) or getattr(importlib.import_module(module), source[1])
    dispatcher.compile(argtypes)
    compiled = dispatcher.overloads[argtypes]
    address = compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)
    if llvm_binding.address_of_symbol(alias) != address:
        llvm_binding.add_symbol(alias, address)
        _CALLEE_LIBRARIES.append(compiled.library)


def _alias(fndesc) -> str:
    """The name callers call `fndesc`'s code by: Numba's own symbol for it
    (module, function and argument types; unique within a process), marked
    so it never names a function a module defines."""
    return "graphc.callee." + fndesc.mangled_name


def _call_by_symbol(dispatcher, compiled):
    """Numba's lowering of a call of `compiled` (imputils.user_function),
    calling its code by `_alias` instead of linking its IR in."""
    fndesc = compiled.fndesc
    alias = _alias(fndesc)
    reload_hook = functools.partial(load_callee, dispatcher.py_func.__module__,
                                    _source(dispatcher), tuple(fndesc.argtypes), alias)

    def call(context, builder, sig, args):
        reload_hook()      # already compiled: registers the name for the caller being lowered
        context.active_code_library._reload_init.add(reload_hook)
        function_type = context.call_conv.get_function_type(fndesc.restype, fndesc.argtypes)
        callee = cgutils.get_or_insert_function(builder.module, function_type, alias)
        context.call_conv.decorate_function(callee, fndesc.args, fndesc.argtypes,
                                            noalias=fndesc.noalias)
        status, result = context.call_conv.call_function(builder, callee, fndesc.restype,
                                                         fndesc.argtypes, args)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        result = imputils.fix_returning_optional(context, builder, sig, status, result)
        return imputils.impl_ret_new_ref(context, builder, fndesc.restype, result)

    call.signature = fndesc.argtypes
    return call


def called_by_symbol(dispatcher):
    """Make compiled callers of `dispatcher` call its code by symbol, not
    link it in (above). Its compile results, fresh or loaded from disk, get
    that lowering in place of Numba's. It loads from disk without the registry
    refresh (load_without_refresh): a caller loaded from disk loads it.
    A C function calling it must be cached through load_without_refresh too:
    Numba's own cache of a cfunc drops the reload hooks, so its code would
    name a symbol nothing defines, and LLVM aborts the process loading it
    (seen with transpose_into, which gemm's C function calls)."""
    load_without_refresh(dispatcher)
    _CALLEES[_source(dispatcher)] = dispatcher
    add_overload = dispatcher.add_overload

    def add_overload_called_by_symbol(compiled):
        add_overload(compiled)
        context = dispatcher.targetctx
        context.remove_user_function(compiled.entry_point)
        call = _call_by_symbol(dispatcher, compiled)
        context.insert_func_defn([(call, compiled.entry_point, call.signature)])

    dispatcher.add_overload = add_overload_called_by_symbol
    return dispatcher


# ---------------------------------------------------------------------------
# Kernels called by address. A Numba function calling another links the
# callee's LLVM IR into its own module, where LLVM optimizes and compiles it
# again: cached on disk or not, a kernel built on Numba's LAPACK or BLAS
# wrappers costs every model calling it seconds of compile. Compiled once
# per install as a C function (a cfunc, cached on disk), its address in a
# table that compiled code finds by symbol name, it costs a load.

def shared_address_table(symbol: str, size: int):
    """The process's table of `size` addresses (intp) named `symbol`. A kernel
    module can be loaded more than once (graphc's, and a copy in each
    exported step), and the symbol names one table, so a later copy uses the
    first one's (kept forever: compiled code reads it by address). Give the
    table a new name whenever the C functions' signature changes."""
    table_type = ctypes.c_ssize_t * size
    shared = llvm_binding.address_of_symbol(symbol)
    if shared:
        return table_type.from_address(shared)
    table = table_type()
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(table))
    llvm_binding.add_symbol(symbol, ctypes.addressof(table))
    return table


def address_reader(symbol: str, size: int):
    """An intrinsic: `read(i)` is entry i of the table `symbol` (0: not built)."""
    @intrinsic
    def read(typingctx, index):
        def codegen(context, builder, sig, args):
            entry = context.get_value_type(types.intp)
            table = context.get_c_value(builder, llvm_ir.ArrayType(entry, size), symbol)
            position = context.cast(builder, args[0], sig.args[0], types.intp)
            return builder.load(builder.gep(table, [llvm_ir.Constant(llvm_ir.IntType(32), 0),
                                                    position]))
        return types.intp(index), codegen
    return read


def c_kernel_signature(real):
    """The signature of a C kernel: status = kernel(like, i0, ..., i6), seven
    integers (arrays by address, sizes, flags; 0 where unused) and `like`, a
    zero of its arrays' dtype (it picks the dtype the body is compiled for)."""
    return types.int32(real, *[types.intp] * 7)


class CKernels:
    """C kernels (Python functions with c_kernel_signature, compiled as cfuncs
    for float32 and float64) in one table: `build(name, itemsize)` fills the
    kernel's entry once per process (generated code calls it at its import);
    compiled code reads entry `slot(name) + (itemsize == 8)` with
    `address_reader(symbol, size)` and calls it with call_c_kernel. The
    table's symbol names its kernels in their order, so copies of a kernel
    module with other kernels (an exported step from another version) never
    share a table; give `prefix` a new number whenever the signature changes."""

    def __init__(self, prefix: str, bodies: dict):
        self.bodies, self.size = bodies, 2 * len(bodies)
        self.symbol = f"{prefix}_1_" + "_".join(bodies)
        self.table = shared_address_table(self.symbol, self.size)
        self._compiled = []         # their code lives as long as these objects

    def slot(self, name: str) -> int:
        return 2 * list(self.bodies).index(name)

    def build(self, name: str, itemsize: int) -> None:
        """Compile (or load from disk) `name`'s C function for float32
        (itemsize 4) or float64 (8). Under Numba's compiler lock, which a
        compile calling the kernel already holds (another lock taken inside
        it could deadlock against a thread importing a module)."""
        from numba.core import sigutils
        from numba.core.ccallback import CFunc
        from numba.core.compiler_lock import global_compiler_lock
        if itemsize not in (4, 8):
            raise ValueError(f"{name}: float32 (4) or float64 (8) only, not itemsize {itemsize}")
        slot = self.slot(name) + (itemsize == 8)
        if self.table[slot]:
            return
        with global_compiler_lock:
            if not self.table[slot]:
                real = types.float32 if itemsize == 4 else types.float64
                compiled = load_without_refresh(CFunc(
                    self.bodies[name], sigutils.normalize_signature(c_kernel_signature(real)),
                    locals={}, options={"nopython": True}))
                compiled.compile()      # loaded from disk after the install's first use
                self._compiled.append(compiled)
                self.table[slot] = compiled.address


@intrinsic
def call_c_kernel(typingctx, address, like, i0, i1, i2, i3, i4, i5, i6):
    """The c_kernel_signature function at `address` for the dtype of the array `like`."""
    sig = types.int32(address, like, i0, i1, i2, i3, i4, i5, i6)

    def codegen(context, builder, sig, args):
        real = sig.args[1].dtype
        target = c_kernel_signature(real)
        values = [context.get_constant(real, 0)] + [
            context.cast(builder, v, t, types.intp) for v, t in zip(args[2:], sig.args[2:])]
        fnty = llvm_ir.FunctionType(context.get_value_type(types.int32),
                                    [context.get_value_type(t) for t in target.args])
        return builder.call(builder.inttoptr(args[0], fnty.as_pointer()), values)

    return sig, codegen


@intrinsic
def as_pointer(typingctx, address, like):
    """The integer `address` as a pointer to `like`'s type."""
    sig = types.CPointer(like)(address, like)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

    return sig, codegen
