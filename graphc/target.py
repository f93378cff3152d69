"""The CPU features graphc asks Numba to compile for.

On AVX-512 hosts LLVM's tuning for Intel CPUs prefers 256-bit vectors (older
parts lowered their clock for 512-bit code), so a fused loop runs at half
the width the CPU has. graphc's elementwise loops are arithmetic-bound
(exp, log1p): W5's step went from 4.2 to 2.7 ms (float32) and 9.3 to 6.7 ms
(float64) with 512-bit vectors on this project's Xeon; W1-W4 were unchanged
within noise (`graphc bench --workloads W2,W4,W5 --no-cold`, with and without).

Numba fixes its CPU features when it first compiles, from its environment
variables, so graphc only chooses them if nothing has imported Numba yet and
the user set none of NUMBA_CPU_FEATURES, NUMBA_CPU_NAME, NUMBA_ENABLE_AVX:
then it sets NUMBA_CPU_FEATURES (the host's features, without LLVM's 256-bit
preference) for this process and its children, which keeps Numba's disk
cache keys the same across them. GRAPHC_VECTOR_WIDTH=256 opts out. gc.export
embeds this module, so an exported step compiles the same way. (Setting the
variable later, after a bare `import numba` but before Numba's first @njit,
would also work for the features, but Numba re-reads its whole configuration
from the environment at the next compile once a NUMBA_ variable changed,
undoing settings a user made in code, such as numba.config.THREADING_LAYER.)

W5 measured again on 2026-12-02 (`graphc bench --workloads W5,W4,W1 --impls
numpy,graphc --no-cold`, three alternating pairs): float32 3.1-3.6 against
1.8-2.1 ms, float64 7.2-7.9 against 4.4-5.8 ms; W1 and W4 within noise.
"""
import os
import sys


_widened = False        # configure() set NUMBA_CPU_FEATURES in this process


def configure() -> None:
    """Before Numba's first import: prefer full-width vectors on AVX-512 hosts."""
    global _widened
    if "numba" in sys.modules or os.environ.get("GRAPHC_VECTOR_WIDTH") == "256" or any(
            k in os.environ for k in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME", "NUMBA_ENABLE_AVX")):
        return
    features = _host_features()
    if features is not None and features.get("avx512f"):
        os.environ["NUMBA_CPU_FEATURES"] = features.flatten() + ",-prefer-256-bit"
        _widened = True


def widened() -> bool:
    """Whether configure() asked Numba for 512-bit vectors in this process.
    False also when Numba was imported first or the user chose (see above)."""
    return _widened


def host_has_avx512() -> bool:
    """Whether this CPU has AVX-512 (without importing Numba)."""
    features = _host_features()
    return features is not None and bool(features.get("avx512f"))


def _host_features():
    """llvmlite's map of this CPU's features; None when it cannot read them
    (then Numba keeps its defaults)."""
    import llvmlite.binding as llvm
    try:
        return llvm.get_host_cpu_features()
    except RuntimeError:
        return None
