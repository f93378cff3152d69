"""Which BLAS library graphc's GEMMs call: NumPy's own, when it can be found.

A NumPy wheel and a SciPy wheel each bundle an OpenBLAS, and not the same
one: NumPy 2.4.6 here carries OpenBLAS 0.3.31, SciPy 1.17.1 carries 0.3.30.
Numba's np.dot, and graphc's GEMM until now, call SciPy's (through
`scipy.linalg.cython_blas`), so the hand-written NumPy step graphc is
measured against ran its GEMMs on a faster library. One thread, float32,
median per call (benchmarks/bench_blas_libraries.py, AMD EPYC, 2026-12-03):
32x64 @ 64x64 (W4's layers) 3.5 us on NumPy's against 5.5 on SciPy's,
(64x64).T @ 64x10 (W1's weight gradient) 2.8 against 4.5, 128x784 @
784x256 (W2's first layer) 587 against 663, 512x784 @ 784x1024 (W3's) 9.07
against 9.41 ms; float64 within 5% either way but for W1's weight gradient
(1.5x).

Compiled code calls GEMM by the symbol names SGEMM and DGEMM, CBLAS
signatures with 64-bit integers (CBLAS_SIGNATURE), so functions calling them
cache on disk like any other: `bind()`, run when graphc.kernels.blas is
imported (before any such function is compiled or loaded), points the names
at this process's library with llvmlite's add_symbol. It takes:
- `numpy` (the default): NumPy's ILP64 OpenBLAS, found through NumPy's
  extension module (the dynamic loader searches the libraries it links);
- `scipy`, or when NumPy's cannot be found (a NumPy built against another
  BLAS, or a platform whose loader does not search that way): two Numba
  cfuncs with those signatures that call Numba's own GEMM, SciPy's
  cython_blas;
- `mkl`: NumPy's, but for products of LARGE_GEMM_MIN
  multiply-adds or more, which call Intel's MKL (`pip install mkl`) through
  SGEMM_LARGE and DGEMM_LARGE (see kernels/mkl_library.py). Without a usable
  MKL: a warning saying why, and NumPy's for all.
The environment variable GRAPHC_BLAS chooses (`numpy`, `scipy` or `mkl`).
For an OpenBLAS or MKL, bind() also runs one small product of each float
type through the functions it bound (fault_in_buffer): it maps the pages of
OpenBLAS's work buffer, which a new process's products otherwise prefetch
in vain (up to 3.4x the time of a float32 product on this project's VM),
and checks that the addresses compute a product.
"""
import contextlib
import ctypes
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings

import llvmlite.binding as llvm
from numba import cfunc, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from graphc.kernels import mkl_library

SGEMM, DGEMM = "graphc_cblas_sgemm", "graphc_cblas_dgemm"
# the same for products of at least LARGE_GEMM_MIN multiply-adds: MKL's with
# GRAPHC_BLAS=mkl, else the same functions as SGEMM and DGEMM
SGEMM_LARGE, DGEMM_LARGE = "graphc_cblas_sgemm_large", "graphc_cblas_dgemm_large"
# CBLAS ?trsm (triangular solves: a Cholesky factor's), from the same library
STRSM, DTRSM = "graphc_cblas_strsm", "graphc_cblas_dtrsm"
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112      # CBLAS's enum values
UPPER, LOWER, NON_UNIT, LEFT = 121, 122, 131, 141
CHOICES = ("numpy", "scipy", "mkl")

# Products of at least this many multiply-adds go to MKL under GRAPHC_BLAS=mkl.
# One thread, MKL 2026.2 / OpenBLAS 0.3.31 (SkylakeX kernels), Intel Xeon:
# W2's and W3's products (8.4M to 822M) 0.73-0.96; W4's 32x64x64 (131,072)
# 0.64-1.21 by transpose flags; W1's 64x64x10 0.93-1.80.
LARGE_GEMM_MIN = 1 << 20

