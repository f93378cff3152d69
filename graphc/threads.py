"""How many threads a compiled step may use for its large loops, and when none.

graphc splits a fused loop over threads (`prange`, see codegen's
PARALLEL_MIN_WORK) only when all of these hold, else every loop runs on the
calling thread:

- the thread count is above 1: `GRAPHC_NUM_THREADS`, else `OMP_NUM_THREADS`
  (the variable PyTorch and BLAS follow, so one setting pins them all), else
  Numba's pool size (`NUMBA_NUM_THREADS`, the core count by default), and
  never more than that pool;
- Numba's threading layer may be launched from several threads at once: tbb
  or omp. The `workqueue` layer terminates the process on concurrent
  launches, and graphc's compiled functions are called from user threads;
- this process is not a child forked after its parent used the threading
  layer. GNU OpenMP cannot run in such a child: Numba terminates it.

The count is passed to the compiled driver on every call, so a forked child
uses the same compiled code serially.
"""
from __future__ import annotations

import os
import sys


_count: int | None = None      # decided on first use, reset in forked children
_forked_after_launch = False


def _requested() -> int | None:
    for name in ("GRAPHC_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").split(",")[0].strip()   # OpenMP: "4,2" per level
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                return 1        # unreadable: the safe choice, one thread
    return None


def _layer_is_threadsafe() -> bool:
    """Whether the threading layer Numba will launch (or has) is tbb or omp."""
    import numba
    try:
        return numba.threading_layer() in ("tbb", "omp")
    except ValueError:          # not launched yet: what it will choose
        pass
    choice = numba.config.THREADING_LAYER
    if choice == "default":     # the first layer of Numba's priority list that loads
        for layer in numba.config.THREADING_LAYER_PRIORITY:
            if layer == "workqueue":
                return False
            if _loadable(layer):
                return True
        return False
    wanted = {"threadsafe": ("tbb", "omp"), "tbb": ("tbb",), "omp": ("omp",),
              "safe": ("tbb",), "forksafe": ("tbb",)}.get(choice, ())
    return any(_loadable(layer) for layer in wanted)


def _loadable(layer: str) -> bool:
    try:
        if layer == "tbb":
            from numba.np.ufunc import parallel
            parallel._check_tbb_version_compatible()
            from numba.np.ufunc import tbbpool  # noqa: F401
        else:
            from numba.np.ufunc import omppool  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def count() -> int:
    """Threads a large loop may be split over now (1: run serially)."""
    global _count
    if _count is None:
        import numba
        wanted = _requested()
        pool = numba.config.NUMBA_NUM_THREADS
        n = min(pool, wanted) if wanted is not None else pool
        _count = n if n > 1 and not _forked_after_launch and _layer_is_threadsafe() else 1
    return _count


def reset() -> None:
    """Decide the count again at next use (after changing the variables above)."""
    global _count
    _count = None


def _after_fork_in_child() -> None:
    global _forked_after_launch
    numba = sys.modules.get("numba")
    if numba is not None:
        try:
            numba.threading_layer()
            _forked_after_launch = True
        except ValueError:      # the parent never launched it: the child may
            pass
    reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
