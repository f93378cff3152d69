"""graphc.kernels.vmath: ulp error against higher-precision references, exact
special values, dtype preservation and vectorization.

float32 functions are checked against NumPy/SciPy in float64 (error measured
in float32 ulps of the exact value), float64 functions against np.longdouble
(x87 80-bit; erf via a positive-term long-double series).  Run this file as a
script to print the max ulp per function and dtype.
"""
import itertools
import math

import numpy as np
import pytest
import scipy.special
from numba import njit

from graphc.kernels import vmath

LD = np.longdouble
NAMES = ["exp", "log", "log1p", "expm1", "tanh", "sigmoid", "softplus", "erf"]

# Documented bounds (tests fail above these).
BOUND = {
    np.float32: dict(exp=2, log=2, log1p=2, expm1=2, tanh=4, sigmoid=4, softplus=4, erf=4),
    np.float64: dict(exp=2, log=2, log1p=2, expm1=2, tanh=4, sigmoid=4, softplus=4, erf=4),
}


# ---------------------------------------------------------------------------
# References

def _erf_longdouble(x):
    """erf(x) = 2x/sqrt(pi) e^(-x^2) sum_n (2x^2)^n / (1*3*...*(2n+1)): no cancellation."""
    x = np.asarray(x, LD)
    a = np.minimum(np.abs(x), LD(6.5))       # erf(6.5) rounds to 1 in float64
    total = np.ones_like(a)
    idx = np.flatnonzero(a > LD(1e-12))       # below: the sum is 1 to long-double precision
    t2, term, tot = 2 * a[idx] * a[idx], np.ones(idx.size, LD), np.ones(idx.size, LD)
    for n in range(1, 1000):
        if not idx.size:
            break
        term *= t2 / (2 * n + 1)
        tot += term
        done = term <= tot * LD(1e-21)
        total[idx[done]] = tot[done]
        idx, t2, term, tot = idx[~done], t2[~done], term[~done], tot[~done]
    two_over_sqrt_pi = LD(2) / np.sqrt(np.arccos(LD(-1)))
    return np.copysign(two_over_sqrt_pi * a * np.exp(-a * a) * total, x)


def _reference(name, x):
    """The exact function value, in float64 for float32 x, long double for float64 x."""
    with np.errstate(all="ignore"):    # NaN payloads in the bit-pattern sweeps
        x = x.astype(np.float64 if x.dtype == np.float32 else LD)
    if x.dtype == np.float64:
        with np.errstate(all="ignore"):
            return {
                "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1,
                "tanh": np.tanh, "sigmoid": scipy.special.expit,
                "softplus": lambda v: np.logaddexp(0.0, v), "erf": scipy.special.erf,
            }[name](x)
    with np.errstate(all="ignore"):
        if name == "sigmoid":
            e = np.exp(-np.abs(x))
            return np.where(x >= 0, 1 / (1 + e), e / (1 + e))
        if name == "softplus":
            return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))
        if name == "erf":
            return _erf_longdouble(x)
        return getattr(np, name)(x)


