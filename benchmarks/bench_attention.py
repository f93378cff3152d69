"""A small transformer block (multi-head self-attention and a relu MLP, each
after a layer norm, with residuals): graphc's SGD step against the same step
by hand in NumPy, and PyTorch's when installed.

    OMP_NUM_THREADS=1 python benchmarks/bench_attention.py [--reps 200] [--batch 16]
        [--tokens 32] [--width 64] [--lr 0.05]

The model takes sequences of 32 tokens of width 64: layer norm, 4 heads of
width 16 (queries, keys and values from three 64x64 weights, softmax over
scaled scores, an output weight), a residual, layer norm, an MLP 64-128-64
with relu, a residual, then the mean over tokens to one output and a mean
squared error. It is written in plain NumPy: `@` on the (batch, tokens, 64)
activations and on (batch, heads, tokens, 16) stacks, `reshape` and
`transpose` for the heads. The NumPy step by hand runs the dense layers as
(batch x tokens, 64) GEMMs and the attention products as `np.matmul` over
the stacks. graphc's step is GEMMs too (a dense layer's one over all the
tokens' rows, an attention product's a loop of one per sequence and head,
each head read and written in place as a block of its (tokens, width)
array) and fused loops for the rest. All steps
start from the same parameters and must agree on the loss, and graphc's
parameters after one step must equal NumPy's; medians of interleaved
rounds. Threads are pinned to 1 unless OMP_NUM_THREADS is set.
"""
import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import numpy as np  # noqa: E402  (after pinning threads)

import graphc as gc  # noqa: E402
from graphc.benchmarks.harness import print_race, race_sgd_steps, torch_sgd  # noqa: E402

T, D, H, F, LR = 32, 64, 4, 128, 0.05          # tokens, width, heads, MLP width; batch: --batch


