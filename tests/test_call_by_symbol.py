"""Generated kernels, loop parts and graphc's own loop kernels are called by
symbol (kernels/dispatch.py, called_by_symbol), not linked into each caller:
their code is compiled once, and a caller loaded from Numba's disk cache in
a new process first loads (or compiles) each callee and names it."""
import os
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc

_MODULE = '''
import numpy as np
from numba import njit
from numba.core import sigutils
from numba.core.ccallback import CFunc
from graphc.kernels import dispatch

OFFSET = 0.0


@dispatch.called_by_symbol
@njit(cache=True, no_cpython_wrapper=True)
def scale(x, out, factor):
    for i in range(x.shape[0]):
        out[i] = x[i] * factor + OFFSET


@njit(cache=True)
def caller(x):
    out = np.empty_like(x)
    scale(x, out, 3.0)
    scale(out, out, 0.5)
    return out


@dispatch.called_by_symbol
@njit(cache=True, no_cpython_wrapper=True)
def square(x):
    return x * x


def _cube(x):
    return square(x) * x


# a C function, cached as graphc's are (gemm's), calling a function by symbol
cube = dispatch.load_without_refresh(CFunc(_cube, sigutils.normalize_signature("float64(float64)"),
                                           locals={}, options={"nopython": True}))
'''

_SCRIPT = '''
import numpy as np, callees
result = callees.caller(np.arange(4.0))
library = next(iter(callees.caller.overloads.values())).library
linked = any(any(f.name.startswith("_ZN7callees5scale") for f in linked.get_defined_functions())
             for linked in library._linking_libraries)
hits = lambda d: sum(d.stats.cache_hits.values())
misses = lambda d: sum(d.stats.cache_misses.values())
print(result.tolist(), linked, hits(callees.caller), misses(callees.caller),
      hits(callees.scale), misses(callees.scale))
'''


def _in_new_process(script, env):
    done = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, **env),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


_C_SCRIPT = """
import ctypes, callees
callees.cube.compile()
print(ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(callees.cube.address)(3.0),
      sum(callees.square.stats.cache_hits.values()))
"""


def _callees(directory, offset=0.0):
    """callees.py (_MODULE, its `scale` adding `offset`) in `directory`, and
    the environment of a process importing it with its own Numba cache."""
    directory.mkdir(exist_ok=True)
    (directory / "callees.py").write_text(_MODULE.replace("OFFSET = 0.0", f"OFFSET = {offset}"))
    return {"NUMBA_CACHE_DIR": str(directory / "numba"),
            "PYTHONPATH": os.pathsep.join([str(directory)] + sys.path)}


def _scale_entries(env):
    return [os.path.join(root, f) for root, _, files in os.walk(env["NUMBA_CACHE_DIR"])
            for f in files if f.startswith("callees.scale-") and f.endswith((".nbi", ".nbc"))]


def test_a_c_function_loaded_from_disk_names_its_callee_first(tmp_path):
    """Numba's cfunc compile leaves the reload hooks out of what it saves;
    load_without_refresh's cache puts them back (without: LLVM aborts the
    second process, the callee's symbol undefined)."""
    env = _callees(tmp_path)
    assert _in_new_process(_C_SCRIPT, env) == "27.0 0"
    assert _in_new_process(_C_SCRIPT, env) == "27.0 1"     # square loaded from disk first


def test_a_caller_does_not_link_its_callee_and_loads_it_from_disk_first(tmp_path):
    env = _callees(tmp_path)
    right = "[0.0, 1.5, 3.0, 4.5]"
    # first process: both compiled, the callee's code not copied into the caller's
    assert _in_new_process(_SCRIPT, env) == f"{right} False 0 1 0 1"
    # second: the caller from disk, which loads the callee from disk before its own code
    assert _in_new_process(_SCRIPT, env) == f"{right} False 1 0 1 0"
    # the callee's entry lost: loading the caller compiles it again (a new symbol)
    lost = _scale_entries(env)
    assert len(lost) == 2       # its index and its data
    for path in lost:
        os.remove(path)
    assert _in_new_process(_SCRIPT, env) == f"{right} False 1 0 0 1"


