"""BLAS GEMM with alpha and beta, callable from Numba code.

`np.dot(a, b, out)` in Numba always computes out = a @ b. A plain SGD
update of a weight, W - lr * (h.T @ g), is one BLAS call when the GEMM
accumulates into W itself: W = (-lr) * h.T @ g + 1 * W. That skips the
gradient buffer and a separate pass over the weights (read dW, read W,
write W), which is most of what a GEMM-bound step spends outside its GEMMs.

The GEMM is the one Numba's own np.dot uses: `numba_xxgemm` in Numba's
helper library, which calls SciPy's cython_blas sgemm/dgemm (the OpenBLAS
NumPy uses). It is declared here by symbol name, so functions calling it can
be cached on disk like any other.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from graphc.kernels import dispatch, transpose


_CYTHON_BLAS = "scipy.linalg.cython_blas"


def _load_cython_blas():
    """Load scipy.linalg.cython_blas on its own, before Numba asks for it.

    Numba imports it (its `numba_xxgemm` calls the BLAS it exports) with
    `import scipy.linalg.cython_blas`, which first runs the whole scipy.linalg
    package: 0.14-0.18 s of every new process's first compile or cache load,
    a third of a warm start. The extension module needs nothing from its
    package and loads in 4 ms. If this SciPy lays its files out differently,
    Numba imports it the usual way.
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


_load_cython_blas()

# numba_xxgemm(kind, transa, transb, m, n, k, *alpha, *a, lda, *b, ldb, *beta, *c, ldc),
# column-major, as in numba/np/linalg.py; pointers are passed as integers (same ABI).
_xxgemm = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char, types.intp, types.intp, types.intp,
    types.intp, types.intp, types.intp, types.intp, types.intp, types.intp,
    types.intp, types.intp))

_N, _T = 78, 84          # ord("N"), ord("T")


@intrinsic
def _on_stack(typingctx, first, second, dtype):
    """The address of `first` and `second`, converted to `dtype`, side by side
    in the calling function's stack frame (valid until it returns). An array
    for them cost an allocation per GEMM: 26 in each W4 step."""
    if not isinstance(dtype, types.DType):
        return None
    elem = dtype.dtype

    def codegen(context, builder, sig, args):
        pair = cgutils.alloca_once(builder, context.get_value_type(elem), size=2)
        for k, (value, ty) in enumerate(zip(args[:2], sig.args[:2])):
            builder.store(context.cast(builder, value, ty, elem),
                          builder.gep(pair, [context.get_constant(types.intp, k)]))
        return builder.ptrtoint(pair, context.get_value_type(types.intp))

    return types.intp(first, second, dtype), codegen


# b.T is copied for a @ b.T only up to this many elements (see _transposing_b_pays):
# generated code sizes gemm's scratch by it
TRANSPOSED_MAX = 8192


@njit(cache=True, nogil=True, inline="always")
def _transposing_b_pays(m, n, k):
    """Whether a @ b.T runs faster as a copy of b.T and a plain a @ b.

    OpenBLAS's small-matrix kernel for a @ b.T (row-major; "TN" to the
    column-major BLAS) takes up to twice as long as for a @ b: 6.5 against
    2.7 us (3.1 with the copy) for 32x64 @ 64x64 float32, the backward GEMM
    of each of W4's layers. Copying b.T (k*n elements, transpose.transposed)
    first pays while that kernel is in use (m*n*k under 2**20) and at least
    16 rows of a share the copy, for b up to the 8192 elements measured; with
    n under 16 the two kernels take the same time.
    benchmarks/bench_gemm_nt.py measures both ways.
    """
    return m >= 16 and n >= 16 and k * n <= TRANSPOSED_MAX and m * n * k < 1 << 20


@dispatch.unliteral_calls
@njit(cache=True, nogil=True)
def gemm(a, b, c, transpose_a, transpose_b, alpha, beta, scratch=None):
    """c = alpha * op(a) @ op(b) + beta * c, in place, for 2-D float32/float64 arrays.

    op(x) is x.T when its flag is set. `c` must be C-contiguous and share no
    memory with `a` or `b`; `a` and `b` are copied first if they are not
    C-contiguous, and b.T too when that is faster (never past TRANSPOSED_MAX
    elements): into `scratch` when given (1-D, c's dtype, at least b.size
    elements if b.size <= TRANSPOSED_MAX, else unused: a workspace slot),
    else into a new array.
    """
    if not c.flags.c_contiguous:
        raise ValueError("gemm: the output must be C-contiguous")
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    m, n = c.shape
    k = a.shape[0] if transpose_a else a.shape[1]
    if m == 0 or n == 0:
        return
    if transpose_b and not transpose_a and _transposing_b_pays(m, n, k):
        if scratch is None:
            b_t = transpose.transposed(b)
        else:
            b_t = scratch[:k * n].reshape((k, n))
            transpose.transpose_into(b, b_t)
        blas_gemm(a, b_t, c, False, False, alpha, beta)
    else:
        blas_gemm(a, b, c, transpose_a, transpose_b, alpha, beta)


@dispatch.unliteral_calls
@njit(cache=True, nogil=True)
def blas_gemm(a, b, c, transpose_a, transpose_b, alpha, beta):
    """gemm's BLAS call as it is, for C-contiguous a, b and c with m, n > 0."""
    m, n = c.shape
    k = a.shape[0] if transpose_a else a.shape[1]
    scalars = _on_stack(alpha, beta, c.dtype)       # BLAS takes alpha and beta by address
    kind = 115 if c.itemsize == 4 else 100      # "s" or "d"
    # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a
    # row-major array read column-major is its transpose: swap the operands.
    _xxgemm(kind, _T if transpose_b else _N, _T if transpose_a else _N, n, m, k,
            scalars, b.ctypes.data, max(b.shape[1], 1),
            a.ctypes.data, max(a.shape[1], 1),
            scalars + c.itemsize, c.ctypes.data, max(n, 1))
