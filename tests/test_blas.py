"""graphc.kernels.blas.gemm: c = alpha * op(a) @ op(b) + beta * c, against NumPy."""
import ctypes
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from graphc.kernels import blas, blas_library, small_gemm
from graphc.kernels.blas import TRANSPOSED_MAX, _small_pays, _transposing_b_pays, gemm


@pytest.fixture(params=[False, True], ids=["bt-as-is", "bt-copied"])
def copy_transposed_b(request):
    """Both ways of a small a @ b.T, whichever this host's BLAS takes."""
    with blas_library.copying_transposed_b(request.param):
        yield request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("m, k, n", [(7, 5, 3), (40, 5, 20), (40, 5, 16)])
def test_gemm_matches_numpy(dtype, transpose_a, transpose_b, m, k, n, copy_transposed_b):
    """The larger shapes take the path that copies b.T for a @ b.T into the
    scratch, where the BLAS makes that pay (read at run time by the compiled
    rule); the last, whole vectors a row, small_gemm where the BLAS does not.
    Without a scratch BLAS reads b.T as it is."""
    copies = _transposing_b_pays(m, n, k)
    assert copies == (m == 40 and copy_transposed_b)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(k, m) if transpose_a else (m, k)).astype(dtype)
    b = rng.normal(size=(n, k) if transpose_b else (k, n)).astype(dtype)
    expected_c = rng.normal(size=(m, n)).astype(dtype)
    expected = -0.3 * ((a.T if transpose_a else a) @ (b.T if transpose_b else b)) + expected_c
    tol = 1e-5 if dtype == np.float32 else 1e-12      # entries near 0 need atol
    for scratch in (None, np.full(b.size + 3, np.nan, dtype)):
        c = expected_c.copy()
        gemm(a, b, c, transpose_a, transpose_b, -0.3, 1.0, scratch)
        np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)
        assert c.dtype == dtype
        if scratch is not None:     # written only by the copy, and not past b.size
            assert np.isnan(scratch[b.size:]).all()
            assert (not np.isnan(scratch[:b.size]).any()) == (copies and transpose_b and not transpose_a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, False),
                                                      (False, True), (True, True)])
@pytest.mark.parametrize("m, k, n", [(600, 64, 64), (64, 600, 64), (300, 100, 100),
                                     (300, 128, 128)])
def test_products_past_the_small_kernels_in_blocks_match_numpy(dtype, transpose_a, transpose_b,
                                                                m, k, n, copy_transposed_b):
    """Products past OpenBLAS's small kernels run in blocks of rows (of a, or
    of the summed axis for a.T @ b) where those kernels are in use: 240-row
    blocks (600 rows: the last of 120), 96-row ones; blocks of 56 would be
    too few rows. beta scales c once, whichever block comes first."""
    small_kernels = copy_transposed_b
    rng = np.random.default_rng(m + k + n)
    a = rng.normal(size=(k, m) if transpose_a else (m, k)).astype(dtype)
    b = rng.normal(size=(n, k) if transpose_b else (k, n)).astype(dtype)
    c = rng.normal(size=(m, n)).astype(dtype)
    per_row = m * n if transpose_a else n * k
    rows = blas._plan(m, n, k, transpose_a, transpose_b, b.size, np.dtype(dtype).itemsize)[2]
    expected_rows = {4096: 240, 10000: 96}.get(per_row, 0)
    # a @ b.T only once b.T is copied (up to TRANSPOSED_MAX), never both transposed
    blocked = small_kernels and not (transpose_b and (transpose_a or b.size > TRANSPOSED_MAX))
    assert rows == (expected_rows if blocked else 0)
    expected = 0.5 * ((a.T if transpose_a else a) @ (b.T if transpose_b else b)) - 2.0 * c
    gemm(a, b, c, transpose_a, transpose_b, 0.5, -2.0, np.empty(b.size, dtype))
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)


@given(m=st.integers(0, 80), k=st.integers(0, 80), n=st.integers(0, 140),
       transpose_a=st.booleans(), transpose_b=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), with_scratch=st.booleans(),
       copy=st.booleans())
def test_gemm_matches_numpy_on_random_shapes(m, k, n, transpose_a, transpose_b, dtype,
                                             with_scratch, copy):
    """Shapes on both sides of _transposing_b_pays (m and n from 16 up, b up
    to past TRANSPOSED_MAX elements), including empty ones, with and without
    the copy for small a @ b.T; b.T's copy in a scratch buffer sized as
    generated code sizes it (poisoned past it)."""
    with blas_library.copying_transposed_b(copy):
        _check_random_gemm(m, k, n, transpose_a, transpose_b, dtype, with_scratch)


