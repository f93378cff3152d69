"""sin and cos in vector loops (this Numba has no SVML).

np.sin in a Numba loop calls libm once per element: per 1e6 elements 13 ms
in float32 and 27 in float64 here. NumPy's own float32 loop is a vector
loop (4 ms); its float64 one is the same libm call. These take 2.3 ms and
5.9 (benchmarks/bench_vmath.py). A vector sin written as one Numba
function must be branch-free, so it would pay for large arguments' exact
reduction in every lane; written that way (with a table of 2/pi's bits),
the float32 one took 8 ms.

So these are LLVM functions of their own, built when this module is
imported (compiled the first time, 130 ms here, then loaded from a cache
beside Numba's, 25 ms): `graphc_sinf_<hash>_v8` takes 8 floats, and so on
(`graphc_sin_<hash>_v4` 4 doubles), each with a scalar function beside it.
The scalar function's declaration names the vector ones in the
"vector-function-abi-variant" attribute, so LLVM's loop vectorizer calls a
vector function for each vector of elements, wherever generated code calls
`trig.sin`. Inside, a lane with |x| up to `fast_max` (2^16 in float32, 2^20
in float64) is reduced by pi/2 in three steps (Cody-Waite, with FMA) and
computed with Taylor polynomials; when any lane is larger, or inf or nan,
libm computes that lane. Every lane gets the same answer as the scalar
function, at any position in any loop. Max err: float32, over all 2^32
inputs, sin 1.49 ulp (at 625.0518) and cos 1.49 (at 32617.71); float64, over
8.5M (strided bit patterns, dense ranges, the doubles at and beside k pi/2
for k < 7e5), 1.45 and 1.48 (a review's 3.7M more: 1.42, 1.46).
tests/test_trig.py checks samples of them against _MAX_ULP.

Compiled code refers to the functions by name; importing this module
registers their addresses, so cached code finds them in a new process.
On an x86 CPU without FMA, where these would be slower, libm stays.
"""
import fractions
import hashlib
import math
import os
import pathlib
import struct

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import caching, cgutils, config
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic, overload

from graphc.kernels import vmath

_MAX_ULP = {np.float32: 1.5, np.float64: 1.6}    # what tests/test_trig.py holds them to


class _TrigType:
    """What differs between float32's functions and float64's."""
    def __init__(self, ir_type, dtype, lanes, fast_max, sin_terms, cos_terms, libm):
        self.ir, self.lanes, self.fast_max = ir_type, lanes, fast_max
        single = dtype == np.float32
        self.short = "f32" if single else "f64"
        self.llvm = ir.FloatType() if single else ir.DoubleType()       # for Numba's side
        self.numba = types.float32 if single else types.float64
        cast = lambda c: float(dtype(c))       # noqa: E731
        # Taylor coefficients, highest power first: sin r = r + r z S(z), cos r = 1 + z C(z)
        self.S = [cast((-1) ** n / math.factorial(2 * n + 1)) for n in range(sin_terms, 0, -1)]
        self.C = [cast((-1) ** n / math.factorial(2 * n)) for n in range(cos_terms, 0, -1)]
        self.parts = _trig_float_parts(_trig_pi_over_2(), 3, dtype)
        self.two_over_pi = cast(2 / np.pi)
        self.libm = libm


def _trig_pi_over_2() -> fractions.Fraction:
    """pi/2 to 2^-200, from Machin's pi = 16 atan(1/5) - 4 atan(1/239) in integers."""
    one = 1 << 260

    def atan_inv(n):
        total, term, k = 0, one // n, 1
        while term:
            total += term // k if k % 4 == 1 else -(term // k)
            term //= n * n
            k += 2
        return total
    return fractions.Fraction(16 * atan_inv(5) - 4 * atan_inv(239), 2 * one)


def _trig_float_parts(value: fractions.Fraction, count: int, dtype) -> list[float]:
    """`value` as a sum of `count` numbers of `dtype`, each the nearest to what is left."""
    parts = []
    for _ in range(count):
        parts.append(float(dtype(float(value))))
        value -= fractions.Fraction(parts[-1])
    return parts


# The fast path's reach: with three parts of pi/2 the reduction is exact to
# the last bit up to 2^16 in float32 (measured over every float32) and far
# beyond 2^20 in float64. Taylor terms to r^9 / r^10 (float32) and r^17 /
# r^16 (float64) leave under 2^-28 and 2^-59 of the value at pi/4.
_TRIG_TYPES = {
    "float": _TrigType("float", np.float32, (4, 8, 16), 65536.0, 4, 5, ("sinf", "cosf")),
    "double": _TrigType("double", np.float64, (2, 4, 8), 2.0 ** 20, 8, 8, ("sin", "cos")),
}


