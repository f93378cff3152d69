"""gc.export: a standalone module that continues an Adam or SGD run exactly."""
import ast
import collections
import copy
import hashlib
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc


# params as a dict, or as this namedtuple (the exported module rebuilds it as a tuple)
Params = collections.namedtuple("Params", "W b V")


def loss(p, x, y, lam):
    W, b, V = (p["W"], p["b"], p["V"]) if isinstance(p, dict) else p
    return gc.nn.cross_entropy(np.tanh(x @ W + b) @ V, y) + lam * np.sum(np.sin(b) ** 2)


def _by_name(params):
    return params if isinstance(params, dict) else params._asdict()


def _setup(dtype=np.float64, container=dict):
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(5, 8)), "b": np.zeros(8), "V": rng.normal(size=(8, 3))}
    x = rng.normal(size=(16, 5))
    y = rng.integers(0, 3, size=16)
    params = {k: v.astype(dtype) for k, v in params.items()}
    return (params if container is dict else Params(**params)), x.astype(dtype), y


def test_export_before_any_call_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="never been called"):
        gc.export(gc.compile_step(loss, gc.optim.Adam()), tmp_path / "m.py")
    with pytest.raises(TypeError, match="export takes a step made by gc.compile_step, got "
                                        "Compiled"):
        gc.export(gc.jit(lambda a: a * 2), tmp_path / "m.py")


def test_a_state_set_after_the_last_call_is_exported_as_the_next_call_would_take_it(
        import_exported):
    # a checkpoint's float64 moments into a float32 step, then export: the
    # module continues from them, cast, as graphc's step does; a reset is fresh
    params, x, y = _setup(np.float32)
    step = gc.compile_step(loss, gc.optim.Adam(0.01))
    step(params, x, y, 1e-3)
    saved = {"count": 7, **{s: {k: v.astype(np.float64) + 0.5 for k, v in step.state[s].items()}
                            for s in "mv"}}
    step.state = saved
    module = import_exported(step, "restored_step")
    exported = copy.deepcopy(params)
    assert module.step(exported, x, y, 1e-3) == step(params, x, y, 1e-3)
    assert module.state["count"] == step.state["count"] == 8
    for k in params:
        np.testing.assert_array_equal(exported[k], params[k])
    step.state = None
    fresh = import_exported(step, "reset_step")
    assert fresh.state["count"] == 0 and not any(np.any(v) for v in fresh.state["m"].values())
    step.state = {"count": 3}
    with pytest.raises(ValueError, match=r"step.state, as set, has no m, v"):
        gc.export(step, "unused.py")


def test_a_state_assigned_to_an_exported_module_is_copied_as_graphc_s_step_state_is(
        import_exported):
    # module.state = checkpoint twice restarts two runs alike; the checkpoint
    # (float64 moments, np.load's 0-d count) stays as saved
    params, x, y = _setup(np.float32)
    step = gc.compile_step(loss, gc.optim.Adam(0.01))
    step(params, x, y, 1e-3)
    module = import_exported(step, "assigned_state_step")
    saved = {"count": np.array(4), **{s: {k: v.astype(np.float64) + 0.25
                                         for k, v in module.state[s].items()} for s in "mv"}}
    snapshot = copy.deepcopy(saved)
    runs = []
    for _ in range(2):
        module.state = saved
        p = copy.deepcopy(params)
        for _ in range(2):
            module.step(p, x, y, 1e-3)
        assert module.state["count"] == 6 and type(module.state["count"]) is int
        assert all(module.state[s][k].dtype == np.float32 for s in "mv" for k in p)
        runs.append(p)
    for k in params:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
        for s in "mv":
            np.testing.assert_array_equal(saved[s][k], snapshot[s][k])
    assert saved["count"] == 4
    module.state = {**module.state, "count": True}
    with pytest.raises(TypeError, match=r"state\['count'\] is True"):
        module.step(params, x, y, 1e-3)


# SGD updates W inside the BLAS call; float32 sums b's gradient with kernels.sums.
# The weight of b's penalty is a 0-d array, or a Python float: a scalar argument
# (np.ascontiguousarray made it 1-d, which no exported signature matched)
# The second case asks for MKL (GRAPHC_BLAS=mkl): the module embeds
# kernels/mkl_library.py, and without MKL warns and runs on NumPy's BLAS
@pytest.mark.parametrize("optimizer, dtype, lam, lam_source, container, blas", [
    ("Adam", np.float64, np.array(1e-3), "np.array(1e-3)", dict, "numpy"),
    ("SGD", np.float32, 1e-3, "1e-3", Params, "mkl")],
    ids=["Adam-float64-0d-dict", "SGD-float32-float-namedtuple-mkl"])
