"""Numbers made from shapes (`/ x.shape[0]`, `0.5 * len(x) * np.log(2 pi)`)
are passed to `run`, not written into it, once two batch sizes showed them
varying: every later batch size reuses the compiled code
(graphc/varying_constants.py), with the same results."""
import numpy as np
import pytest

import graphc as gc


def mean_by_hand(p, x, y):
    return np.sum((x @ p["w"] + p["b"] - y) ** 2) / x.shape[0]


def gaussian_likelihood(p, x, y):
    n = len(x)
    r = x @ p["w"] + p["b"] - y
    return 0.5 * n * np.log(2 * np.pi) + np.sum(r ** 2) / (2 * n)


def _batch(n, dtype=np.float64):
    rng = np.random.default_rng(n)
    return rng.normal(size=(n, 3)).astype(dtype), rng.normal(size=n).astype(dtype)


def _drivers(compiled):
    return {id(entry.driver) for entry in compiled._cache.values()}


@pytest.mark.parametrize("loss", [mean_by_hand, gaussian_likelihood])
def test_later_batch_sizes_reuse_the_code_and_give_numpys_values(loss):
    f = gc.jit(gc.value_and_grad(loss))
    p = {"w": np.array([0.5, -1.0, 2.0]), "b": np.array(0.25)}
    for n in (32, 64, 48, 20, 1, 7):
        x, y = _batch(n)
        value, grads = f(p, x, y)
        want_value, want_grads = f.interpret(p, x, y)
        np.testing.assert_allclose(value, want_value, rtol=1e-13)
        r = x @ p["w"] + p["b"] - y         # by hand
        scale = 2 / n if loss is mean_by_hand else 1 / n
        np.testing.assert_allclose(grads["w"], scale * x.T @ r, rtol=1e-12)
        np.testing.assert_allclose(grads["b"], scale * np.sum(r), rtol=1e-12)
        np.testing.assert_allclose(want_grads["w"], scale * x.T @ r, rtol=1e-12)
    # the first batch size's code, the code taking the numbers, and a batch
    # of 1 (its 1 / n is 1: simplified away, a graph of its own)
    assert len(_drivers(f)) <= 3
    sources = [e.module.source for e in f._cache.values()]
    assert "np.float64(48.0)" not in sources[2] and "np.float64(20.0)" not in sources[3]
    assert sources[2] == sources[3]


def test_a_step_trained_on_batch_sizes_and_exported_takes_the_numbers_each_call(
        import_exported):
    p = {"w": np.zeros(3, np.float32), "b": np.zeros((), np.float32)}
    step = gc.compile_step(gaussian_likelihood, gc.optim.SGD(0.1))
    mine = {k: v.copy() for k, v in p.items()}
    for n in (16, 32, 24, 8):
        step(mine, *_batch(n, np.float32))
    assert len(_drivers(step._compiled)) == 2
    source = list(step._compiled._cache.values())[-1].module.source
    assert "np.float32(0.1" in source        # a number that did not vary stays written in
    module = import_exported(step, "varying_step")
    exported = {k: v.copy() for k, v in mine.items()}
    for n in (24, 16, 8, 32):
        assert module.step(exported, *_batch(n, np.float32)) == step(mine, *_batch(n, np.float32))
    for k in mine:
        np.testing.assert_array_equal(exported[k], mine[k])
    # gc.train's epochs of 10 rows, a last batch of 2: the same numbers as steps by hand
    x, y = _batch(10, np.float32)
    trained, by_hand = ({k: v.copy() for k, v in mine.items()} for _ in range(2))
    gc.train(gaussian_likelihood, trained, (x, y), gc.optim.SGD(0.1), batch_size=4, epochs=1,
             shuffle=False, progress=False)
    again = gc.compile_step(gaussian_likelihood, gc.optim.SGD(0.1))
    for start in (0, 4, 8):
        again(by_hand, x[start:start + 4], y[start:start + 4])
    for k in mine:
        np.testing.assert_allclose(trained[k], by_hand[k], rtol=1e-6)


def gaussian_process(params, x, y):
    """examples/06_gaussian_process.py's likelihood: n in np.eye, in the
    diagonal's indices, in a scatter's size and in 0.5 * n * log(2 pi)."""
    K = np.exp(-(x[:, None] - x[None, :]) ** 2 / 2) + np.exp(2 * params["log_noise"]) * np.eye(
        x.size)
    L = np.linalg.cholesky(K)
    return 0.5 * y @ np.linalg.solve(K, y) + np.sum(np.log(np.diagonal(L))) + \
        0.5 * x.size * np.log(2 * np.pi)


def test_a_gaussian_process_of_any_size_reuses_its_code():
    f = gc.jit(gc.value_and_grad(gaussian_process))
    params = {"log_noise": np.array(-1.0)}
    for n in (12, 20, 16, 9):
        x = np.sort(np.random.default_rng(n).uniform(-3, 3, n))
        value, grads = f(params, x, np.sin(2 * x))
        want_value, want_grads = f.interpret(params, x, np.sin(2 * x))
        np.testing.assert_allclose(value, want_value, rtol=1e-12)
        np.testing.assert_allclose(grads["log_noise"], want_grads["log_noise"], rtol=1e-10)
    assert len(_drivers(f)) == 2
