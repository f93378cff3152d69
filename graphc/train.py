"""Training: compiled optimizer steps and whole training loops in compiled code.

`compile_step` traces one function, `loss -> grads -> optimizer update`, into
a single graph, so forward, backward and update compile into one module. The
step computes the new parameters into fresh buffers and only then copies
them into the user's arrays: a step that raises leaves params and optimizer
state exactly as they were.
"""
from __future__ import annotations

import inspect
import operator

import numpy as np

from graphc import api, errors, pytree, runtime, steady_call, tracing
from graphc.state_memory import StateMemory
from graphc.optim import Optimizer


def _leaf_check(leaves, paths):
    seen: list = []
    for leaf, path in zip(leaves, paths):
        if not isinstance(leaf, np.ndarray):
            raise errors.GraphcTypeError(f"{path} is a {type(leaf).__name__}; parameters must "
                                         f"be NumPy float arrays (updated in place), in dicts, "
                                         f"lists, tuples or namedtuples")
        tracing.refuse_subclass(leaf)
        if leaf.dtype.kind != "f" or leaf.dtype not in tracing.SUPPORTED_DTYPES:
            raise errors.GraphcTypeError(f"{path} has dtype {leaf.dtype}; parameters "
                                         f"must be float32 or float64 arrays")
        if not leaf.flags.writeable:
            raise errors.GraphcValueError(f"{path} is read-only; the step updates "
                                          f"parameters in place, pass a writable array (x.copy())")
        if not leaf.flags.c_contiguous:
            raise errors.GraphcValueError(f"{path} is not C-contiguous (a transposed "
                                          f"or strided view?); the step updates parameters in "
                                          f"place, pass np.ascontiguousarray(x)")
        for other, other_path in seen:
            if np.may_share_memory(leaf, other):
                raise errors.GraphcValueError(
                    f"{other_path} and {path} are the same array or share memory; "
                    f"the step writes each one in place, pass separate arrays (x.copy())")
        seen.append((leaf, path))


def _copied_state(value):
    """A state set by the user, as the step keeps it: a dict's moments copied
    (C-ordered) and a count that is an integer as an int (np.load gives a 0-d
    array); what is not a dict stays, for _bind to refuse."""
    if not isinstance(value, dict):
        return value
    state = {}
    for key, tree in value.items():
        leaves, treedef = pytree.flatten(tree)
        state[key] = pytree.unflatten(treedef, [
            np.array(leaf, order="C") if isinstance(leaf, np.ndarray) else leaf
            for leaf in leaves])
    try:
        if not isinstance(state["count"], (bool, np.bool_)):
            state["count"] = operator.index(state["count"])
    except (KeyError, TypeError):
        pass            # (refused, naming it, at the next call)
    return state


def _fresh(state: dict) -> bool:
    """Whether a state is a fresh one's: never set, or set to a count of 0 alone."""
    count = state.get("count", 0)
    return set(state) <= {"count"} and type(count) is int and count == 0


def _cast_moments(state: dict, slots: list, treedef, avals: list) -> None:
    """Moments of float arrays shaped as the params, in the params' float
    dtypes (a float64 checkpoint into a float32 model, as PyTorch's
    load_state_dict casts); anything else is left for _check_state to name."""
    for k in slots:
        leaves, slot_def = pytree.flatten(state[k])
        if slot_def is not treedef and slot_def != treedef:
            continue
        state[k] = pytree.unflatten(treedef, [
            leaf.astype(dtype) if isinstance(leaf, np.ndarray) and leaf.dtype.kind == "f"
            and leaf.shape == shape and dtype.kind == "f" and leaf.dtype != dtype else leaf
            for leaf, (shape, dtype) in zip(leaves, avals)])


def _step_count(state: dict) -> np.ndarray:
    """`state["count"]` as the driver's 0-d int64 input (a fresh one per call),
    checked before anything runs: a bad count used to fail only after the update."""
    return np.array(_checked_count(state), np.int64)