# its data, or its index: Numba's save read the damaged index again, and
# raised, in every process, until the index was deleted by hand
@pytest.mark.parametrize("damaged", [".nbc", ".nbi"])
def test_a_damaged_cache_entry_is_compiled_again(tmp_path, damaged):
    env = _callees(tmp_path)
    right = "[0.0, 1.5, 3.0, 4.5]"
    _in_new_process(_SCRIPT, env)
    for path in _scale_entries(env):
        if path.endswith(damaged):
            with open(path, "r+b") as f:
                f.truncate(f.seek(0, os.SEEK_END) // 2)
    assert _in_new_process(_SCRIPT, env) == f"{right} False 1 0 0 1"     # compiled, saved over it
    assert _in_new_process(_SCRIPT, env) == f"{right} False 1 0 1 0"


_TWO_FILES_SCRIPT = """
import importlib.util, sys, numpy as np
def load(path):         # as a user loading exported steps one by one under one name
    spec = importlib.util.spec_from_file_location("callees", path)
    module = sys.modules["callees"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
a, b = load({a!r}), load({b!r})
print(b.caller(np.arange(4.0)).tolist(), a.caller(np.arange(4.0)).tolist())
"""


def test_callers_of_two_files_loaded_under_one_module_name_find_their_own_callees(tmp_path):
    envs = [_callees(tmp_path / name, offset) for name, offset in (("a", 1.0), ("b", 2.0))]
    for env in envs:
        _in_new_process(_SCRIPT, env)
    script = _TWO_FILES_SCRIPT.format(a=str(tmp_path / "a" / "callees.py"),
                                      b=str(tmp_path / "b" / "callees.py"))
    both = {"NUMBA_CACHE_DIR": envs[0]["NUMBA_CACHE_DIR"]}
    for _ in range(2):      # the second process loads both callers from disk
        assert _in_new_process(script, both) == "[3.0, 4.5, 6.0, 7.5] [1.5, 3.0, 4.5, 6.0]"


_STEP_SCRIPT = """
import re, sys, numpy as np, graphc as gc
sys.path.insert(0, {tests!r})
from test_repeats import _rnn, rnn_loss
params, xs, ys = _rnn()
step = gc.compile_step(rnn_loss, gc.optim.SGD(0.1))
loss = step(params, xs, ys)
entry = next(iter(step._entries.values()))
source = open(sys.modules[entry.driver.py_func.__module__].__file__).read()
library = next(iter(entry.driver.overloads.values())).library
callees = re.findall(r"^def ((?:k[0-9]+_|run_part)[a-z0-9_]*)[(]", source, re.M)
defined = [f.name for f in library._final_module.functions if not f.is_declaration]
linked = [c for c in callees if any(f"{{len(c)}}{{c}}B" in name for name in defined)]
print(repr(loss), repr(float(params["Wh"].sum())), "run_part0" in callees,
      any(c.startswith("k") for c in callees), bool(linked),
      sum(entry.driver.stats.cache_hits.values()))
"""


def test_a_step_with_parts_and_kernels_runs_the_same_from_the_disk_cache(tmp_path):
    """An unrolled RNN, its loop's parts and kernels called by symbol: a second
    process loads it from disk and computes the same loss and update, bit for
    bit, equal to the NumPy reference interpreter's."""
    script = _STEP_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    env = {"GRAPHC_CACHE_DIR": str(tmp_path / "graphc")}
    first, second = (_in_new_process(script, env).split() for _ in range(2))
    assert first[2:] == ["True", "True", "False", "0"]        # parts, kernels, none linked
    assert second[2:] == ["True", "True", "False", "1"]       # loaded from disk (its IR is not)
    assert first[:2] == second[:2]
    from test_repeats import _rnn, rnn_loss
    params, xs, ys = _rnn()
    loss, grads = gc.jit(gc.value_and_grad(rnn_loss)).interpret(params, xs, ys)
    assert float(first[0]) == pytest.approx(float(loss), rel=1e-12)
    assert float(first[1]) == pytest.approx(float(np.sum(params["Wh"] - 0.1 * grads["Wh"])),
                                            rel=1e-12)


_EXPORTED_SCRIPT = """
import sys
sys.modules["graphc"] = None          # an exported step runs without graphc
sys.path.insert(0, {directory!r})
import numpy as np, exported_rnn_step
data = np.load({data!r})
params = {{k: data[k].copy() for k in ("Wx", "Wh", "b", "Wy")}}
print(repr(exported_rnn_step.step(params, data["xs"], data["ys"])), repr(float(params["Wh"].sum())),
      sum(exported_rnn_step.run_0.stats.cache_hits.values()))
"""


def test_an_exported_step_loads_its_parts_and_kernels_from_the_disk_cache(tmp_path):
    """The exported module carries its own copy of dispatch (it cannot import
    graphc): a second process loads its `run` from Numba's cache, callees first."""
    from test_repeats import _rnn, rnn_loss
    params, xs, ys = _rnn()
    step = gc.compile_step(rnn_loss, gc.optim.SGD(0.1))
    step(params, xs, ys)
    gc.export(step, tmp_path / "exported_rnn_step.py")
    np.savez(tmp_path / "data.npz", xs=xs, ys=ys, **params)
    assert "@dispatch.called_by_symbol" in (tmp_path / "exported_rnn_step.py").read_text()
    expected = [repr(step(params, xs, ys)), repr(float(params["Wh"].sum()))]
    script = _EXPORTED_SCRIPT.format(directory=str(tmp_path), data=str(tmp_path / "data.npz"))
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    assert _in_new_process(script, env).split() == expected + ["0"]
    assert _in_new_process(script, env).split() == expected + ["1"]