def layer_norm(x, g, b):
    m = x.mean(axis=-1, keepdims=True)
    v = ((x - m) ** 2).mean(axis=-1, keepdims=True)
    return (x - m) / np.sqrt(v + 1e-5) * g + b


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def loss(p, x, y):
    n = x.shape[0]
    h = layer_norm(x, p["g1"], p["b1"])
    q = (h @ p["Wq"]).reshape(n, T, H, D // H).transpose(0, 2, 1, 3)
    k = (h @ p["Wk"]).reshape(n, T, H, D // H).transpose(0, 2, 1, 3)
    v = (h @ p["Wv"]).reshape(n, T, H, D // H).transpose(0, 2, 1, 3)
    a = softmax(q @ k.transpose(0, 1, 3, 2) / (D // H) ** 0.5)    # a Python float: stays float32
    o = (a @ v).transpose(0, 2, 1, 3).reshape(n, T, D) @ p["Wo"]
    x = x + o
    h = layer_norm(x, p["g2"], p["b2"])
    x = x + np.maximum(h @ p["W1"] + p["c1"], 0) @ p["W2"]
    return np.mean((x.mean(axis=1) @ p["Wout"] - y) ** 2)


def _layer_norm(x, g, b):
    """Layer norm of rows, with what its backward needs: x-hat and 1 / std."""
    xc = x - x.mean(axis=-1, keepdims=True)
    r = 1 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + np.float32(1e-5))
    xhat = xc * r
    return xhat * g + b, xhat, r


def _heads(t, n):       # (n*T, D) -> (n, H, T, D/H), a view
    return t.reshape(n, T, H, D // H).transpose(0, 2, 1, 3)


def _rows(t, n):        # (n, H, T, D/H) -> (n*T, D), a copy
    return t.transpose(0, 2, 1, 3).reshape(n * T, D)


def numpy_step(p, x, y):
    """Forward, backward by hand, and the SGD update in place; the loss before it."""
    n, f32 = x.shape[0], np.float32
    h, xhat1, _ = _layer_norm(x.reshape(n * T, D), p["g1"], p["b1"])
    q, k, v = (_heads(h @ p[w], n) for w in ("Wq", "Wk", "Wv"))
    scale = f32(1 / (D // H) ** 0.5)
    s = np.matmul(q, k.swapaxes(-1, -2)) * scale
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    a = e / e.sum(axis=-1, keepdims=True)
    o = _rows(np.matmul(a, v), n)
    x1 = x.reshape(n * T, D) + o @ p["Wo"]
    h2, xhat2, r2 = _layer_norm(x1, p["g2"], p["b2"])
    u = h2 @ p["W1"] + p["c1"]
    relu = np.maximum(u, 0)
    pooled = (x1 + relu @ p["W2"]).reshape(n, T, D).mean(axis=1)
    err = pooled @ p["Wout"] - y
    value = np.mean(err ** 2)
    g_err = err * f32(2 / err.size)
    grads = {"Wout": pooled.T @ g_err}
    g_x2 = np.broadcast_to((g_err @ p["Wout"].T)[:, None] / f32(T), (n, T, D)).reshape(n * T, D)
    grads["W2"] = relu.T @ g_x2
    g_u = (g_x2 @ p["W2"].T) * (u > 0)
    grads["W1"], grads["c1"] = h2.T @ g_u, g_u.sum(0)
    g_h2 = g_u @ p["W1"].T
    grads["g2"], grads["b2"] = (g_h2 * xhat2).sum(0), g_h2.sum(0)
    g_xhat = g_h2 * p["g2"]              # layer norm's backward, into the residual's gradient
    g_x1 = g_x2 + r2 * (g_xhat - g_xhat.mean(axis=-1, keepdims=True)
                        - xhat2 * (g_xhat * xhat2).mean(axis=-1, keepdims=True))
    grads["Wo"] = o.T @ g_x1
    g_o = _heads(g_x1 @ p["Wo"].T, n)
    g_a = np.matmul(g_o, v.swapaxes(-1, -2))
    g_s = a * (g_a - (g_a * a).sum(axis=-1, keepdims=True)) * scale
    g_q, g_k, g_v = (_rows(g, n) for g in (np.matmul(g_s, k), np.matmul(g_s.swapaxes(-1, -2), q),
                                            np.matmul(a.swapaxes(-1, -2), g_o)))
    grads.update(Wq=h.T @ g_q, Wk=h.T @ g_k, Wv=h.T @ g_v)
    g_h = g_q @ p["Wq"].T + g_k @ p["Wk"].T + g_v @ p["Wv"].T
    grads["g1"], grads["b1"] = (g_h * xhat1).sum(0), g_h.sum(0)    # x's own gradient unneeded
    for name, grad in grads.items():
        p[name] -= f32(LR) * grad
    return value


def make(batch, seed=0):
    rng = np.random.default_rng(seed)
    f32 = np.float32

    def weight(fan_in, fan_out):
        return (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(f32)
    params = {"g1": np.ones(D, f32), "b1": np.zeros(D, f32),
              **{w: weight(D, D) for w in ("Wq", "Wk", "Wv", "Wo")},
              "g2": np.ones(D, f32), "b2": np.zeros(D, f32),
              "W1": weight(D, F), "c1": np.zeros(F, f32), "W2": weight(F, D), "Wout": weight(D, 1)}
    return params, rng.standard_normal((batch, T, D)).astype(f32), \
        rng.standard_normal((batch, 1)).astype(f32)


def torch_step(params, x, y):
    """The same step in PyTorch, or None where it is not installed."""
    made = torch_sgd(params, LR)
    if made is None:
        return None
    torch, p, opt = made
    inputs, targets = torch.tensor(x), torch.tensor(y)
    norm = torch.nn.functional.layer_norm

    def step():
        opt.zero_grad()
        n = len(inputs)
        h = norm(inputs, (D,), p["g1"], p["b1"], 1e-5)
        q, k, v = ((h @ p[w]).view(n, T, H, D // H).transpose(1, 2) for w in ("Wq", "Wk", "Wv"))
        a = torch.softmax(q @ k.transpose(-1, -2) / (D // H) ** 0.5, dim=-1)
        z = inputs + (a @ v).transpose(1, 2).reshape(n, T, D) @ p["Wo"]
        h = norm(z, (D,), p["g2"], p["b2"], 1e-5)
        z = z + torch.relu(h @ p["W1"] + p["c1"]) @ p["W2"]
        value = torch.mean((z.mean(dim=1) @ p["Wout"] - targets) ** 2)
        value.backward()
        opt.step()
        return value.item()
    return step


def main(argv=None):
    global T, D, F, LR
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=T)
    ap.add_argument("--width", type=int, default=D, help="a multiple of the 4 heads; the MLP's is twice it")
    ap.add_argument("--lr", type=float, default=LR, help="smaller for larger models, which diverge")
    args = ap.parse_args(argv)
    if args.width % H:
        ap.error(f"--width must be a multiple of the {H} heads")
    T, D, F, LR = args.tokens, args.width, 2 * args.width, args.lr     # read by loss and the steps
    params, x, y = make(args.batch)
    race = race_sgd_steps(loss, params, (x, y), numpy_step, torch_step, LR, args.reps,
                          loss_rtol=1e-4, params_atol=1e-5)
    print_race(f"transformer block, batch {args.batch} x {T} tokens, width {D}, {H} heads, float32",
               race, args.reps)


if __name__ == "__main__":
    main()