# Exported names of NumPy's CBLAS GEMMs with 64-bit integers: NumPy's wheels
# from 2.0 (scipy-openblas64), then OpenBLAS built with the 64_ suffix (NumPy
# 1.x wheels). Only names whose integers are known to be 64-bit: a library
# exporting plain cblas_sgemm may take 32-bit ones, so it is not used.
_NUMPY_NAMES = (("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"),
                ("cblas_sgemm64_", "cblas_dgemm64_"))
_NUMPY_TRSM_NAMES = (("scipy_cblas_strsm64_", "scipy_cblas_dtrsm64_"),
                     ("cblas_strsm64_", "cblas_dtrsm64_"))


def CBLAS_SIGNATURE(real):
    """cblas_?gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb,
    beta, c, ldc) with 64-bit integers; arrays passed as addresses."""
    i, p = types.int64, types.intp
    return types.void(types.intc, types.intc, types.intc, i, i, i,
                      real, p, i, p, i, real, p, i)


def TRSM_SIGNATURE(real):
    """cblas_?trsm(order, side, uplo, trans_a, diag, m, n, alpha, a, lda, b,
    ldb) with 64-bit integers: op(a) x = alpha b, x written over b."""
    i, p, e = types.int64, types.intp, types.intc
    return types.void(e, e, e, e, e, i, i, real, p, i, p, i)


def cblas_ctypes(real):
    """The same signature as a ctypes prototype, `real` ctypes.c_float or
    c_double: for calling a GEMM at an address from Python (fault_in_buffer,
    the benchmarks) or making one (the tests)."""
    i, p = ctypes.c_int64, ctypes.c_void_p
    return ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, i, i, i,
                            real, p, i, p, i, real, p, i)


def trsm_ctypes(real):
    """TRSM_SIGNATURE as a ctypes prototype (`real` ctypes.c_float or c_double):
    for checking a bound ?trsm (_check_trsm) and in tests."""
    i, p, e = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    return ctypes.CFUNCTYPE(None, e, e, e, e, e, i, i, real, p, i, p, i)


def choice() -> str:
    """GRAPHC_BLAS, checked: `numpy` unless set."""
    value = os.environ.get("GRAPHC_BLAS", "").strip().lower() or "numpy"
    if value not in CHOICES:
        raise ValueError(f"GRAPHC_BLAS={os.environ['GRAPHC_BLAS']!r}: "
                         f"expected one of {', '.join(CHOICES)}")
    return value


def _numpy_extension():
    try:
        from numpy._core import _multiarray_umath
    except ImportError:         # NumPy 1.x
        from numpy.core import _multiarray_umath
    return _multiarray_umath


def numpy_gemms() -> tuple[int, int, str] | None:
    """(sgemm address, dgemm address, symbol name) of NumPy's own CBLAS GEMMs
    with 64-bit integers, or None when they cannot be found."""
    return _numpy_functions(_NUMPY_NAMES)


def numpy_trsms() -> tuple[int, int, str] | None:
    """The same for NumPy's CBLAS ?trsm."""
    return _numpy_functions(_NUMPY_TRSM_NAMES)


def _numpy_functions(names) -> tuple[int, int, str] | None:
    numpy_library = _library_of(_numpy_extension())
    if numpy_library is None:
        return None
    for s_name, d_name in names:
        try:
            s, d = getattr(numpy_library, s_name), getattr(numpy_library, d_name)
        except AttributeError:
            continue
        return (ctypes.cast(s, ctypes.c_void_p).value, ctypes.cast(d, ctypes.c_void_p).value,
                s_name)
    return None


# Whether blas.gemm copies b.T for a small a @ b.T (blas._transposing_b_pays):
# compiled code reads this int at run time, bound by name like the GEMMs.
COPY_TRANSPOSED_B = "graphc_blas_copy_transposed_b"
_copy_transposed_b = ctypes.c_int32(0)
# its bits: OpenBLAS's small-matrix kernels are in use (b.T is copied, and
# products past them run in blocks: blas._block_rows); products of
# LARGE_GEMM_MIN or more go to MKL (never in blocks)
SMALL_KERNELS, LARGE_TO_MKL = 1, 2

