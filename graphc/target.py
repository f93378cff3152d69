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
processes.) GRAPHC_VECTOR_WIDTH=256 opts out: generated functions start
with `vmath.vectors_of_256_bits()` instead, the attribute's "256", so the
cache keeps the two kinds of modules apart. (Leaving the call out was the
opt-out until 2026-12-06, which left 512-bit loops on an AMD Zen 4: LLVM's
tuning for it prefers 512 bits.) vmath's array forms, which the reference
interpreter uses, are compiled once per install and keep the full width;
graphc's other kernels (alloc, sums, softmax, ...) are compiled once per
install too and take LLVM's preference for the CPU, so on a Zen 4 a few of
their instructions use zmm registers under the opt-out.
"""
import functools
import os
import platform


def full_width() -> bool:
    """Whether generated loops ask for the CPU's full vector width."""
    return os.environ.get("GRAPHC_VECTOR_WIDTH", "").strip() != "256"


def host_is_x86() -> bool:
    """Whether this is an x86-64 machine, whose vector widths graphc knows."""
    return platform.machine().lower() in ("x86_64", "amd64")


def host_has_avx512() -> bool:
    """Whether this CPU has AVX-512 (without importing Numba)."""
    return bool((host_features() or {}).get("avx512f"))


@functools.cache
def host_features() -> dict | None:
    """LLVM's names of the host CPU's features; None where llvmlite cannot
    read them. Cached: the query takes 80 us."""
    import llvmlite.binding as llvm
    try:
        return dict(llvm.get_host_cpu_features())
    except RuntimeError:
        return None


def vector_bytes() -> int:
    """The width of the vectors generated loops run in, in bytes: 64 with
    AVX-512 (unless GRAPHC_VECTOR_WIDTH=256), 32 with AVX (or when the CPU's
    features cannot be read), 16 on older x86 and elsewhere (AArch64's
    NEON; SVE's wider vectors were never measured). A row of a multiple of
    it runs as whole vectors (codegen's short rows). Numba compiles for the
    host CPU, so this is the host's width (a NUMBA_CPU_NAME override is
    not looked at: it changes speed, not results)."""
    if not host_is_x86():
        return 16
    features = host_features()
    if features is None:
        return 32
    if features.get("avx512f") and full_width():
        return 64
    return 32 if features.get("avx") else 16