def _check_random_gemm(m, k, n, transpose_a, transpose_b, dtype, with_scratch):
    rng = np.random.default_rng(m * 10_000 + k * 100 + n)
    a = rng.normal(size=(k, m) if transpose_a else (m, k)).astype(dtype)
    b = rng.normal(size=(n, k) if transpose_b else (k, n)).astype(dtype)
    c = rng.normal(size=(m, n)).astype(dtype)
    expected = 0.5 * ((a.T if transpose_a else a) @ (b.T if transpose_b else b)) - 2.0 * c
    if with_scratch:
        size = b.size if b.size <= TRANSPOSED_MAX else 1
        scratch = np.full(size + 5, np.nan, dtype)
        gemm(a, b, c, transpose_a, transpose_b, 0.5, -2.0, scratch)
        assert np.isnan(scratch[size:]).all()
    else:
        gemm(a, b, c, transpose_a, transpose_b, 0.5, -2.0)
    np.testing.assert_allclose(c, expected, rtol=1e-4 if dtype == np.float32 else 1e-11,
                               atol=1e-4 if dtype == np.float32 else 1e-11)



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (-0.01, 1.0), (2.0, -0.5)])
def test_small_gemm_matches_numpy(dtype, transpose_a, alpha, beta):
    """Every path of the register-blocked kernel: blocks of 4 rows and 2
    vectors, rows left over, a last single vector; k of 0 and 1; c never
    read when beta is 0 (NaN there stays out of the result)."""
    lanes = 32 // np.dtype(dtype).itemsize
    rng = np.random.default_rng(1)
    for m, k, n in [(1, 1, lanes), (3, 0, lanes), (4, 7, 2 * lanes), (9, 64, 3 * lanes),
                    (33, 5, 5 * lanes), (32, 64, 64)]:
        a = rng.normal(size=(k, m) if transpose_a else (m, k)).astype(dtype)
        b = rng.normal(size=(k, n)).astype(dtype)
        c = np.full((m, n), np.nan, dtype) if beta == 0 else rng.normal(size=(m, n)).astype(dtype)
        a_ = a.T if transpose_a else a
        expected = alpha * (a_.astype(np.float64) @ b) + (beta * c if beta else 0)
        small_gemm.gemm_in_registers(a_, b, c, alpha, beta)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(c, expected, rtol=tol, atol=tol * (k + 1))


def test_small_gemm_refuses_what_it_cannot_load():
    a, c = np.ones((2, 2), np.float32), np.zeros((2, 8), np.float32)
    with pytest.raises(ValueError, match="whole vectors"):   # not a whole vector a row
        small_gemm.gemm_in_registers(a, np.ones((2, 6), np.float32), np.zeros((2, 6), np.float32), 1.0, 0.0)
    with pytest.raises(ValueError, match="contiguous"):     # b.T: rows strided
        small_gemm.gemm_in_registers(a, np.ones((8, 2), np.float32).T, c, 1.0, 0.0)
    with pytest.raises(ValueError, match="contiguous"):     # every other column of c
        small_gemm.gemm_in_registers(a, np.ones((2, 8), np.float32),
                                     np.zeros((2, 16), np.float32)[:, ::2], 1.0, 0.0)
    with pytest.raises(ValueError, match="fit together"):   # k of 2 against 3
        small_gemm.gemm_in_registers(a, np.ones((3, 8), np.float32), c, 1.0, 0.0)
    empty = np.zeros((2, 0), np.float32)        # no columns: nothing to do, no error
    small_gemm.gemm_in_registers(a, np.ones((2, 0), np.float32), empty, 1.0, 0.0)