# OpenBLAS cores with small-matrix GEMM kernels (and a "direct" sgemm for
# float32 a @ b with alpha 1 and beta 0). With them, on this project's Xeon
# (SkylakeX), 32x64 @ (64x64).T took 6.5 us as it is and 3.1 with b.T copied
# first, and float64 gained too (copy / as it is 0.66); on the AMD VM, whose
# OpenBLAS runs Haswell kernels, the copy never paid (1.00-1.38x the time of
# a @ b.T as it is, benchmarks/bench_gemm_nt.py). Which of those kernels
# makes the difference was not measured apart.
_DIRECT_SGEMM_CORES = ("skylakex", "cooperlake", "sapphirerapids")
_CORE_NAMES = ("scipy_openblas_get_corename64_", "openblas_get_corename64_",
               "scipy_openblas_get_corename", "openblas_get_corename")


def openblas_core(library: ctypes.CDLL) -> str | None:
    """The kernel set ("Haswell", "SkylakeX") of the OpenBLAS `library` links, or None."""
    for name in _CORE_NAMES:
        get = getattr(library, name, None)
        if get is not None:
            get.restype = ctypes.c_char_p
            return get().decode(errors="replace")
    return None


def copies_transposed_b() -> bool:
    """Whether blas.gemm copies b.T for small a @ b.T products now."""
    return bool(_copy_transposed_b.value & SMALL_KERNELS)


@contextlib.contextmanager
def copying_transposed_b(copy: bool):
    """Within the block, blas.gemm copies b.T for small a @ b.T products, or
    not (bind() chooses by the BLAS in use; tests force both ways)."""
    previous = _copy_transposed_b.value
    _copy_transposed_b.value = (previous & ~SMALL_KERNELS) | (SMALL_KERNELS if copy else 0)
    try:
        yield
    finally:
        _copy_transposed_b.value = previous


_bound: str | None = None


def bind() -> str:
    """Point SGEMM and DGEMM at this process's choice of library, and set
    COPY_TRANSPOSED_B for it (once); returns what they call, for reports.

    The symbol table is one per process, but this module can be loaded more
    than once: graphc's, and a copy embedded in each exported step
    (graphc.export). A later add_symbol would re-point the names for code
    linked from then on, so the flag of the copy that bound first is shared
    (never freed, since compiled code reads it by address)."""
    global _bound, _copy_transposed_b
    if _bound is None:
        shared = llvm.address_of_symbol(COPY_TRANSPOSED_B)
        if shared:
            _copy_transposed_b = ctypes.c_int32.from_address(shared)
        else:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(_copy_transposed_b))
        _load_cython_blas()     # Numba imports it at start-up whichever is used
        chosen = choice()
        found = numpy_gemms() if chosen != "scipy" else None
        if found is None:
            s, d = scipy_gemms()
            library = _library_of(sys.modules.get(_CYTHON_BLAS))
            bound = "SciPy's BLAS (scipy.linalg.cython_blas, through Numba)"
        else:
            s, d, name = found
            library = _library_of(_numpy_extension())
            bound = f"NumPy's BLAS ({name})"
        core = openblas_core(library) if library is not None else None
        if core:
            bound += f", OpenBLAS core {core}"
            fault_in_buffer(s, d)       # before anything is bound: a failed check binds nothing
        large = (s, d)
        if chosen == "mkl":
            large, described = _mkl_gemms(large)
            bound += described
        llvm.add_symbol(SGEMM, s)
        llvm.add_symbol(DGEMM, d)
        llvm.add_symbol(SGEMM_LARGE, large[0])
        llvm.add_symbol(DGEMM_LARGE, large[1])
        if not shared:
            _copy_transposed_b.value = (
                (SMALL_KERNELS if core and core.lower() in _DIRECT_SGEMM_CORES else 0)
                | (LARGE_TO_MKL if large != (s, d) else 0))
            llvm.add_symbol(COPY_TRANSPOSED_B, ctypes.addressof(_copy_transposed_b))
        _bound = bound
    return _bound


