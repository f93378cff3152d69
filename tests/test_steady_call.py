"""The steady-state call (graphc/steady_call.py): identity tests written out
for each layout. Every array it tests is swapped in turn for a copy, which
must take the checked path; every step must equal a step on the checked path."""
import collections

import numpy as np
import pytest

import graphc as gc
from graphc import steady_call

Params = collections.namedtuple("Params", "W b v")


def loss_fn(p, x, y, unused):
    W, b, v = (p["W"], p["b"], p["v"]) if isinstance(p, dict) else p
    return np.mean((np.tanh(x @ W + b) @ v - y) ** 2)


CONTAINERS = {"dict": lambda a: dict(zip("Wbv", a)), "tuple": tuple, "list": list,
              "namedtuple": lambda a: Params(*a)}
OPTIMIZERS = {"sgd": lambda: gc.optim.SGD(0.1), "adam": lambda: gc.optim.Adam(1e-2)}


def make(kind, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=4)]
    batch = (rng.normal(size=(6, 3)), rng.normal(size=6), rng.normal(size=2))
    return CONTAINERS[kind](arrays), batch


def keys_of(params):
    return list(params) if isinstance(params, dict) else list(range(len(params)))


class Checked:
    """Runs `step` and a reference step (always on the checked path, on its
    own copies of params and state) side by side; counts checked calls."""

    def __init__(self, kind, optimizer, monkeypatch):
        self.params, self.batch = make(kind)
        self.step = gc.compile_step(loss_fn, OPTIMIZERS[optimizer]())
        self.ref = gc.compile_step(loss_fn, OPTIMIZERS[optimizer]())
        self.ref_params = self.copy(self.params)
        self.checked = 0
        bind = self.step._bind
        monkeypatch.setattr(self.step, "_bind", lambda p: setattr(
            self, "checked", self.checked + 1) or bind(p))

    def copy(self, params):
        return type(params)(**{k: v.copy() for k, v in params.items()}) if isinstance(
            params, dict) else type(params)(*(v.copy() for v in params)) if isinstance(
            params, Params) else type(params)(v.copy() for v in params)

    def __call__(self, *batch):
        batch = batch or self.batch
        if self.step.state is not None:     # the reference starts from the same state
            self.ref.state = {k: v if k == "count" else self.copy(v)
                              for k, v in self.step.state.items()}
        loss = self.step(self.params, *batch)
        self.ref._last = None               # the reference takes the checked path
        assert loss == self.ref(self.ref_params, *batch)
        for k in keys_of(self.params):
            np.testing.assert_array_equal(self.params[k], self.ref_params[k])
        self.ref_params = self.copy(self.params)
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
    assert layout.n_keys == 3 and layout.n_batch == 3
    assert layout.count_unread == (optimizer == "sgd")
    assert layout.n_slots == (2 if optimizer == "adam" else 0)
    assert layout.unread_batch == (2,)                          # `unused`
    containers = [None] + sorted(k for k in run.step.state if k != "count")
    for name in containers:
        for k in keys_of(run.params):
            holder = run.params if name is None else run.step.state[name]
            if isinstance(holder, tuple):   # a tuple's arrays are swapped by replacing it
                items = list(holder)
                items[k] = items[k].copy()
                holder = type(holder)(*items) if isinstance(holder, Params) else tuple(items)
                if name is None:
                    run.params = holder
                else:
                    run.step.state[name] = holder
            else:
                holder[k] = holder[k].copy()
            before = run.checked
            run()
            assert run.checked == before + 1, (name, k)         # checked again
            run()
            assert run.checked == before + 1, (name, k)         # then fast again
    x, y, unused = run.batch
    longer = lambda a: np.concatenate([a, a[:1]])              # noqa: E731
    for batch in [(longer(x), longer(y), unused), (x, y, longer(unused))]:
        before = run.checked
        run(*batch)
        assert run.checked == before + 1                        # a new batch shape
        run()
        assert run.checked == before + 2


def test_a_bad_count_in_a_steady_call_is_explained_by_the_checked_path(monkeypatch):
    run = Checked("dict", "adam", monkeypatch)
    run()
    run.step.state["count"] = -1
    with pytest.raises(gc.errors.GraphcValueError, match="count"):
        run.step(run.params, *run.batch)


def test_a_layout_compiles_once_per_process():
    layout = steady_call.Layout(n_keys=2, n_slots=1, n_batch=2, unread_batch=(1,),
                                count_unread=False, workspace=True, parallel=True, n_consts=1)
    assert steady_call.factory(layout) is steady_call.factory(layout)
    text = steady_call.source(layout)
    assert "driver(s0, s1, s2, s3, np.array(count, np.int64), b0, unread, c0, ws, " \
           "threads.count())" in text
