"""graphc.kernels.alloc, sums and shapes: the helpers generated modules call."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from graphc.kernels import alloc


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
def test_empty_and_full_make_the_shape_and_dtype_asked_for(dtype):
    assert alloc.empty((2, 3), dtype).shape == (2, 3)
    assert alloc.empty((4,), dtype).dtype == dtype
    filled = alloc.full((3, 2), 1, dtype)
    assert filled.dtype == dtype and filled.shape == (3, 2)
    np.testing.assert_array_equal(filled, np.ones((3, 2), dtype))
    zero_d = alloc.full((), 7, dtype)
    assert zero_d.shape == () and zero_d == np.asarray(7, dtype)


@njit
def _reshaped(x, shape):
    return alloc.reshape(x, shape)


@njit
def _reshaped_sum(x, shape):
    return alloc.reshape(x, shape).sum()


def test_reshape_views_contiguous_arrays_and_copies_strided_ones():
    x = np.arange(6.0).reshape(2, 3)
    view = _reshaped(x, (3, 2))
    assert np.shares_memory(view, x)
    np.testing.assert_array_equal(view, x.reshape(3, 2))
    strided = _reshaped(x.T, (6,))
    assert not np.shares_memory(strided, x)
    np.testing.assert_array_equal(strided, x.T.reshape(6))


@pytest.mark.parametrize("shape", [(4, -1), (-1, 3), (2, -1, 2), (12,), (1, 12, 1)])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int8, np.complex128])
def test_reshape_infers_one_unknown_axis_as_numpy_does(shape, transposed, dtype):
    x = np.arange(12, dtype=dtype).reshape(3, 4)
    x = x.T if transposed else x
    np.testing.assert_array_equal(_reshaped(x, shape), x.reshape(shape))
    assert _reshaped(x, shape).flags.c_contiguous


@pytest.mark.parametrize("shape", [(5, 3), (-1, 5), (-1, -1), (-2, -6), (0, -1),
                                   (2**62 + 3, 4), (-1, 2**62, 4)])    # (products that overflow)
@pytest.mark.parametrize("transposed", [False, True])
def test_reshape_refuses_a_shape_of_another_size(shape, transposed):
    x = np.arange(12.0).reshape(3, 4)
    with pytest.raises(ValueError, match="cannot reshape an array into this shape"):
        _reshaped(x.T if transposed else x, shape)


def test_reshape_refuses_two_unknown_axes():
    with pytest.raises(ValueError, match="cannot reshape"):
        _reshaped(np.ones((1, 1)), (-1, -1))       # 1 x 1 would fit: NumPy refuses it too


def test_reshape_takes_a_0d_array_of_any_layout():
    from numba import types
    reshaped = njit((types.Array(types.float64, 0, "A"),))(lambda x: alloc.reshape(x, (1, 1)))
    assert reshaped(np.array(3.0)).tolist() == [[3.0]]


def test_a_reshaped_view_keeps_its_array_alive():
    x = np.arange(12.0).reshape(3, 4)
    count = sys.getrefcount(x)
    view = _reshaped(x, (6, 2))
    assert sys.getrefcount(x) == count + 1          # through the view's owner
    del view
    assert sys.getrefcount(x) == count
    assert _reshaped(np.zeros((0, 3)), (-1, 3)).shape == (0, 3)


def test_reshape_owns_and_frees_what_it_should():
    # the counts of Numba's allocator (NRT): a view keeps the array it views
    # alive (one made inside Numba code, dropped there), and a copy made of a
    # strided array is freed, also when the shape is refused
    script = """
import numpy as np
from numba import njit
from numba.core.runtime import rtsys
from graphc.kernels import alloc

@njit
def fresh_view(n):
    a = np.full(n * 4, 7.0)
    return alloc.reshape(a, (n, 4))

@njit
def total(x):
    return alloc.reshape(x, (6, 2)).sum() + alloc.reshape(x.T, (2, 6)).sum()

@njit
def refused():
    x = np.arange(12.0).reshape(3, 4)
    return alloc.reshape(x.T, (5, -1))

def counts(before):
    after = rtsys.get_allocation_stats()
    return after.alloc - before.alloc, after.free - before.free

x = np.arange(12.0).reshape(3, 4)
fresh_view(1), total(x)
before = rtsys.get_allocation_stats()
view = fresh_view(1000)
held = counts(before)
other = fresh_view(1000)
other[:] = -1.0                     # would land in `view`'s memory were it freed
print(*held, view.base is not None, bool((view == 7.0).all()))
del view, other
before = rtsys.get_allocation_stats()
for _ in range(50):
    total(x)
