"""graphc.kernels.trig: float32 sin and cos whose vector loops call a vector
function. Accuracy against float64 NumPy in float32 ulps, exact special
values, every lane equal to the scalar call, the vector call itself, and
its machine-code cache."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from graphc.kernels import trig
from test_kernel_math import ulp_errors

FUNCTIONS = {"sin": (trig.sin, np.sin), "cos": (trig.cos, np.cos)}


def _loop(f):
    @njit(error_model="numpy")
    def loop(x, out):
        for i in range(x.size):
            out[i] = f(x[i])
    return loop


LOOPS = {name: _loop(f) for name, (f, _) in FUNCTIONS.items()}


def _apply(name, x):
    out = np.empty_like(x)
    LOOPS[name](x, out)
    return out


def _sweep():
    """Every 509th float32 bit pattern (8.4M, every sign and exponent), a dense
    [-10, 10], and the floats on both sides of where libm takes over."""
    bits = np.arange(0, 2**32, 509, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edge = np.float32(trig._FAST_MAX)
    around = np.array([np.nextafter(edge, np.float32(0)), edge, np.nextafter(edge, np.inf)],
                      np.float32)
    return np.concatenate([bits, np.linspace(-10, 10, 1 << 20, dtype=np.float32),
                           around, -around])


@pytest.mark.parametrize("name", FUNCTIONS)
def test_float32_within_the_documented_ulp_bound(name):
    x = _sweep()
    with np.errstate(invalid="ignore"):
        ref = FUNCTIONS[name][1](x.astype(np.float64))
    err = ulp_errors(_apply(name, x), ref, np.float32)
    i = int(np.argmax(err))
    assert err[i] <= trig._MAX_ULP, f"{name}: {err[i]:.2f} ulp at x={x[i]!r}"
    assert err.max() > 0.5      # the measure sees rounding at all


def test_special_values_exactly():
    row = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-30, -1e-30],
                   np.float32)
    x = np.tile(row, 16)       # long enough for the vector loop, at every offset
    s, c = _apply("sin", x).reshape(16, -1), _apply("cos", x).reshape(16, -1)
    np.testing.assert_array_equal(np.signbit(s[:, :2]), [[False, True]] * 16)
    finite = [0, 1, 5, 6, 7, 8]
    np.testing.assert_array_equal(s[:, finite], np.tile(row[finite], (16, 1)))   # sin x = x
    np.testing.assert_array_equal(c[:, finite], 1)
    assert np.isnan(s[:, 2:5]).all() and np.isnan(c[:, 2:5]).all()


def test_every_lane_equals_the_scalar_call():
    """Lanes past trig._FAST_MAX (and inf, nan) go through libm inside a vector
    whose other lanes do not: each position of each vector width must get
    what the scalar function gives."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=203).astype(np.float32) * 10
    x[::7] = rng.uniform(7e4, 1e30, size=x[::7].size).astype(np.float32)
    x[5], x[6], x[50] = np.inf, np.nan, -0.0
    for name, (f, _) in FUNCTIONS.items():
        got = _apply(name, x)
        scalar = np.array([f(v) for v in x], np.float32)
        np.testing.assert_array_equal(got, scalar)
        for start in range(8):          # the same values at every offset in a vector
            np.testing.assert_array_equal(_apply(name, x[start:]), scalar[start:])


def test_the_vector_loop_calls_the_vector_function():
    loop = LOOPS["sin"]
    _apply("sin", np.zeros(64, np.float32))
    ir_text = loop.inspect_llvm(loop.signatures[0])
    name = next(iter(trig._TRIG_FUNCTIONS))
    assert re.search(rf"call [^\n]*@{name}_v\d+\(", ir_text), "not vectorized"


def test_float32_stays_float32_and_other_dtypes_are_numpys_libm():
    @njit
    def both(x):
        return trig.sin(x), trig.cos(x)

    both(np.float32(1))
    assert [str(t) for t in both.nopython_signatures[0].return_type] == ["float32"] * 2
    x = np.linspace(-20, 20, 101)
    for name, (f, ref) in FUNCTIONS.items():
        np.testing.assert_array_equal(_apply(name, x), ref(x))
        assert f(2) == ref(2.0)


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, **env))


def test_a_damaged_cache_file_is_compiled_again(tmp_path):
    """LLVM aborts the process on an object file it cannot read: a cache file
    cut short, overwritten or empty is ignored, and written again (in a
    process of its own, as building the functions again re-registers them)."""
    out = _run("""
import os
from graphc.kernels import trig
path = trig._trig_object_file(trig._trig_text(trig._TRIG_FUNCTIONS))
good, engines = path.read_bytes(), []
for damaged in (good[:3000], os.urandom(4096), b""):
    path.write_bytes(damaged)
    engines.append(trig._trig_compile())
    assert path.read_bytes() == good, len(damaged)
print(float(trig.sin(trig.np.float32(0.7))))
""", NUMBA_CACHE_DIR=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert abs(float(out.stdout) - np.sin(0.7)) < 1e-7


def test_float32_goes_to_libm_on_an_x86_cpu_without_fma(tmp_path):
    import llvmlite.binding as llvm
    if not llvm.get_process_triple().startswith("x86_64"):
        pytest.skip("x86 only")
    out = _run("import numpy as np; from graphc.kernels import trig; "
               "x = np.float32(0.7); print(trig._TRIG_VECTOR, trig.sin(x) == np.sin(x))",
               NUMBA_CPU_NAME="x86-64", NUMBA_CPU_FEATURES="", NUMBA_CACHE_DIR=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
