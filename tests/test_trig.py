"""graphc.kernels.trig: sin and cos whose vector loops call a vector
function. Accuracy in ulps (float32 against float64 NumPy, float64 against
long double), exact special values, every lane equal to the scalar call,
the vector call itself, and its machine-code cache."""
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


def _sweep(dtype):
    """float32: every 1021st bit pattern (4.2M, every sign and exponent);
    float64: 1M strided bit patterns and the double nearest k pi/2 for every k
    of the fast path, where reduction loses most. Then a dense [-10, 10] and
    the values on both sides of where libm takes over."""
    if dtype == np.float32:
        bits = np.arange(0, 2**32, 1021, dtype=np.uint64).astype(np.uint32).view(np.float32)
        near = np.zeros(0, dtype)
    else:
        bits = (np.arange(1 << 20, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)).view(dtype)
        half_pi = np.arccos(np.longdouble(-1)) / 2
        k = np.arange(1, int(trig._TRIG_TYPES["double"].fast_max / half_pi) + 1)
        near = (k * half_pi).astype(np.float64)
    edge = dtype(trig._TRIG_TYPES["float" if dtype == np.float32 else "double"].fast_max)
    around = np.array([np.nextafter(edge, dtype(0)), edge, np.nextafter(edge, dtype(np.inf))])
    return np.concatenate([bits, near, -near, np.linspace(-10, 10, 1 << 20, dtype=dtype),
                           around, -around]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_within_the_documented_ulp_bound(name, dtype):
    x = _sweep(dtype)
    with np.errstate(invalid="ignore"):
        ref = FUNCTIONS[name][1](x.astype(np.float64 if dtype == np.float32 else np.longdouble))
    err = ulp_errors(_apply(name, x), ref, dtype)
    i = int(np.argmax(err))
    assert err[i] <= trig._MAX_ULP[dtype], f"{name}: {err[i]:.2f} ulp at x={x[i]!r}"
    assert err.max() > 0.5      # the measure sees rounding at all


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_the_polynomials_alone_within_0_9_ulp(dtype):
    """On [-pi/4, pi/4] there is no reduction: what is left is the Taylor
    polynomials and their rounding (0.64-0.88 ulp; a term fewer in any of the
    four gave 0.98-9.8), which the whole range's bound would not notice."""
    x = np.linspace(-np.pi / 4, np.pi / 4, 1 << 20).astype(dtype)
    for name, (_, ref) in FUNCTIONS.items():
        exact = ref(x.astype(np.float64 if dtype == np.float32 else np.longdouble))
        assert ulp_errors(_apply(name, x), exact, dtype).max() <= 0.9, name


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_special_values_exactly(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    row = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, tiny, -tiny, 1e-30, -1e-30], dtype)
    x = np.tile(row, 16)       # long enough for the vector loop, at every offset
    s, c = _apply("sin", x).reshape(16, -1), _apply("cos", x).reshape(16, -1)
    np.testing.assert_array_equal(np.signbit(s[:, :2]), [[False, True]] * 16)
    finite = [0, 1, 5, 6, 7, 8]
    np.testing.assert_array_equal(s[:, finite], np.tile(row[finite], (16, 1)))   # sin x = x
    np.testing.assert_array_equal(c[:, finite], 1)
    assert np.isnan(s[:, 2:5]).all() and np.isnan(c[:, 2:5]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_every_lane_equals_the_scalar_call(dtype):
    """Lanes past the fast path's reach (and inf, nan) go through libm inside
    a vector whose other lanes do not: each position of each vector width
    must get what the scalar function gives."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=203).astype(dtype) * 10
    x[::7] = rng.uniform(2e6, 1e30, size=x[::7].size).astype(dtype)
    x[5], x[6], x[50] = np.inf, np.nan, -0.0
    for name, (f, _) in FUNCTIONS.items():
        got = _apply(name, x)
        scalar = np.array([f(v) for v in x], dtype)
        np.testing.assert_array_equal(got, scalar)
        for start in range(8):          # the same values at every offset in a vector
            np.testing.assert_array_equal(_apply(name, x[start:]), scalar[start:])


def test_the_vector_loop_calls_the_vector_function():
    loop = LOOPS["sin"]
    for dtype in (np.float32, np.float64):
        _apply("sin", np.zeros(64, dtype))
    for signature in loop.signatures:
        base = "graphc_sinf" if str(signature[0].dtype) == "float32" else "graphc_sin"
        assert re.search(rf"call [^\n]*@{base}_{trig._TRIG_TAG}_v\d+\(",
                         loop.inspect_llvm(signature)), f"{signature}: not vectorized"


def test_each_float_type_stays_itself_and_integers_are_numpys_libm():
    @njit
    def both(x):
        return trig.sin(x), trig.cos(x)

    for dtype in (np.float32, np.float64):
        both(dtype(1))
    assert [[str(t) for t in sig.return_type] for sig in both.nopython_signatures] == [
        ["float32"] * 2, ["float64"] * 2]
    for name, (f, ref) in FUNCTIONS.items():
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


def test_floats_go_to_libm_on_an_x86_cpu_without_fma(tmp_path):
    import llvmlite.binding as llvm
    if not llvm.get_process_triple().startswith("x86_64"):
        pytest.skip("x86 only")
    out = _run("import numpy as np; from graphc.kernels import trig; "
               "x = np.float32(0.7); print(trig._TRIG_VECTOR, trig.sin(x) == np.sin(x), "
               "trig.cos(1e6) == np.cos(1e6))",
               NUMBA_CPU_NAME="x86-64", NUMBA_CPU_FEATURES="", NUMBA_CACHE_DIR=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "True"]