def ulp_errors(y, ref, dtype):
    """|y - ref| in units of the dtype ulp at ref; 0 where both agree exactly (inf, nan)."""
    fi = np.finfo(dtype)
    with np.errstate(all="ignore"):
        ref_r = ref.astype(dtype)
        spacing = np.spacing(np.minimum(np.abs(ref_r), fi.max)).astype(ref.dtype)
        err = np.abs(y.astype(ref.dtype) - ref) / spacing
    same = (y == ref_r) | (np.isnan(y) & np.isnan(ref_r))
    err = np.where(same, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


# ---------------------------------------------------------------------------
# Inputs

INTERESTING = {   # where the function is neither constant nor trivially x
    "exp": (-105, 90), "log": (0, 10), "log1p": (-1, 4), "expm1": (-20, 90),
    "tanh": (-10, 10), "sigmoid": (-105, 20), "softplus": (-105, 20), "erf": (-6, 6),
}
INTERESTING64 = dict(INTERESTING, exp=(-746, 710), expm1=(-40, 710), sigmoid=(-746, 40),
                     softplus=(-746, 40), tanh=(-20, 20))


def sweep_f32(name):
    """Every 509th float32 bit pattern (8.4M points, all signs and exponents) + a dense range."""
    bits = np.arange(0, 2**32, 509, dtype=np.uint64).astype(np.uint32)
    lo, hi = INTERESTING[name]
    dense = np.linspace(lo, hi, 1 << 20, dtype=np.float32)
    return np.concatenate([bits.view(np.float32), dense])


def sweep_f64(name, n=1 << 19):
    """Strided float64 bit patterns (odd 64-bit stride, all exponents) + a dense range."""
    stride = np.uint64(0x9E3779B97F4A7C15)
    bits = np.arange(n, dtype=np.uint64) * stride
    lo, hi = INTERESTING64[name]
    dense = np.random.default_rng(0).uniform(lo, hi, n)
    x = np.concatenate([bits.view(np.float64), dense, np.linspace(-1, 1, n)])
    if name == "erf":                      # the long-double series needs |x| modest
        x = x[~(np.abs(x) > 8)]
    return x


def max_ulp(name, dtype):
    x = sweep_f32(name) if dtype == np.float32 else sweep_f64(name)
    y = vmath.apply(name, x)
    assert y.dtype == dtype
    err = ulp_errors(y, _reference(name, x), dtype)
    i = int(np.argmax(err))
    return float(err[i]), x[i]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_max_ulp_within_bound(name, dtype):
    err, at = max_ulp(name, dtype)
    assert err <= BOUND[dtype][name], f"{name}[{dtype.__name__}]: {err:.2f} ulp at x={at!r}"


def test_ulp_measure_can_fail():
    x = np.linspace(0.5, 2, 1000, dtype=np.float32)
    y = np.nextafter(np.nextafter(np.nextafter(x, np.inf), np.inf), np.inf)   # off by 3 ulp
    assert ulp_errors(y, x.astype(np.float64), np.float32).max() >= 2.99


# ---------------------------------------------------------------------------
# Special values, checked exactly (including the sign of zero)

INF, NAN = math.inf, math.nan
SPECIAL = {   # (x, exact result) for both dtypes
    "exp": [(0.0, 1.0), (-0.0, 1.0), (INF, INF), (-INF, 0.0), (NAN, NAN), (1000.0, INF),
            (-1000.0, 0.0)],
    "log": [(0.0, -INF), (-0.0, -INF), (-1.0, NAN), (-INF, NAN), (INF, INF), (NAN, NAN),
            (1.0, 0.0)],
    "log1p": [(0.0, 0.0), (-0.0, -0.0), (-1.0, -INF), (-2.0, NAN), (-INF, NAN), (INF, INF),
              (NAN, NAN), (1e-30, 1e-30), (-1e-30, -1e-30)],
    "expm1": [(0.0, 0.0), (-0.0, -0.0), (INF, INF), (-INF, -1.0), (NAN, NAN), (1000.0, INF),
              (-1000.0, -1.0), (1e-30, 1e-30), (-1e-30, -1e-30)],
    "tanh": [(0.0, 0.0), (-0.0, -0.0), (INF, 1.0), (-INF, -1.0), (NAN, NAN), (50.0, 1.0),
             (-50.0, -1.0), (1e-30, 1e-30), (-1e-30, -1e-30)],
    "sigmoid": [(0.0, 0.5), (-0.0, 0.5), (INF, 1.0), (-INF, 0.0), (NAN, NAN), (50.0, 1.0),
                (-1000.0, 0.0)],
    "softplus": [(INF, INF), (-INF, 0.0), (NAN, NAN), (1e30, 1e30), (-1000.0, 0.0)],
    "erf": [(0.0, 0.0), (-0.0, -0.0), (INF, 1.0), (-INF, -1.0), (NAN, NAN), (10.0, 1.0),
            (-10.0, -1.0)],
}
SPECIAL_F32 = {"exp": [(100.0, INF), (-200.0, 0.0)], "expm1": [(100.0, INF)],
               "softplus": [(-200.0, 0.0)]}


def _cases(dtype):
    for table in (SPECIAL, SPECIAL_F32) if dtype == np.float32 else (SPECIAL,):
        for name, rows in table.items():
            for x, want in rows:
                yield name, x, want


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_special_values_exact(dtype):
    bad = []
    for name, x, want in _cases(dtype):
        xs = dtype(x)
        want = dtype(want)
        for got in (vmath.FUNCTIONS[name](np.array([xs]))[0], vmath.FUNCTIONS[name](xs)):
            got = dtype(got)
            same = (np.isnan(got) and np.isnan(want)) or (
                got == want and np.signbit(got) == np.signbit(want))
            if not same:
                bad.append(f"{name}({x!r}) = {got!r}, want {want!r}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_subnormals(dtype):
    """Subnormal inputs and outputs: no flush to zero, at most 1 ulp."""
    fi = np.finfo(dtype)
    # (1.25 * the smallest normal: float32 log's 4 * 2^-k would overflow there unscaled)
    tiny = np.array([fi.smallest_subnormal, 3 * fi.smallest_subnormal, fi.smallest_normal / 3,
                     fi.smallest_normal, 1.25 * fi.smallest_normal], dtype)
    for name in ("log1p", "expm1", "tanh", "erf", "log"):
        for x in (tiny, -tiny) if name != "log" else (tiny,):
            err = ulp_errors(vmath.apply(name, x), _reference(name, x), dtype)
            assert err.max() <= 1, (name, x, err)
    # results that are subnormal: exp, sigmoid and softplus far left
    x = (np.linspace(-103.5, -87.5, 4001) if dtype == np.float32
         else np.linspace(-744.5, -708.5, 4001)).astype(dtype)
    for name in ("exp", "sigmoid", "softplus"):
        y = vmath.apply(name, x)
        assert (y > 0).all() and (y < fi.smallest_normal * 2).any()
        assert ulp_errors(y, _reference(name, x), dtype).max() <= 1, name


# ---------------------------------------------------------------------------
# Typing and API

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_dtype_preserved_in_jitted_code(dtype):
    from numba import njit

    @njit
    def call_all(x):
        return (vmath.exp(x), vmath.log(x), vmath.log1p(x), vmath.expm1(x), vmath.tanh(x),
                vmath.sigmoid(x), vmath.softplus(x), vmath.erf(x))

    call_all(dtype(0.5))
    ret = call_all.nopython_signatures[0].return_type
    assert all(str(t) == np.dtype(dtype).name for t in ret), ret


def test_array_and_int_inputs():
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)[:, ::2]   # non-contiguous 2-D
    y = vmath.exp(x)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, np.exp(x), rtol=3e-7)
    assert vmath.apply("log", np.arange(1, 4)).dtype == np.float64
    assert vmath.exp(1) == pytest.approx(math.e, rel=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_loop_vectorizes_and_float32_stays_float32(name):
    """In a loop compiled with every fast-math flag a caller might use (graphc's
    generated code uses none), each function must become SIMD code
    (<N x float> in the LLVM IR) with no float64 arithmetic for float32 data, and
    keep its own IEEE semantics (no fast-math flags on its instructions)."""
    import re
    from numba import njit

    f = vmath.FUNCTIONS[name]

    @njit(fastmath={"nsz", "arcp", "contract", "afn", "reassoc"})
    def loop(x, out):
        for i in range(x.size):
            out[i] = f(x[i])

    x = np.zeros(16, np.float32)
    loop(x, np.empty_like(x))
    ir_text = loop.inspect_llvm(loop.signatures[0])
    widths = {int(w) for w in re.findall(r"<(\d+) x float>", ir_text)}
    assert max(widths, default=1) >= 4, widths
    libm = r"@(llvm\.(exp|log|pow)[^(]*|(exp|log|log1p|expm1|tanh|erf)f?)\("
    assert not re.search(libm, ir_text), "calls libm per element"
    arith = re.findall(r"= (fadd|fsub|fmul|fdiv|fpext)\b([^\n]*)", ir_text)
    assert arith and not [a for a in arith if "double" in a[1]]
    assert not [a for a in arith if re.match(r" (fast|reassoc|nnan|ninf|nsz|arcp|contract|afn)", a[1])]


def _tool(name):
    """tools/<name>.py as a module (the fitting scripts import tools/minimax.py)."""
    import importlib.util
    import pathlib
    import sys
    tools = pathlib.Path(__file__).parents[1] / "tools"
    spec = importlib.util.spec_from_file_location(name, tools / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(tools))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(tools))
    return module


