"""Short rows: is a kernel's transcendental better computed first in a flat
loop over a block of rows, or in the rows? The data behind
graphc.codegen._hoisted_transcendentals and TRIG_IN_ROWS.

    OMP_NUM_THREADS=1 python benchmarks/bench_short_rows.py [--models exp_tanh,sin_cos] [--reps 100]

A row shorter than codegen.SHORT_ROW (a classifier's classes) leaves a loop
over it too short for vectors, so the transcendentals that depend only on
the kernel's whole-space operands are computed first by a flat loop over
each block of rows (codegen._flat_block). Each model below is one kernel
over (n, cols) with a column sum; one transcendental of each reads a column
broadcast, so it stays in the rows. Per model, dtype and row length, three
compiled forms of the same function run interleaved (medians over `--reps`
calls of each, over about 245760 elements):

- `graphc`: what codegen decides (`*` marks a flat loop);
- `rows`: every transcendental in the rows (no flat loop);
- `flat`: a flat loop for every transcendental it can take, whatever the
  row length.

On 2026-12-06 (this project's 2-core AMD VM, AVX2, one thread; 54 s with
`--reps 60`), codegen's choice was the faster form or within 1% of it in
47 of the 54 rows. float32: exp_tanh's rows of 8, 24 and 40 (whole
vectors of 8 lanes) took 1463, 1415 and 1400 us in the rows and 2729,
1990 and 1841 with a flat loop; sin_cos's rows of 10 and 13 (TRIG_IN_ROWS)
2254 and 3351 in the rows, 4366 and 4297 with a flat loop for sin, and its
rows of 3 and 6 6659 and 6861 in the rows, 4820 and 4422 with it. Left
open, with a vmath function in the rows where the flat loop still goes
first: exp_tanh float32 rows of 10 and 28 (2971 and 2218 against 2618 and
2141 in the rows, though rows of 13 gain: 3086 against 3492), float64 rows of 6, 10 and 13 (6-23%
slower), and exp_cos float64 rows of 6 (6150 against 4795; sin_cos's
gain there: 6462 against 8312). LLVM decides from its cost model whether
each loop runs as vectors, so the rule is measured, not derived.

Later on 2026-12-06, on an AMD Zen 4 with AVX-512 (16 float32 lanes), the
same run put codegen's choice within 1% of the best form in most rows; the
rows that were not: float32 rows of 10 and 13 with a trig call in them
(TRIG_IN_ROWS kept the flat loop out; 964 and 730 us against 885 and 671
with it), which now take it (rows shorter than a vector: see TRIG_IN_ROWS);
float32 rows of 20 (exp_tanh 575 with the flat loop against 494 in the
rows, sin_cos 487 against 443); and sin_cos float64 rows of 24 and 40,
whole vectors of 8 lanes, which skip the flat loop and lose to it (919
and 918 against 678 and 640), though exp_tanh gains there by skipping it (1158 against
1465 at 24). Those three are left open.

On an Intel Xeon with AVX-512 (2026-12-06, `--reps 60`, 15 s), codegen's
choice was within 2% of the best form in 44 of the 54 rows. The others:
float32 rows of 8 (half a vector) and 20, where the rows without a flat
loop were 9-19% faster (exp_tanh 716 and 412 us against 817 and 492;
sin_cos 607 and 308 against 666 and 356), and float64 rows of 13 with a
trig call, where the flat loop was 6% faster (sin_cos 1897 against 2020).
Left open: no rule by row length fits every CPU measured.
"""
import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402  (after pinning threads)

import graphc as gc  # noqa: E402
from graphc import codegen  # noqa: E402
from graphc.benchmarks.harness import interleaved_medians_us  # noqa: E402


def exp_tanh(x, r, c):      # tests/test_fusion.py's short-rows model
    e = np.exp(x)
    h = e * r - np.tanh(x * c)
    return h, np.sum(h, axis=-2), np.log1p(e)


def exp_cos(x, r, c):
    h = np.exp(x) * r - np.cos(x * c)
    return h, np.sum(h, axis=-2)


def sin_cos(x, r, c):
    h = np.sin(x) * r - np.cos(x * c)
    return h, np.sum(h, axis=-2)


MODELS = {f.__name__: f for f in (exp_tanh, exp_cos, sin_cos)}
ELEMENTS = 245760


def _compiled(model, args, form):
    """`model` compiled with codegen's decision (`graphc`), none hoisted
    (`rows`) or all it can (`flat`): codegen reads these names when it
    generates, and the compiled entry keeps what it generated."""
    f = gc.jit(model)
    saved = codegen._hoisted_transcendentals, codegen.vector_bytes, codegen.TRIG_IN_ROWS
    if form == "rows":
        codegen._hoisted_transcendentals = lambda graph, nodes, space: []
    elif form == "flat":   # no row is whole vectors, and no trig rule
        codegen.vector_bytes, codegen.TRIG_IN_ROWS = (lambda: 1 << 30), range(0)
    try:
        f(*args)
        flat = "_blk[" in f.inspect(*args).source
    finally:
        codegen._hoisted_transcendentals, codegen.vector_bytes, codegen.TRIG_IN_ROWS = saved
    return f, flat


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--cols", default="3,6,8,10,13,20,24,28,40")
    parser.add_argument("--reps", type=int, default=100)
    args = parser.parse_args()
    if any(int(c) >= codegen.SHORT_ROW for c in args.cols.split(",")):
        parser.error(f"--cols: rows of {codegen.SHORT_ROW} or more never take a flat loop")
    rng = np.random.default_rng(0)
    print(f"{'model':9} {'dtype':8} {'cols':>4} {'graphc us':>10} {'rows us':>8} {'flat us':>8}")
    for name in args.models.split(","):
        for dtype in (np.float32, np.float64):
            for cols in map(int, args.cols.split(",")):
                n = ELEMENTS // cols
                data = (rng.standard_normal((n, cols)).astype(dtype),
                        rng.standard_normal((n, 1)).astype(dtype),
                        rng.standard_normal(cols).astype(dtype))
                forms = [_compiled(MODELS[name], data, form) for form in ("graphc", "rows", "flat")]
                assert not forms[1][1] and forms[2][1], "a form compiled as another"
                times = interleaved_medians_us([lambda f=f: f(*data) for f, _ in forms], args.reps)
                mark = "*" if forms[0][1] else " "
                print(f"{name:9} {np.dtype(dtype).name:8} {cols:4} {times[0]:9.0f}{mark} "
                      f"{times[1]:8.0f} {times[2]:8.0f}", flush=True)


if __name__ == "__main__":
    main()