@pytest.mark.skipif(not blas._AVX2_FMA, reason="small_gemm is chosen with AVX2 and FMA only")
def test_small_products_take_the_small_kernel_where_the_blas_packs():
    """Up to SMALL_GEMM_MAX multiply-adds over at most SMALL_GEMM_K, with
    whole vectors a row, and only while the BLAS has no small-matrix kernels
    of its own (the flag the b.T copy follows); gemm's results on both
    paths: test_gemm_matches_numpy*."""
    with blas_library.copying_transposed_b(False):
        assert _small_pays(32, 64, 64, 4) and _small_pays(32, 64, 8, 8)
        assert not _small_pays(64, 10, 64, 4)         # columns not whole vectors
        assert not _small_pays(1024, 64, 64, 4)       # past SMALL_GEMM_MAX
        assert not _small_pays(8, 64, 128, 4)         # past SMALL_GEMM_K
    with blas_library.copying_transposed_b(True):
        assert not _small_pays(32, 64, 64, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_a_times_b_transposed_through_the_scratch(dtype):
    """W4's input gradient, dz @ W.T: float32 copies W.T into the scratch
    and runs small_gemm (blas._copy_for_small_pays), float64 calls BLAS;
    nothing past the copy is written."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(32, 64)).astype(dtype), rng.normal(size=(64, 64)).astype(dtype)
    c = rng.normal(size=(32, 64)).astype(dtype)
    expected = -0.01 * (a.astype(np.float64) @ b.T) + c
    scratch = np.full(b.size + 5, np.nan, dtype)
    with blas_library.copying_transposed_b(False):
        gemm(a, b, c, False, True, -0.01, 1.0, scratch)
    np.testing.assert_allclose(c, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    assert np.isnan(scratch[b.size:]).all()
    assert np.isnan(scratch[:b.size]).all() == (dtype == np.float64 or not blas._AVX2_FMA)


def test_gemm_refuses_operands_that_do_not_fit_before_reading_them_by_address():
    """gemm's C function reads a, b, c and the scratch by address with the
    shapes c and a give: anything that does not fit is refused first (a b
    with one column for c's 200,001 had crashed the process)."""
    a, c = np.ones((4, 100)), np.zeros((4, 200001))
    for b, tb in ((np.ones((100, 1)), False), (np.ones((100, 200002)), False),
                  (np.ones((99, 200001)), False), (np.ones((200001, 99)), True)):
        with pytest.raises(ValueError, match="shapes of a, b and c"):
            gemm(a, b, c, False, tb, 1.0, 0.0)
    with pytest.raises(ValueError, match="shapes of a, b and c"):
        gemm(np.ones((100, 5)), np.ones((100, 3)), np.zeros((4, 3)), True, False, 1.0, 0.0)
    with pytest.raises(ValueError, match="one dtype"):
        gemm(np.ones((4, 3), np.float32), np.ones((3, 2)), np.zeros((4, 2)), False, False, 1.0, 0.0)
    b, c = np.ones((64, 64)), np.zeros((32, 64))
    buffer = np.zeros(8192)
    for scratch in (buffer[64:4160][::-1], np.zeros(8192, np.float32)):
        with pytest.raises(ValueError, match="scratch"):
            gemm(np.ones((32, 64)), b, c, False, True, 1.0, 0.0, scratch)
    assert not buffer.any() and not c.any()


def test_gemm_copies_strided_operands_and_handles_empty_sizes():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 8))[:, ::2]           # not contiguous
    b = rng.normal(size=(4, 3))
    c = np.zeros((6, 3))
    gemm(a, b, c, False, False, 1.0, 0.0)
    np.testing.assert_allclose(c, a @ b, rtol=1e-12)
    a, b = rng.normal(size=(40, 6)), rng.normal(size=(20, 12))[:, ::2]     # b.T copied
    c = np.zeros((40, 20))
    gemm(a, b, c, False, True, 1.0, 0.0)
    np.testing.assert_allclose(c, a @ b.T, rtol=1e-12)
    c = np.ones((6, 3))
    gemm(np.zeros((6, 0)), np.zeros((0, 3)), c, False, False, 1.0, 2.0)   # k = 0: c = 2c
    np.testing.assert_array_equal(c, 2.0)
    with pytest.raises(ValueError, match="rows must be contiguous"):
        gemm(a, b, np.zeros((3, 6)).T, False, False, 1.0, 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transpose_a", [False, True])
def test_products_past_the_small_kernels_in_blocks_of_larger_arrays(dtype, transpose_a):
    """The blocks of rows a large product runs in (of a and c, or of a.T and
    b) step through operands that are blocks of larger arrays by their
    leading dimensions."""
    m, k, n = (64, 600, 64) if transpose_a else (600, 64, 64)
    rng = np.random.default_rng(7)
    a_whole = rng.normal(size=(k, m + 3) if transpose_a else (m, k + 3)).astype(dtype)
    b_whole = rng.normal(size=(k, n + 5)).astype(dtype)
    c_whole = rng.normal(size=(m, n + 2)).astype(dtype)
    a, b, c = a_whole[:, 3:], b_whole[:, 5:], c_whole[:, 2:]
    outside = c_whole[:, :2].copy()
    expected = 0.5 * ((a.T if transpose_a else a) @ b) - 2.0 * c
    with blas_library.copying_transposed_b(True):
        assert blas._plan(m, n, k, transpose_a, False, 0, np.dtype(dtype).itemsize)[2] > 0
        gemm(a, b, c, transpose_a, False, 0.5, -2.0)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)
    np.testing.assert_array_equal(c_whole[:, :2], outside)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 40), k=st.integers(0, 40), n=st.integers(0, 40),
       transpose_a=st.booleans(), transpose_b=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), copy=st.booleans(),
       pads=st.tuples(*[st.integers(0, 3)] * 3), seed=st.integers(0, 2 ** 16))
@example(m=32, k=16, n=32, transpose_a=False, transpose_b=True, dtype=np.float32, copy=True,
         pads=(2, 3, 1), seed=0)       # q @ k.T of two heads: b.T copied from its block
@example(m=32, k=16, n=32, transpose_a=True, transpose_b=False, dtype=np.float64, copy=True,
         pads=(2, 3, 0), seed=0)
def test_gemm_reads_and_writes_blocks_of_larger_arrays_in_place(
        m, k, n, transpose_a, transpose_b, dtype, copy, pads, seed):
    """Blocks of rows and columns of larger arrays (an attention head of a
    (tokens, heads x width) array) go to BLAS by their leading dimensions:
    each operand with `pad` more columns in its array (0: the block is the
    whole width), c's around it left as they were. A small a @ b.T copies
    b.T from its block into the scratch first where that pays, as it does
    for a whole array."""
    rng = np.random.default_rng(seed)

    def block(rows, cols, pad):     # rows x cols inside a (rows + 2) x (cols + pad) array
        whole = rng.normal(size=(rows + 2, cols + pad)).astype(dtype)
        return whole, whole[1:rows + 1, pad:]
    _, a = block(*((k, m) if transpose_a else (m, k)), pads[0])
    _, b = block(*((n, k) if transpose_b else (k, n)), pads[1])
    whole_c, c = block(m, n, pads[2])
    outside = whole_c.copy()
    expected = 0.5 * ((a.T if transpose_a else a) @ (b.T if transpose_b else b)) - 2.0 * c
    scratch = np.full(b.size + 5, np.nan, dtype)
    with blas_library.copying_transposed_b(copy):
        gemm(a, b, c, transpose_a, transpose_b, 0.5, -2.0, scratch)
        copied = m > 0 and n > 0 and blas._plan(m, n, k, transpose_a, transpose_b, scratch.size,
                                                np.dtype(dtype).itemsize)[1]
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)
    outside[1:m + 1, pads[2]:] = c
    np.testing.assert_array_equal(whole_c, outside)     # nothing written around the block
    assert np.isnan(scratch[b.size:]).all()
    written = b.size > 0 and not np.isnan(scratch[:b.size]).any()
    assert written == (copied and b.size > 0)


