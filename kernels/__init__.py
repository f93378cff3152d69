"""graphc.kernels: hand-written Numba code that graphc's generated modules call.

Numerics live here once: the NumPy reference interpreter and the generated
Numba code call the same functions.

Numba caches each kernel's machine code on disk together with the code of
the kernels it calls (blas's C function for gemm holds small_gemm's and
transpose's), but it checks only the caller's own file for changes: after
an edit of small_gemm.py, or an upgrade that changed it alone, blas would
load the old small_gemm. So every kernel's cache entry is stamped with all the
kernel sources (_AllKernelSourcesLocator): a change to any of them
recompiles them all.
"""
import functools
import hashlib
import pathlib

from numba.core import caching, config

if config.DISABLE_JIT:      # else the kernels' decorators fail far from the cause
    raise ImportError("graphc compiles with Numba, and NUMBA_DISABLE_JIT is set: "
                      "unset it (or set it to 0) to use graphc")

_HERE = pathlib.Path(__file__).resolve().parent


@functools.cache
def sources_fingerprint() -> str:
    """A hash of every kernel module's name and source."""
    h = hashlib.sha256()
    for path in sorted(_HERE.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


class _AllKernelSourcesLocator:
    """Numba's cache locator for functions defined in graphc.kernels: the one
    Numba would pick (in-tree __pycache__, NUMBA_CACHE_DIR, ...), with a
    source stamp that also covers every other kernel module."""

    @classmethod
    def from_function(cls, py_func, py_file):
        if pathlib.Path(py_file).resolve().parent != _HERE:
            return None
        for locator_class in caching.CacheImpl._locator_classes:
            if locator_class is cls:
                continue
            locator = locator_class.from_function(py_func, py_file)
            if locator is not None:
                stamp = (locator.get_source_stamp(), sources_fingerprint())
                locator.get_source_stamp = lambda: stamp
                return locator
        return None


if _AllKernelSourcesLocator not in caching.CacheImpl._locator_classes:
    caching.CacheImpl._locator_classes.insert(0, _AllKernelSourcesLocator)