def _trig_ir(name: str, lanes: int, quadrant: int, kind: _TrigType) -> str:
    """The LLVM IR of `<name>_v<lanes>`: sin (quadrant 0) or cos (1) of each lane."""
    f = kind.ir
    v, iv, bv = f"<{lanes} x {f}>", f"<{lanes} x i32>", f"<{lanes} x i1>"

    def splat(x):      # an LLVM float constant is written as the double of the same value
        one = (f"{f} 0x{struct.unpack('<Q', struct.pack('<d', x))[0]:016X}"
               if isinstance(x, float) else f"i32 {x}")
        return "<" + ", ".join([one] * lanes) + ">"

    P1, P2, P3 = kind.parts
    S, C = kind.S, kind.C
    suffix = f"v{lanes}{kind.short}"
    fma = f"@llvm.fma.{suffix}"
    lines = [
        f"define {v} @{name}_v{lanes}({v} %x) #0 {{",
        "entry:",
        f"  %a = call {v} @llvm.fabs.{suffix}({v} %x)",
        f"  %fast = fcmp ole {v} %a, {splat(kind.fast_max)}",        # nan: false
        f"  %xc = select {bv} %fast, {v} %x, {v} zeroinitializer",
        f"  %t = fmul {v} %xc, {splat(kind.two_over_pi)}",
        f"  %k = call {v} @llvm.roundeven.{suffix}({v} %t)",
        f"  %nk = fneg {v} %k",
        f"  %r1 = call {v} {fma}({v} %nk, {v} {splat(P1)}, {v} %xc)",
        f"  %r2 = call {v} {fma}({v} %nk, {v} {splat(P2)}, {v} %r1)",
        f"  %r = call {v} {fma}({v} %nk, {v} {splat(P3)}, {v} %r2)",
        f"  %z = fmul {v} %r, %r",
        f"  %s0 = fadd {v} {splat(S[0])}, zeroinitializer",
    ]
    for i, c in enumerate(S[1:], 1):
        lines.append(f"  %s{i} = call {v} {fma}({v} %s{i - 1}, {v} %z, {v} {splat(c)})")
    lines += [f"  %rz = fmul {v} %r, %z",
              f"  %sin = call {v} {fma}({v} %rz, {v} %s{len(S) - 1}, {v} %r)",
              f"  %c0 = fadd {v} {splat(C[0])}, zeroinitializer"]
    for i, c in enumerate(C[1:], 1):
        lines.append(f"  %c{i} = call {v} {fma}({v} %c{i - 1}, {v} %z, {v} {splat(c)})")
    lines += [
        f"  %cos = call {v} {fma}({v} %z, {v} %c{len(C) - 1}, {v} {splat(1.0)})",
        f"  %ki = fptosi {v} %k to {iv}",
        f"  %q = add {iv} %ki, {splat(quadrant)}",
        f"  %odd = and {iv} %q, {splat(1)}",
        f"  %half = and {iv} %q, {splat(2)}",
        f"  %use_cos = icmp ne {iv} %odd, zeroinitializer",
        f"  %negate = icmp ne {iv} %half, zeroinitializer",
        f"  %y0 = select {bv} %use_cos, {v} %cos, {v} %sin",
        f"  %ny0 = fneg {v} %y0",
        f"  %y1 = select {bv} %negate, {v} %ny0, {v} %y0",
        # sin(-0) = -0 (the polynomial's r + r z s gives +0); cos(+-0) = 1 already
        f"  %zero = fcmp oeq {v} %a, zeroinitializer",
        f"  %y = select {bv} %zero, {v} {'%x' if quadrant == 0 else '%y1'}, {v} %y1",
        f"  %all_fast = call i1 @llvm.vector.reduce.and.v{lanes}i1({bv} %fast)",
        "  br i1 %all_fast, label %done, label %libm",
        "libm:",
    ]
    libm = kind.libm[quadrant]
    previous = f"{v} poison"
    for i in range(lanes):     # rare: every lane through libm, then the slow ones kept
        lines += [f"  %x{i} = extractelement {v} %x, i32 {i}",
                  f"  %l{i} = call {f} @{libm}({f} %x{i})",
                  f"  %m{i} = insertelement {previous}, {f} %l{i}, i32 {i}"]
        previous = f"{v} %m{i}"
    lines += [f"  %slow = select {bv} %fast, {v} %y, {previous}",
              "  br label %done",
              "done:",
              f"  %out = phi {v} [%y, %entry], [%slow, %libm]",
              f"  ret {v} %out",
              "}"]
    return "\n".join(lines)


