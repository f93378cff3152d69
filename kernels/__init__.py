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

A kernel is compiled on its own, for whatever arguments it is given, so
LLVM knows less than it does about the same loops generated into a model's
`run`. Written as plainly as the generated loops it replaced,
softmax.log_softmax_long_rows ran 1.4x as long; these cost that, each a
tenth or more, and generated code already avoids them:
  - a value the code could hold as a constant (softmax's exp floor, one
    per dtype) passed in as an argument: make it a constant of the
    argument's type with an intrinsic (softmax._exp_floor);
  - an index LLVM cannot prove non-negative (j0 + jb, j0 from a stepped
    range(0, n, step)): Numba's select for negative indices stays inside
    the vectorized loop. Count blocks from 0 instead (blk * step + jb);
  - a 0/1 value as a select of two constants rather than the comparison
    converted to the dtype.
"""
import functools
import hashlib
import os
import pathlib

from numba.core import caching, config

try:
    import fcntl
except ImportError:         # Windows: Numba's cache as it is
    fcntl = None

if config.DISABLE_JIT:      # else the kernels' decorators fail far from the cause
    raise ImportError("graphc compiles with Numba, and NUMBA_DISABLE_JIT is set: "
                      "unset it (or set it to 0) to use graphc")

_HERE = pathlib.Path(__file__).resolve().parent


def files_fingerprint(directory: pathlib.Path, pattern: str) -> str:
    """A hash of the paths (from `directory`) and contents of the files
    matching `pattern` there. One that cannot be read is left out: an
    editor's lock file (`.#blas.py`, a dangling link) is not a module."""
    h = hashlib.sha256()
    for path in sorted(directory.glob(pattern)):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        h.update(str(path.relative_to(directory)).encode() + data)
    return h.hexdigest()


@functools.cache
def sources_fingerprint() -> str:
    """A hash of every kernel module's name and source."""
    return files_fingerprint(_HERE, "*.py")


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


def _under_index_lock(method, mode):
    """`method` of Numba's IndexDataCacheFile, holding a lock on a file beside
    the cache index (`mode`: fcntl.LOCK_EX to save, LOCK_SH to load).

    Numba saves an entry by loading the index, taking the first data-file
    name the index does not use, writing the index, then the data. Two
    processes adding different signatures of one function at once (two test
    workers, or a user's worker processes, compiling a kernel for float32 and
    float64) could each take name N: one entry is lost, or the index names
    the other process's code for it, and a later load runs the wrong
    function. Under the lock each save sees the one before it, and no load
    reads an index whose data is half written.

    graphc's cache bound (graphc/cache_limit.py) removes an unused entry's
    files, lock files too, while holding their locks. A process that opened
    a lock file before its removal and locks it after has locked a removed
    file, which excludes no one, so it locks the file now at that path."""
    @functools.wraps(method)
    def locked(self, *args):
        path = self._index_path + ".lock"
        while True:
            try:
                lock = open(path, "ab")
            except OSError:     # a read-only cache: Numba's own writes fail there too
                return method(self, *args)
            with lock:
                fcntl.flock(lock, mode)
                if _still_at(lock, path):
                    return method(self, *args)
    locked.graphc_locked = True
    return locked


def _still_at(opened, path: str) -> bool:
    """Whether the file `opened` is still the one at `path`."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(opened.fileno())
    return (mine.st_dev, mine.st_ino) == (here.st_dev, here.st_ino)


if fcntl is not None and not getattr(caching.IndexDataCacheFile.save, "graphc_locked", False):
    caching.IndexDataCacheFile.save = _under_index_lock(caching.IndexDataCacheFile.save,
                                                        fcntl.LOCK_EX)
    caching.IndexDataCacheFile.load = _under_index_lock(caching.IndexDataCacheFile.load,
                                                        fcntl.LOCK_SH)
