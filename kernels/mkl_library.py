"""Intel's MKL for graphc's large products (GRAPHC_BLAS=mkl): found and
checked, never configured.

PyTorch's CPU build runs its products on MKL, and on an Intel Xeon with
AVX-512 (one thread, benchmarks/bench_blas_libraries.py) MKL took W2's and
W3's products in 0.73-0.96 of the time of NumPy's OpenBLAS, but W1's
(64x64).T @ 64x10 in 1.6-1.8 times it: blas_library binds MKL only for
products of blas_library.LARGE_GEMM_MIN multiply-adds or more.

MKL's single dynamic library, libmkl_rt, keeps process-wide settings (its
integer interface, its threading layer), fixed at its first call for every
user of it in the process. graphc sets none of them, and its check product
when it binds the BLAS is that first call unless another library made one
before: set MKL_INTERFACE_LAYER or MKL_THREADING_LAYER in the environment,
not through MKL's functions after importing graphc.
- graphc calls `cblas_sgemm_64` and `cblas_dgemm_64`, the names MKL exports
  with 64-bit integers whatever the interface setting (MKL 2023 and later).
- The threading layer is MKL's own choice (measured with MKL 2026.2):
  MKL_THREADING_LAYER's SEQUENTIAL, GNU or TBB as asked; otherwise GNU
  OpenMP's when libgomp is already loaded, else Intel's OpenMP. On more
  than one thread GNU is graphc's usual one: its thread count checks
  Numba's `omp` layer, which loads libgomp, before its first compile binds
  the BLAS (PyTorch loads libgomp too). GNU OpenMP's threads hang a child forked after a product
  in its parent, so where MKL runs on them a child forked through Python
  (os.fork, multiprocessing's fork) sets MKL to one thread
  (os.register_at_fork): without that, any MKL product there hangs. A
  fork() from C code is not covered. TBB is refused.
- MKL ends the whole process when a library or function it needs cannot
  load, so what it will load is looked for first, of libmkl_rt's version:
  the threading layer's library and its OpenMP runtime, the interface
  library (MKL_INTERFACE_LAYER's: GNU's lack the _64 GEMMs, so that one is
  refused), MKL's core and its default kernels. A missing one means a
  warning and OpenBLAS. (Not covered: a second copy of libiomp5 already
  running in the process, which MKL's own OpenMP refuses.)
The thread count is MKL's own: MKL_NUM_THREADS, else OMP_NUM_THREADS, else
MKL's default (the physical cores).
"""

import ctypes
import ctypes.util
import glob
import os
import re
import sys

# The threading layers graphc runs MKL with: the library MKL loads for each
# from its own folder, and the OpenMP runtime that one needs (MKL loads it
# itself, and without it ends the process at its first threaded call)
LAYERS = {"INTEL": ("libmkl_intel_thread", "libiomp5"), "GNU": ("libmkl_gnu_thread", "libgomp"),
          "SEQUENTIAL": ("libmkl_sequential", None)}
_RUNTIME_NAMES = {"libiomp5": ("libiomp5.so", "libiomp5.dylib"), "libgomp": ("libgomp.so.1",)}


def _library_paths() -> list[str]:
    """Where libmkl_rt may be: the `mkl` wheel puts it in the environment's
    lib folder; else wherever the dynamic loader finds it."""
    paths = []
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        paths += _files(os.path.join(prefix, "lib"), "libmkl_rt")
    found = ctypes.util.find_library("mkl_rt")
    return paths + ([found] if found else [])


def _mapped(name: str) -> list[str]:
    """Paths of the files this process has mapped whose name starts with
    `name` (Linux's /proc/self/maps; none elsewhere)."""
    try:
        with open("/proc/self/maps") as maps:      # address perms offset device inode path
            lines = [line.split(None, 5) for line in maps]
    except OSError:
        return []
    paths = (fields[5].strip() for fields in lines if len(fields) == 6)
    return list(dict.fromkeys(p for p in paths if os.path.basename(p).startswith(name)))


def expected_layer() -> str:
    """The threading layer MKL will load at its first call (see above)."""
    asked = os.environ.get("MKL_THREADING_LAYER", "").strip().upper()
    if asked in ("SEQUENTIAL", "GNU", "TBB"):
        return asked
    return "GNU" if _mapped("libgomp") else "INTEL"    # INTEL, or MKL's default for others


