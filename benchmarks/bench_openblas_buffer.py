"""Does a new process's first products run slow until OpenBLAS's buffer is
mapped? The data behind graphc.kernels.blas_library.fault_in_buffer.

    python benchmarks/bench_openblas_buffer.py [--rounds 5] [--threads 1]

Each round starts two new processes, in turn: one binds graphc's BLAS as
graphc does (bind() runs the warm-up product), the other with the warm-up
turned off. Each then times every product of bench_blas_libraries.SHAPES
(the GEMMs of W1-W4's steps and W3's largest), float32 and float64, as NumPy
runs them (`np.matmul(a, b, out=c)`: the BLAS graphc's GEMMs call too), and
reports its median per product. The table gives the median over rounds for
each kind of process, in µs per product, and the time without the warm-up as
a multiple of the time with it (> 1: the warm-up pays).
"""
import argparse
import json
import os
import subprocess
import sys

_CHILD = """\
import json, sys, time
import numpy as np
from graphc.kernels import blas_library
if sys.argv[1] == "off":
    blas_library.fault_in_buffer = lambda sgemm, dgemm: None
blas_library.bind()
from graphc.benchmarks.bench_blas_libraries import SHAPES
rng = np.random.default_rng(0)
out = {}
for dtype in (np.float32, np.float64):
    for m, k, n, form in SHAPES:
        a = rng.standard_normal((k, m) if form[0] == "T" else (m, k)).astype(dtype)
        b = rng.standard_normal((n, k) if form[1] == "T" else (k, n)).astype(dtype)
        a, b = (a.T if form[0] == "T" else a), (b.T if form[1] == "T" else b)
        c = np.empty((m, n), dtype)
        times = []
        for _ in range(max(5, int(2e7 / (m * k * n)))):
            start = time.perf_counter()
            np.matmul(a, b, out=c)
            times.append(time.perf_counter() - start)
        out[f"{np.dtype(dtype).name} {m} {k} {n} {form}"] = 1e6 * float(np.median(times[1:]))
print(json.dumps(out))
"""


def _child(variant: str, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", _CHILD, variant], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="pairs of new processes")
    parser.add_argument("--threads", type=int, default=1, help="OpenBLAS's thread count")
    args = parser.parse_args()
    import numpy as np
    from graphc.benchmarks.bench_blas_libraries import _LABELS
    runs = {"on": [], "off": []}
    for r in range(args.rounds):
        for variant in (("on", "off") if r % 2 == 0 else ("off", "on")):
            runs[variant].append(_child(variant, args.threads))
    print(f"{args.threads} thread(s), {args.rounds} rounds; µs per product, median over rounds")
    print(f"{'dtype':8} {'product':>22} {'warm-up':>9} {'none':>9} {'none/warm-up':>13}")
    for key in runs["on"][0]:
        dtype, m, k, n, form = key.split()
        on, off = (float(np.median([run[key] for run in runs[v]])) for v in ("on", "off"))
        shape = _LABELS[form].format(m=m, k=k, n=n)
        print(f"{dtype:8} {shape:>22} {on:9.1f} {off:9.1f} {off / on:13.2f}")


if __name__ == "__main__":
    main()