def _run_python(script, **env):
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_gemm_refuses_a_dtype_whose_c_function_is_not_built():
    a, b = np.ones((3, 4)), np.ones((4, 2))
    c = np.zeros((3, 2))
    gemm(a, b, c, False, False, 1.0, 0.0)       # builds float64's C function
    address, blas._table[1] = blas._table[1], 0
    try:
        with pytest.raises(ValueError, match="not built"):
            gemm(a, b, c, False, False, 1.0, 1.0)
    finally:
        blas._table[1] = address
    np.testing.assert_array_equal(c, 4.0)       # untouched by the refused call
    gemm(a, b, c, False, False, 1.0, 1.0)
    np.testing.assert_array_equal(c, 8.0)


def test_a_float32_model_builds_only_the_float32_c_function(tmp_path):
    # in new processes, as a user's: each costs seconds to build on a new install.
    # The first compiles the model (gemm's compile builds it); the second loads
    # the model from disk, which builds nothing unless the module asks for it.
    script = ("import numpy as np, graphc as gc\n"
              "x = np.ones((4, 3), np.float32)\n"
              "y = gc.jit(lambda x, w: np.tanh(x @ w))(x, np.full((3, 2), 0.1, np.float32))\n"
              "from graphc.kernels import blas\n"
              "print(*[bool(address) for address in blas._table], *np.round(y[0], 6))\n")
    for _ in range(2):
        built = _run_python(script, GRAPHC_CACHE_DIR=str(tmp_path))
        assert built == ["True", "False"] + [str(round(float(np.tanh(np.float32(0.3))), 6))] * 2


def test_gemm_calls_the_blas_numpy_uses():
    """NumPy's wheels bundle their own OpenBLAS (another build than SciPy's,
    and faster for small float32 products, see blas_library): graphc must
    find it wherever NumPy says it was built with it."""
    blas_name = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    if "openblas" not in blas_name:
        pytest.skip(f"NumPy is built with {blas_name}: graphc uses SciPy's BLAS")
    assert blas_library.numpy_gemms() is not None
    assert blas.BLAS.startswith("NumPy's BLAS")
    # Numba still loads SciPy's cython_blas at start-up: graphc loads it
    # alone, without the scipy.linalg package (see test_gemm_through_scipy_blas...)
    assert _run_python("""if True:
        import sys, numpy as np, graphc as gc
        x = np.arange(6.0).reshape(2, 3)
        np.testing.assert_allclose(gc.jit(lambda a: a @ a.T)(x), x @ x.T)
        print("scipy.linalg" in sys.modules, "scipy.linalg.cython_blas" in sys.modules)
    """) == ["False", "True"]


def test_gemm_through_scipy_blas_when_asked():
    """GRAPHC_BLAS=scipy: the CBLAS calls go through cfuncs over Numba's own
    GEMM (SciPy's cython_blas, loaded without the scipy.linalg package: 0.15 s
    of a warm start), right for every transpose flag and both dtypes, with
    functions cached by a process that used NumPy's; the triangular solves too;
    a later import of scipy.linalg by the user still works."""
    script = """if True:
        import sys, numpy as np
        from graphc.kernels import blas
        print(blas.BLAS.split()[0])
        rng = np.random.default_rng(0)
        for dtype in (np.float32, np.float64):
            for ta in (False, True):
                for tb in (False, True):
                    for m, k, n in ((7, 5, 3), (40, 5, 20)):
                        a = rng.normal(size=(k, m) if ta else (m, k)).astype(dtype)
                        b = rng.normal(size=(n, k) if tb else (k, n)).astype(dtype)
                        c = rng.normal(size=(m, n)).astype(dtype)
                        expected = -0.3 * ((a.T if ta else a) @ (b.T if tb else b)) + 2 * c
                        blas.gemm(a, b, c, ta, tb, -0.3, 2.0)
                        np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-5)
        print("scipy.linalg" in sys.modules, "scipy.linalg.cython_blas" in sys.modules)
        import scipy.linalg.cython_blas
        assert "sgemm" in scipy.linalg.cython_blas.__pyx_capi__
        from scipy.linalg import cython_blas
        import scipy.linalg.cython_blas as same
        assert same is cython_blas is scipy.linalg.cython_blas
        np.testing.assert_allclose(scipy.linalg.solve(2 * np.eye(2), np.ones(2)), 0.5)
        import graphc as gc     # triangular solves: cfuncs over SciPy's ?trsm, made
        from graphc.kernels import blas_library    # only when a model solves with them
        assert gc.jit(lambda x: x * 2.0)(np.ones(2)).sum() == 4.0
        assert not blas_library._scipy_trsm_cfuncs
        k, b = np.array([[4.0, 1.0], [1.0, 3.0]]), np.array([1.0, 2.0])
        solve = lambda k, b: np.linalg.solve(np.linalg.cholesky(k).T, b) + np.linalg.solve(k, b)
        np.testing.assert_allclose(gc.jit(solve)(k, b), solve(k, b), rtol=1e-12)
        assert len(blas_library._scipy_trsm_cfuncs) == 2
    """
    assert _run_python(script, GRAPHC_BLAS="scipy") == ["SciPy's", "False", "True"]


