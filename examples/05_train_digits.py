"""A full training run with gc.train on the digits that ship with graphc."""
import numpy as np

import graphc as gc
from graphc.datasets import load_digits

X, y, X_test, y_test = load_digits()
rng = np.random.default_rng(0)
params = {
    "W1": (rng.normal(size=(64, 128)) * np.sqrt(2 / 64)).astype(np.float32),
    "b1": np.zeros(128, np.float32),
    "W2": (rng.normal(size=(128, 10)) * np.sqrt(2 / 128)).astype(np.float32),
    "b2": np.zeros(10, np.float32),
}


def logits(p, x):
    return np.maximum(x @ p["W1"] + p["b1"], 0.0) @ p["W2"] + p["b2"]


def loss(p, x, y):
    return gc.nn.cross_entropy(logits(p, x), y)


history = gc.train(loss, params, (X, y), gc.optim.Adam(lr=3e-3), batch_size=64, epochs=20,
                   seed=0, progress=False)
accuracy = np.mean(np.argmax(logits(params, X_test), axis=1) == y_test)
print(f"loss per epoch: {np.round(history[[0, 4, 9, 19]], 4)} (epochs 1, 5, 10, 20)")
print(f"test accuracy: {accuracy:.2%}")
