"""Do both ways of storing a dense layer's weight run equally fast?

    OMP_NUM_THREADS=1 python benchmarks/bench_layouts.py [--reps 200]

A NumPy user stores W as (in, out) and writes `x @ W`; a PyTorch user
stores it as (out, in) and writes `x @ W.T`. graphc should not care: the
weight gradient of `x @ W.T` is `g.T @ x` (passes.simplify swaps the
transposed product) and its SGD update one GEMM accumulating into W, as for
`x @ W`. This times one SGD step of W2's and W4's models (workloads.py) in
both layouts, graphc against the hand-written NumPy step of that layout,
interleaved, the median of --reps steps each, after checking that the two
take the same step.

On this project's 2-core Xeon VM (2026-12-03, one thread, a very busy host:
NumPy's W4 step took 500-690 us, not 290), float32, two runs, graphc's
(out, in) step took 0.94-0.95x the time of its (in, out) step for W2 and
1.05-1.08x for W4. At a4d6c60's parent, before the transposed product was
swapped, it took 1.20-1.21x and 1.25-1.27x. (NumPy's own (out, in) step is
the slower one, 1.2x, so graphc / NumPy is lower in that layout.)
"""
import argparse

import numpy as np

import graphc as gc
from graphc.benchmarks.harness import interleaved_medians_us
from graphc.benchmarks.workloads import WORKLOADS


def _weights_transposed(params):
    """params with each weight W replaced by the view W.T."""
    return {k: v.T if k.startswith("W") else v for k, v in params.items()}


def out_by_in(params):
    """The same model with each weight stored transposed, as (out, in)."""
    return {k: np.ascontiguousarray(v) for k, v in _weights_transposed(params).items()}


def transposed_loss(loss_fn):
    """`loss_fn` of a model whose weights are stored as (out, in): the same
    code a PyTorch user writes, `x @ W.T`."""
    return lambda params, *batch: loss_fn(_weights_transposed(params), *batch)


def transposed_numpy_step(numpy_step):
    """The hand-written NumPy step for weights stored as (out, in): it steps
    views W.T of them, which are (in, out) and update the stored arrays in place."""
    return lambda params, *batch: numpy_step(_weights_transposed(params), *batch)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=200, help="timed steps of each")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    dtype = np.dtype(args.dtype).type
    print(f"{'workload':8} {'layout':10} {'numpy us':>9} {'graphc us':>10} {'graphc/numpy':>13}")
    for name in ("W2", "W4"):
        w = WORKLOADS[name]
        params, batch = w.make(dtype, seed=0)
        layouts = {"(in, out)": (params, w.loss_fn, w.numpy_step),
                   "(out, in)": (out_by_in(params), transposed_loss(w.loss_fn),
                                 transposed_numpy_step(w.numpy_step))}
        calls = []
        for layout, (p0, loss_fn, numpy_step) in layouts.items():
            mine, theirs = ({k: v.copy() for k, v in p0.items()} for _ in range(2))
            step = gc.compile_step(loss_fn, gc.optim.SGD(w.lr))
            step(mine, *batch)
            numpy_step(theirs, *batch, w.lr)
            for k in p0:        # the same step, within float32 rounding of the GEMMs
                np.testing.assert_allclose(mine[k] - p0[k], theirs[k] - p0[k],
                                           rtol=2e-3, atol=1e-6 * np.abs(p0[k]).max())
            calls += [lambda s=numpy_step, p=theirs: s(p, *batch, w.lr),
                      lambda s=step, p=mine: s(p, *batch)]
        # all four in turn: the machine's drift hits them alike
        times = interleaved_medians_us(calls, args.reps)
        for layout, (numpy_us, graphc_us) in zip(layouts, zip(times[::2], times[1::2])):
            print(f"{name:8} {layout:10} {numpy_us:9.1f} {graphc_us:10.1f} "
                  f"{graphc_us / numpy_us:13.2f}")

if __name__ == "__main__":
    main()
