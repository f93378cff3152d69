"""Array allocation for generated modules, compiled once per install (for
each rank, dtype and layout they meet) instead of once per process.

Numba builds the implementations of np.empty, np.full and
np.ascontiguousarray afresh in every process, for every rank and dtype it
meets: in a cold W2 compile that was over a second before any of the
model's own code. These wrappers are ordinary functions cached on disk, so
after their first use anywhere they load in milliseconds.
"""
import sys

import llvmlite.ir as llvm_ir
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

from graphc.kernels import dispatch


# Large arrays in huge pages, as NumPy's own allocator asks for them (from
# 4 MiB, madvise(MADV_HUGEPAGE)): Numba's np.empty is malloc's, whose large
# blocks are fresh mappings, each 4 KiB page faulted in on first write. On
# this project's VM that was about 2 us a page: np.pad of a 1024 x 1024
# float64 array, two 8 MiB arrays a call, took 7.7 ms against NumPy's 0.36.
HUGE_PAGES_FROM = 1 << 22
_MADV_HUGEPAGE, _PAGE = 14, 4096       # Linux's
if sys.platform.startswith("linux"):
    _madvise = types.ExternalFunction("madvise", types.int32(types.intp, types.uintp, types.int32))
else:
    @njit(inline="always")
    def _madvise(start, length, advice):
        return 0


@njit(inline="always")
def _in_huge_pages(out):
    if out.nbytes >= HUGE_PAGES_FROM:
        start = out.ctypes.data
        skip = -start % _PAGE
        _madvise(start + skip, out.nbytes - skip, _MADV_HUGEPAGE)   # a refusal changes nothing
    return out


@dispatch.unliteral_calls
@njit(cache=True, nogil=True)
def empty(shape, dtype):
    return _in_huge_pages(np.empty(shape, dtype))


@dispatch.unliteral_calls
@njit(cache=True, nogil=True)
def full(shape, value, dtype):
    out = _in_huge_pages(np.empty(shape, dtype))
    flat = out.reshape(out.size)
    for k in range(flat.size):
        flat[k] = value
    return out


def _element_type(dtype):
    """The Numba element type an intrinsic's `dtype` argument names (np.float32
    passed as a class, or an array's .dtype), or None."""
    if isinstance(dtype, types.NumberClass):
        return dtype.instance_type
    if isinstance(dtype, types.DType):
        return dtype.dtype
    return None


@intrinsic
def _no_elements(typingctx, dtype):
    """A 1-d array of 0 elements of `dtype` that owns nothing: no allocation
    (its data pointer is null, never read). For scratch that stays in Numba
    code; one handed to NumPy should come from np.empty."""
    elem = _element_type(dtype)
    if elem is None:
        return None
    array = types.Array(elem, 1, "C")

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        out = make_array(array)(context, builder)
        populate_array(out, data=llvm_ir.Constant(context.get_data_type(elem).as_pointer(), None),
                       shape=[llvm_ir.Constant(intp, 0)],
                       strides=[llvm_ir.Constant(intp, context.get_abi_sizeof(
                           context.get_data_type(elem)))],
                       itemsize=llvm_ir.Constant(intp, context.get_abi_sizeof(
                           context.get_data_type(elem))), meminfo=None)
        return out._getvalue()

    return array(dtype), codegen


@dispatch.unliteral_calls
@njit(cache=True, nogil=True)
def full_if(needed, n, value, dtype):
    """full((n,), value, dtype) if `needed`, else 0 elements without an
    allocation: scratch that only some calls use (a column sum's float64
    totals, past SUM_ROWS rows) costs the others nothing."""
    if needed:
        return full((n,), value, dtype)
    return _no_elements(dtype)


@intrinsic
def reshape(typingctx, x, shape):
    """`x` in `shape`, one entry of which may be -1 (what the others leave): a
    view of a C-ordered x, else of a contiguous copy; ValueError where the
    sizes differ.

    Built in place, as `carve` is: a function doing
    `np.ascontiguousarray(x).reshape(shape)` took each call's array field by
    field, and Numba's reshape checks through error paths of its own, code
    that a driver reshaping a hundred times made its cold compile slower
    with (README, "How it works")."""
    if not (isinstance(x, types.Array) and isinstance(shape, types.BaseTuple)
            and all(isinstance(d, types.Integer) for d in shape)):
        return None
    viewed = types.Array(x.dtype, len(shape), "C")
    contiguous = x.copy(layout="C")

    def codegen(context, builder, sig, args):
        if x.layout == "C" or x.ndim == 0:      # (a 0-d array is C-ordered whatever its type says)
            return _view(context, builder, x, args[0], sig.args[1], args[1], viewed)
        # (Numba's own ascontiguousarray, built in this process; generated
        # code reshapes C-ordered arrays: workspace views and inputs made C-ordered)
        copy = context.compile_internal(builder, lambda a: np.ascontiguousarray(a),
                                        contiguous(x), [args[0]])
        out = _view(context, builder, contiguous, copy, sig.args[1], args[1], viewed, owned=True)
        context.nrt.decref(builder, contiguous, copy)
        return out

    return viewed(x, shape), codegen