print(*counts(before))
before = rtsys.get_allocation_stats()
for _ in range(20):
    try:
        refused()
    except ValueError:
        pass
print(*counts(before))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "NUMBA_NRT_STATS": "1"}, timeout=300)
    held, calls, refused = out.stdout.splitlines()
    assert held == "1 0 True True", out.stderr                  # allocated, nothing freed
    assert calls.split() == ["100", "100"]       # the argument's and the copy's, each call
    allocated, freed = map(int, refused.split())
    # x and its copy; the copy freed (Numba leaves x on the raise, as for its own reshape)
    assert allocated == 40 and freed >= 20


def test_generated_code_allocates_through_the_wrappers():
    import graphc as gc
    # the source only: lower(), no Numba compile (a product and a mean over
    # axis 0 compile and run in test_shape_reuse's test_a_new_batch_size_reuses_...)
    source = gc.jit(lambda a, b: np.max(np.tanh(a @ b), axis=0)).lower(
        np.ones((3, 4)), np.ones((4, 2))).source
    run = source.split("def run(", 1)[1]
    assert "alloc.empty(" in run and "alloc.full(" in run and "blas.gemm(" in source
    assert "np.empty(" not in run and "np.full(" not in run and "np.dot(" not in source


def test_a_stack_of_products_copies_each_transposed_matrix_into_one_scratch():
    # a @ b.T over a stack: a GEMM per matrix, each copying its b.T (faster
    # at these sizes where the BLAS has small-matrix kernels, see
    # blas._transposing_b_pays: forced here) into the same workspace slot
    import graphc as gc
    from graphc.kernels import blas_library
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 32, 48)), rng.normal(size=(3, 40, 48))
    f = gc.jit(lambda a, b: a @ np.swapaxes(b, 1, 2))
    source = f.inspect(a, b).source
    assert re.search(r"blas\.gemm\((\w+\[\w+\], ){3}False, True, 1\.0, 0\.0, \w+\)", source)
    with blas_library.copying_transposed_b(True):
        np.testing.assert_allclose(f(a, b), a @ np.swapaxes(b, 1, 2), rtol=1e-12)


def test_helpers_compile_for_the_types_of_constants_not_their_values():
    """Generated code passes helpers literal shapes, slot counts and flags:
    each must compile once per type, not once per value (kernels/dispatch.py)."""
    from numba import njit, types

    from graphc.kernels import blas

    @njit
    def calls(a, c):
        blas.gemm(a, a, c, True, False, 1.0, 0.0)
        t = alloc.reshape(c, (4,)).sum()
        blas.gemm(a, a, c, False, True, 1.0, 0.0)
        return t, alloc.reshape(a, (1, 4)).sum()

    a, c = np.arange(4.0).reshape(2, 2), np.zeros((2, 2))
    assert calls(a, c) == ((a.T @ a).sum(), a.sum())
    np.testing.assert_allclose(c, a @ a.T)
    literal = [sig for sig in blas.gemm.signatures if any(types.unliteral(t) != t for t in sig)]
    assert not literal, f"gemm compiled for constants' values: {literal}"   # (reshape: built in place)


def test_full_if_allocates_only_when_needed():
    """A column sum's float64 totals (past SUM_ROWS rows) come from full_if:
    other calls get 0 elements and no allocation (counted by Numba's NRT)."""
    script = """
import numpy as np
from numba import njit
from numba.core.runtime import rtsys
from graphc.kernels import alloc

@njit
def total(needed, n):
    a = alloc.full_if(needed, n, 0.5, np.float64)
    s = 0.0
    for j in range(a.shape[0]):
        s += a[j]
    return a.shape[0], s

assert total(True, 4) == (4, 2.0) and total(False, 4) == (0, 0.0)
before = rtsys.get_allocation_stats().alloc
total(False, 4)
skipped = rtsys.get_allocation_stats().alloc - before
total(True, 4)
made = rtsys.get_allocation_stats().alloc - before - skipped
print(skipped, made)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "NUMBA_NRT_STATS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "1"]


def test_a_training_step_allocates_only_what_numba_boxes_its_arguments_in():
    """Intermediates and kernels' scratch (the log-softmax's exps and row
    sums, a short-row loop's hoisted exps, W.T copied for g @ W.T) come from
    the workspace, a 0-d total is a local: a step makes as many allocations
    as a function that only takes its arguments."""
    script = """
import numpy as np
from numba import njit
from numba.core.runtime import rtsys
import graphc as gc
from graphc.benchmarks import workloads as W, harness as H

