"""SGD steps of tables read at rows (embeddings): the update subtracts at the
rows read (codegen._scatter_updates), never making the dense gradient, and
equals the dense update, W - lr * grad, from gc.grad."""
import numpy as np
import pytest

import graphc as gc


def bag_loss(p, idx, y):
    """Each example sums the rows of its tokens (idx: examples x tokens)."""
    return np.mean((np.sum(p["E"][idx], axis=1) @ p["v"] - y) ** 2)


def column_loss(p, idx, y):
    """The table read at columns (axis 1), each a 3-d slab: the scatter is in the middle."""
    return np.mean((np.sum(p["E"][:, idx] * p["v"][:, None, None], axis=(0, 2)) - y) ** 2)


def _kernels(step, *args):
    return [k.name.split("_", 1)[1] for k in step.inspect(*args).kernels]


def _dense_sgd(loss, params, lr, args, steps):
    """`steps` SGD steps by gc.grad and NumPy, from copies of `params`."""
    p = {k: v.copy() for k, v in params.items()}
    for t in range(steps):
        rate = lr(t) if callable(lr) else lr
        g = gc.grad(loss)(p, *args)
        p = {k: v - p[k].dtype.type(rate) * g[k] for k, v in p.items()}
    return p


def skip_gram_loss(p, idx, y):
    """Words and their contexts read from one table: its gradient is a sum of two scatters."""
    return np.mean((np.sum(p["E"][idx[:, 0]] * p["E"][idx[:, 1]], axis=1) * p["v"][0] - y) ** 2)


def vector_loss(p, idx, y):
    """A table of one number a row."""
    return np.mean((p["E"][idx] * p["v"][0] - y) ** 2)


@pytest.mark.parametrize("loss, table, v_size, idx_shape, dtype, lr", [
    (bag_loss, (40, 6), 6, (24, 3), np.float32, 0.1),
    # a schedule: lr an array of the step
    (bag_loss, (40, 6), 6, (24, 3), np.float64, lambda t: 0.2 / (1 + t)),
    (vector_loss, (40,), 1, (24,), np.float32, lambda t: 0.2 / (1 + t)),
    (column_loss, (3, 30, 2), 3, (12,), np.float64, 0.05),
    (skip_gram_loss, (40, 6), 1, (24, 2), np.float64, 0.1),
], ids=["bag-float32", "bag-float64-schedule", "vector-float32-schedule", "columns-float64",
        "read-twice-float64"])