def _mkl_gemms(otherwise: tuple[int, int]) -> tuple[tuple[int, int], str]:
    """(sgemm, dgemm) for large products under GRAPHC_BLAS=mkl and what to add
    to bind()'s report: MKL's, checked; else `otherwise`, with a warning why."""
    mkl = mkl_library.gemms()
    try:
        if isinstance(mkl, str):
            raise RuntimeError(mkl)
        fault_in_buffer(*mkl[:2])
    except RuntimeError as e:
        warnings.warn(f"GRAPHC_BLAS=mkl: {e}; graphc's GEMMs use NumPy's BLAS",
                      RuntimeWarning, stacklevel=4)      # bind()'s caller's caller: the import
        return otherwise, ""
    return mkl[:2], f"; from {LARGE_GEMM_MIN:,} multiply-adds {mkl[2]()}"


# One product of each float type, run once per process through the GEMMs
# bound: m x k @ k x n with k and n past OpenBLAS's blocking (benchmarks/
# bench_openblas_buffer.py measured which shapes suffice).
WARM_UP_SHAPE = (32, 1024, 1024)


def fault_in_buffer(sgemm: int, dgemm: int) -> None:
    """Run one float32 and one float64 product through the CBLAS GEMMs at
    these addresses, so that OpenBLAS's work buffer has its pages mapped.

    Why: a single-threaded OpenBLAS packs its operands into a buffer it
    mmaps once, and its Haswell kernels prefetch ahead of the packed panels.
    Until a product large enough has written there, those prefetches land on
    pages never touched, and each costs a page walk that finds nothing (in a
    VM, a walk through two page tables). On this project's AMD VM, one
    thread, W2's float32 128x784 @ 784x256 ran at 14 GFLOP/s in a new process
    and at 42 once every page of the buffer had been read (mapped to the zero
    page) or after one larger product; W4's 32x64 @ (64x64).T took 1.7x its
    time (benchmarks/bench_openblas_buffer.py). Float64 products moved by
    less than the noise, and OpenBLAS on two threads did not show it. The
    products cost about 10 ms, once per process.
    The answer is checked too: a bound address that computes garbage would
    otherwise go unnoticed until a model trained wrong."""
    import numpy as np
    m, k, n = WARM_UP_SHAPE
    for address, dtype, real in ((sgemm, np.float32, ctypes.c_float),
                                 (dgemm, np.float64, ctypes.c_double)):
        gemm = cblas_ctypes(real)(address)
        # b is zeros but for its first row: its other pages stay unwritten
        a, b, c = np.ones((m, k), dtype), np.zeros((k, n), dtype), np.full((m, n), -1, dtype)
        b[0] = 0.5
        gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, k, 2.0, a.ctypes.data, k,
             b.ctypes.data, n, 0.0, c.ctypes.data, n)
        if not (c == 1).all():
            raise RuntimeError(f"graphc: the {dtype.__name__} GEMM bound at {address:#x} gave "
                               f"wrong values for a {m}x{k} @ {k}x{n} test product; "
                               f"GRAPHC_BLAS chooses another library ({', '.join(CHOICES)})")


def _library_of(module) -> ctypes.CDLL | None:
    """An extension module's shared library, whose symbol lookups also search
    the libraries it links (on Linux and macOS), or None."""
    try:
        return ctypes.CDLL(module.__file__)
    except (AttributeError, TypeError, OSError):
        return None


# ------------------------------------------------- SciPy's BLAS, the fallback
_CYTHON_BLAS = "scipy.linalg.cython_blas"


