"""gc.export: a standalone module that continues an Adam or SGD run exactly."""
import ast
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc


def loss(p, x, y, lam):
    return gc.nn.cross_entropy(np.tanh(x @ p["W"] + p["b"]) @ p["V"], y) + lam * np.sum(p["b"] ** 2)


def _setup(dtype=np.float64):
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(5, 8)), "b": np.zeros(8), "V": rng.normal(size=(8, 3))}
    x = rng.normal(size=(16, 5))
    y = rng.integers(0, 3, size=16)
    return {k: v.astype(dtype) for k, v in params.items()}, x.astype(dtype), y


def test_export_before_any_call_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="never been called"):
        gc.export(gc.compile_step(loss, gc.optim.Adam()), tmp_path / "m.py")
    with pytest.raises(TypeError, match="export takes a step made by gc.compile_step, got "
                                        "Compiled"):
        gc.export(gc.jit(lambda a: a * 2), tmp_path / "m.py")


# SGD updates W inside the BLAS call; float32 sums b's gradient with kernels.sums.
# The weight of b's penalty is a 0-d array, or a Python float: a scalar argument
# (np.ascontiguousarray made it 1-d, which no exported signature matched)
@pytest.mark.parametrize("optimizer, dtype, lam, lam_source", [
    ("Adam", np.float64, np.array(1e-3), "np.array(1e-3)"), ("SGD", np.float32, 1e-3, "1e-3")],
    ids=["Adam-float64-0d", "SGD-float32-float"])
def test_exported_step_continues_exactly_without_graphc(tmp_path, optimizer, dtype, lam,
                                                        lam_source):
    params, x, y = _setup(dtype)
    step = gc.compile_step(loss, getattr(gc.optim, optimizer)(lr=0.05))
    for _ in range(3):
        step(params, x, y, lam)
    path = tmp_path / "exported_step.py"
    gc.export(step, path)
    np.savez(tmp_path / "start.npz", x=x, y=y, **params)

    # continue in graphc
    expected_losses = [step(params, x, y, lam) for _ in range(4)]

    script = f"""
import sys
sys.modules["graphc"] = None          # graphc is not importable in this process
sys.path.insert(0, {str(tmp_path)!r})
import numpy as np
import exported_step as m
d = np.load({str(tmp_path / 'start.npz')!r})
params = {{k: d[k].copy() for k in ("W", "b", "V")}}
assert m.state["count"] == 3
losses = [m.step(params, d["x"], d["y"], {lam_source}) for _ in range(4)]
np.savez({str(tmp_path / 'out.npz')!r}, losses=losses, count=m.state["count"], **params)
try:                                    # a batch size never exported: named, nothing run
    m.step(params, d["x"][:3], d["y"][:3], {lam_source})
except TypeError as e:
    print(e)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    name = np.dtype(dtype).name
    assert result.stdout.strip() == (
        f"no exported signature matches the batch ({name}[3, 5], int64[3], float64[]); "
        f"exported batches: ({name}[16, 5], int64[16], float64[])")
    out = np.load(tmp_path / "out.npz")
    np.testing.assert_array_equal(out["losses"], expected_losses)
    assert int(out["count"]) == 7
    for k in params:
        np.testing.assert_array_equal(out[k], params[k])
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
    assert ("def fold_rows(" in text) == (dtype == np.float32)     # .sums when it is called
    # the label check's error names the loss's line, as graphc's own does
    assert f"(at {__file__}:{loss.__code__.co_firstlineno + 1})" in text and "(at node" not in text
    # SGD's weight updates accumulate inside the gradient GEMM (beta = 1)
    folded = any("blas.gemm(" in line and " += " in line for line in text.splitlines())
    assert folded == (optimizer == "SGD")