@pytest.mark.parametrize("library", ["numpy", "scipy"])
def test_trsm_solves_with_either_triangle_and_its_transpose(library):
    """The ?trsm bind() binds (NumPy's CBLAS, or cfuncs over SciPy's Fortran
    one): op(a) x = alpha b for each triangle, transposed or not, both dtypes,
    the other triangle never read (nan there)."""
    found = blas_library.numpy_trsms() if library == "numpy" else blas_library.scipy_trsms()
    if found is None:
        pytest.skip("NumPy's CBLAS ?trsm is not found here")
    rng = np.random.default_rng(0)
    for address, dtype, real in ((found[0], np.float32, ctypes.c_float),
                                 (found[1], np.float64, ctypes.c_double)):
        trsm = blas_library.trsm_ctypes(real)(address)
        for uplo in (blas_library.LOWER, blas_library.UPPER):
            for trans in (blas_library.NO_TRANS, blas_library.TRANS):
                m, n = 6, 4
                triangle = np.tril if uplo == blas_library.LOWER else np.triu
                a = triangle(rng.normal(size=(m, m)) + 4 * np.eye(m))
                a[a == 0] = np.nan           # the triangle not read
                a = a.astype(dtype)
                b = rng.normal(size=(m, n)).astype(dtype)
                x = b.copy()
                trsm(blas_library.ROW_MAJOR, blas_library.LEFT, uplo, trans,
                     blas_library.NON_UNIT, m, n, 2.0, a.ctypes.data, m, x.ctypes.data, n)
                op = np.nan_to_num(a.T if trans == blas_library.TRANS else a)
                np.testing.assert_allclose(op @ x, 2 * b, rtol=1e-4, atol=1e-4)


def test_copies_of_transposed_b_follow_the_blas_kernels():
    """bind() turns the copy on exactly for OpenBLAS cores with small-matrix
    kernels (SkylakeX's direct sgemm); on others it never paid."""
    core = blas_library.openblas_core(blas_library._library_of(blas_library._numpy_extension()))
    if core is None or not blas.BLAS.startswith("NumPy's"):
        pytest.skip("graphc's BLAS here is not NumPy's OpenBLAS")
    assert core in blas.BLAS
    expected = core.lower() in ("skylakex", "cooperlake", "sapphirerapids")
    assert blas_library.copies_transposed_b() == expected


def test_a_second_copy_of_blas_library_shares_the_copy_flag():
    """An exported step embeds its own blas_library and binds the same symbol
    names in the one symbol table of the process: code linked after it must
    still read the flag graphc's copy sets (and the first copy's int, which
    stays alive), not a second int of its own."""
    assert _run_python("""if True:
        import ctypes, importlib.util
        import llvmlite.binding as llvm
        from numba import njit
        from graphc.kernels import blas, blas_library
        spec = importlib.util.spec_from_file_location("embedded_copy", blas_library.__file__)
        other = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(other)
        other.bind()
        address = llvm.address_of_symbol(blas_library.COPY_TRANSPOSED_B)
        print(address == ctypes.addressof(blas_library._copy_transposed_b))

        @njit
        def pays(m, n, k):      # compiled and linked after the second bind
            return blas._transposing_b_pays(m, n, k)
        for copy in (True, False):
            with blas_library.copying_transposed_b(copy):
                print(pays(32, 32, 32), other.copies_transposed_b())
    """) == ["True", "True", "True", "False", "False"]


def test_bind_runs_the_warm_up_product_exactly_for_openblas(monkeypatch):
    """bind() maps OpenBLAS's buffer (fault_in_buffer) through the GEMMs it
    binds, and checks MKL's the same way when it binds those for large
    products; other libraries have no such buffer. Re-bound here with the
    warm-up recorded: the symbols get the same addresses again."""
    import llvmlite.binding as llvm
    monkeypatch.setattr(blas_library, "_bound", None)
    monkeypatch.setattr(blas_library, "_copy_transposed_b", blas_library._copy_transposed_b)
    warmed = []
    monkeypatch.setattr(blas_library, "fault_in_buffer", lambda s, d: warmed.append((s, d)))
    assert blas_library.bind() == blas.BLAS
    bound, large = (tuple(llvm.address_of_symbol(name) for name in names) for names in
                    ((blas_library.SGEMM, blas_library.DGEMM),
                     (blas_library.SGEMM_LARGE, blas_library.DGEMM_LARGE)))
    assert warmed == ([bound] if "OpenBLAS" in blas.BLAS else []) + (
        [large] if "Intel MKL" in blas.BLAS else [])
    assert (large != bound) == ("Intel MKL" in blas.BLAS)


def test_a_blas_that_fails_the_check_is_never_bound(monkeypatch):
    """The check runs before the symbols are bound, and bind() stays unbound
    after a failure: called again (a notebook cell run twice) it checks again."""
    import llvmlite.binding as llvm
    symbols = (blas_library.SGEMM, blas_library.DGEMM)
    before = [llvm.address_of_symbol(name) for name in symbols]
    (_, wrong32), (_, wrong64) = made = _cblas_gemm_that_writes(7.0)
    monkeypatch.setattr(blas_library, "_bound", None)
    monkeypatch.setattr(blas_library, "_copy_transposed_b", blas_library._copy_transposed_b)
    monkeypatch.setattr(blas_library, "choice", lambda: "numpy")
    monkeypatch.setattr(blas_library, "numpy_gemms", lambda: (wrong32, wrong64, "wrong_gemm"))
    monkeypatch.setattr(blas_library, "openblas_core", lambda library: "Haswell")
    for _ in range(2):
        with pytest.raises(RuntimeError, match="float32 GEMM .* gave wrong values"):
            blas_library.bind()
    assert blas_library._bound is None
    assert [llvm.address_of_symbol(name) for name in symbols] == before
    del made


