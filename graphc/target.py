"""The vector width graphc's generated loops ask LLVM for.

On AVX-512 hosts LLVM's tuning for Intel CPUs prefers 256-bit vectors (older
parts lowered their clock for 512-bit code), so a fused loop would run at
half the width the CPU has. graphc's elementwise loops are arithmetic-bound
(exp, log1p): W5's step went from 4.2 to 2.7 ms (float32) and 9.3 to 6.7 ms
(float64) with 512-bit vectors on this project's Xeon; W1-W4 were unchanged
within noise (`graphc bench --workloads W2,W4,W5 --no-cold`, with and without).

So every function graphc generates starts with `vmath.full_width_vectors()`,
which gives that function LLVM's "prefer-vector-width"="512" attribute. It
holds for graphc's code alone, whatever the process's Numba settings and
whichever of Numba and graphc was imported first. (graphc used to set
NUMBA_CPU_FEATURES before Numba's import instead: that worked only when
graphc came first, and reached the user's own Numba code and child
processes.) GRAPHC_VECTOR_WIDTH=256 opts out: the call is left out of the
generated source, so the cache keeps the two kinds of modules apart. (vmath's
array forms, which the reference interpreter uses, are compiled once per
install and keep the full width.)
"""
import os


def full_width() -> bool:
    """Whether generated loops ask for the CPU's full vector width."""
    return os.environ.get("GRAPHC_VECTOR_WIDTH", "").strip() != "256"


def host_has_avx512() -> bool:
    """Whether this CPU has AVX-512 (without importing Numba)."""
    import llvmlite.binding as llvm
    try:
        return bool(llvm.get_host_cpu_features().get("avx512f"))
    except RuntimeError:        # llvmlite cannot read them here
        return False


def vector_registers() -> int:
    """How many vector registers the CPU's LLVM target has: 32 with AVX-512
    (for 256-bit vectors too), else 16 (AVX2, the x86 baseline Numba targets)."""
    return 32 if host_has_avx512() else 16