def per_call(fn, *args):
    for _ in range(3):
        fn(*args)
    before = rtsys.get_allocation_stats().alloc
    for _ in range(20):
        fn(*args)
    return (rtsys.get_allocation_stats().alloc - before) / 20

# W1: 64 rows of 10 classes (short rows, hoisted exp); W4: g @ W.T products
# (W.T copied first)
for name in ("W1", "W4"):
    w = W.WORKLOADS[name]
    params, batch = w.make(np.float32)
    step = H.build("graphc", w, params, batch, w.lr)
    step()
    last = step.compiled._last      # SGD: the step count is an input the step never reads
    args = (*last.leaves, gc.api.UNREAD, *batch, *last.entry.consts, last.entry.take_workspace())
    nothing = njit(lambda *a: 0)
    print(per_call(step), per_call(nothing, *args), len(args))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "NUMBA_NRT_STATS": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        step_allocs, boxing_allocs, n_args = map(float, line.split())
        assert boxing_allocs > 0 and step_allocs == boxing_allocs, line


@pytest.mark.parametrize("num_rows", [1, 3, 4, 9])
def test_a_column_sums_totals_fold_every_block_of_rows_and_after_the_last(num_rows):
    """kernels.sums, as a generated column sum calls it: the float32 block
    adds one row at a time, folds into the float64 totals every
    rows_per_fold rows and after the last row, and the totals come back."""
    from graphc.kernels import sums
    rows = np.arange(1, 3 * num_rows + 1, dtype=np.float32).reshape(num_rows, 3)
    block = np.full(3, 7, np.float32)       # stale values: zero() clears them
    totals = np.zeros(3)
    sums.zero(block)
    for i in range(num_rows):
        block += rows[i]
        sums.fold_rows(totals, block, i, num_rows, 4)
        folded = i % 4 == 3 or i == num_rows - 1
        assert (block == 0).all() == folded, i
    sums.copy_totals(block, totals)
    np.testing.assert_array_equal(block, rows.sum(axis=0))
    # without totals (few rows: alloc.full_if gave none) the block keeps its sum
    sums.fold_rows(np.zeros(0), block, num_rows - 1, num_rows, 4)
    sums.copy_totals(block, np.zeros(0))
    np.testing.assert_array_equal(block, rows.sum(axis=0))


def test_shape_differ_compares_shape_entries_header_items_and_constants():
    """kernels.shapes.differ, as run's shape test calls it: true when any
    pair named differs, whichever kind of term it compares."""
    from numba import njit
    from numba.core.errors import TypingError

    from graphc.kernels import shapes

    @njit
    def differs(a, b, header):
        return shapes.differ("0.1=1.0;1.1=#3;2[1]=0.0", (a, b, header))

    a, b, header = np.zeros((2, 4)), np.zeros((4, 3)), np.array([9, 2], np.int64)
    assert not differs(a, b, header)
    assert differs(np.zeros((2, 5)), b, header)             # a.shape[1] != b.shape[0]
    assert differs(a, np.zeros((4, 2)), header)             # b.shape[1] != 3
    assert differs(a, b, np.array([9, 3], np.int64))        # header[1] != a.shape[0]

    @njit
    def not_constant(a, spec):
        return shapes.differ(spec, (a,))

    with pytest.raises(TypingError, match="constant string"):
        not_constant(a, "0.0=#1")


def _huge_pages_eligible(address: int) -> bool | None:
    """THPeligible of the mapping holding `address` (/proc/self/smaps), None if not found."""
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:
                low, high = (int(v, 16) for v in fields[0].split("-"))
                inside = low <= address < high
            elif inside and fields[0] == "THPeligible:":
                return fields[1] == "1"
    return None


def test_large_arrays_ask_for_huge_pages_as_numpys_do():
    """From alloc.HUGE_PAGES_FROM bytes, empty and full madvise their pages as
    huge ones (a fresh 4 KiB page cost about 2 us to fault in on this VM)."""
    mode = "/sys/kernel/mm/transparent_hugepage/enabled"
    if not sys.platform.startswith("linux") or not os.path.exists(mode) or \
            "[madvise]" not in open(mode).read():
        pytest.skip("transparent huge pages here are not given on request (madvise)")
    n = alloc.HUGE_PAGES_FROM // 8 + 4096
    for made in (alloc.empty((n,), np.float64), alloc.full((n,), 1.5, np.float64)):
        assert _huge_pages_eligible(made.ctypes.data + 2 * 4096) is True
        assert made.shape == (n,)
    np.testing.assert_array_equal(made, 1.5)