def test_an_mkl_that_fails_the_check_is_a_warning_and_numpys_blas(monkeypatch):
    """GRAPHC_BLAS=mkl with an MKL whose check product is wrong: a warning
    naming it, and the large products' symbols bound to NumPy's BLAS."""
    import llvmlite.binding as llvm
    from graphc.kernels import mkl_library
    if blas_library.numpy_gemms() is None:
        pytest.skip("NumPy's CBLAS GEMMs are not found here")
    names = (blas_library.SGEMM, blas_library.DGEMM, blas_library.SGEMM_LARGE,
             blas_library.DGEMM_LARGE)
    before = [llvm.address_of_symbol(name) for name in names]
    (_, wrong32), (_, wrong64) = made = _cblas_gemm_that_writes(7.0)
    monkeypatch.setattr(blas_library, "_bound", None)
    monkeypatch.setattr(blas_library, "_copy_transposed_b", blas_library._copy_transposed_b)
    monkeypatch.setattr(blas_library, "choice", lambda: "mkl")
    monkeypatch.setattr(mkl_library, "gemms", lambda: (wrong32, wrong64, lambda: "MKL stand-in"))
    try:
        with pytest.warns(RuntimeWarning, match=r"GRAPHC_BLAS=mkl: graphc: the float32 GEMM .* "
                                                r"gave wrong values.*; graphc's GEMMs use NumPy's"):
            assert "MKL" not in blas_library.bind()
        small_s, small_d, large_s, large_d = (llvm.address_of_symbol(name) for name in names)
        assert (large_s, large_d) == (small_s, small_d) != (wrong32, wrong64)
    finally:
        for name, address in zip(names, before):     # as this process had them
            llvm.add_symbol(name, address)
    del made


def _cblas_gemm_that_writes(value):
    """C functions with CBLAS's GEMM signature (Python callbacks) that fill c
    with `value`, float32's and float64's: a library bound at the wrong
    address, as far as bind() can tell. Returned with their addresses."""
    import ctypes
    made = []
    for real, dtype in ((ctypes.c_float, np.float32), (ctypes.c_double, np.float64)):
        proto = blas_library.cblas_ctypes(real)

        def wrong(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, dtype=dtype):
            buffer = (ctypes.c_char * (m * ldc * np.dtype(dtype).itemsize)).from_address(c)
            np.frombuffer(buffer, dtype)[:] = value
        function = proto(wrong)
        made.append((function, ctypes.cast(function, ctypes.c_void_p).value))
    return made


def test_the_warm_up_product_checks_the_gemms_it_runs():
    s, d = (blas_library.numpy_gemms() or blas_library.scipy_gemms())[:2]
    blas_library.fault_in_buffer(s, d)      # the real ones: right answers, no error
    (_, wrong32), (_, wrong64) = made = _cblas_gemm_that_writes(7.0)
    with pytest.raises(RuntimeError, match=r"float32 GEMM .* gave wrong values .* 32x1024 @ "
                                           r"1024x1024 test product; GRAPHC_BLAS chooses"):
        blas_library.fault_in_buffer(wrong32, d)
    with pytest.raises(RuntimeError, match=r"float64 GEMM .* gave wrong values"):
        blas_library.fault_in_buffer(s, wrong64)
    del made        # the callbacks live until here


def test_an_unknown_blas_choice_is_named(monkeypatch):
    monkeypatch.setenv("GRAPHC_BLAS", "accelerate")
    with pytest.raises(ValueError,
                       match=r"GRAPHC_BLAS='accelerate': expected one of numpy, scipy, mkl"):
        blas_library.choice()


# In a new process: MKL's GEMMs replaced by a stand-in (NumPy's own, which
# records each call's dtype and size), bound as bind() binds MKL's; then
# products either side of LARGE_GEMM_MIN through blas.gemm
_LARGE_PRODUCTS_SCRIPT = """if True:
    import ctypes, numpy as np
    from graphc.kernels import blas_library, mkl_library
    calls = []
    real = blas_library.numpy_gemms()
    made = []
    for address, c_real, name in ((real[0], ctypes.c_float, "float32"),
                                  (real[1], ctypes.c_double, "float64")):
        proto = blas_library.cblas_ctypes(c_real)
        inner = proto(address)
        def recorded(*args, inner=inner, name=name):
            calls.append(f"{name}:{args[3] * args[4] * args[5]}")
            inner(*args)
        made.append(proto(recorded))
    mkl_library.gemms = lambda: (ctypes.cast(made[0], ctypes.c_void_p).value,
                                 ctypes.cast(made[1], ctypes.c_void_p).value,
                                 lambda: "MKL stand-in")
    from graphc.kernels import blas
    assert blas.BLAS.endswith("multiply-adds MKL stand-in"), blas.BLAS
    calls.clear()                       # bind()'s own check products
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for m, k, n in SHAPES:
            for ta in (False, True):
                a = rng.normal(size=(k, m) if ta else (m, k)).astype(dtype)
                b = rng.normal(size=(k, n)).astype(dtype)
                c = rng.normal(size=(m, n)).astype(dtype)
                expected = -0.3 * ((a.T if ta else a) @ b) + 2 * c
                blas.gemm(a, b, c, ta, False, -0.3, 2.0)
                np.testing.assert_allclose(c, expected, rtol=1e-4, atol=1e-4)
    print(*sorted(set(calls)))
"""


