"""A character-level LSTM unrolled over 16 steps with a Python loop: graphc's
SGD step against the same step by hand in NumPy (backward through time), and
PyTorch's when installed.

    OMP_NUM_THREADS=1 python benchmarks/bench_lstm.py [--reps 200] [--batch 32]
        [--steps 16] [--hidden 64] [--lr 0.1]

The model reads one-hot characters of a 32-letter vocabulary, (steps,
batch, 32) float32, and predicts the next one at every step. Each step is
written in plain NumPy as a user would: `z = xs[t] @ Wx + h @ Wh + b`,
sigmoids (`1 / (1 + np.exp(-z))`) of three column blocks of `z` for the
input, forget and output gates and a tanh of the fourth, the cell and hidden
state updates, a dense layer to 32 logits and a stable log-softmax by hand;
the loss is the mean cross-entropy over the steps and the batch. The NumPy
step by hand runs the input product and the output layer as one GEMM over
all the steps' rows, so that only `h @ Wh` and the gates are left in the
loop, keeps each step's gates as four contiguous (batch, hidden) blocks,
computes the gates' derivatives for all the steps at once, then runs
backward through time one step at a time and the weights' gradients as
GEMMs over all the steps' rows. graphc compiles the loop as written,
unrolled: its step is GEMMs for the products and, each step, one fused loop
for the gates forward and one backward. All steps start from the same
parameters and must agree on the loss, and graphc's parameters after one
step must equal NumPy's; medians of interleaved rounds. Threads are pinned
to 1 unless OMP_NUM_THREADS is set.
"""
import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])

import numpy as np  # noqa: E402  (after pinning threads)

from graphc.benchmarks.harness import print_race, race_sgd_steps, torch_sgd  # noqa: E402

V, T, H, LR = 32, 16, 64, 0.1           # vocabulary, steps, hidden units; batch: --batch


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def loss(p, xs, ys):
    n, k = xs.shape[1], p["Wh"].shape[0]
    h = c = np.zeros((n, k), np.float32)
    total = 0
    for t in range(xs.shape[0]):
        z = xs[t] @ p["Wx"] + h @ p["Wh"] + p["b"]
        i, f, o = sigmoid(z[:, :k]), sigmoid(z[:, k:2 * k]), sigmoid(z[:, 2 * k:3 * k])
        c = f * c + i * np.tanh(z[:, 3 * k:])
        h = o * np.tanh(c)
        logits = h @ p["Wy"] + p["by"]
        logits = logits - logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total = total - np.mean(log_p[np.arange(n), ys[t]])
    return total / xs.shape[0]