def _product(builder, intp, values, overflowed):
    """(The product of `values`, `overflowed` or'd with whether it overflowed.)"""
    total = llvm_ir.Constant(intp, 1)
    for v in values:
        result = builder.smul_with_overflow(total, v)
        total = builder.extract_value(result, 0)
        overflowed = builder.or_(overflowed, builder.extract_value(result, 1))
    return total, overflowed


def _view(context, builder, array_type, array, shape_type, shape, viewed, owned=False):
    """The view of C-ordered `array` in `shape` (see reshape); an `owned` array
    is released before its ValueError."""
    intp = context.get_value_type(types.intp)
    model = context.data_model_manager[array_type]
    zero, one, minus_one = (llvm_ir.Constant(intp, k) for k in (0, 1, -1))
    nitems = builder.extract_value(array, model.get_field_position("nitems"))
    dims = _dims(context, builder, shape_type, shape)
    unknown = [builder.icmp_signed("==", d, minus_one) for d in dims]
    n_unknown = zero
    for is_unknown in unknown:
        n_unknown = builder.add(n_unknown, builder.zext(is_unknown, intp))
    bad = builder.icmp_signed(">", n_unknown, one)
    known, bad = _product(builder, intp, [builder.select(u, one, d) for d, u in zip(dims, unknown)], bad)
    rest = builder.sdiv(nitems, builder.select(builder.icmp_signed("==", known, zero), one, known))
    dims = [builder.select(is_unknown, rest, d) for d, is_unknown in zip(dims, unknown)]
    for d in dims:
        bad = builder.or_(bad, builder.icmp_signed("<", d, zero))
    total, bad = _product(builder, intp, dims, bad)
    bad = builder.or_(bad, builder.icmp_signed("!=", total, nitems))
    with cgutils.if_unlikely(builder, bad):
        if owned:
            context.nrt.decref(builder, array_type, array)
        context.call_conv.return_user_exc(
            builder, ValueError, ("graphc: cannot reshape an array into this shape: its size "
                                  "differs, or it has a negative or a second -1 entry",))
    kept = {name: builder.extract_value(array, model.get_field_position(name))
            for name in ("meminfo", "parent", "nitems", "itemsize", "data")}
    out = _c_array(context, builder, viewed, dims, kept.pop("itemsize"), kept)
    return impl_ret_borrowed(context, builder, viewed, out)     # shares x's owner


def _dims(context, builder, shape_type, shape) -> list:
    """The entries of the shape tuple `shape` as intp values."""
    return [context.cast(builder, d, t, types.intp)
            for d, t in zip(cgutils.unpack_tuple(builder, shape), shape_type)]


def _c_array(context, builder, array_type, dims, itemsize, fields: dict):
    """The value of C-ordered `array_type` of shape `dims`, with C strides for
    `itemsize` and the other `fields` (data, nitems, ...), built as an SSA
    value (extract_value, insert_value), not through make_array's stack
    slots: LLVM's SROA pass, which turns those back into values, took time
    growing with the square of their number, seconds for a driver that
    carves hundreds of intermediates."""
    intp = context.get_value_type(types.intp)
    strides, stride = [], itemsize
    for d in reversed(dims):            # C order: the last axis is contiguous
        strides.insert(0, stride)
        stride = builder.mul(stride, d)
    fields = {**fields, "itemsize": itemsize, "shape": cgutils.pack_array(builder, dims, intp),
              "strides": cgutils.pack_array(builder, strides, intp)}
    model = context.data_model_manager[array_type]
    out = llvm_ir.Constant(model.get_value_type(), None)
    for name, value in fields.items():
        out = builder.insert_value(out, value, model.get_field_position(name))
    return out


@dispatch.unliteral_calls
@njit(cache=True, nogil=True)
def copy_flat(dst, src):
    """dst[:] = src for 1-d arrays of one size that do not overlap (neither is
    checked: Numba's `dst[:] = src` would, and builds that, with its shape-error
    message, afresh in every process: about 4 s of the first compile that
    writes back a result). The caller, a step writing a result back into a
    parameter, passes arrays made for that shape, and a result never views a
    parameter (train.py refuses parameters that share memory)."""
    for k in range(dst.size):
        dst[k] = src[k]