def test_large_products_go_to_mkl_when_asked():
    """GRAPHC_BLAS=mkl: products of LARGE_GEMM_MIN multiply-adds or more, of
    either float type, call MKL's GEMMs (here a stand-in: CI has no MKL), the
    others NumPy's."""
    if blas_library.numpy_gemms() is None:
        pytest.skip("NumPy's CBLAS GEMMs are not found here")
    shapes = ((7, 5, 3), (64, 64, 64), (128, 128, 64), (300, 200, 100))
    large = [m * k * n for m, k, n in shapes if m * k * n >= blas_library.LARGE_GEMM_MIN]
    assert large == [128 * 128 * 64, 300 * 200 * 100]   # the first at the threshold exactly
    script = _LARGE_PRODUCTS_SCRIPT.replace("SHAPES", repr(shapes))
    assert _run_python(script, GRAPHC_BLAS="mkl") == sorted(
        f"{dtype}:{size}" for dtype in ("float32", "float64") for size in large)


def test_without_a_usable_mkl_a_warning_says_why_and_numpys_blas_runs():
    """In a new process with GRAPHC_BLAS=mkl: MKL's GEMMs where it is usable
    here, else a warning with the reason and right products on NumPy's BLAS."""
    script = """if True:
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from graphc.kernels import blas, mkl_library
        import numpy as np, graphc as gc
        x = np.random.default_rng(0).normal(size=(256, 256)).astype(np.float32)
        np.testing.assert_allclose(gc.jit(lambda a: a @ a.T)(x), x @ x.T, rtol=1e-4, atol=1e-3)
        usable = not isinstance(mkl_library.gemms(), str)
        warned = [str(w.message) for w in caught if "GRAPHC_BLAS=mkl" in str(w.message)]
        print(usable, "Intel MKL" in blas.BLAS, len(warned))
        if warned:
            print(warned[0].endswith("graphc's GEMMs use NumPy's BLAS"))
    """
    usable, bound, *warned = _run_python(script, GRAPHC_BLAS="mkl")
    assert (bound, warned) == (("True", ["0"]) if usable == "True" else ("False", ["1", "True"]))


def test_mkl_is_used_only_where_what_it_will_load_is_there(tmp_path, monkeypatch):
    """MKL ends the process when a library it loads is missing: the threading
    layer's, the interface library, MKL's core and default kernels of
    libmkl_rt's version, and the layer's OpenMP runtime are looked for
    first, each missing one named."""
    from graphc.kernels import mkl_library

    def problem(layer):
        return mkl_library._layer_problem(str(tmp_path), ".so.3", layer)

    def add(*names):
        for name in names:
            (tmp_path / name).write_bytes(b"")

    monkeypatch.delenv("MKL_INTERFACE_LAYER", raising=False)
    assert problem("TBB") == "MKL_THREADING_LAYER=TBB (graphc runs MKL with INTEL, GNU, " \
                             "SEQUENTIAL threads)"
    assert problem("SEQUENTIAL").startswith("libmkl_sequential.so.3 is missing from ")
    add("libmkl_sequential.so.3", "libmkl_core.so.2")       # a core of another version
    assert problem("SEQUENTIAL").startswith("libmkl_intel_lp64.so.3 is missing")
    add("libmkl_intel_lp64.so.3")
    assert problem("SEQUENTIAL").startswith("libmkl_core.so.3 is missing")
    add("libmkl_core.so.3")
    assert problem("SEQUENTIAL").startswith("libmkl_def.so.3 is missing")
    add("libmkl_def.so.3")
    assert problem("SEQUENTIAL") is None
    monkeypatch.setenv("MKL_INTERFACE_LAYER", "ILP64")
    assert problem("SEQUENTIAL").startswith("libmkl_intel_ilp64.so.3 is missing")
    for interface in ("GNU,LP64", "gnu,ilp64", "GNU"):      # no cblas_?gemm_64 in MKL's gf_*
        monkeypatch.setenv("MKL_INTERFACE_LAYER", interface)
        assert problem("SEQUENTIAL").startswith("MKL_INTERFACE_LAYER names GNU's interface")
    monkeypatch.delenv("MKL_INTERFACE_LAYER")
    add("libmkl_intel_thread.so.3", "libmkl_gnu_thread.so.3", "libiomp5.so")
    monkeypatch.setattr(mkl_library, "_mapped", lambda name: [])
    monkeypatch.setattr(mkl_library, "_loads", lambda path: path.startswith(str(tmp_path)))
    assert problem("INTEL") is None
    monkeypatch.setattr(mkl_library, "_loads", lambda path: False)
    assert problem("INTEL") == "MKL's INTEL threading layer needs libiomp5 (pip install intel-openmp)"
    assert problem("GNU") == "MKL's GNU threading layer needs libgomp"


