"""The steady-state call (graphc/steady_call.py): identity tests written out
for each layout. Every array it tests is swapped in turn for a copy, which
must take the checked path; every step must equal a step on the checked path."""
import collections

import numpy as np
import pytest

import graphc as gc
from graphc import pytree, steady_call

Params = collections.namedtuple("Params", "W b v")
Layer = collections.namedtuple("Layer", "W b")


def loss_fn(p, x, y, unused):
    W, b, v = pytree.flatten(p)[0]
    return np.mean((np.tanh(x @ W + b) @ v - y) ** 2)


# W, b and v in flatten order, in trees of each kind of container, nested too
CONTAINERS = {"dict": lambda a: dict(zip("Wbv", a)), "tuple": tuple, "list": list,
              "OrderedDict": lambda a: collections.OrderedDict(zip("Wbv", a)),
              "namedtuple": lambda a: Params(*a),
              "nested": lambda a: {"hidden": [{"W": a[0], "b": a[1]}], "out": (a[2], None)},
              "nested namedtuple": lambda a: [Layer(*a[:2]), {"v": a[2]}]}
OPTIMIZERS = {"sgd": lambda: gc.optim.SGD(0.1), "adam": lambda: gc.optim.Adam(1e-2)}


def make(kind, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=4)]
    batch = (rng.normal(size=(6, 3)), rng.normal(size=6), rng.normal(size=2))
    return CONTAINERS[kind](arrays), batch


def leaf_paths(tree, path=()):
    """The keys that lead to each array of `tree`, in flatten order."""
    if isinstance(tree, np.ndarray):
        return [path]
    keys = sorted(tree, key=repr) if isinstance(tree, dict) else range(len(tree))
    return [p for k in keys if tree[k] is not None for p in leaf_paths(tree[k], path + (k,))]


def with_copied_leaf(tree, path):
    """`tree` with a copy of its array at `path`: put into its dict or list,
    or into new tuples up to the first container that takes it in place."""
    child = tree[path[0]]
    new = child.copy() if len(path) == 1 else with_copied_leaf(child, path[1:])
    if isinstance(tree, tuple):
        items = list(tree)
        items[path[0]] = new
        return type(tree)(*items) if hasattr(tree, "_fields") else tuple(items)
    tree[path[0]] = new
    return tree


def copied(tree):
    leaves, treedef = pytree.flatten(tree)
    return pytree.unflatten(treedef, [leaf.copy() for leaf in leaves])


class Checked:
    """Runs `step` and a reference step (always on the checked path, on its
    own copies of params and state) side by side; counts checked calls."""

    def __init__(self, kind, optimizer, monkeypatch):
        self.params, self.batch = make(kind)
        self.step = gc.compile_step(loss_fn, OPTIMIZERS[optimizer]())
        self.ref = gc.compile_step(loss_fn, OPTIMIZERS[optimizer]())
        self.ref_params = copied(self.params)
        self.checked = 0
        bind = self.step._bind
        monkeypatch.setattr(self.step, "_bind", lambda p: setattr(
            self, "checked", self.checked + 1) or bind(p))

    def __call__(self, *batch):
        batch = batch or self.batch
        self.ref.state = {k: v if k == "count" else copied(v)   # the reference starts from
                          for k, v in self.step.state.items()}      # the same state
        loss = self.step(self.params, *batch)
        self.ref._last = None               # the reference takes the checked path
        assert loss == self.ref(self.ref_params, *batch)
        for a, b in zip(pytree.flatten(self.params)[0], pytree.flatten(self.ref_params)[0]):
            np.testing.assert_array_equal(a, b)
        self.ref_params = copied(self.params)
        return loss


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("kind", CONTAINERS)
def test_steady_calls_take_the_fast_path_and_every_swapped_array_leaves_it(kind, optimizer,
                                                                           monkeypatch):
    run = Checked(kind, optimizer, monkeypatch)
    run()
    run()
    assert run.checked == 1                                     # the second call was fast
    layout = run.step._last.layout
    assert layout.tree == steady_call.tree_shape(pytree.flatten(run.params)[1])
    assert layout.n_batch == 3
    assert layout.count_unread == (optimizer == "sgd")
    assert layout.n_slots == (2 if optimizer == "adam" else 0)
    assert layout.unread_batch == (2,)                          # `unused`
    for name in [None] + sorted(k for k in run.step.state if k != "count"):
        for path in leaf_paths(run.params):
            if name is None:
                run.params = with_copied_leaf(run.params, path)
            else:
                run.step.state[name] = with_copied_leaf(run.step.state[name], path)
            before = run.checked
            run()
            assert run.checked == before + 1, (name, path)      # checked again
            run()
            assert run.checked == before + 1, (name, path)      # then fast again
    params, extra = run.params, np.ones(2)      # the same arrays and one more: refused
    grown = ({**params, "extra": extra} if isinstance(params, dict) else params + [extra]
             if isinstance(params, list) else None if hasattr(params, "_fields") else
             params + (extra,))
    if grown is not None:
        with pytest.raises(gc.errors.GraphcTypeError, match="structure"):
            run.step(grown, *run.batch)
    x, y, unused = run.batch
    longer = lambda a: np.concatenate([a, a[:1]])              # noqa: E731
    for batch in [(longer(x), longer(y), unused), (x, y, longer(unused))]:
        before = run.checked
        run(*batch)
        assert run.checked == before + 1                        # a new batch shape
        run()
        assert run.checked == before + 2