# -- the workspace ---------------------------------------------------------
# A step's intermediates are carved from one byte array, the workspace,
# which the caller allocates once per signature and passes to every call
# (graphc.codegen plans which intermediates share its bytes). A carved array
# owns nothing: Numba neither allocates nor frees it, nor counts references
# to it (an atomic add per copy of an array variable: about 5% of a W1 step).
# It is valid while the workspace is, which the caller holds for the call.
# The workspace starts with a header of int64s: WORKSPACE_TAG (b"graphcws"),
# the number of slots n, the number of shape entries m, the m shape entries
# the slots' sizes were computed from, each slot's offset, and the end of the
# last slot. Its maker computes the slots' sizes in Python (graphc.workspace).

WORKSPACE_ALIGN = 64        # bytes: each slot starts on a cache line
WORKSPACE_TAG = int.from_bytes(b"graphcws", "little")


def make_workspace(slot_bytes, dims, fill=None):
    """A new workspace (plain Python) for slots of these sizes in bytes, each
    aligned, computed from the shape entries `dims`; `fill`: a byte value
    for the slots (tests poison them with 0xFF)."""
    n, m = len(slot_bytes), len(dims)
    header = 8 * (n + m + 4)
    padded = [-(-int(b) // WORKSPACE_ALIGN) * WORKSPACE_ALIGN for b in slot_bytes]
    ws = np.empty(header + WORKSPACE_ALIGN + sum(padded), np.uint8)
    first = header + (-(ws.ctypes.data + header)) % WORKSPACE_ALIGN
    if fill is not None:
        ws[first:] = fill
    ws[:header].view(np.int64)[:] = [WORKSPACE_TAG, n, m, *dims, *np.cumsum([first] + padded)]
    return ws


@dispatch.unliteral_calls
@njit(cache=True, nogil=True)
def workspace_header(ws, n, m):
    """The m shape entries, then the n slot offsets, of the header of `ws`,
    after checking that make_workspace made it for `n` slots and `m` shape
    entries and that it fits in `ws`. The caller compares the shape entries
    with its own (graphc.workspace): checking them here took a tuple of
    m entries, a new signature, so a cold compile of a model with a new m
    compiled this function again (0.3-0.7 s)."""
    size = 8 * (n + m + 4)
    if ws.size < size:
        raise ValueError("graphc: the workspace passed was not made for this function")
    header = ws[:size].view(np.int64)
    if header[0] != WORKSPACE_TAG or header[1] != n or header[2] != m or header[-1] > ws.size:
        raise ValueError("graphc: the workspace passed was not made for this function")
    return header[3:3 + m + n]


def _element_pointer(context, builder, array_type, array, index, index_type):
    """A pointer to element `index` of 1-D `array`, from its data field read
    as a value (not through make_array's stack copy: see _c_array)."""
    model = context.data_model_manager[array_type]
    data = builder.extract_value(array, model.get_field_position("data"))
    return builder.gep(data, [context.cast(builder, index, index_type, types.intp)])


@intrinsic
def header_item(typingctx, header, k):
    """header[k] (an entry workspace_header returned, k within it), loaded
    through the data pointer: Numba's getitem goes through a stack copy of
    the array, and LLVM's SROA pass takes time growing with the square of
    their number to remove them (a 16-step LSTM reads 320 slots' offsets)."""
    if not (isinstance(header, types.Array) and header.dtype == types.int64 and header.ndim == 1
            and isinstance(k, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return builder.load(_element_pointer(context, builder, sig.args[0], args[0], args[1],
                                             sig.args[1]))

    return types.int64(header, k), codegen


@intrinsic
def carve(typingctx, ws, offset, shape, dtype):
    """A C-ordered array of `shape` and `dtype` over ws[offset:], owning nothing.

    The caller guarantees offset + its bytes <= ws.size and offset aligned
    for `dtype`; it is not checked here (make_workspace laid the slots out
    for the caller's shapes, which the caller checked against the entries
    workspace_header returned).
    """
    if not (isinstance(ws, types.Array) and ws.dtype == types.uint8 and ws.ndim == 1
            and ws.layout == "C" and isinstance(offset, types.Integer)
            and isinstance(shape, types.BaseTuple)
            and all(isinstance(d, types.Integer) for d in shape)):
        return None
    elem = _element_type(dtype)
    if elem is None:
        return None
    carved = types.Array(elem, len(shape), "C")

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        dims = _dims(context, builder, sig.args[2], args[2])
        start = _element_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        nitems = llvm_ir.Constant(intp, 1)
        for d in dims:
            nitems = builder.mul(nitems, d)
        itemsize = llvm_ir.Constant(intp, context.get_abi_sizeof(context.get_data_type(elem)))
        data = builder.bitcast(start, context.get_data_type(elem).as_pointer())
        # no meminfo, no parent: nothing to count
        return _c_array(context, builder, carved, dims, itemsize, {"nitems": nitems, "data": data})

    return carved(ws, offset, shape, dtype), codegen