def interface_library() -> str:
    """The interface library MKL loads at its first call (MKL_INTERFACE_LAYER;
    the _64 functions need one too)."""
    asked = os.environ.get("MKL_INTERFACE_LAYER", "").upper()
    return ("libmkl_gf" if "GNU" in asked else "libmkl_intel") + (
        "_ilp64" if "ILP64" in asked else "_lp64")


# where the process's maps tell which layer MKL loaded (TBB only reported)
_LAYER_LIBRARIES = {**{layer: library for layer, (library, _) in LAYERS.items()},
                    "TBB": "libmkl_tbb_thread"}


def loaded_layer() -> str | None:
    """The threading layer MKL has loaded, where the process's maps tell."""
    return next((layer for layer, library in _LAYER_LIBRARIES.items() if _mapped(library)), None)


def _layer_problem(folder: str, suffix: str, layer: str) -> str | None:
    """Why MKL in `folder`, its libraries named with `suffix` (".so.3"),
    cannot run with threading `layer`, or None."""
    if layer not in LAYERS:
        return f"MKL_THREADING_LAYER={layer} (graphc runs MKL with {', '.join(LAYERS)} threads)"
    interface = interface_library()
    if interface.startswith("libmkl_gf"):       # measured: MKL 2026.2's fatal error
        return ("MKL_INTERFACE_LAYER names GNU's interface, whose library has no "
                "cblas_?gemm_64 (MKL would end the process)")
    library, runtime = LAYERS[layer]
    for needed in (library, interface, "libmkl_core", "libmkl_def"):
        if not os.path.exists(os.path.join(folder, needed + suffix)):
            return (f"{needed}{suffix} is missing from {folder}, where MKL would look for it "
                    f"(and end the process)")
    if runtime is not None and not _mapped(runtime) and not any(
            map(_loads, _files(folder, runtime) + list(_RUNTIME_NAMES[runtime]))):
        return (f"MKL's {layer} threading layer needs {runtime}"
                + (" (pip install intel-openmp)" if runtime == "libiomp5" else ""))
    return None


def _files(folder: str, library: str) -> list[str]:
    """`library`'s shared objects in `folder`, newest version first."""
    return sorted(glob.glob(os.path.join(folder, library + ".so*"))
                  + glob.glob(os.path.join(folder, library + "*.dylib")), reverse=True)


def _loads(path: str) -> bool:
    try:
        ctypes.CDLL(path)
        return True
    except OSError:
        return False


def gemms():
    """(sgemm address, dgemm address, settle) for MKL's CBLAS GEMMs with
    64-bit integers, or why they cannot be used (a sentence for a warning).
    settle() is called once a product has run through them (MKL's first
    call fixes its threading layer): it guards forked children where MKL
    runs on GNU OpenMP, and returns what runs, for reports."""
    paths = _library_paths()
    if not paths:
        return "Intel MKL is not installed (pip install mkl)"
    try:
        library = ctypes.CDLL(paths[0])
    except OSError as e:
        return f"Intel MKL does not load ({e})"
    # the file itself, also where the loader found a bare name
    path = os.path.realpath(paths[0]) if os.path.isabs(paths[0]) else (
        _mapped("libmkl_rt") or [paths[0]])[0]
    folder, name = os.path.split(path)
    layer = expected_layer()
    problem = _layer_problem(folder, name[len("libmkl_rt"):], layer)
    if problem:
        return problem
    try:
        sgemm, dgemm = library.cblas_sgemm_64, library.cblas_dgemm_64
    except AttributeError:
        return f"{path} has no cblas_sgemm_64 (MKL 2023 or later has)"
    address = lambda f: ctypes.cast(f, ctypes.c_void_p).value     # noqa: E731
    return address(sgemm), address(dgemm), lambda: _settle(library, layer)


def _settle(library, expected: str) -> str:
    """What runs, once MKL's first call has fixed its threading layer; on GNU
    OpenMP's, a forked child gets one MKL thread (see above)."""
    layer = loaded_layer() or expected
    guard = ""
    if layer == "GNU":
        os.register_at_fork(after_in_child=lambda: library.MKL_Set_Num_Threads(1))
        guard = ", one in a forked child"
    version = ctypes.create_string_buffer(256)
    library.MKL_Get_Version_String(version, len(version))
    text = version.value.decode(errors="replace")
    number = re.search(r"Version ([0-9.]+)", text)
    return f"Intel MKL {number[1] if number else text[:40]} ({layer} threads{guard})"