def _unread_count(state: dict) -> int:
    """What a step whose update never reads the count (SGD) is passed instead
    of it: api.UNREAD, as for any input the driver never reads. np.array for
    a fresh 0-d array costs 0.5-0.65 us, 4% of a W1 step."""
    _checked_count(state)
    return api.UNREAD


def _checked_count(state: dict) -> int:
    count = state["count"]
    try:
        index = None if isinstance(count, (bool, np.bool_)) else operator.index(count)
    except TypeError:
        index = None
    if index is None:
        raise errors.GraphcTypeError(f"step.state['count'] is {count!r}; it counts the steps "
                                     f"taken, an int >= 0")
    count = index
    if not 0 <= count < steady_call.COUNT_END:
        raise errors.GraphcValueError(f"step.state['count'] is {count}; it counts the steps "
                                      f"taken, an int >= 0")
    return count


class _LastCall:
    """The arrays of the last step that ran, so the next call with the same ones
    (a training loop's steady state) skips flattening, checking and the signature
    lookup: identity tests instead. The driver itself refuses any other dtype,
    rank, layout or a read-only array (see `_Entry.run_unconverted`), and
    shapes that no longer fit together (codegen._shapes_differ).

    For params in a tree of dicts, lists, tuples and namedtuples (nested
    layers too) and a batch of plain arrays, which is what a training loop
    passes; anything else, or anything that differs, takes the checked path,
    which then records itself here.
    """

    def __init__(self, step: Step, state: list, entry, types: list, keys: list):
        self.leaves = state                     # the state arrays, in the driver's order
        first = len(state) + 1                  # the batch's first input position
        self.batch_shapes = [shape for shape, _ in entry.in_avals[first:]]
        self.entry = entry
        self.count_unread = len(state) in entry.unread
        self.memory = StateMemory(state)
        self.layout = steady_call.layout_of(step._treedef, len(step._slot_names), entry.module,
                                            len(entry.in_avals), len(entry.consts), step.has_aux)
        # call(params, step_state, batch): the step's loss (a has_aux step's:
        # the driver's outputs) when these are the same arrays as last time,
        # else None (see steady_call.source)
        self.call = steady_call.factory(self.layout)(
            types, step._slot_names, keys, state, [leaf.shape for leaf in state],
            self.batch_shapes, [entry.in_avals[first + i][1] for i in self.layout.unread_batch],
            entry.consts, entry, self.memory)

    @staticmethod
    def of(step: Step, params, state: list, entry, batch: tuple, passed: list):
        """For a call whose batch went to the driver as it was (`passed`): a batch
        that needed converting would only meet the driver's TypeError next time.
        Not for params trees too large to write out."""
        if pytree.num_nodes(step._treedef) > pytree.WRITTEN_OUT_AT_MOST or not (
                entry.passed_as_is(passed, batch, first=len(state) + 1)):
            return None
        types, keys = [], []
        for tree in [params] + [step.state[name] for name in step._slot_names]:
            steady_call.containers(tree, types, keys)
        return _LastCall(step, state, entry, types, keys)