def _trig_scalar_ir(name: str, kind: _TrigType) -> str:
    """`<name>(x)`: lane 0 of the narrowest vector function, so a scalar call
    and a vector lane agree."""
    f, n = kind.ir, kind.lanes[0]
    return "\n".join([
        f"define {f} @{name}({f} %x) #0 {{",
        f"  %v = insertelement <{n} x {f}> zeroinitializer, {f} %x, i32 0",
        f"  %y = call <{n} x {f}> @{name}_v{n}(<{n} x {f}> %v)",
        f"  %out = extractelement <{n} x {f}> %y, i32 0",
        f"  ret {f} %out",
        "}"])


def _trig_text(functions: dict) -> str:
    """The module defining `functions` (name -> (IR type, quadrant offset: 0
    sin, 1 cos)), with the declarations of what they call."""
    declarations = {f"declare i1 @llvm.vector.reduce.and.v{n}i1(<{n} x i1>)"
                    for kind in _TRIG_TYPES.values() for n in kind.lanes}
    for kind in _TRIG_TYPES.values():
        f = kind.ir
        declarations.update(f"declare {f} @{name}({f})" for name in kind.libm)
        for n in kind.lanes:
            v, suffix = f"<{n} x {f}>", f"v{n}{kind.short}"
            declarations.update([f"declare {v} @llvm.fabs.{suffix}({v})",
                                 f"declare {v} @llvm.roundeven.{suffix}({v})",
                                 f"declare {v} @llvm.fma.{suffix}({v}, {v}, {v})"])
    return "\n".join(
        [_trig_ir(name, n, q, _TRIG_TYPES[t]) for name, (t, q) in functions.items()
         for n in _TRIG_TYPES[t].lanes]
        + [_trig_scalar_ir(name, _TRIG_TYPES[t]) for name, (t, _) in functions.items()]
        + sorted(declarations) + ["attributes #0 = { nounwind }"])


_TRIG_BASE_NAMES = {"graphc_sinf": ("float", 0), "graphc_cosf": ("float", 1),
                    "graphc_sin": ("double", 0), "graphc_cos": ("double", 1)}
# Symbols are process-wide: their names carry a hash of the code, so an exported
# module of another graphc version, which builds its own, never replaces these.
_TRIG_TAG = hashlib.sha256(_trig_text(_TRIG_BASE_NAMES).encode()).hexdigest()[:10]
_TRIG_FUNCTIONS = {f"{name}_{_TRIG_TAG}": kind for name, kind in _TRIG_BASE_NAMES.items()}
# The CPU Numba compiles for (NUMBA_CPU_NAME and _FEATURES included): caller and
# callee must agree on how a vector argument is passed
_TRIG_CPU = config.CPU_NAME or llvm.get_host_cpu_name()
_TRIG_FEATURES = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
# Without FMA, LLVM calls fmaf per lane: 1e6 sines took 34 ms against libm's 14
_TRIG_VECTOR = ("+fma" in _TRIG_FEATURES.split(",")
                or not llvm.get_process_triple().startswith(("x86_64", "i386", "i686")))


def _trig_cache_anchor():
    """Stands for this file when asking Numba where its cache goes."""


def _trig_object_file(text: str) -> pathlib.Path | None:
    """Where the machine code of `text` for this CPU is cached: beside Numba's
    cache of this file's functions (None where there is none to write)."""
    for locator_class in caching.CacheImpl._locator_classes:
        locator = locator_class.from_function(_trig_cache_anchor, __file__)
        if locator is not None:
            try:
                locator.ensure_cache_path()
            except OSError:
                return None
            key = hashlib.sha256("\n".join([text, llvm.get_process_triple(), _TRIG_CPU,
                                            _TRIG_FEATURES, str(llvm.llvm_version_info)]).encode())
            return pathlib.Path(locator.get_cache_path()) / f"trig-{key.hexdigest()[:24]}.o"
    return None


def _trig_read_object(path: pathlib.Path | None) -> bytes | None:
    """The cached machine code, if the file holds all of it: LLVM aborts the
    process on an object file it cannot read, so a damaged file is ignored
    (and written again)."""
    try:
        data = path.read_bytes() if path else b""
    except OSError:
        return None
    digest, code = data[:32], data[32:]
    return code if code and hashlib.sha256(code).digest() == digest else None


def _trig_write_object(path: pathlib.Path | None, code: bytes) -> None:
    """Writes the code with its hash: to a temporary file, then renamed, so
    processes loading at the same time see all of it or none."""
    if path is None:
        return
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        temporary.write_bytes(hashlib.sha256(code).digest() + code)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)