def _load_cython_blas():
    """Load scipy.linalg.cython_blas on its own, before Numba asks for it.

    Numba imports it when it sets up its CPU target (numba.np.arraymath checks
    that np.dot has a BLAS; `numba_xxgemm` calls the one it exports) with
    `import scipy.linalg.cython_blas`, which first runs the whole scipy.linalg
    package: 0.12-0.18 s of a new process's first compile or cache load.
    The extension module needs nothing from its package and loads in 4 ms.
    If this SciPy lays its files out differently, Numba imports it the usual way.
    """
    if _CYTHON_BLAS in sys.modules or "scipy.linalg" in sys.modules:
        return
    try:
        import scipy
        folder = os.path.join(os.path.dirname(scipy.__file__), "linalg")
        path = next(p for p in (os.path.join(folder, "cython_blas" + suffix)
                                for suffix in importlib.machinery.EXTENSION_SUFFIXES)
                    if os.path.exists(p))
        spec = importlib.util.spec_from_file_location(_CYTHON_BLAS, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_CYTHON_BLAS] = module
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(_CYTHON_BLAS, None)
        return
    sys.meta_path.insert(0, _AttachToPackage())


class _AttachToPackage(importlib.abc.MetaPathFinder):
    """When the user imports scipy.linalg later, set its `cython_blas`
    attribute: the import system sets a submodule's attribute on its package
    only when it loads the submodule itself, so without this
    `import scipy.linalg.cython_blas; scipy.linalg.cython_blas` would fail."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "scipy.linalg":
            return None
        sys.meta_path.remove(self)          # once, and not for the lookup below
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        run_package = spec.loader.exec_module

        def exec_module(module):
            run_package(module)
            if _CYTHON_BLAS in sys.modules:
                module.cython_blas = sys.modules[_CYTHON_BLAS]

        spec.loader.exec_module = exec_module
        return spec


# numba_xxgemm(kind, transa, transb, m, n, k, *alpha, *a, lda, *b, ldb, *beta, *c, ldc),
# column-major, as in numba/np/linalg.py; pointers are passed as integers (same ABI).
_xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char, types.intp, types.intp, types.intp,
    types.intp, types.intp, types.intp, types.intp, types.intp, types.intp,
    types.intp, types.intp))
_N, _T = 78, 84          # ord("N"), ord("T")


@intrinsic
def _on_stack(typingctx, first, second):
    """The address of `first` and `second` (of one float type) side by side in
    the calling function's stack frame, valid until it returns: BLAS takes
    alpha and beta by address."""
    def codegen(context, builder, sig, args):
        pair = cgutils.alloca_once(builder, context.get_value_type(sig.args[0]), size=2)
        for k, value in enumerate(args):
            builder.store(value, builder.gep(pair, [context.get_constant(types.intp, k)]))
        return builder.ptrtoint(pair, context.get_value_type(types.intp))

    return types.intp(first, first), codegen


def _column_major_call(kind):
    """Row-major CBLAS over numba_xxgemm: row-major C = op(A) op(B) is
    column-major C^T = op(B)^T op(A)^T, and a row-major array read
    column-major is its transpose, so the operands swap."""
    def gemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        scalars = _on_stack(alpha, beta)
        _xxgemm(kind, _T if trans_b == TRANS else _N, _T if trans_a == TRANS else _N,
                n, m, k, scalars, b, ldb, a, lda, scalars + (4 if kind == 115 else 8), c, ldc)
    return gemm


_scipy_cfuncs = []       # compiled once; their code lives as long as these objects


def scipy_gemms() -> tuple[int, int]:
    """(sgemm address, dgemm address) of cfuncs with CBLAS_SIGNATURE over
    SciPy's BLAS, compiled on first use (not cached: 0.3 s, only ever paid
    where NumPy's BLAS is not used)."""
    if not _scipy_cfuncs:
        _scipy_cfuncs.extend(
            cfunc(CBLAS_SIGNATURE(real), nopython=True)(_column_major_call(kind))
            for real, kind in ((types.float32, 115), (types.float64, 100)))  # "s", "d"
    return _scipy_cfuncs[0].address, _scipy_cfuncs[1].address


_trsms_bound = False