def test_the_threading_layer_mkl_will_load(monkeypatch):
    """MKL 2026.2 loads the layer MKL_THREADING_LAYER names when it is
    SEQUENTIAL, GNU or TBB; otherwise GNU OpenMP's where libgomp is already
    loaded, else Intel's."""
    from graphc.kernels import mkl_library
    for gomp in (False, True):
        monkeypatch.setattr(mkl_library, "_mapped",
                            lambda name: ["/usr/lib/libgomp.so.1"] if gomp and name == "libgomp"
                            else [])
        for asked, expected in ((" sequential ", "SEQUENTIAL"), ("gnu", "GNU"), ("TBB", "TBB"),
                                ("INTEL", "GNU" if gomp else "INTEL"),
                                ("", "GNU" if gomp else "INTEL"),
                                ("nonsense", "GNU" if gomp else "INTEL")):
            monkeypatch.setenv("MKL_THREADING_LAYER", asked)
            assert mkl_library.expected_layer() == expected, (gomp, asked)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_the_libraries_mapped_are_found_by_name():
    from graphc.kernels import mkl_library
    found = mkl_library._mapped("_multiarray_umath")
    assert found and all(os.path.basename(p).startswith("_multiarray_umath") for p in found)
    assert mkl_library._mapped("no_such_library_here") == []


@pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("gomp_first", [False, True], ids=["own-layer", "libgomp-loaded-first"])
def test_a_child_forked_after_mkl_products_runs_its_own(gomp_first):
    """With MKL (where installed): training steps with large products in the
    parent, then one in a forked child and in a thread of that child. MKL
    runs on GNU OpenMP where libgomp was loaded before it (Numba's omp
    threads, PyTorch): those threads hang a forked child unless it sets MKL
    to one thread, which graphc does there."""
    from graphc.kernels import mkl_library
    if isinstance(mkl_library.gemms(), str):
        pytest.skip("no usable Intel MKL here")
    script = """if True:
        import ctypes, os, threading, numpy as np
        if GOMP_FIRST:
            ctypes.CDLL("libgomp.so.1")
        import graphc as gc
        from graphc.kernels import blas
        assert "Intel MKL" in blas.BLAS, blas.BLAS
        print("GNU threads, one in a forked child" in blas.BLAS)
        rng = np.random.default_rng(0)
        p = {"W": rng.normal(size=(300, 400)) * 0.05, "V": rng.normal(size=(400, 3)) * 0.05}
        x, y = rng.normal(size=(500, 300)), rng.normal(size=(500, 3))
        step = gc.compile_step(lambda p, x, y: np.mean((np.tanh(x @ p["W"]) @ p["V"] - y) ** 2),
                               gc.optim.SGD(lr=0.1))
        losses = [step(p, x, y) for _ in range(3)]
        pid = os.fork()
        if pid == 0:
            child = [step(p, x, y)]
            worker = threading.Thread(target=lambda: child.append(step(p, x, y)))
            worker.start()
            worker.join()
            os._exit(0 if len(child) == 2 and child[1] < child[0] < losses[-1] else 3)
        print(os.waitpid(pid, 0)[1])
    """.replace("GOMP_FIRST", str(gomp_first))
    assert _run_python(script, GRAPHC_BLAS="mkl", MKL_NUM_THREADS="2") == [str(gomp_first), "0"]


@pytest.mark.skipif(not blas._AVX2_FMA, reason="the edit below is in small_gemm's path (AVX2 and FMA)")
def test_a_kernel_recompiles_when_a_kernel_it_calls_changes(tmp_path):
    """blas.gemm's cached code holds small_gemm's: after an edit of
    small_gemm.py alone, a new process must not load it from the cache
    (Numba checks only the caller's file; graphc.kernels stamps every
    kernel's cache with all their sources)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("graphc", "kernels"):
        shutil.copytree(os.path.join(root, package), tree / package, ignore=ignore)
    script = f"""if True:
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            "compare_trees", {os.path.join(root, "benchmarks", "compare_trees.py")!r})
        compare_trees = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(compare_trees)
        compare_trees.import_tree({str(tree)!r})     # this copy's graphc and kernels
        import numpy as np
        from graphc.kernels import blas, blas_library
        a, b = np.ones((4, 2), np.float32), np.ones((2, 8), np.float32)
        c = np.zeros((4, 8), np.float32)
        with blas_library.copying_transposed_b(False):  # small_gemm's path
            blas.gemm(a, b, c, False, False, 1.0, 0.0)
        print(c[0, 0])
    """
    assert _run_python(script) == ["2.0"]
    small = tree / "kernels" / "small_gemm.py"
    source = small.read_text()
    marker = "    whole = m - m % ROWS\n"
    assert marker in source
    small.write_text(source.replace(marker, "    alpha = 3 * alpha\n" + marker))
    assert _run_python(script) == ["6.0"]


def test_a_trsm_that_solves_wrong_is_refused_when_bound():
    """bind_trsm checks each ?trsm with a 2 x 2 solve, as bind() checks the GEMMs."""
    def wrong(order, side, uplo, trans, diag, m, n, alpha, a, lda, b, ldb):
        ctypes.c_double.from_address(b).value = 7.0
    made = blas_library.trsm_ctypes(ctypes.c_double)(wrong)
    with pytest.raises(RuntimeError, match=r"float64 \?trsm bound at .* gave wrong values"):
        blas_library._check_trsm(ctypes.cast(made, ctypes.c_void_p).value, "float64",
                                 ctypes.c_double)
    found = blas_library.numpy_trsms() or blas_library.scipy_trsms()
    blas_library._check_trsm(found[1], "float64", ctypes.c_double)     # the real one passes
