"""A small convolutional network written with sliding_window_view: graphc's
SGD step against the same step by hand in NumPy (im2col and GEMMs), and
PyTorch's (conv2d) when installed.

    OMP_NUM_THREADS=1 python benchmarks/bench_conv.py [--reps 200] [--batch 128]

The model is the digits' shape, 8x8 images: a 3x3 convolution to 16 channels
as `einsum` over `sliding_window_view` windows, a bias, relu, then a dense
layer to 10 classes and softmax cross-entropy. graphc copies the windows
(traced arrays are not views) in one gather, so its step is that gather, small
GEMMs and elementwise loops over rows of 16 channels. All steps start from
the same parameters and must agree on the loss; medians of interleaved rounds.
Threads are pinned to 1 unless OMP_NUM_THREADS is set.
"""
import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import numpy as np  # noqa: E402  (after pinning threads)
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

import graphc as gc  # noqa: E402
from graphc.benchmarks.harness import interleaved_medians_us  # noqa: E402

SIDE, WINDOW, CHANNELS, CLASSES, LR = 8, 3, 16, 10, 0.05


def loss(p, x, y):
    windows = sliding_window_view(x, (WINDOW, WINDOW), axis=(1, 2))    # (B, 6, 6, 3, 3)
    h = np.maximum(np.einsum("bijkl,klc->bijc", windows, p["K"]) + p["c"], 0)
    z = h.reshape(x.shape[0], -1) @ p["W"] + p["b"]
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -np.mean(log_p[np.arange(x.shape[0]), y])


def numpy_step(p, x, y):
    """Forward, backward by hand, and the SGD update in place; the loss before it."""
    n, out = x.shape[0], SIDE - WINDOW + 1
    cols = sliding_window_view(x, (WINDOW, WINDOW), axis=(1, 2)).reshape(n * out * out, -1)
    a = cols @ p["K"].reshape(-1, CHANNELS) + p["c"]
    h = np.maximum(a, 0).reshape(n, -1)
    z = h @ p["W"] + p["b"]
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1, keepdims=True)
    value = -np.mean(z[np.arange(n), y] - np.log(total[:, 0]))
    g = e / total
    g[np.arange(n), y] -= 1
    g /= n
    g_a = ((g @ p["W"].T) * (h > 0)).reshape(-1, CHANNELS)
    grads = {"W": h.T @ g, "b": g.sum(0), "K": (cols.T @ g_a).reshape(p["K"].shape),
             "c": g_a.sum(0)}
    for name, grad in grads.items():
        p[name] -= np.float32(LR) * grad
    return value


def make(batch, seed=0):
    rng = np.random.default_rng(seed)
    f32, features = np.float32, (SIDE - WINDOW + 1) ** 2 * CHANNELS
    params = {"K": (rng.standard_normal((WINDOW, WINDOW, CHANNELS)) / WINDOW).astype(f32),
              "c": np.zeros(CHANNELS, f32),
              "W": (rng.standard_normal((features, CLASSES)) / np.sqrt(features)).astype(f32),
              "b": np.zeros(CLASSES, f32)}
    return params, rng.standard_normal((batch, SIDE, SIDE)).astype(f32), \
        rng.integers(0, CLASSES, batch)


def torch_step(params, x, y):
    """The same step in PyTorch (conv2d), or None where it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    images, labels = torch.tensor(x)[:, None], torch.tensor(y)
    opt = torch.optim.SGD(p.values(), lr=LR)

    def step():
        opt.zero_grad()
        kernels = p["K"].permute(2, 0, 1)[:, None]                  # (C, 1, 3, 3)
        h = torch.relu(torch.nn.functional.conv2d(images, kernels) + p["c"][:, None, None])
        z = h.permute(0, 2, 3, 1).reshape(len(labels), -1) @ p["W"] + p["b"]
        value = torch.nn.functional.cross_entropy(z, labels)
        value.backward()
        opt.step()
        return value.item()
    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args(argv)
    params, x, y = make(args.batch)
    mine, theirs = ({k: v.copy() for k, v in params.items()} for _ in range(2))
    step = gc.compile_step(loss, gc.optim.SGD(lr=LR))
    steps = {"graphc": lambda: step(params, x, y), "NumPy": lambda: numpy_step(mine, x, y)}
    torch_call = torch_step(theirs, x, y)
    if torch_call is not None:
        steps["PyTorch"] = torch_call
    first = {name: call() for name, call in steps.items()}
    np.testing.assert_allclose(first["graphc"], first["NumPy"], rtol=1e-5)
    for name in params:
        np.testing.assert_allclose(params[name], mine[name], rtol=1e-4, atol=1e-6)
    times = dict(zip(steps, interleaved_medians_us(list(steps.values()), args.reps)))
    print(f"batch {args.batch}, loss after one step {first['graphc']:.6f}; "
          f"µs per step (median of {args.reps}), and NumPy's time / its")
    for name, us in times.items():
        print(f"  {name:8s} {us:9.1f}  {times['NumPy'] / us:5.2f}x")


if __name__ == "__main__":
    main()
