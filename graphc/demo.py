"""`graphc demo`: train an MLP on the shipped digits, against hand-written NumPy.

The model is written once, as plain NumPy (`mlp_loss`); graphc compiles its
forward, backward and Adam update. The comparison loop is the same training
written by hand in NumPy, the way a NumPy user would, with the same batches.
"""
from __future__ import annotations

import time

import numpy as np

import graphc as gc
from graphc.datasets import load_digits


def init_mlp(sizes, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W{i}"] = (rng.normal(size=(n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(dtype)
        params[f"b{i}"] = np.zeros(n_out, dtype)
    return params


def mlp_logits(params, x):
    h = np.maximum(x @ params["W0"] + params["b0"], 0.0)
    return h @ params["W1"] + params["b1"]


def mlp_loss(params, x, y):
    return gc.nn.cross_entropy(mlp_logits(params, x), y)


def accuracy(params, X, y):
    return float(np.mean(np.argmax(mlp_logits(params, X), axis=1) == y))


def numpy_train(params, X, y, lr, batch_size, epochs, seed):
    """The same MLP, Adam and batches, written by hand in NumPy."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    rng, t, history = np.random.default_rng(seed), 0, []
    for _ in range(epochs):
        perm, losses = rng.permutation(len(X)), []
        for start in range(0, len(X), batch_size):
            idx = perm[start:start + batch_size]
            x, labels = X[idx], y[idx]
            n = len(idx)
            z = x @ params["W0"] + params["b0"]
            h = np.maximum(z, 0)
            logits = h @ params["W1"] + params["b1"]
            logits -= logits.max(axis=1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            losses.append(-logp[np.arange(n), labels].mean())
            dlogits = np.exp(logp)
            dlogits[np.arange(n), labels] -= 1
            dlogits /= n
            dh = dlogits @ params["W1"].T
            dz = dh * (z > 0)
            grads = {"W1": h.T @ dlogits, "b1": dlogits.sum(0), "W0": x.T @ dz, "b0": dz.sum(0)}
            t += 1
            for k, g in grads.items():
                m[k] = b1 * m[k] + (1 - b1) * g
                v[k] = b2 * v[k] + (1 - b2) * g * g
                denom = np.sqrt(v[k]) / np.sqrt(1 - b2 ** t) + eps
                params[k] -= (lr / (1 - b1 ** t)) * m[k] / denom
        history.append(np.mean(losses))
    return np.array(history)


def run(epochs=30, batch_size=64, hidden=128, lr=1e-3 * 3, seed=0, plot=None, progress=True):
    """Train both ways; print accuracy and time per epoch. Returns a dict of results."""
    X, y, X_test, y_test = load_digits(seed=seed)
    print(f"digits: {len(X)} training and {len(X_test)} test images of 8x8 pixels, 10 classes")
    print(f"model: MLP 64-{hidden}-10 (relu), Adam(lr={lr:g}), batch {batch_size}, "
          f"{epochs} epochs, float32")

    params = init_mlp([64, hidden, 10], seed)
    print("compiling forward + backward + Adam with Numba (cached on disk after the first run)...",
          flush=True)
    start = time.perf_counter()
    gc.train(mlp_loss, params, (X, y), gc.optim.Adam(lr=lr), batch_size=batch_size, epochs=1,
             seed=seed, progress=False)      # the first epoch pays for tracing and compiling
    first_epoch = time.perf_counter() - start
    if progress:    # the run to watch; the timed one below draws no bar, whose updates
        # took as long as the 1.3 ms epochs (a demo's 1.3 read 3.1 ms an epoch)
        gc.train(mlp_loss, init_mlp([64, hidden, 10], seed), (X, y), gc.optim.Adam(lr=lr),
                 batch_size=batch_size, epochs=epochs, seed=seed, progress=True)
    # each gc.train call traces its step again (from the cache: no compile),
    # which a run of a few epochs would count as epochs: a one-epoch call
    # measures that, and an epoch is the rest of a longer call's time
    start = time.perf_counter()
    gc.train(mlp_loss, init_mlp([64, hidden, 10], seed), (X, y), gc.optim.Adam(lr=lr),
             batch_size=batch_size, epochs=1, seed=seed, progress=False)
    one_epoch_call = time.perf_counter() - start
    params = init_mlp([64, hidden, 10], seed)
    start = time.perf_counter()
    history = gc.train(mlp_loss, params, (X, y), gc.optim.Adam(lr=lr), batch_size=batch_size,
                       epochs=epochs, seed=seed, progress=False)
    call = time.perf_counter() - start
    graphc_epoch = (call - one_epoch_call) / (epochs - 1) if epochs > 1 else 0.0
    retrace = one_epoch_call - graphc_epoch
    if not 0 < graphc_epoch < one_epoch_call:      # one epoch, or noise: not told apart
        graphc_epoch, retrace = call / epochs, None
    graphc_acc = accuracy(params, X_test, y_test)

    np_params = init_mlp([64, hidden, 10], seed)
    start = time.perf_counter()
    np_history = numpy_train(np_params, X, y, lr, batch_size, epochs, seed)
    numpy_epoch = (time.perf_counter() - start) / epochs
    numpy_acc = accuracy(np_params, X_test, y_test)

    print(f"\n{'':14}{'test accuracy':>15}{'ms / epoch':>12}{'final loss':>12}")
    print(f"{'graphc':14}{graphc_acc:>15.2%}{graphc_epoch * 1e3:>12.2f}{history[-1]:>12.4f}")
    print(f"{'NumPy by hand':14}{numpy_acc:>15.2%}{numpy_epoch * 1e3:>12.2f}{np_history[-1]:>12.4f}")
    traced = (f"each later gc.train call traces its step again: {retrace * 1e3:.0f} ms"
              if retrace is not None else "this run is too short to tell gc.train's trace of "
              "its step from its epochs: both are counted")
    print(f"\ngraphc is {numpy_epoch / graphc_epoch:.1f}x the speed of the NumPy loop "
          f"(first epoch with compile: {first_epoch:.2f} s; {traced})")
    if plot:
        _plot(history, np_history, plot)
    return {"graphc_accuracy": graphc_acc, "numpy_accuracy": numpy_acc,
            "graphc_epoch_s": graphc_epoch, "numpy_epoch_s": numpy_epoch, "history": history}


def _plot(history, np_history, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib: pip install matplotlib")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, len(history) + 1), history, label="graphc")
    ax.plot(np.arange(1, len(np_history) + 1), np_history, "--", label="NumPy by hand")
    ax.set(xlabel="epoch", ylabel="mean cross-entropy", yscale="log", title="digits MLP training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"loss curve written to {path}")