def _trig_compile():
    """Compiles the functions for this CPU (or loads their cached machine code:
    compiling them took 130 ms) and registers their addresses with LLVM,
    where compiled code, new or cached, finds them by name."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    text = _trig_text(_TRIG_FUNCTIONS)
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=_TRIG_CPU, features=_TRIG_FEATURES, opt=3)
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(text), machine)
    path = _trig_object_file(text)
    engine.set_object_cache(lambda module, code: _trig_write_object(path, code),
                            lambda module: _trig_read_object(path))
    engine.finalize_object()
    for name, (t, _) in _TRIG_FUNCTIONS.items():
        for symbol in [name] + [f"{name}_v{lanes}" for lanes in _TRIG_TYPES[t].lanes]:
            llvm.add_symbol(symbol, engine.get_function_address(symbol))
    return engine


_TRIG_ENGINE = _trig_compile() if _TRIG_VECTOR else None     # kept: it owns the machine code


def _trig_declare(module) -> None:
    """Declares every function here in `module`, the scalar ones naming their
    vector forms, which the vectorizer only uses when they are declared in the
    module: llvm.compiler.used keeps them past the passes that drop unused
    declarations. (Where the module already has an llvm.compiler.used, of
    other code, the vector forms may be dropped, and loops call the scalar
    function: the same answers, slower.)"""
    if next(iter(_TRIG_FUNCTIONS)) in module.globals:
        return
    variants = []
    for name, (t, _) in _TRIG_FUNCTIONS.items():
        real, lanes = _TRIG_TYPES[t].llvm, _TRIG_TYPES[t].lanes
        for n in lanes:
            vec = ir.VectorType(real, n)
            variants.append(cgutils.get_or_insert_function(
                module, ir.FunctionType(vec, [vec]), f"{name}_v{n}"))
        scalar = cgutils.get_or_insert_function(module, ir.FunctionType(real, [real]), name)
        set.add(scalar.attributes, '"vector-function-abi-variant"="' + ",".join(
            f"_ZGV_LLVM_N{n}v_{name}({name}_v{n})" for n in lanes) + '"')
        variants.append(scalar)
    for f in variants:
        f.attributes.add("nounwind")
        set.add(f.attributes, "memory(none)")      # llvmlite's own list lacks memory()
    if "llvm.compiler.used" in module.globals:
        return
    i8p = ir.IntType(8).as_pointer()
    used = ir.GlobalVariable(module, ir.ArrayType(i8p, len(variants)), "llvm.compiler.used")
    used.linkage = "appending"
    used.section = "llvm.metadata"
    used.initializer = ir.Constant(used.type.pointee, [f.bitcast(i8p) for f in variants])


def _trig_intrinsic(name: str):
    real = _TRIG_TYPES[_TRIG_FUNCTIONS[name][0]].numba

    @intrinsic
    def call(typingctx, x):
        if x != real:
            return None

        def codegen(context, builder, sig, args):
            _trig_declare(builder.module)
            return builder.call(builder.module.globals[name], args)
        return real(x), codegen
    return call


# "sinf", "cosf" (float32), "sin", "cos" (float64) -> the intrinsic calling that function
_TRIG_CALLS = {base[len("graphc_"):]: _trig_intrinsic(f"{base}_{_TRIG_TAG}")
               for base in _TRIG_BASE_NAMES}


def _trig_define(name, libm):
    def stub(x):
        raise NotImplementedError("only callable from Numba code")
    stub.__name__ = f"_{name}"
    to32, to64 = _TRIG_CALLS[name + "f"], _TRIG_CALLS[name]

    @overload(stub, jit_options=vmath._JIT)
    def _ov(x):
        if x == types.float32 and _TRIG_VECTOR:
            return lambda x: to32(x)
        if x == types.float64 and _TRIG_VECTOR:
            return lambda x: to64(x)
        if isinstance(x, (types.Float, types.Integer, types.Boolean)):
            return lambda x: libm(x)
        return None
    return stub


_trig_sin, _trig_cos = _trig_define("sin", np.sin), _trig_define("cos", np.cos)


@njit(cache=True, **vmath._JIT)
def sin(x):
    """sin of a scalar: float32 and float64 through graphc_sinf_<hash> and
    graphc_sin_<hash> (vector loops call their vector forms; max err 1.49
    ulp measured, _MAX_ULP tested), integers through libm."""
    return _trig_sin(x)


@njit(cache=True, **vmath._JIT)
def cos(x):
    """cos of a scalar, as sin."""
    return _trig_cos(x)
