"""A sine-activated MLP (SIREN's layers): graphc's SGD step against the same
step written by hand in NumPy, where float32 sin and cos dominate.

    OMP_NUM_THREADS=1 python benchmarks/bench_sine_mlp.py [--reps 30] [--batch 4096]

The model is 2-256-256-1 with h = sin(30 (x W1 + b1)), then sin(h W2 + b2),
and a mean squared error, fitting an image's value at its pixel's two
coordinates. Per step it takes 2 x batch x 256 sines and as many cosines
(the gradients). Both steps start from the same parameters and must agree on
the loss; medians of interleaved rounds. Threads are pinned to 1 unless
OMP_NUM_THREADS is set.

On 2026-12-06 (this project's 2-core AMD VM, one thread, two rounds of the
old and new trees in turn): with float32 sin and cos in vector loops
(kernels/trig.py) graphc took 56-61 ms against NumPy's 67-71 (0.84-0.86 of
its time); before, when Numba called libm per element, 74-76 ms against
65-68 (1.12-1.13: slower than NumPy).
"""
import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import numpy as np  # noqa: E402  (after pinning threads)

import graphc as gc  # noqa: E402
from graphc.benchmarks.harness import interleaved_medians_us  # noqa: E402

OMEGA, LR = np.float32(30.0), np.float32(1e-4)


def loss(p, x, y):
    h = np.sin(OMEGA * (x @ p["W1"] + p["b1"]))
    h = np.sin(h @ p["W2"] + p["b2"])
    return np.mean((h @ p["W3"] - y) ** 2)


def numpy_step(p, x, y):
    """Forward, backward by hand, and the SGD update in place; the loss before it."""
    a1 = OMEGA * (x @ p["W1"] + p["b1"])
    h1 = np.sin(a1)
    a2 = h1 @ p["W2"] + p["b2"]
    h2 = np.sin(a2)
    r = h2 @ p["W3"] - y
    value = np.mean(r ** 2)
    g = r * np.float32(2 / r.size)
    g_a2 = (g @ p["W3"].T) * np.cos(a2)
    g_a1 = (g_a2 @ p["W2"].T) * np.cos(a1) * OMEGA
    grads = {"W3": h2.T @ g, "W2": h1.T @ g_a2, "b2": g_a2.sum(0),
             "W1": x.T @ g_a1, "b1": g_a1.sum(0)}
    for name, grad in grads.items():
        p[name] -= LR * grad
    return value


def make(batch, seed=0):
    rng = np.random.default_rng(seed)
    side = int(np.sqrt(batch))
    u, v = np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, batch // side))
    x = np.stack([u.ravel(), v.ravel()], 1).astype(np.float32)
    y = (np.sin(3 * x[:, :1]) * np.cos(2 * x[:, 1:])).astype(np.float32)    # the "image"
    f32 = np.float32
    params = {"W1": rng.uniform(-1 / 2, 1 / 2, (2, 256)).astype(f32),
              "b1": rng.uniform(-1, 1, 256).astype(f32),
              "W2": rng.uniform(-np.sqrt(6 / 256), np.sqrt(6 / 256), (256, 256)).astype(f32),
              "b2": np.zeros(256, f32),
              "W3": rng.uniform(-np.sqrt(6 / 256), np.sqrt(6 / 256), (256, 1)).astype(f32)}
    return params, x, y


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4096)
    args = ap.parse_args(argv)
    params, x, y = make(args.batch)
    mine = {k: v.copy() for k, v in params.items()}
    step = gc.compile_step(loss, gc.optim.SGD(lr=float(LR)))
    first = (step(params, x, y), numpy_step(mine, x, y))
    np.testing.assert_allclose(*first, rtol=1e-4)
    graphc_us, numpy_us = interleaved_medians_us(
        [lambda: step(params, x, y), lambda: numpy_step(mine, x, y)], args.reps)
    print(f"sine MLP 2-256-256-1, batch {len(x)}, float32, median of {args.reps}: "
          f"graphc {graphc_us / 1e3:.1f} ms, NumPy {numpy_us / 1e3:.1f} ms, "
          f"graphc / NumPy {graphc_us / numpy_us:.2f}")


if __name__ == "__main__":
    main()
