"""The chain rule and backpropagation, shown as the backward graph.

For a two-layer network, gc.trace prints the forward graph; the gradient
graph adds, for every forward op, the ops of its local derivative (its VJP),
walked from the loss back to the weights: that walk is backpropagation.
"""
import numpy as np

import graphc as gc


def loss(W1, W2, x, y):
    h = np.tanh(x @ W1)             # layer 1
    out = h @ W2                    # layer 2
    return np.mean((out - y) ** 2)


rng = np.random.default_rng(0)
W1, W2 = rng.normal(size=(3, 4)), rng.normal(size=(4, 1))
x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 1))

print("forward graph:")
print(gc.trace(loss, W1, W2, x, y))
print("\nforward + backward graph of d loss / d (W1, W2):")
backward = gc.grad(loss, argnums=(0, 1))
print(gc.trace(backward, W1, W2, x, y))

g1, g2 = backward(W1, W2, x, y)
# the chain rule written out by hand, for comparison
h = np.tanh(x @ W1)
d_out = 2 * (h @ W2 - y) / y.size
d_h = d_out @ W2.T
print("\nby-hand chain rule agrees:",
      np.allclose(g2, h.T @ d_out), np.allclose(g1, x.T @ (d_h * (1 - h ** 2))))
