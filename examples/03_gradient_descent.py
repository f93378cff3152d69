"""Gradient descent on a loss surface: step against the gradient.

The Rosenbrock-like valley loss(w) has its minimum at (1, 1). Each step moves
w by -lr * grad(loss)(w); the whole update is compiled with gc.jit. Pass
--plot PATH to draw the path on the contour of the loss (needs matplotlib).
"""
import sys

import numpy as np

import graphc as gc


def loss(w):
    return (1.0 - w[0]) ** 2 + 5.0 * (w[1] - w[0] ** 2) ** 2


update = gc.jit(lambda w: w - 0.02 * gc.grad(loss)(w))
w = np.array([-1.5, 2.0])
path = [w]
for _ in range(3000):
    w = update(w)
    path.append(w)
print(f"start (-1.5, 2.0), loss {loss(path[0]):.3f}")
for k in (10, 100, 1000, 3000):
    print(f"after {k:>4} steps: w = ({path[k][0]:+.4f}, {path[k][1]:+.4f}), "
          f"loss {loss(path[k]):.2e}")

if "--plot" in sys.argv:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = sys.argv[sys.argv.index("--plot") + 1]
    a, b = np.meshgrid(np.linspace(-2, 2, 200), np.linspace(-1, 3, 200))
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.contour(a, b, (1 - a) ** 2 + 5 * (b - a ** 2) ** 2, levels=np.logspace(-2, 2, 15))
    p = np.array(path)
    ax.plot(p[:, 0], p[:, 1], ".-", markersize=2, color="C3", label="gradient descent")
    ax.plot(1, 1, "k*", markersize=12, label="minimum")
    ax.legend()
    fig.savefig(out, dpi=110)
    print(f"path plotted to {out}")
