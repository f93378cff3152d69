"""Data sets that ship with graphc, so demos and tests need no network."""
from __future__ import annotations

import pathlib

import numpy as np

_DATA = pathlib.Path(__file__).resolve().parent / "data"


def load_digits(test_fraction=0.25, seed=0, dtype=np.float32):
    """The 8x8 handwritten digits: `(X_train, y_train, X_test, y_test)`.

    Pixels are scaled to [0, 1]; labels are int64 in [0, 10). The split is a
    seeded shuffle, stratified by nothing but large enough to be balanced.

    >>> X, y, Xt, yt = load_digits()
    >>> X.shape, Xt.shape, X.dtype, int(y.max())
    ((1348, 64), (449, 64), dtype('float32'), 9)
    """
    with np.load(_DATA / "digits.npz") as f:
        images, labels = f["images"], f["labels"]
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(len(labels) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    X = (images / 16.0).astype(dtype)
    y = labels.astype(np.int64)
    return X[train], y[train], X[test], y[test]
