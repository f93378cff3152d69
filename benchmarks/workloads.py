"""The benchmark workloads W1-W5: one SGD step of a small training problem.

Each workload has
  make(dtype, seed=0, size="full")  -> (params, batch)   deterministic; size="tiny" for tests
  loss_fn(params, *batch)           -> scalar            plain NumPy, what a graphc user writes
  numpy_step(params, *batch, lr)    -> float             forward + hand-written backward +
                                                         in-place SGD update; returns the loss
                                                         before the update
  torch_step(params, batch, lr)     -> step()            optional PyTorch peer (eager, autograd)
  jax_step(params, batch, lr)       -> step()            optional JAX peer (jit)
graphc runs `gc.compile_step(loss_fn, gc.optim.SGD(lr))`.

The peers' builders take the NumPy params and return a zero-argument `step()`
returning the loss; after a step, `read_params()` on the step (an attribute)
returns the current parameters as a dict of NumPy arrays, so the harness can
check that every implementation computes the same update.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


# ---------------------------------------------------------------------------
# Losses, as a user writes them (plain NumPy: they run on arrays and trace in graphc)

def softmax_cross_entropy(logits, y):
    """Mean cross-entropy of integer labels, with a numerically stable log-softmax."""
    z = logits - np.max(logits, axis=1, keepdims=True)
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(logp[np.arange(logits.shape[0]), y])


def logreg_loss(params, x, y):
    return softmax_cross_entropy(x @ params["W0"] + params["b0"], y)


def mlp_relu_loss(params, x, y):
    n_layers = len(params) // 2
    h = x
    for i in range(n_layers - 1):
        h = np.maximum(h @ params[f"W{i}"] + params[f"b{i}"], 0.0)
    last = n_layers - 1
    return softmax_cross_entropy(h @ params[f"W{last}"] + params[f"b{last}"], y)


def mlp_tanh_mse_loss(params, x, y):
    n_layers = len(params) // 2
    h = x
    for i in range(n_layers - 1):
        h = np.tanh(h @ params[f"W{i}"] + params[f"b{i}"])
    last = n_layers - 1
    pred = h @ params[f"W{last}"] + params[f"b{last}"]
    return np.mean((pred - y) ** 2)


def logistic_vector_loss(params, x, y):
    w = params["w"]
    return np.sum(np.log1p(np.exp(-y * (w * x))) + 0.5e-3 * w ** 2)


# ---------------------------------------------------------------------------
# Hand-written NumPy steps: forward, manual backward, in-place SGD update

def _mlp_numpy_step(params, x, lr, act, head):
    """Dense layers W{i}, b{i}; `act` is "relu", "tanh" or None (no hidden layers);
    `head(out)` turns the last layer's output into (loss, d loss / d out)."""
    n_layers = len(params) // 2
    acts = [x]                       # inputs of each layer; also give the activation derivative
    for i in range(n_layers):
        z = acts[-1] @ params[f"W{i}"]
        z += params[f"b{i}"]
        if i < n_layers - 1:
            if act == "relu":
                np.maximum(z, 0, out=z)
            else:
                np.tanh(z, out=z)
        acts.append(z)
    loss, d = head(acts[-1])
    for i in reversed(range(n_layers)):
        W, h = params[f"W{i}"], acts[i]
        gW, gb = h.T @ d, d.sum(axis=0)
        if i > 0:                    # propagate with the old W before updating it
            d = d @ W.T
            if act == "relu":
                d *= h > 0
            else:
                d *= 1 - h * h       # tanh' from the tanh output
        W -= lr * gW
        params[f"b{i}"] -= lr * gb
    return loss


def _cross_entropy_head(y):
    def head(logits):
        n = logits.shape[0]
        rows = np.arange(n)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        s = e.sum(axis=1)
        loss = float(np.mean(np.log(s) - logits[rows, y]))
        e /= s[:, None]              # softmax ...
        e[rows, y] -= 1              # ... minus one-hot
        e *= 1.0 / n
        return loss, e
    return head


def _mse_head(y):
    def head(pred):
        r = pred - y
        loss = float(np.mean(r * r))
        r *= 2.0 / r.size
        return loss, r
    return head


def logreg_numpy_step(params, x, y, lr):
    return _mlp_numpy_step(params, x, lr, None, _cross_entropy_head(y))


def mlp_relu_numpy_step(params, x, y, lr):
    return _mlp_numpy_step(params, x, lr, "relu", _cross_entropy_head(y))


def mlp_tanh_mse_numpy_step(params, x, y, lr):
    return _mlp_numpy_step(params, x, lr, "tanh", _mse_head(y))


def logistic_vector_numpy_step(params, x, y, lr):
    w = params["w"]
    yx = y * x
    e = np.exp(-(yx * w))                        # exp(-margin)
    loss = float(np.sum(np.log1p(e)) + 0.5e-3 * np.dot(w, w))
    e /= 1 + e                                   # sigmoid(-margin)
    e *= yx
    w -= lr * (1e-3 * w - e)                     # grad = 1e-3 w - y x sigmoid(-margin)
    return loss


# ---------------------------------------------------------------------------
# Data and initialization

def _dense_params(rng, sizes, dtype, init):
    """He (relu) or Glorot (tanh, linear) scaled normal weights, zero biases."""
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        std = np.sqrt(2.0 / n_in) if init == "he" else np.sqrt(2.0 / (n_in + n_out))
        params[f"W{i}"] = (rng.standard_normal((n_in, n_out)) * std).astype(dtype)
        params[f"b{i}"] = np.zeros(n_out, dtype)
    return params


