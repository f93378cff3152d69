"""A small convolutional network written with sliding_window_view: graphc's
SGD step against the same step by hand in NumPy (im2col and GEMMs), and
PyTorch's (conv2d) when installed.

    OMP_NUM_THREADS=1 python benchmarks/bench_conv.py [--reps 200] [--batch 128] [--layers 2]

The model is the digits' shape, 8x8 images: a 3x3 convolution to 16 channels
as `einsum` over `sliding_window_view` windows, a bias, relu (with
`--layers 2`, a second 3x3 convolution to 32 channels over those
channels-last activations, windows over their axes 1 and 2), then a dense
layer to 10 classes and softmax cross-entropy. graphc copies the windows
(traced arrays are not views) in one gather (the second layer's as rows of
16 channels, in the order its einsum reads them), so its step is that gather,
small GEMMs and elementwise loops over rows of 16 channels. All steps start
from the same parameters and must agree on the loss; medians of interleaved
rounds.
Threads are pinned to 1 unless OMP_NUM_THREADS is set.
"""
import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import numpy as np  # noqa: E402  (after pinning threads)
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

import graphc as gc  # noqa: E402
from graphc.benchmarks.harness import print_race, race_sgd_steps, torch_sgd  # noqa: E402

SIDE, WINDOW, CHANNELS, CHANNELS2, CLASSES, LR = 8, 3, 16, 32, 10, 0.05


def loss(p, x, y):
    windows = sliding_window_view(x, (WINDOW, WINDOW), axis=(1, 2))    # (B, 6, 6, 3, 3)
    h = np.maximum(np.einsum("bijkl,klc->bijc", windows, p["K"]) + p["c"], 0)
    if "K2" in p:       # (B, 4, 4, 16, 3, 3): channels before the window axes, as NumPy's
        windows = sliding_window_view(h, (WINDOW, WINDOW), axis=(1, 2))
        h = np.maximum(np.einsum("bijckl,klcd->bijd", windows, p["K2"]) + p["c2"], 0)
    z = h.reshape(x.shape[0], -1) @ p["W"] + p["b"]
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -np.mean(log_p[np.arange(x.shape[0]), y])


def numpy_step(p, x, y):
    """Forward, backward by hand, and the SGD update in place; the loss before it."""
    n, out = x.shape[0], SIDE - WINDOW + 1
    cols = sliding_window_view(x, (WINDOW, WINDOW), axis=(1, 2)).reshape(n * out * out, -1)
    a = cols @ p["K"].reshape(-1, CHANNELS) + p["c"]
    h1 = np.maximum(a, 0)
    h = h1.reshape(n, -1)
    if "K2" in p:       # im2col of the channels-last activations, (c, k, l) per row
        out2 = out - WINDOW + 1
        cols2 = sliding_window_view(h1.reshape(n, out, out, CHANNELS), (WINDOW, WINDOW),
                                    axis=(1, 2)).reshape(n * out2 * out2, -1)
        k2 = p["K2"].transpose(2, 0, 1, 3).reshape(-1, CHANNELS2)       # rows in (c, k, l) order
        h2 = np.maximum(cols2 @ k2 + p["c2"], 0)
        h = h2.reshape(n, -1)
    z = h @ p["W"] + p["b"]
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1, keepdims=True)
    value = -np.mean(z[np.arange(n), y] - np.log(total[:, 0]))
    g = e / total
    g[np.arange(n), y] -= 1
    g /= n
    grads = {"W": h.T @ g, "b": g.sum(0)}
    g_h = g @ p["W"].T
    if "K2" in p:
        g_a2 = (g_h * (h > 0)).reshape(-1, CHANNELS2)
        grads["K2"] = (cols2.T @ g_a2).reshape(CHANNELS, WINDOW, WINDOW, CHANNELS2).transpose(1, 2, 0, 3)
        grads["c2"] = g_a2.sum(0)
        g_cols = (g_a2 @ k2.T).reshape(n, out2, out2, CHANNELS, WINDOW, WINDOW)
        g_h1 = np.zeros((n, out, out, CHANNELS), np.float32)
        for k in range(WINDOW):         # each window position adds back where it read
            for m in range(WINDOW):
                g_h1[:, k:k + out2, m:m + out2, :] += g_cols[..., k, m]
        g_h = g_h1.reshape(n, -1)
    g_a = (g_h * (h1.reshape(n, -1) > 0)).reshape(-1, CHANNELS)
    grads.update(K=(cols.T @ g_a).reshape(p["K"].shape), c=g_a.sum(0))
    for name, grad in grads.items():
        p[name] -= np.float32(LR) * grad
    return value


def make(batch, seed=0, layers=1):
    rng = np.random.default_rng(seed)
    f32 = np.float32
    side = SIDE - (WINDOW - 1) * layers
    features = side * side * (CHANNELS if layers == 1 else CHANNELS2)
    params = {"K": (rng.standard_normal((WINDOW, WINDOW, CHANNELS)) / WINDOW).astype(f32),
              "c": np.zeros(CHANNELS, f32),
              "W": (rng.standard_normal((features, CLASSES)) / np.sqrt(features)).astype(f32),
              "b": np.zeros(CLASSES, f32)}
    if layers == 2:
        fan_in = WINDOW * WINDOW * CHANNELS
        params.update(K2=(rng.standard_normal((WINDOW, WINDOW, CHANNELS, CHANNELS2))
                          / np.sqrt(fan_in)).astype(f32), c2=np.zeros(CHANNELS2, f32))
    return params, rng.standard_normal((batch, SIDE, SIDE)).astype(f32), \
        rng.integers(0, CLASSES, batch)


def torch_step(params, x, y):
    """The same step in PyTorch (conv2d), or None where it is not installed."""
    made = torch_sgd(params, LR)
    if made is None:
        return None
    torch, p, opt = made
    images, labels = torch.tensor(x)[:, None], torch.tensor(y)

    def step():
        opt.zero_grad()
        kernels = p["K"].permute(2, 0, 1)[:, None]                  # (C, 1, 3, 3)
        h = torch.relu(torch.nn.functional.conv2d(images, kernels) + p["c"][:, None, None])
        if "K2" in p:
            kernels = p["K2"].permute(3, 2, 0, 1)                  # (C2, C, 3, 3)
            h = torch.relu(torch.nn.functional.conv2d(h, kernels) + p["c2"][:, None, None])
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
    ap.add_argument("--layers", type=int, default=1, choices=[1, 2])
    args = ap.parse_args(argv)
    params, x, y = make(args.batch, layers=args.layers)
    race = race_sgd_steps(loss, params, (x, y), numpy_step, torch_step, LR, args.reps)
    print_race(f"{args.layers} convolution(s), batch {args.batch}", race, args.reps)


if __name__ == "__main__":
    main()