def test_float32_tanh_rational_is_as_accurate_as_fitted():
    """vmath's float32 tanh rational D/E approximates g(z) = (tanh(u)/u - 1)/z
    to under half a float32 ulp (tools/fit_tanh.py: 3.0e-8), so the ulp bound
    above is the evaluation's rounding. `python tools/fit_tanh.py --check`
    re-derives the coefficients themselves (9-13 s, so not here)."""
    fit_tanh = _tool("fit_tanh")
    consts = vmath._C[np.float32]
    d, e = [float(v) for v in consts.tanh_d], [float(v) for v in consts.tanh_e]
    assert fit_tanh.relative_error(d, e) < 3.1e-8
    assert fit_tanh.relative_error(d[:-1] + [d[-1] * (1 + 2.0 ** -20)], e) > 3.1e-8


@pytest.mark.parametrize("tool, constant, bound", [
    ("fit_log1p", "log1p_q", 1.05e-9),  # f + f^2 Q(f) against log1p(f), f in [-1/4, 1/2]
    ("fit_exp", "exp_q", 3.2e-9),       # 1 + r + r^2 Q(r) against exp(r), |r| <= ln2/2
])
def test_float32_polynomials_are_as_accurate_as_fitted(tool, constant, bound):
    """Likewise float32 log1p's and exp's polynomials, to their fits' relative
    errors (`python tools/<tool>.py --check` re-derives them in 5-10 s)."""
    fit = _tool(tool)
    q = [float(v) for v in getattr(vmath._C[np.float32], constant)]
    assert fit.relative_error(q) < bound
    assert fit.relative_error(q[:-1] + [q[-1] * (1 + 2.0 ** -20)]) > bound