def test_exported_step_continues_exactly_without_graphc(tmp_path, optimizer, dtype, lam,
                                                        lam_source, container, blas):
    params, x, y = _setup(dtype, container)
    step = gc.compile_step(loss, getattr(gc.optim, optimizer)(lr=0.05))
    for _ in range(3):
        step(params, x, y, lam)
    path = tmp_path / "exported_step.py"
    gc.export(step, path)
    np.savez(tmp_path / "start.npz", x=x, y=y, **_by_name(params))
    # the user's script defines its own namedtuple, as the exported module cannot import ours
    make_params = ("dict" if container is dict
                   else "collections.namedtuple('UserParams', 'W b V')")

    # continue in graphc
    expected_losses = [step(params, x, y, lam) for _ in range(4)]

    script = f"""
import collections, sys
sys.modules["graphc"] = None          # graphc is not importable in this process
sys.path.insert(0, {str(tmp_path)!r})
import numpy as np
import exported_step as m
d = np.load({str(tmp_path / 'start.npz')!r})
params = ({make_params})(**{{k: d[k].copy() for k in ("W", "b", "V")}})
assert m.state["count"] == 3
losses = [m.step(params, d["x"], d["y"], {lam_source}) for _ in range(4)]
final = params if isinstance(params, dict) else params._asdict()
np.savez({str(tmp_path / 'out.npz')!r}, losses=losses, count=m.state["count"], **final)
try:                                    # a batch size never exported: named, nothing run
    m.step(params, d["x"][:3], d["y"][:3], {lam_source})
except TypeError as e:
    print(e)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "GRAPHC_BLAS": blas})
    assert result.returncode == 0, result.stderr
    name = np.dtype(dtype).name
    assert result.stdout.strip() == (
        f"no exported signature matches the batch ({name}[3, 5], int64[3], float64[]); "
        f"exported batches: ({name}[16, 5], int64[16], float64[])")
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(out["losses"], expected_losses)
    assert int(out["count"]) == 7
    for k, v in _by_name(params).items():
        np.testing.assert_array_equal(out[k], v)
    text = path.read_text()
    # no import of graphc anywhere (a docstring may still mention it)
    imported = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "graphc" not in imported
    assert "def gemm(" in text and "def empty(" in text    # graphc.kernels.blas, .alloc embedded
    assert "def _trig_compile(" in text       # .trig: float32 sin builds its LLVM functions
    assert "def fold_rows(" in text     # .sums, called or not: every step embeds every kernel
    # the label check's error names the loss's line, as graphc's own does
    assert f"(at {__file__}:{loss.__code__.co_firstlineno + 2})" in text and "(at node" not in text
    # SGD's weight updates accumulate inside the gradient GEMM (beta = 1)
    folded = any("blas.gemm(" in line and " += " in line for line in text.splitlines())
    assert folded == (optimizer == "SGD")


def test_the_embedded_kernel_modules_define_each_name_once():
    """An exported step embeds the kernel modules it calls in one module's
    namespace: two defining one name (linalg's address table, once named as
    blas's) would make one of them call the other's."""
    from graphc.export import _KERNEL_MODULES, _kernel_source
    defined = collections.defaultdict(list)
    for module in _KERNEL_MODULES:
        for node in ast.parse(_kernel_source(module)).body:
            targets = [node] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else (
                node.targets if isinstance(node, ast.Assign) else [])
            for target in targets:
                names = [target.name] if hasattr(target, "name") else [
                    n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
                for name in names:
                    defined[name].append(module)
    assert {name: modules for name, modules in defined.items() if len(modules) > 1} == {}


_SHARED_KERNELS_SCRIPT = """
import sys
sys.modules["graphc"] = None
sys.path.insert(0, {directory!r})
import numpy as np, first_step
data = np.load({data!r})
params = {{k: data[k].copy() for k in ("W", "b", "V")}}
first_step.step(params, data["x"], data["y"], 1e-3)
gemm = first_step.blas.gemm
print(sum(gemm.stats.cache_hits.values()) > 0, sum(gemm.stats.cache_misses.values()))
"""


def test_exported_steps_share_one_compiled_copy_of_graphcs_kernels(tmp_path, import_exported):
    """Two steps of two models embed one text of graphc.kernels, run as one
    module from a file in graphc's cache directory named by its hash: the
    second imported compiles none of them again, and a new process loads them
    (gemm here) from Numba's cache beside that file."""
    params, x, y = _setup(np.float32)
    step = gc.compile_step(loss, gc.optim.SGD(0.1))
    step(params, x, y, 1e-3)
    first = import_exported(step, "first_step")
    second = _tied_step_exported(import_exported, "second_step",
                                 {"A": np.ones(6), "B": np.zeros(6)})[1]
    assert first.blas is first.vmath is second.blas is second.dispatch
    kernels_file = pathlib.Path(first.blas.__file__)
    assert kernels_file.parent == pathlib.Path(os.environ["GRAPHC_CACHE_DIR"]) / "exported_kernels"
    assert kernels_file.stem == first.blas.__name__ == (
        "graphc_kernels_" + hashlib.sha256(first._KERNELS.encode()).hexdigest()[:24])
    assert first.step(copy.deepcopy(params), x, y, 1e-3) == step(copy.deepcopy(params), x, y, 1e-3)
    # the module's own names (graphc.code_files', state_memory's and its
    # own, beside the kernels' module) are each bound to one thing: defined
    # once, or imported (the same module may be imported twice)
    bound = collections.defaultdict(set)
    for node in ast.parse(pathlib.Path(first.__file__).read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound[alias.asname or alias.name.split(".")[0]].add(
                    f"{getattr(node, 'module', None)}.{alias.name}")
        for name in ([node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else
                     [n.id for t in getattr(node, "targets", []) for n in ast.walk(t)
                      if isinstance(n, ast.Name)]):
            bound[name].add(len(bound[name]))   # a new binding each time
    assert {name: things for name, things in bound.items() if len(things) > 1} == {}
    np.savez(tmp_path / "data.npz", x=x, y=y, **params)
    script = _SHARED_KERNELS_SCRIPT.format(directory=str(tmp_path), data=str(tmp_path / "data.npz"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "0"]


def tied_loss(p, x):
    return np.sum(x * p["A"]) + np.sum(p["B"] ** 2)


def _tied_step_exported(import_exported, name, params):
    """A tied_loss Adam step called once on `params`, exported as module `name`
    and imported, with a copy of params for the module to update."""
    step = gc.compile_step(tied_loss, gc.optim.Adam(0.1))
    step(params, np.ones(6))
    module = import_exported(step, name)
    return step, module, {k: (v.copy() if v is not None else None) for k, v in params.items()}


def test_an_exported_step_copies_a_batch_sharing_a_params_memory(import_exported):
    # as graphc's own step: `run` writes params in place, and a batch that is
    # a param read in place gave A an update from B's new values
    params = {"A": np.linspace(-1, 1, 6), "B": np.linspace(2, 3, 6)}
    step, tied_step, exported = _tied_step_exported(import_exported, "tied_step", params)
    # the last two after a call whose arrays the next call's fast path takes
    for x_of in [lambda p: p["B"], lambda p: p["B"][::-1], lambda p: np.ones(6),
                 lambda p: p["B"], lambda p: np.ones(6), lambda p: p["A"]]:
        assert tied_step.step(exported, x_of(exported)) == step(params, x_of(params))
        for k in params:
            np.testing.assert_array_equal(exported[k], params[k])
    before = {k: v.copy() for k, v in exported.items()}
    with pytest.raises(ValueError, match="share memory"):
        tied_step.step({"A": exported["A"], "B": exported["A"]}, np.ones(6))
    with pytest.raises(ValueError, match="share memory"):
        tied_step.state["m"]["B"] = tied_step.state["v"]["B"]
        tied_step.step(exported, np.ones(6))
    for k in before:
        np.testing.assert_array_equal(exported[k], before[k])


@pytest.mark.parametrize("container", [dict, Params], ids=["dict", "namedtuple"])
def test_an_exported_steady_step_skips_the_checks_and_any_change_is_checked(
        import_exported, monkeypatch, container):
    """The same arrays as the call before skip the signature lookup; each
    array swapped for a copy of equal values (one the fast path must not
    mistake for the old one, which it would update instead) is checked
    again, and every step equals graphc's."""
    params, x, y = _setup(np.float64, container)
    lam = np.array(1e-3)
    step = gc.compile_step(loss, gc.optim.Adam(0.05))
    step(params, x, y, lam)
    m = import_exported(step, f"steady_step_{container.__name__}")
    checked = []
    check = m._checked_step
    monkeypatch.setattr(m, "_checked_step", lambda *a: checked.append(1) or check(*a))
    exported = {k: v.copy() for k, v in _by_name(params).items()}
    exported = exported if container is dict else Params(**exported)

    def both(*batch, fast):
        before = len(checked)
        assert m.step(exported, *batch) == step(params, *batch)
        for k, v in _by_name(params).items():
            np.testing.assert_array_equal(_by_name(exported)[k], v)
        assert len(checked) == before + (not fast)

    both(x, y, lam, fast=False)
    both(x, y, lam, fast=True)
    both(x.copy(), y.copy(), lam.copy(), fast=True)         # a new batch of one signature
    for k in "WbV":
        if container is dict:
            exported[k] = exported[k].copy()
        else:
            exported = exported._replace(**{k: getattr(exported, k).copy()})
        both(x, y, lam, fast=False)
        both(x, y, lam, fast=True)
    for slot in ("m", "v"):
        for i in range(3):
            leaves = list(m.state[slot].values() if container is dict else m.state[slot])
            leaves[i] = leaves[i].copy()
            m.state[slot] = (dict(zip(m.state[slot], leaves)) if container is dict
                             else tuple(leaves))
            both(x, y, lam, fast=False)
    both(np.asfortranarray(x), y, lam, fast=False)          # copied to C order
    both(x, y, float(lam), fast=False)                      # a float for the 0-d array
    W = _by_name(exported)["W"]
    W.setflags(write=False)                                 # frozen in place
    with pytest.raises(ValueError, match="writable"):
        m.step(exported, x, y, lam)
    W.setflags(write=True)
    both(x, y, lam, fast=True)                              # as the last step that ran
    with pytest.raises(TypeError, match="no exported signature"):
        m.step(exported, x[:3], y[:3], lam)
    before = {k: v.copy() for k, v in _by_name(exported).items()}
    with pytest.raises(TypeError, match="MaskedArray, which this step cannot take"):
        m.step(exported, np.ma.masked_greater(x, 0.5), y, lam)     # as graphc refuses it
    assert all((_by_name(exported)[k] == v).all() for k, v in before.items())


def test_an_exported_step_after_fast_calls_refuses_what_the_checked_path_refuses(
        import_exported):
    """Each follows fast calls and is refused before anything is written, as
    graphc refuses it: a params dict with a key renamed, or, on the checked
    path, with a key equal to its own but of another type (which sorts
    elsewhere: the arrays went to each other's updates; a steady call finds
    the same arrays by it), a moment dict with a key renamed, a read-only
    moment, a step count of the wrong shape, type or sign, and params
    reshaped in place."""
    params = {"A": np.linspace(-1, 1, 6), "B": np.linspace(2, 3, 6)}
    step, m, exported = _tied_step_exported(import_exported, "refusing_step", params)
    for _ in range(2):
        assert m.step(exported, np.ones(6)) == step(params, np.ones(6))
    before = {k: v.copy() for k, v in exported.items()}
    moment = m.state["m"]
    frozen = moment["B"].copy()
    frozen.setflags(write=False)
    for name, tree, error, message in [
            ("params", {"A": exported["A"], "C": exported["B"]}, TypeError, "structure"),
            ("params", {np.str_("A"): exported["A"], "B": exported["B"]}, TypeError, "structure"),
            ("m", {"A": moment["A"], "C": moment["B"]}, TypeError, r"state\['m'\] does not"),
            ("m", {"A": moment["A"], "B": frozen}, ValueError, "writable C-contiguous"),
            ("v", {"A": m.state["v"]["A"], "B": np.ones(3)}, TypeError,
             r"matches state\['v'\]\['B'\], float64\[3\] \(exported: float64\[6\]\)"),
            ("count", np.array([3]), TypeError, r"state\['count'\] is array\(\[3\]\)"),
            ("count", 2.5, TypeError, r"state\['count'\] is 2.5; it counts the steps"),
            ("count", -1, ValueError, r"state\['count'\] is -1")]:
        kept = m.state[name] if name != "params" else None
        if name != "params":
            m.state[name] = tree
        elif any(type(key) is not str for key in tree):
            m._LAST.clear()             # the checked path
        with pytest.raises(error, match=message):
            m.step(tree if name == "params" else exported, np.ones(6))
        if name != "params":
            m.state[name] = kept
    exported["A"].shape = (2, 3)        # in place: the same array
    with pytest.raises(TypeError, match=r"no exported signature matches params\['A'\], "
                                        r"float64\[2, 3\] \(exported: float64\[6\]\)"):
        m.step(exported, np.ones(6))
    exported["A"].shape = (6,)
    for k in before:
        np.testing.assert_array_equal(exported[k], before[k])
    assert m.step(exported, np.ones(6)) == step(params, np.ones(6))


def test_an_exported_step_of_params_holding_a_none(import_exported):
    # the module's structure tells a None from a leaf: its moment slots were
    # built with an array popped for the None, and the import failed
    params = {"A": np.linspace(-1, 1, 6), "B": np.linspace(2, 3, 6), "none": None}
    step, m, exported = _tied_step_exported(import_exported, "none_step", params)
    for _ in range(3):
        assert m.step(exported, np.ones(6)) == step(params, np.ones(6))
    with pytest.raises(TypeError, match="structure"):
        m.step({"A": exported["A"], "B": None, "none": exported["B"]}, np.ones(6))


def nested_loss(p, x, y):
    layer, = p["layers"]
    return gc.nn.cross_entropy(np.tanh(x @ layer["W"] + layer["b"]) @ p["head"][0], y)


def test_an_exported_step_of_nested_params_takes_the_steady_path_as_graphc_s_does(
        import_exported, monkeypatch):
    """Params of nested containers: steady calls skip the checks; a copy of
    equal values swapped in for any array, in the params or in a moment
    slot's tree, is checked again; the step goes on equal to graphc's."""
    flat, x, y = _setup()
    params = {"layers": [{"W": flat["W"], "b": flat["b"]}], "head": (flat["V"],)}
    step = gc.compile_step(nested_loss, gc.optim.Adam(0.05))
    step(params, x, y)
    m = import_exported(step, "nested_step")
    exported = copy.deepcopy(params)
    checked = []
    check = m._checked_step
    monkeypatch.setattr(m, "_checked_step", lambda *a: checked.append(1) or check(*a))

    def both(fast):
        before = len(checked)
        assert m.step(exported, x, y) == step(params, x, y)
        for a, b in zip(gc.pytree.flatten(exported)[0], gc.pytree.flatten(params)[0]):
            np.testing.assert_array_equal(a, b)
        assert len(checked) == before + (not fast)

    both(fast=False)
    both(fast=True)
    for tree in (exported, m.state["m"], m.state["v"]):
        layer = tree["layers"][0]
        layer["b"] = layer["b"].copy()
        both(fast=False)
        both(fast=True)
        tree["head"] = (tree["head"][0].copy(),)
        both(fast=False)
        both(fast=True)


def test_an_exported_step_converts_what_its_run_was_not_compiled_for(import_exported):
    """`run` compiles once: after it, a batch of another dtype is refused by
    name, never compiled again, and a read-only batch is copied."""
    params, x, y = _setup()
    step = gc.compile_step(loss, gc.optim.SGD(0.1))
    step(params, x, y, 1e-3)
    m = import_exported(step, "one_type_step")
    exported = {k: v.copy() for k, v in params.items()}
    lam = np.array(1e-3)
    for _ in range(2):
        assert m.step(exported, x, y, lam) == step(params, x, y, lam)
    before = {k: v.copy() for k, v in exported.items()}
    with pytest.raises(TypeError, match="no exported signature matches the batch"):
        m.step(exported, x.astype(np.float32), y, lam)
    for k in before:
        np.testing.assert_array_equal(exported[k], before[k])
    frozen = x.copy()
    frozen.setflags(write=False)
    for _ in range(2):
        assert m.step(exported, frozen, y, lam) == step(params, frozen, y, lam)
    (run,) = {sig.driver for sig in m._SIGNATURES.values()}
    assert len(run.signatures) == 1


def test_an_exported_module_loads_by_importlibs_spec_recipe(tmp_path):
    """module_from_spec and exec_module put the module in no sys.modules: its
    kernels call functions on it all the same: Numba's cache, which pickles
    functions by their module, takes them (it failed to before the stand-in
    was registered)."""
    import importlib
    import importlib.util

    params, x, y = _setup()
    step = gc.compile_step(loss, gc.optim.SGD(0.1))
    step(params, x, y, 1e-3)
    gc.export(step, tmp_path / "by_spec.py")
    exported = {k: v.copy() for k, v in params.items()}
    try:
        for _ in range(2):      # a second load takes the first one's place (SGD: no state)
            spec = importlib.util.spec_from_file_location("by_spec", tmp_path / "by_spec.py")
            m = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(m)
            assert m.step(exported, x, y, 1e-3) == step(params, x, y, 1e-3)
        again = importlib.import_module("by_spec")      # what the spec recipe left there
        again.state = {"count": 0}                       # takes effect
        m.step(exported, x, y, 1e-3)
        assert again.state == {"count": 1} and m.state is again.state
    finally:
        sys.modules.pop("by_spec", None)