def test_a_table_read_at_rows_is_updated_at_those_rows_as_the_dense_update(
        loss, table, v_size, idx_shape, dtype, lr):
    rng = np.random.default_rng(0)
    axis_size = table[1] if loss is column_loss else table[0]
    # rows read many times, and negative indices (NumPy's, from the end)
    idx = rng.integers(-axis_size, axis_size // 3, size=idx_shape)
    y = rng.normal(size=idx_shape[0]).astype(dtype)
    params = {"E": rng.normal(size=table).astype(dtype),
              "v": rng.normal(size=v_size).astype(dtype)}
    step = gc.compile_step(loss, gc.optim.SGD(lr))
    mine = {k: v.copy() for k, v in params.items()}
    for _ in range(3):
        step(mine, idx, y)
    assert "scatter_update" in _kernels(step, mine, idx, y)
    assert "scatter_add" not in _kernels(step, mine, idx, y)
    expected = _dense_sgd(loss, params, lr, (idx, y), 3)
    tolerance = 1e-6 if dtype == np.float32 else 1e-12
    for k in params:
        assert mine[k].dtype == dtype
        np.testing.assert_allclose(mine[k], expected[k], rtol=tolerance, atol=tolerance)
    untouched = np.setdiff1d(np.arange(axis_size), idx % axis_size)
    taken = (slice(None), untouched) if loss is column_loss else untouched
    np.testing.assert_array_equal(mine["E"][taken], params["E"][taken])


@pytest.mark.parametrize("optimizer, loss", [
    (gc.optim.Adam(0.1), bag_loss),                           # moments: dense, as PyTorch's
    (gc.optim.SGD(0.1, weight_decay=0.01), bag_loss),         # the decay touches every row
    (gc.optim.SGD(0.1),                                       # every row read too
     lambda p, idx, y: bag_loss(p, idx, y) + 0.01 * np.sum(p["E"] ** 2)),
], ids=["adam", "weight-decay", "read-whole"])
def test_updates_of_every_row_stay_dense_and_right(optimizer, loss):
    rng = np.random.default_rng(1)
    idx, y = rng.integers(0, 40, size=(24, 3)), rng.normal(size=24)
    params = {"E": rng.normal(size=(40, 6)), "v": rng.normal(size=6)}
    step = gc.compile_step(loss, optimizer)
    mine = {k: v.copy() for k, v in params.items()}
    step(mine, idx, y)
    assert "scatter_update" not in _kernels(step, mine, idx, y)
    g = gc.grad(loss)(params, idx, y)
    if isinstance(optimizer, gc.optim.Adam):    # its first step: lr * g / (|g| + eps)
        expected = {k: v - 0.1 * g[k] / (np.abs(g[k]) + 1e-8) for k, v in params.items()}
    else:                                       # with PyTorch's L2 decay, 0 or 0.01
        expected = {k: v - 0.1 * (g[k] + optimizer.weight_decay * v) for k, v in params.items()}
    for k in params:
        np.testing.assert_allclose(mine[k], expected[k], rtol=1e-12, atol=1e-12)


def test_an_index_out_of_range_leaves_the_table_untouched():
    rng = np.random.default_rng(2)
    params = {"E": rng.normal(size=(40, 6)), "v": rng.normal(size=6)}
    step = gc.compile_step(bag_loss, gc.optim.SGD(0.1))
    y = rng.normal(size=24)
    step(params, rng.integers(0, 40, size=(24, 3)), y)
    before = {k: v.copy() for k, v in params.items()}
    idx = rng.integers(0, 40, size=(24, 3))
    idx[20, 1] = 40
    with pytest.raises(IndexError, match="out of range"):
        step(params, idx, y)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_gc_train_of_an_embedding_model_equals_the_dense_updates():
    # its epoch loop inlines the step: the same fold, checked by its values
    rng = np.random.default_rng(3)
    idx, y = rng.integers(0, 40, size=(30, 3)), rng.normal(size=30).astype(np.float32)
    params = {"E": rng.normal(size=(40, 6)).astype(np.float32),
              "v": rng.normal(size=6).astype(np.float32)}
    expected = params
    for _ in range(2):
        for start in range(0, 30, 8):           # a last batch of 6
            batch = (idx[start:start + 8], y[start:start + 8])
            expected = _dense_sgd(bag_loss, expected, 0.1, batch, 1)
    gc.train(bag_loss, params, (idx, y), gc.optim.SGD(0.1), batch_size=8, epochs=2,
             shuffle=False, progress=False)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=2e-5, atol=2e-5)


def test_an_exported_embedding_step_updates_the_rows_read_as_graphcs_does(import_exported):
    rng = np.random.default_rng(4)
    idx, y = rng.integers(-40, 40, size=(24, 3)), rng.normal(size=24)
    params = {"E": rng.normal(size=(40, 6)), "v": rng.normal(size=6)}
    step = gc.compile_step(bag_loss, gc.optim.SGD(0.1))
    step(params, idx, y)
    module = import_exported(step, "embedding_step")
    exported = {k: v.copy() for k, v in params.items()}
    for _ in range(2):
        assert module.step(exported, idx, y) == step(params, idx, y)
    for k in params:
        np.testing.assert_array_equal(exported[k], params[k])


def test_a_row_read_many_times_gets_its_reads_summed_before_the_update():
    # a float32 row read 30,000 times: subtracting each read's tiny share of
    # the update in turn rounded away 7% of it (np.subtract.at does that);
    # the reads' sum is subtracted once, as the dense update does
    params = {"E": np.ones((5, 4), np.float32), "v": np.full(4, 0.25, np.float32)}
    idx = np.zeros(30_000, np.int64)
    idx[::7] = -5                       # the same row, named from the end

    def loss(p, idx):
        return np.mean(p["E"][idx] @ p["v"])
    expected = _dense_sgd(loss, params, 0.04, (idx,), 1)
    step = gc.compile_step(loss, gc.optim.SGD(0.04))
    step(params, idx)
    assert "scatter_update" in _kernels(step, params, idx)
    np.testing.assert_allclose(params["E"][0], 1 - 0.04 * 0.25, atol=1e-5)   # one at a time: 7e-4
    np.testing.assert_allclose(params["E"], expected["E"], rtol=1e-7)
    np.testing.assert_array_equal(params["E"][1:], 1)
