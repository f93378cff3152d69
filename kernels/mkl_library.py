"""Intel's MKL for graphc's large products (GRAPHC_BLAS=mkl): found and
checked, never configured.

PyTorch's CPU build runs its products on MKL, and on an Intel Xeon with
AVX-512 (one thread, benchmarks/bench_blas_libraries.py) MKL took W2's and
W3's products in 0.73-0.96 of the time of NumPy's OpenBLAS, but W1's
(64x64).T @ 64x10 in 1.6-1.8 times it: blas_library binds MKL only for
products of blas_library.LARGE_GEMM_MIN multiply-adds or more.

MKL's single dynamic library, libmkl_rt, keeps process-wide settings (its
integer interface, its threading layer) that every other user of it in the
process shares, so graphc sets none of them:
- it calls `cblas_sgemm_64` and `cblas_dgemm_64`, the names MKL exports with
  64-bit integers whatever the interface setting (MKL 2023 and later);
- it uses the threading layer MKL itself will load (MKL_THREADING_LAYER, else
  Intel's OpenMP), and only INTEL or SEQUENTIAL: GNU OpenMP's threads hang a
  child forked after a product in its parent (measured with MKL 2026.2), and
  MKL ends the whole process when its layer cannot load (its library or
  libiomp5 missing), so those are looked for here first, where a missing
  one means a warning and OpenBLAS.
The thread count is MKL's own: MKL_NUM_THREADS, else OMP_NUM_THREADS, else
the physical cores, as NumPy's OpenBLAS counts its own.
"""

import ctypes
import ctypes.util
import glob
import os
import re
import sys

# The threading layers graphc runs MKL with: the library MKL loads for each
# from its own folder, and what that one needs loaded (MKL finds libiomp5
# itself, and without it ends the process at its first threaded call)
LAYERS = {"INTEL": ("libmkl_intel_thread", "libiomp5"), "SEQUENTIAL": ("libmkl_sequential", None)}


def _library_paths() -> list[str]:
    """Where libmkl_rt may be: the `mkl` wheel puts it in the environment's
    lib folder; else wherever the dynamic loader finds it."""
    paths = []
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        paths += _files(os.path.join(prefix, "lib"), "libmkl_rt")
    found = ctypes.util.find_library("mkl_rt")
    return paths + ([found] if found else [])


def threading_layer() -> str:
    """The threading layer MKL will load: MKL_THREADING_LAYER, else INTEL."""
    return os.environ.get("MKL_THREADING_LAYER", "").strip().upper() or "INTEL"


def _layer_problem(folder: str, layer: str) -> str | None:
    """Why MKL in `folder` cannot run with threading `layer`, or None."""
    if layer not in LAYERS:
        return (f"MKL_THREADING_LAYER={layer} (graphc runs MKL with "
                f"{' or '.join(LAYERS)} threads only: GNU OpenMP's hang a forked child)")
    library, runtime = LAYERS[layer]
    if not _files(folder, library):
        return f"MKL's {layer} threading layer ({library}) is not in {folder}"
    if runtime is not None and not any(map(_loads, _files(folder, runtime)
                                           + [runtime + ".so", runtime + ".dylib"])):
        return f"MKL's {layer} threading layer needs {runtime} (pip install intel-openmp)"
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


def gemms() -> tuple[int, int, str] | str:
    """(sgemm address, dgemm address, description) of MKL's CBLAS GEMMs with
    64-bit integers, or why they cannot be used (a sentence for a warning)."""
    paths = _library_paths()
    if not paths:
        return "Intel MKL is not installed (pip install mkl)"
    path = paths[0]
    layer = threading_layer()
    why_not = _layer_problem(os.path.dirname(os.path.realpath(path)), layer)
    if why_not:
        return why_not
    try:
        library = ctypes.CDLL(path)
        sgemm, dgemm = library.cblas_sgemm_64, library.cblas_dgemm_64
    except OSError as e:
        return f"Intel MKL does not load ({e})"
    except AttributeError:
        return f"{path} has no cblas_sgemm_64 (MKL 2023 or later has)"
    version = ctypes.create_string_buffer(256)
    library.MKL_Get_Version_String(version, len(version))
    text = version.value.decode(errors="replace")
    number = re.search(r"Version ([0-9.]+)", text)
    address = lambda f: ctypes.cast(f, ctypes.c_void_p).value     # noqa: E731
    return (address(sgemm), address(dgemm),
            f"Intel MKL {number[1] if number else text[:40]} ({layer} threads)")