if __name__ == "__main__":
    for dt in (np.float32, np.float64):
        for n in NAMES:
            e, at = max_ulp(n, dt)
            print(f"{n:9s} {dt.__name__:8s} max {e:6.3f} ulp  at x={at!r}")


def test_codegen_knows_which_kernel_functions_vectorize():
    from graphc import codegen
    from graphc.ops import OPS
    assert set(codegen.VECTOR_FUNCTIONS["vmath"]) == set(vmath.FUNCTIONS)
    assert not codegen.VECTOR_MATH.search("vmath.floor_divide(t1, t2)")
    # every op calling trig calls a vector function: sin and cos
    trig_ops = {name for name, op in OPS.items() if "trig." in (op.expr or "")}
    assert trig_ops == {"sin", "cos"}
    assert all(codegen.VECTOR_MATH.search(OPS[name].expr) for name in trig_ops)
    assert codegen.TRIG_CALL.search("trig.cos(t5)") and not codegen.TRIG_CALL.search("vmath.exp(t5)")


@njit(error_model="numpy")
def _divmod_loop(a, b, quotient, remainder):
    for i in range(a.size):
        quotient[i] = vmath.floor_divide(a[i], b[i])
        remainder[i] = vmath.remainder(a[i], b[i])


def _pairs(values, dtype):
    a, b = np.array(list(itertools.product(values, values))).T
    with np.errstate(invalid="ignore", over="ignore"):
        return a.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                                   np.uint8, np.uint64])
def test_floor_divide_and_remainder_are_numpys(dtype):
    """Bit for bit, signed zeros, infinities and nan included; integers // 0
    and % 0 give 0, and the lowest int // -1 wraps (Numba's own trapped)."""
    if np.dtype(dtype).kind == "f":
        values = [0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 0.7, -0.7, 3.0, -3.0, 7.0, 1e300, -1e300,
                  np.inf, -np.inf, np.nan, 5e-324, 1e-310, 0.1, 1e20]
    else:
        info = np.iinfo(dtype)
        values = [0, 1, 3, 7, info.max, info.max - 1] + (
            [-1, -3, -7, info.min, info.min + 1] if info.min < 0 else [])
    a, b = _pairs(values, dtype)
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":     # and ordinary values of every magnitude
        scale = 10.0 ** rng.integers(-3, 4, (2, 4000))
        a, b = (np.concatenate([v, (rng.normal(size=4000) * s).astype(dtype)])
                for v, s in ((a, scale[0]), (b, scale[1])))
    quotient, remainder = np.empty_like(a), np.empty_like(a)
    _divmod_loop(a, b, quotient, remainder)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        expected = np.floor_divide(a, b), np.remainder(a, b)
    for got, want in zip((quotient, remainder), expected):
        np.testing.assert_array_equal(got, want)
        if np.dtype(dtype).kind == "f":
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