class Step:
    """A compiled training step: `step(params, *batch) -> loss` (before the update).

    The batch is read as it is at the call: one that shares memory with a
    parameter or a moment slot (which the step writes in place) is copied.

    >>> import numpy as np, graphc as gc
    >>> params = {"w": np.zeros(3)}
    >>> step = gc.compile_step(lambda p, x, y: np.mean((x @ p["w"] - y) ** 2),
    ...                        gc.optim.SGD(lr=0.1))
    >>> step(params, np.eye(3), np.ones(3))
    1.0
    >>> step.state["count"], params["w"].round(3)
    (1, array([0.067, 0.067, 0.067]))
    """

    def __init__(self, loss_fn, optimizer: Optimizer, has_aux: bool = False):
        if not isinstance(optimizer, Optimizer):
            raise errors.GraphcTypeError(f"compile_step needs a gc.optim optimizer, got "
                                         f"{type(optimizer).__name__}")
        self.loss_fn, self.optimizer, self.has_aux = loss_fn, optimizer, bool(has_aux)
        self._state: dict | None = None   # step.state: None until made (the first call)
        self._treedef = None
        self._rebind = False              # step.state was set: bind it at the next call
        self._avals = None
        self._state_avals = None          # (shape, dtype) of each state leaf, in driver order
        self._n_state = 0                 # parameter leaves + moment-slot leaves
        self._entries = {}                # batch signature -> compiled entry (the fast path)
        self._slot_names = []             # the optimizer's moment slots, sorted as traced
        self._checked = []                # the state arrays fully checked last (skip re-checks)
        self._last: _LastCall | None = None     # the steady-state fast path
        self._signature = None            # the loss's, for keyword arguments
        self._keyword_plans = {}          # see api.positional
        self._compiled = api.Compiled(self._traced_step,
                                      name=f"step({getattr(loss_fn, '__name__', 'loss')})",
                                      codegen_options=self._codegen_options)

    def _traced_step(self, params, slots, count, *batch):
        # the traced value_and_grad, with errors that name compile_step
        loss, grads = api._value_and_grad_fn(self.loss_fn, 0, self.has_aux, "compile_step")(
            params, *batch)
        loss, aux = loss if self.has_aux else (loss, None)
        loss = loss.reshape(())     # a size-1 loss is allowed; the driver returns a scalar
        leaves, treedef = pytree.flatten(params)
        slot_leaves = {k: pytree.flatten(v)[0] for k, v in slots.items()}
        with tracing.role("update"):
            new_params, new_slots = self.optimizer.update(
                leaves, pytree.flatten(grads)[0], slot_leaves, count)
        new_params = [p.astype(leaf.dtype) for p, leaf in zip(new_params, leaves)]
        return (loss, pytree.unflatten(treedef, new_params),
                {k: pytree.unflatten(treedef, [s.astype(l.dtype) for s, l in zip(v, leaves)])
                 for k, v in new_slots.items()}) + ((aux,) if self.has_aux else ())

    def _codegen_options(self, n_inputs):
        # Inputs are (*state, count, *batch) and outputs (loss, *new_state): the
        # driver writes the new state into the state arrays once all checks passed.
        n = self._n_state
        options = {"write_back": {k + 1: k for k in range(n)}}
        if not self.has_aux:    # (the epoch loop keeps each step's loss alone)
            options["epoch_loop"] = (n, n_inputs - n - 1)
        return options

    # -- state ----------------------------------------------------------------
    @property
    def state(self) -> dict:
        """The optimizer state: "count" (steps taken) and one tree like the
        params per moment slot, which the step updates in place. Before the
        first call it holds the count alone; the moments are made (zeros) at
        the first call, from the params."""
        if self._state is None:
            self._state = {"count": 0}
        return self._state

    @state.setter
    def state(self, value):
        """A state to continue from (a checkpoint's, another step's), copied as
        PyTorch's load_state_dict copies: the step then writes into its own
        arrays, never the checkpoint's. Moments are cast to the params' dtypes
        at the next call; None starts a fresh state."""
        self._state = _copied_state(value)
        self._checked, self._last, self._rebind = [], None, True

    def _bind(self, params) -> list:
        """The state leaves (params, then each moment slot) in the driver's order,
        checked against what this step was built for; the state is made on first sight."""
        leaves, treedef = pytree.flatten(params)
        if self._state is not None and not isinstance(self._state, dict):
            raise errors.GraphcTypeError(f"step.state is a {type(self._state).__name__}; "
                                         f"it is a dict (or None for a fresh one)")
        if self._treedef is None or self._rebind:     # first sight, or a state set since
            _leaf_check(leaves, [f"params{path}" for path in pytree.leaf_suffixes(treedef)])
            slots = self.optimizer.init(leaves)
            avals = [(leaf.shape, leaf.dtype) for leaf in leaves]
            state = self.state
            if _fresh(state):
                # the moments are made here, into the dict the user may already hold
                state.update({"count": 0}, **{k: pytree.unflatten(treedef, v)
                                              for k, v in slots.items()})
            else:   # set (another step's, to continue it): checked below
                self._check_entries(sorted(slots), ", as set,")
                _cast_moments(state, sorted(slots), treedef, avals)
            if avals != self._avals:    # entries compiled for other params' shapes
                self._entries.clear()
            self._treedef, self._rebind = treedef, False
            self._avals = avals
            self._slot_names = sorted(slots)
            self._n_state = len(leaves) * (1 + len(slots))
            self._state_avals = self._avals * (1 + len(slots))
        elif treedef is not self._treedef and treedef != self._treedef:
            same_look = (" (a different class of the same name: was it defined again?)"
                         if str(treedef) == str(self._treedef) else "")
            raise errors.GraphcTypeError(f"params have structure {treedef}, but this step was "
                                         f"built for {self._treedef}{same_look}")
        else:
            self._check_entries(self._slot_names)
        state = leaves + self._slot_leaves(self.state)
        checked = self._checked
        if len(state) == len(checked):
            # The same array objects as last time (held, so an id cannot be
            # reused): only what can change in place is re-checked.
            for leaf, old, (shape, dtype) in zip(state, checked, self._state_avals):
                if leaf is not old or leaf.shape != shape or leaf.dtype != dtype:
                    break
                flags = leaf.flags
                if not (flags.writeable and flags.c_contiguous):
                    break
            else:
                return state
        self._check_state(state)
        self._checked = state[:]
        return state

    def _slot_leaves(self, state: dict) -> list:
        """The moment slots' leaves, in the driver's order, each slot of the params' structure."""
        leaves = []
        for k in self._slot_names:
            slot, slot_def = pytree.flatten(state[k])
            if slot_def is not self._treedef and slot_def != self._treedef:
                raise errors.GraphcTypeError(f"step.state[{k!r}] does not have the structure "
                                             f"of the params {self._treedef}")
            leaves += slot
        return leaves

    def _settled_state(self) -> dict:
        """The state the next call starts from, checked (and its moments cast)
        as that call would: for export, which has no params to bind it with."""
        if not self._rebind:
            return self.state
        like = [np.zeros(shape, dtype) for shape, dtype in self._avals]
        if _fresh(self.state):
            return {"count": 0, **{k: pytree.unflatten(self._treedef, v)
                                   for k, v in self.optimizer.init(like).items()}}
        state = dict(self.state)
        self._check_entries(self._slot_names, ", as set,", state)
        _cast_moments(state, self._slot_names, self._treedef, self._avals)
        self._check_state(like + self._slot_leaves(state))
        _checked_count(state)
        return state

    def _check_entries(self, slots: list, when: str = "", state: dict | None = None) -> None:
        missing = sorted({"count", *slots} - set(self.state if state is None else state))
        if missing:
            raise errors.GraphcValueError(
                f"step.state{when} has no {', '.join(missing)}: "
                f"{type(self.optimizer).__name__} needs 'count' and one entry per "
                f"moment ({', '.join(slots) or 'none'}), each like the params")

    def _check_state(self, state):
        paths = pytree.leaf_suffixes(self._treedef)
        paths = [f"params{path}" for path in paths] + [f"step.state[{k!r}]{path}"
                                                       for k in self._slot_names for path in paths]
        for leaf, path, (shape, dtype) in zip(state, paths, self._state_avals):
            if not isinstance(leaf, np.ndarray) or leaf.shape != shape or leaf.dtype != dtype:
                got = f"{leaf.dtype}{list(leaf.shape)}" if isinstance(leaf, np.ndarray) else \
                    type(leaf).__name__
                raise errors.GraphcTypeError(f"{path} is {got}, but this step was built "
                                             f"for {dtype}{list(shape)}")
        _leaf_check(state, paths)

    def _slots(self):
        return {k: self.state[k] for k in self._slot_names}

    def _args(self, params, batch):
        return (params, self._slots(), _step_count(self.state), *batch)

    def _entry_for(self, params, batch):
        """The compiled entry for this batch's signature (traced on first sight)
        and the batch's leaves."""
        leaves, treedef = pytree.flatten(batch)
        # the key gc.jit uses: the structure and every leaf's shape and dtype
        key = (treedef, api._array_signature_key(leaves) or api._signature_key(leaves))
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= api.MAX_ENTRIES:
                self._entries.clear()
            entry = self._entries[key] = self._compiled._entry(self._args(params, batch))[0]
        return entry, leaves

    # -- calls ----------------------------------------------------------------
    def __call__(self, params, *batch, **kwargs):
        if kwargs:      # step(params, x=xb, y=yb): in their places among the loss's parameters
            params, *batch = api.positional(self._loss_signature(), self._compiled.__name__,
                                            (params, *batch), kwargs, self._keyword_plans)
        last = self._last
        out = last.call(params, self._state, batch) if last is not None else None
        if out is None:
            try:
                return self._checked_call(params, batch)
            except errors.GraphcError as e:     # the params' and state's checks: name the line
                errors.name_callers_line(e)
                raise
        self._state["count"] += 1
        return (float(out[0]), _aux(last.entry, out)) if self.has_aux else float(out)

    def _loss_signature(self) -> inspect.Signature:
        try:
            if self._signature is None:
                self._signature = inspect.signature(self.loss_fn)
            return self._signature
        except (TypeError, ValueError) as e:
            raise errors.GraphcTypeError(f"{self._compiled.__name__}: keyword arguments need "
                                         f"the loss's signature: {e}") from None

    def _checked_call(self, params, batch):
        self._last = None
        state = self._bind(params)
        entry, leaves = self._entry_for(params, batch)
        n = len(state)
        state.append((_unread_count if n in entry.unread else _step_count)(self.state))
        passed = StateMemory(state[:n]).unaliased(entry.inputs(leaves, first=n + 1))
        outs = entry.run(state + passed)
        self._last = _LastCall.of(self, params, state[:n], entry, batch, passed)
        self.state["count"] = _checked_count(self.state) + 1    # an int (not a checkpoint's
        # np.int64 or 0-d array, which += would keep, or change in place)
        return (float(outs[0]), _aux(entry, outs)) if self.has_aux else float(outs[0])

    def inspect(self, params, *batch):
        self._bind(params)
        return self._compiled.inspect(*self._args(params, batch))

    def lower(self, params, *batch):
        """inspect() without compiling (see Compiled.lower); updates nothing."""
        self._bind(params)
        return self._compiled.lower(*self._args(params, batch))

    def epoch(self, params, data, perm, batch_size, num_batches) -> np.ndarray:
        """Run `num_batches` steps over `data[perm]` as one native call; the batch losses."""
        if self.has_aux:
            raise errors.GraphcValueError(
                "epoch: a step made with has_aux=True returns each step's aux, which the "
                "native epoch loop would drop; call the step in a loop of your own"
                + errors.at(errors.user_location()))
        perm = np.ascontiguousarray(perm, np.int64)
        data = tuple(np.asarray(d) for d in data)
        if not data or any(d.ndim == 0 for d in data):
            raise errors.GraphcValueError(f"epoch: data must be arrays with a first axis of rows"
                                          f"{errors.at(errors.user_location())}")
        n = min(len(d) for d in data)
        if batch_size < 1 or num_batches < 0 or len(perm) < batch_size * num_batches or (
                len(perm) and (perm.min() < 0 or perm.max() >= n)):
            # the native loop reads rows without bounds checks
            raise errors.GraphcIndexError(
                f"epoch: {num_batches} batches of {batch_size} need that many row indices "
                f"in [0, {n}); perm has {len(perm)}"
                + (f" in [{perm.min()}, {perm.max()}]" if len(perm) else "")
                + errors.at(errors.user_location()))
        try:
            state = self._bind(params)
        except errors.GraphcError as e:
            errors.name_callers_line(e)
            raise
        if num_batches == 0:    # nothing to run (and perm may hold less than a batch)
            return np.empty(0, np.float64)
        entry = self._entry_for(params, tuple(d[perm[:batch_size]] for d in data))[0]
        count = _step_count(self.state)
        arrays = [np.ascontiguousarray(d) for d in data]
        losses = np.empty(num_batches, np.float64)
        ws = entry.take_workspace()
        try:
            with runtime.gc_paused(entry.train_epoch):    # the first call compiles it
                entry.train_epoch(*state, count, *arrays, perm, batch_size, losses,
                                  *entry.consts, *entry.tail_args(ws))
            entry.give_back(ws)
        except errors.NATIVE_ERRORS as e:
            raise errors.from_native(e, graph=entry.optimized) from None
        finally:
            self.state["count"] = int(count)
        return losses

    def __repr__(self):
        return f"<graphc step of {getattr(self.loss_fn, '__name__', 'loss')} with {self.optimizer}>"