def test_an_array_in_place_of_a_none_in_the_params_leaves_the_fast_path(monkeypatch):
    run = Checked("nested", "sgd", monkeypatch)
    run()
    run()
    v = run.params["out"][0]
    run.params["out"] = (v, np.zeros(1))
    with pytest.raises(gc.errors.GraphcTypeError, match="structure"):
        run.step(run.params, *run.batch)


def test_params_that_are_one_array_or_none_take_the_fast_path_only_as_they_were():
    x = np.arange(3.0)
    step = gc.compile_step(lambda w, x: np.sum((w * x) ** 2), gc.optim.SGD(0.1))
    w, other = np.ones(3), np.ones(3)
    shrink = 1 - 0.2 * x ** 2                   # SGD's factor: the gradient is 2 w x**2
    step(w, x)
    assert step(w, x) == pytest.approx(np.sum((shrink * x) ** 2))
    np.testing.assert_allclose(w, shrink ** 2)
    assert step(other, x) == pytest.approx(np.sum(x ** 2))    # updates other, not w
    np.testing.assert_allclose([w, other], [shrink ** 2, shrink])
    step = gc.compile_step(lambda p, x: np.sum(x ** 2), gc.optim.SGD(0.1))
    step(None, x)
    step(None, x)
    assert step._last is not None
    with pytest.raises(gc.errors.GraphcTypeError, match="structure"):
        step(w, x)


def test_a_bad_count_in_a_steady_call_is_explained_by_the_checked_path(monkeypatch):
    run = Checked("dict", "adam", monkeypatch)
    run()
    run.step.state["count"] = -1
    with pytest.raises(gc.errors.GraphcValueError, match="count"):
        run.step(run.params, *run.batch)


def test_a_layout_compiles_once_per_process():
    layout = steady_call.Layout(tree=(False, "leaf", "leaf"), n_slots=1, n_batch=2,
                                unread_batch=(1,), count_unread=False, workspace=True,
                                parallel=True, n_consts=1)
    assert steady_call.factory(layout) is steady_call.factory(layout)
    text = steady_call.source(layout)
    assert "driver(s0, s1, s2, s3, np.array(count, np.int64), b0, unread, c0, ws, " \
           "threads.count())" in text


def test_what_the_checked_path_refuses_or_retraces_is_never_a_steady_call(monkeypatch):
    """An unread batch input of another dtype (the driver, which never reads
    it, cannot refuse it), a parameter reshaped in place (its dims are tied to
    nothing the driver compares), a moment slot deleted. A dict key equal to
    its own but of another type (np.str_) finds the same array: that call
    stays steady, though the checked path refuses such a tree."""
    run = Checked("nested", "adam", monkeypatch)
    run()
    run()
    x, y, unused = run.batch
    before = run.checked
    run(x, y, unused.astype(np.float32))        # a signature of its own: checked
    run(x, y, unused.astype(np.float32))
    assert run.checked == before + 1
    run()
    layer = run.params["hidden"][0]
    layer[np.str_("b")] = layer.pop("b")
    before = run.checked
    assert np.isfinite(run.step(run.params, *run.batch)) and run.checked == before
    layer["b"] = layer.pop("b")
    run.ref_params = copied(run.params)
    run()
    v = run.params["out"][0]
    v.shape = (2, 2)
    with pytest.raises(gc.errors.GraphcTypeError, match=r"\['out'\]\[0\] is float64\[2, 2\]"):
        run.step(run.params, *run.batch)
    v.shape = (4,)
    run()
    free = {"w": np.ones((2, 3))}       # dims tied to nothing the driver compares
    step = gc.compile_step(lambda p, x: np.sum(p["w"] ** 2) * np.sum(x), gc.optim.SGD(0.1))
    step(free, x)
    step(free, x)
    free["w"].shape = (3, 2)
    with pytest.raises(gc.errors.GraphcTypeError, match=r"float64\[3, 2\], but this step"):
        step(free, x)
    step = gc.compile_step(lambda p, x: np.sum(x ** 2), gc.optim.Adam(0.1))
    step(None, x)
    step(None, x)
    del step.state["m"]
    with pytest.raises(gc.errors.GraphcValueError, match="has no m"):
        step(None, x)
