"""`graphc warm`: compile graphc's kernels now instead of at the first model
that needs each.

The kernels in `graphc.kernels` (LAPACK and BLAS calls, the row argsort,
log-softmax rows, vector math) are compiled by Numba once per install and
cached on disk, for float32 and float64 apart. Until then the first model
that uses one waits for it: 8 s for the first np.linalg.inv, 8 s for the
first argsort, 3 s for the first matrix product (float64, here). A family
here is a gradient through some ops, so its forward and backward kernels
are built for the argument types compiled models pass. They compile one
after another in this process: the families share kernels (gemm, the
allocation helpers, exp), which processes side by side would each compile.
"""
from __future__ import annotations

import sys
import time

import numpy as np


def _square(dtype, n=4):
    a = np.random.default_rng(0).normal(size=(n, n))
    return (a @ a.T + n * np.eye(n)).astype(dtype)


def _rows(dtype, n, m):
    return np.random.default_rng(0).normal(size=(n, m)).astype(dtype)


def _inverse_and_solve(m):
    _, logdet = np.linalg.slogdet(m)
    return (np.sum(np.linalg.inv(m) ** 2) + np.sum(np.linalg.solve(m, m[:, 0]) ** 2)
            + np.linalg.det(m) + logdet)


def _cholesky_and_eigh(m):
    w, v = np.linalg.eigh(m)
    # a solve beside the factor: solved with it (passes/factor_solves.py), and the
    # factor's gradient: triangular solves
    return (np.sum(np.linalg.cholesky(m) ** 2) + np.sum(np.linalg.solve(m, m[:, 0]))
            + np.sum(w ** 2) + np.sum(v ** 2))


def _svd_qr_and_pinv(a):
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    q, r = np.linalg.qr(a)
    return np.sum(u ** 2 * s) + np.sum(vh ** 2) + np.sum(q) + np.sum(r) + np.sum(np.linalg.pinv(a))


def _sort(x):
    return np.sum(np.sort(x, axis=1) * np.arange(x.shape[1]))


def _products(small, large):
    # the sizes take both paths: small products in registers, others through BLAS
    return np.sum((small @ small.T) ** 2) + np.sum((large @ large) ** 2)


def _log_softmax(short, long):
    def loss(z):
        peak = np.max(z, axis=1, keepdims=True)
        log_p = z - peak - np.log(np.sum(np.exp(z - peak), axis=1, keepdims=True))
        e = np.exp(z - peak)
        return -np.sum(log_p) + np.sum(np.sin(e / np.sum(e, axis=1, keepdims=True)))
    return loss(short) + loss(long)


def _vector_math(x):
    import scipy.special
    return np.sum(np.exp(x) + np.log(x * x + 1) + np.log1p(x * x) + np.expm1(x) + np.tanh(x)
                  + scipy.special.expit(x) + np.logaddexp(0, x) + scipy.special.erf(x)
                  + np.sin(x) + np.cos(x))


# family -> (loss, argument makers): each is compiled as gc.value_and_grad
# of the loss, for float32 and float64
FAMILIES = {
    "inverse_and_solve": (_inverse_and_solve, [_square]),
    "sort": (_sort, [lambda dt: _rows(dt, 4, 8)]),
    "cholesky_and_eigh": (_cholesky_and_eigh, [_square]),
    "svd_qr_and_pinv": (_svd_qr_and_pinv, [lambda dt: _rows(dt, 5, 3)]),
    "products": (_products, [lambda dt: _rows(dt, 8, 16), lambda dt: _rows(dt, 96, 96)]),
    "log_softmax": (_log_softmax, [lambda dt: _rows(dt, 8, 10), lambda dt: _rows(dt, 4, 100)]),
    "vector_math": (_vector_math, [lambda dt: _rows(dt, 4, 8)]),
}


def warm(names=None, out=sys.stdout) -> None:
    """Compile the kernel families `names` (all by default), each once,
    printing each one's time."""
    import graphc as gc
    names = list(dict.fromkeys(FAMILIES if names is None else names))
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown kernel families {unknown}; graphc warm knows {list(FAMILIES)}")
    start = time.perf_counter()
    for name in names:
        loss, makers = FAMILIES[name]
        begun = time.perf_counter()
        for dtype in (np.float32, np.float64):
            gc.value_and_grad(loss, argnums=tuple(range(len(makers))))(
                *[make(dtype) for make in makers])
        print(f"{name:18} {time.perf_counter() - begun:6.1f} s", file=out, flush=True)
    print(f"graphc's kernels compiled in {time.perf_counter() - start:.1f} s", file=out)