def compile_step(loss_fn, optimizer: Optimizer, has_aux: bool = False) -> Step:
    """One fused forward + backward + update call; params are updated in place.

    With has_aux=True, loss_fn returns (loss, aux), as for gc.value_and_grad,
    and the step returns (loss, aux): aux a pytree of new arrays computed
    before the update (an accuracy, an RNN's last state for truncated
    backpropagation through time)."""
    return Step(loss_fn, optimizer, has_aux)


def aux_tree(entry) -> pytree.TreeDef:
    """A has_aux step's aux TreeDef: its traced outputs are (loss, new params,
    new slots, aux)."""
    return entry.graph.meta["out_tree"].children[3]


def _aux(entry, outs):
    """The aux tree of a has_aux step's driver outputs (the loss, then the aux
    leaves: the new state is written in place), 0-d results as 0-d arrays."""
    leaves = [np.array(out, entry.scalar_dtypes[k]) if k in entry.scalar_dtypes else out
              for k, out in enumerate(outs) if k]
    return pytree.unflatten(aux_tree(entry), leaves)


def train(loss_fn, params, data, optimizer, batch_size=128, epochs=10, shuffle=True, seed=0,
          drop_last=False, progress=True) -> np.ndarray:
    """Minibatch gradient descent; each epoch's full batches run as one native call.

    Returns each epoch's mean minibatch loss, shape (epochs,).

    Each call compiles a new step, so the optimizer's state (momentum, Adam's
    moments and step count) starts from zero, as with a new torch.optim
    optimizer: to continue a run with its state, keep a `compile_step` step
    and call it (or its `epoch`) yourself. A batch that raises (a label out
    of range) leaves the params as they were before the call.

    >>> import numpy as np, graphc as gc
    >>> X = np.random.default_rng(0).normal(size=(64, 3)); y = X @ np.array([1., -2., .5])
    >>> p = {"w": np.zeros(3)}
    >>> h = gc.train(lambda p, x, y: np.mean((x @ p["w"] - y) ** 2), p, (X, y),
    ...              gc.optim.SGD(lr=0.1), batch_size=16, epochs=30, progress=False)
    >>> bool(h[-1] < 1e-6), p["w"].round(3)
    (True, array([ 1. , -2. ,  0.5]))
    """
    data = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    data = tuple(_data_array(d) for d in data)
    _check_data_count(loss_fn, len(data))
    n = len(data[0]) if data and data[0].ndim else 0
    for k, d in enumerate(data):
        if d.ndim == 0 or len(d) != n:
            raise errors.ShapeError(f"train: every data array needs the same length along axis "
                                    f"0; array 0 has {n} rows, array {k} has "
                                    f"{len(d) if d.ndim else 'no axis 0'}"
                                    + errors.at(errors.user_location()))
    data = tuple(np.ascontiguousarray(d) for d in data)     # once here, not in every epoch
    try:
        batch_size, epochs = operator.index(batch_size), operator.index(epochs)
    except TypeError:
        raise errors.GraphcTypeError(f"train: batch_size and epochs must be integers, got "
                                     f"{batch_size!r} and {epochs!r}") from None
    if batch_size < 1 or epochs < 0:
        raise errors.GraphcValueError("train: batch_size must be >= 1 and epochs >= 0")
    batch_size = min(batch_size, n) if n and not drop_last else batch_size
    full, rest = divmod(n, batch_size)
    if full == 0 and (drop_last or rest == 0):
        raise errors.GraphcValueError(f"train: {n} rows with batch_size={batch_size} and "
                                      f"drop_last={drop_last} leave no batch to train on")
    step = compile_step(loss_fn, optimizer)
    rng = np.random.default_rng(seed)
    bar = _progress_bar(epochs, progress)
    history = np.zeros(int(epochs))
    # a batch that raises (a label out of range) stops a native epoch loop
    # after the batches before it were applied: the params go back to these
    before = [np.array(leaf) if isinstance(leaf, np.ndarray) else leaf
              for leaf in pytree.flatten(params)[0]]
    try:
        for epoch in range(int(epochs)):
            perm = rng.permutation(n) if shuffle else np.arange(n)
            losses = list(step.epoch(params, data, perm, batch_size, full)) if full else []
            if rest and not drop_last:
                # the short last batch through the same native loop: calling the
                # step would compile `run` too, as much again as the epoch loop
                losses += list(step.epoch(params, data, perm[full * batch_size:], rest, 1))
            history[epoch] = np.mean(losses)
            if bar is not None:
                bar.set_postfix(loss=f"{history[epoch]:.4g}", refresh=False)  # update(1) redraws
                bar.update(1)
    except Exception as e:      # (not KeyboardInterrupt: an interrupted run keeps its progress)
        _restore(params, before)
        e.add_note(f"gc.train: raised in epoch {epoch + 1} of {epochs}; the params are as "
                   f"they were before train")
        raise
    finally:
        if bar is not None:
            bar.close()
    return history