def bind_trsm() -> None:
    """Point STRSM and DTRSM at NumPy's CBLAS ?trsm (GRAPHC_BLAS numpy or
    mkl), else at cfuncs over SciPy's, once, checking that they solve. Only
    where a kernel calls them is built (kernels/linalg.py): the SciPy cfuncs
    take 0.7 s to compile, which bind() made every process pay."""
    global _trsms_bound
    if _trsms_bound:
        return
    found = numpy_trsms() if choice() != "scipy" else None
    trsms = found[:2] if found is not None else scipy_trsms()
    for address, dtype, real in zip(trsms, ("float32", "float64"),
                                    (ctypes.c_float, ctypes.c_double)):
        _check_trsm(address, dtype, real)
    llvm.add_symbol(STRSM, trsms[0])
    llvm.add_symbol(DTRSM, trsms[1])
    _trsms_bound = True


def _check_trsm(address: int, dtype: str, real) -> None:
    """One 2 x 2 solve through the ?trsm at `address` (as fault_in_buffer
    checks the GEMMs): [[2, 0], [1, 4]] x = 2 [4, 6] is x = [4, 2]."""
    import numpy as np
    trsm = trsm_ctypes(real)(address)
    a, x = np.array([[2, 0], [1, 4]], dtype), np.array([[4], [6]], dtype)
    trsm(ROW_MAJOR, LEFT, LOWER, NO_TRANS, NON_UNIT, 2, 1, 2.0, a.ctypes.data, 2, x.ctypes.data, 1)
    if not (x.ravel() == [4, 2]).all():
        raise RuntimeError(f"graphc: the {dtype} ?trsm bound at {address:#x} gave wrong values "
                           f"for a 2 x 2 test solve; GRAPHC_BLAS chooses another library "
                           f"({', '.join(CHOICES)})")


def _column_major_trsm(fortran_trsm, real):
    """Row-major CBLAS ?trsm over a Fortran one: row-major op(A) X = alpha B
    is column-major X^T op(A)^T = alpha B^T, A read column-major being A^T
    (its other triangle), so the side and the triangle swap and op stays.
    Fortran takes every argument by address: they go in two small arrays,
    read again after the call so that they live through it (Numba frees an
    array after its last use, and an address taken is not a use)."""
    import numpy as np
    dtype = np.float32 if real is types.float32 else np.float64

    def trsm(order, side, uplo, trans_a, diag, m, n, alpha, a, lda, b, ldb):
        flags = np.empty(4, np.uint8)
        flags[0] = 82 if side == LEFT else 76                      # "R" / "L", swapped
        flags[1] = 85 if uplo == LOWER else 76                     # "U" / "L", swapped
        flags[2] = 84 if trans_a == TRANS else 78                  # "T" / "N"
        flags[3] = 78 if diag == NON_UNIT else 85                  # "N" / "U"
        sizes = np.empty(5, np.int32)
        sizes[0], sizes[1], sizes[2], sizes[3] = n, m, lda, ldb
        scale = np.full(1, alpha, dtype)
        f, z = flags.ctypes.data, sizes.ctypes.data
        fortran_trsm(f, f + 1, f + 2, f + 3, z, z + 4, scale.ctypes.data, a, z + 8, b, z + 12)
        sizes[4] = flags[0] + np.int32(scale[0] != alpha)          # (the arrays' last use)
    return trsm


_scipy_trsm_cfuncs = []


def scipy_trsms() -> tuple[int, int]:
    """(strsm address, dtrsm address) of cfuncs with TRSM_SIGNATURE over
    SciPy's BLAS (cython_blas's Fortran ?trsm), compiled on first use, as
    scipy_gemms."""
    if not _scipy_trsm_cfuncs:
        _load_cython_blas()         # (so the lookup below does not run scipy.linalg)
        for real, name in ((types.float32, "strsm"), (types.float64, "dtrsm")):
            fortran = ctypes.CFUNCTYPE(None, *[ctypes.c_ssize_t] * 11)(
                get_cython_function_address(_CYTHON_BLAS, name))
            _scipy_trsm_cfuncs.append(
                cfunc(TRSM_SIGNATURE(real), nopython=True)(_column_major_trsm(fortran, real)))
    return _scipy_trsm_cfuncs[0].address, _scipy_trsm_cfuncs[1].address
