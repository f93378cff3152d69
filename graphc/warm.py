"""`graphc warm`: compile graphc's kernels now, on every core, instead of at
the first model that needs each.

The kernels in `graphc.kernels` (LAPACK and BLAS calls, the row argsort,
log-softmax rows, vector math) are compiled by Numba once per install and
cached on disk, for float32 and float64 apart. Until then the first model
that uses one waits for it: 8 s for the first np.linalg.inv, 8 s for the
first argsort, 3 s for the first matrix product (float64, here). A program
here is a gradient through one family's ops, so its forward and backward
kernels are built for the argument types compiled models pass; families run
in separate processes at once (each family's kernels in one process, so no
two processes write one function's cache index).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np


def _square(dtype, n=4):
    a = np.random.default_rng(0).normal(size=(n, n))
    return (a @ a.T + n * np.eye(n)).astype(dtype)


def _rows(dtype, n, m):
    return np.random.default_rng(0).normal(size=(n, m)).astype(dtype)


def _inverse_and_solve(m):
    sign, logdet = np.linalg.slogdet(m)
    return (np.sum(np.linalg.inv(m) ** 2) + np.sum(np.linalg.solve(m, m[:, 0]) ** 2)
            + np.linalg.det(m) + logdet)


def _cholesky_and_eigh(m):
    w, v = np.linalg.eigh(m)
    return np.sum(np.linalg.cholesky(m) ** 2) + np.sum(w ** 2) + np.sum(v ** 2)


def _sort(x):
    return np.sum(np.sort(x, axis=1) * np.arange(x.shape[1]))


def _products(small, large):
    # the sizes take both paths: small products in registers, others through BLAS
    return np.sum((small @ small.T) ** 2) + np.sum((large @ large) ** 2)


def _log_softmax(short, long):
    def loss(z):
        return -np.sum(z - np.max(z, axis=1, keepdims=True)
                       - np.log(np.sum(np.exp(z - np.max(z, axis=1, keepdims=True)), axis=1,
                                       keepdims=True)))
    return loss(short) + loss(long)


def _vector_math(x):
    import scipy.special
    return np.sum(np.exp(x) + np.log(x * x + 1) + np.log1p(x * x) + np.expm1(x) + np.tanh(x)
                  + scipy.special.expit(x) + np.logaddexp(0, x) + scipy.special.erf(x))


# family -> (loss, argument makers, seconds it took cold here, float32 and
# float64 together): each is compiled as gc.value_and_grad of the loss, for
# float32 and float64; the seconds share the families among the processes
FAMILIES = {
    "inverse_and_solve": (_inverse_and_solve, [_square], 23),
    "sort": (_sort, [lambda dt: _rows(dt, 4, 8)], 11),
    "cholesky_and_eigh": (_cholesky_and_eigh, [_square], 9),
    "products": (_products, [lambda dt: _rows(dt, 8, 16), lambda dt: _rows(dt, 96, 96)], 7),
    "log_softmax": (_log_softmax, [lambda dt: _rows(dt, 8, 10), lambda dt: _rows(dt, 4, 100)], 5),
    "vector_math": (_vector_math, [lambda dt: _rows(dt, 4, 8)], 3),
}


def _shares(names, processes) -> list[list[str]]:
    """The families split among processes, longest first onto the least loaded."""
    shares = [[] for _ in range(processes)]
    load = [0.0] * processes
    for name in sorted(names, key=lambda n: -FAMILIES[n][2]):
        k = load.index(min(load))
        shares[k].append(name)
        load[k] += FAMILIES[name][2]
    return [share for share in shares if share]


def compile_families(names) -> dict[str, float]:
    """Compile the named families' kernels in this process: seconds each."""
    import graphc as gc
    seconds = {}
    for name in names:
        loss, makers, _ = FAMILIES[name]
        start = time.perf_counter()
        for dtype in (np.float32, np.float64):
            gc.value_and_grad(loss, argnums=tuple(range(len(makers))))(
                *[make(dtype) for make in makers])
        seconds[name] = time.perf_counter() - start
    return seconds


def warm(names=None, processes=None, out=sys.stdout) -> None:
    """Compile the families `names` (all by default) in up to `processes`
    processes at once (default: one per core), printing each one's time."""
    names = list(FAMILIES) if names is None else list(names)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown kernel families {unknown}; graphc warm knows {list(FAMILIES)}")
    processes = max(1, min(processes or os.cpu_count() or 1, len(names)))
    shares = _shares(names, processes)
    start = time.perf_counter()
    children = [subprocess.Popen(
        [sys.executable, "-c", "import json, sys; from graphc.warm import compile_families; "
         "print(json.dumps(compile_families(sys.argv[1:])))", *share],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for share in shares]
    failed = []
    for share, child in zip(shares, children):
        stdout, stderr = child.communicate()
        if child.returncode:
            failed.append(f"{', '.join(share)}:\n{stderr}")
            continue
        for name, seconds in json.loads(stdout.strip().splitlines()[-1]).items():
            print(f"{name:12} {seconds:6.1f} s", file=out)
    print(f"graphc's kernels compiled in {time.perf_counter() - start:.1f} s "
          f"({len(shares)} process{'es' if len(shares) > 1 else ''})", file=out)
    if failed:
        raise RuntimeError("graphc warm: compiling failed for " + "\n".join(failed))