def numpy_step(p, xs, ys):
    """Forward, backward by hand, and the SGD update in place; the loss before it."""
    steps, n, k = xs.shape[0], xs.shape[1], p["Wh"].shape[0]
    x = xs.reshape(steps * n, -1)
    zx = (x @ p["Wx"] + p["b"]).reshape(steps, n, 4 * k)      # the inputs' part of every step's z
    dtype = zx.dtype                                # float32 here, float64 to check gradients
    # the gates one after another, (4, n, k) a step: a column block of z is strided, and
    # NumPy's loops over strided rows cost a few µs more each at this size
    acts = np.empty((steps, 4, n, k), dtype)
    hs = np.zeros((steps + 1, n, k), dtype)         # hs[t], cs[t]: h and c before step t
    cs = np.zeros((steps + 1, n, k), dtype)
    tanh_c = np.empty((steps, n, k), dtype)
    for t in range(steps):
        z = zx[t] + hs[t] @ p["Wh"] if t else zx[t]     # h starts at zero: no product
        s = acts[t, :3]
        np.negative(z[:, :3 * k].reshape(n, 3, k).transpose(1, 0, 2), out=s)
        np.exp(s, out=s)
        s += 1
        np.reciprocal(s, out=s)
        np.tanh(z[:, 3 * k:], out=acts[t, 3])
        i, f, o, g = acts[t]
        np.multiply(f, cs[t], out=cs[t + 1])
        cs[t + 1] += i * g
        np.tanh(cs[t + 1], out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=hs[t + 1])
    h = hs[1:].reshape(steps * n, k)
    z = h @ p["Wy"] + p["by"]                       # the output layer over all the steps' rows
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1, keepdims=True)
    rows, y = np.arange(steps * n), ys.reshape(-1)
    value = -np.mean(z[rows, y] - np.log(total[:, 0]))
    g_z = e / total
    g_z[rows, y] -= 1
    g_z /= steps * n
    grads = {"Wy": h.T @ g_z, "by": g_z.sum(0)}
    g_hs = (g_z @ p["Wy"].T).reshape(steps, n, k)  # the loss's gradient on each step's h
    # the factors from h's and c's gradients to z's, for all the steps at once: only the
    # products by those gradients are left in the loop
    i, f, o, g = acts.transpose(1, 0, 2, 3)
    sig = acts[:, :3]
    sig_grad = sig * (1 - sig)
    c_from_h = o * (1 - tanh_c * tanh_c)
    i_from_c, f_from_c = g * sig_grad[:, 0], cs[:-1] * sig_grad[:, 1]
    o_from_h, g_from_c = tanh_c * sig_grad[:, 2], i * (1 - g * g)
    g_zs = np.empty_like(zx)                        # each step's gradient on z
    wh_t = np.ascontiguousarray(p["Wh"].T)          # OpenBLAS is slower with it transposed
    g_c = np.zeros((n, k), dtype)
    for t in range(steps - 1, -1, -1):
        g_h = g_hs[t]
        if t < steps - 1:                           # and through the next step's h @ Wh
            g_h += g_zs[t + 1] @ wh_t
        g_c += g_h * c_from_h[t]
        g_zt = g_zs[t]
        np.multiply(g_c, i_from_c[t], out=g_zt[:, :k])
        np.multiply(g_c, f_from_c[t], out=g_zt[:, k:2 * k])
        np.multiply(g_h, o_from_h[t], out=g_zt[:, 2 * k:3 * k])
        np.multiply(g_c, g_from_c[t], out=g_zt[:, 3 * k:])
        g_c *= f[t]                                 # on to the step before's c
    g_zs = g_zs.reshape(steps * n, 4 * k)
    grads["Wx"], grads["b"] = x.T @ g_zs, g_zs.sum(0)
    grads["Wh"] = hs[1:-1].reshape(-1, k).T @ g_zs[n:]     # step 0's h @ Wh is of zeros
    for name, grad in grads.items():
        p[name] -= LR * grad                       # a Python float: stays in the params' dtype
    return value


def make(batch, seed=0):
    rng = np.random.default_rng(seed)
    f32 = np.float32

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(f32)
    params = {"Wx": weight(V, 4 * H), "Wh": weight(H, 4 * H), "b": np.zeros(4 * H, f32),
              "Wy": weight(H, V), "by": np.zeros(V, f32)}
    xs = np.eye(V, dtype=f32)[rng.integers(0, V, (T, batch))]
    return params, xs, rng.integers(0, V, (T, batch))


def torch_step(params, xs, ys):
    """The same step in PyTorch, or None where it is not installed."""
    made = torch_sgd(params, LR)
    if made is None:
        return None
    torch, p, opt = made
    inputs, targets = torch.tensor(xs), torch.tensor(ys)
    k = p["Wh"].shape[0]

    def step():
        opt.zero_grad()
        h = c = torch.zeros(inputs.shape[1], k)
        value = 0
        for x, y in zip(inputs, targets):
            z = x @ p["Wx"] + h @ p["Wh"] + p["b"]
            i, f, o = torch.sigmoid(z[:, :3 * k]).split(k, dim=1)
            c = f * c + i * torch.tanh(z[:, 3 * k:])
            h = o * torch.tanh(c)
            value = value + torch.nn.functional.cross_entropy(h @ p["Wy"] + p["by"], y)
        value = value / len(inputs)
        value.backward()
        opt.step()
        return value.item()
    return step


def main(argv=None):
    global T, H, LR
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=T, help="the sequence's length, unrolled")
    ap.add_argument("--hidden", type=int, default=H)
    ap.add_argument("--lr", type=float, default=LR)
    args = ap.parse_args(argv)
    T, H, LR = args.steps, args.hidden, args.lr      # read by make and the steps
    params, xs, ys = make(args.batch)
    race = race_sgd_steps(loss, params, (xs, ys), numpy_step, torch_step, LR, args.reps,
                          loss_rtol=1e-4, params_atol=1e-5)
    print_race(f"LSTM, batch {args.batch} x {T} steps, {H} hidden units, vocabulary {V}, float32",
               race, args.reps)


if __name__ == "__main__":
    main()