def _restore(params, before: list) -> None:
    """Write `before`'s values back into the params' arrays (those that are
    arrays still: the error may be that one is not)."""
    for leaf, old in zip(pytree.flatten(params)[0], before):
        if isinstance(leaf, np.ndarray) and isinstance(old, np.ndarray) and (
                leaf.shape == old.shape and leaf.flags.writeable):
            np.copyto(leaf, old, casting="unsafe")


def _check_data_count(loss_fn, count: int) -> None:
    """Refuse data that is not one array per batch argument of the loss (a
    list of rows, X.tolist(), is as many arrays as rows), before it is read."""
    try:
        parameters = list(inspect.signature(loss_fn).parameters.values())
    except (TypeError, ValueError):
        return
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    batch = positional[1:]
    needed = sum(p.default is p.empty for p in batch)
    if not needed <= count <= len(batch):
        names = ", ".join(p.name for p in batch)
        raise errors.GraphcTypeError(
            f"train: data holds {count} array{'s' if count != 1 else ''}, but the loss takes "
            f"{len(batch)} batch "
            f"argument{'s' if len(batch) != 1 else ''} after the params ({names}): pass one "
            f"array each, as a tuple (a list of rows is one array: np.asarray it)"
            + errors.at(errors.user_location()))


def _data_array(d) -> np.ndarray:
    """One of train's data arrays: what NumPy makes an array of (a list of
    rows too), not a dict or a ragged nest of them."""
    tracing.refuse_subclass(d)      # (np.asarray would drop a mask)
    try:
        array = None if isinstance(d, dict) else np.asarray(d)
    except ValueError:      # ragged
        array = None
    if array is None or array.dtype == object:
        raise errors.GraphcTypeError(
            f"train: data is an array or a tuple of arrays, each of the same number of rows "
            f"(the loss takes one batch of each, in order), not a {type(d).__name__} NumPy "
            f"makes no array of: pass (x, y), or call a compile_step step on your own batches"
            + errors.at(errors.user_location()))
    return array


def _progress_bar(epochs, progress):
    if not progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=int(epochs), desc="train", unit="epoch")