def _classification(sizes, batch, init):
    def make(dtype="float32", seed=0, size="full"):
        s, n = (sizes, batch) if size == "full" else _tiny(sizes, batch)
        rng = np.random.default_rng(seed)
        params = _dense_params(rng, s, dtype, init)
        x = rng.standard_normal((n, s[0])).astype(dtype)
        y = rng.integers(0, s[-1], size=n)      # int64 labels
        return params, (x, y)
    return make


def _regression(sizes, batch):
    def make(dtype="float32", seed=0, size="full"):
        s, n = (sizes, batch) if size == "full" else _tiny(sizes, batch)
        rng = np.random.default_rng(seed)
        params = _dense_params(rng, s, dtype, "glorot")
        x = rng.standard_normal((n, s[0])).astype(dtype)
        y = rng.standard_normal((n, s[-1])).astype(dtype)
        return params, (x, y)
    return make


def _tiny(sizes, batch):
    """Same depth, a handful of units: fast enough for finite differences."""
    return [5] + [4] * (len(sizes) - 2) + [min(sizes[-1], 3)], min(batch, 6)


def _make_vector(n):
    def make(dtype="float32", seed=0, size="full"):
        m = n if size == "full" else 7
        rng = np.random.default_rng(seed)
        params = {"w": (rng.standard_normal(m) * 0.5).astype(dtype)}
        x = rng.standard_normal(m).astype(dtype)
        y = rng.choice(np.array([-1.0, 1.0]), size=m).astype(dtype)
        return params, (x, y)
    return make


# ---------------------------------------------------------------------------
# Optional peers: PyTorch (eager, autograd + torch.optim.SGD) and JAX (jit)

def _torch_loss(kind):
    import torch
    import torch.nn.functional as F

    def loss(params, x, y):
        if kind == "vector":
            w = params["w"]
            return torch.sum(torch.log1p(torch.exp(-y * (w * x))) + 0.5e-3 * w ** 2)
        n_layers = len(params) // 2
        h = x
        for i in range(n_layers):
            h = h @ params[f"W{i}"] + params[f"b{i}"]
            if i < n_layers - 1:
                h = torch.relu(h) if kind == "relu" else torch.tanh(h)
        return F.cross_entropy(h, y) if kind in ("relu", "logreg") else F.mse_loss(h, y)
    return loss


def _torch_builder(kind):
    def build(params, batch, lr):
        import torch
        loss_fn = _torch_loss(kind)
        # from_numpy shares memory: the NumPy arrays see torch's in-place updates
        tp = {k: torch.from_numpy(v).requires_grad_() for k, v in params.items()}
        tb = [torch.from_numpy(b) for b in batch]
        opt = torch.optim.SGD(tp.values(), lr=lr)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(tp, *tb)
            loss.backward()
            opt.step()
            return loss.item()
        step.read_params = lambda: {k: v.detach().numpy().copy() for k, v in tp.items()}
        return step
    return build


def _jax_loss(kind):
    import jax
    import jax.numpy as jnp

    def loss(params, x, y):
        if kind == "vector":
            w = params["w"]
            return jnp.sum(jnp.log1p(jnp.exp(-y * (w * x))) + 0.5e-3 * w ** 2)
        n_layers = len(params) // 2
        h = x
        for i in range(n_layers):
            h = h @ params[f"W{i}"] + params[f"b{i}"]
            if i < n_layers - 1:
                h = jax.nn.relu(h) if kind == "relu" else jnp.tanh(h)
        if kind == "tanh":
            return jnp.mean((h - y) ** 2)
        logp = jax.nn.log_softmax(h, axis=1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
    return loss


def _jax_builder(kind):
    def build(params, batch, lr):
        import jax
        if any(v.dtype == np.float64 for v in params.values()):
            jax.config.update("jax_enable_x64", True)
        loss_fn = _jax_loss(kind)

        @jax.jit
        def update(p, *b):
            loss, g = jax.value_and_grad(loss_fn)(p, *b)
            return loss, jax.tree_util.tree_map(lambda a, da: a - lr * da, p, g)

        state = {"p": jax.device_put(dict(params)), "b": jax.device_put(tuple(batch))}

        def step():
            loss, state["p"] = update(state["p"], *state["b"])
            return float(loss)       # float() waits for the result (JAX is asynchronous)
        step.read_params = lambda: {k: np.asarray(v) for k, v in state["p"].items()}
        return step
    return build


# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    make: Callable
    loss_fn: Callable
    numpy_step: Callable
    lr: float
    torch_step: Callable
    jax_step: Callable


WORKLOADS = {w.name: w for w in [
    Workload("W1", "logistic regression 64->10, batch 64",
             _classification([64, 10], 64, "glorot"), logreg_loss, logreg_numpy_step, 0.1,
             _torch_builder("logreg"), _jax_builder("logreg")),
    Workload("W2", "MLP 784-256-256-10 relu, batch 128",
             _classification([784, 256, 256, 10], 128, "he"), mlp_relu_loss,
             mlp_relu_numpy_step, 0.05, _torch_builder("relu"), _jax_builder("relu")),
    Workload("W3", "MLP 784-1024-1024-10 relu, batch 512",
             _classification([784, 1024, 1024, 10], 512, "he"), mlp_relu_loss,
             mlp_relu_numpy_step, 0.01, _torch_builder("relu"), _jax_builder("relu")),
    Workload("W4", "MLP 64-(8x64 tanh)-1, MSE, batch 32",
             _regression([64] + [64] * 8 + [1], 32), mlp_tanh_mse_loss,
             mlp_tanh_mse_numpy_step, 0.01, _torch_builder("tanh"), _jax_builder("tanh")),
    Workload("W5", "elementwise logistic loss, 1e6-vector w",
             _make_vector(1_000_000), logistic_vector_loss, logistic_vector_numpy_step, 0.1,
             _torch_builder("vector"), _jax_builder("vector")),
]}
