"""A stable argsort of each row (np.argsort, np.sort, np.median, np.quantile),
compiled once per install for each dtype.

Numba's mergesort written into a model's `run` added 8-10 s to that model's
cold compile; called here, it is compiled once and loaded from the cache
after. The order is NumPy's kind="stable": ties keep their order, -0.0 ties
with 0.0, nan last.

Rows are sorted by keys: each value made an unsigned integer that orders as
the value does (a float's bits with the negatives' inverted and the sign bit
set on the others, both zeros one key, every nan the largest; a signed
integer of up to 32 bits offset), then sorted by a least-significant-digit
radix sort, one byte a pass (a pass whose byte is the same for every key is
skipped), which is stable. Keys of 32 bits (float32, ints up to int32, bool)
carry their index in their low 32 bits (rows of fewer than 2**32 elements,
16 GiB of float32), so one uint64 moves a pass; float64
keys move beside their indices. Rows of at most PACKED_INSERTION_MAX
(PAIRS_INSERTION_MAX for float64) take an insertion sort instead, where the
radix sort's 256 counters a pass cost more than the row. Numba's mergesort,
used before, took about 40 ns an element on rows of 256
(benchmarks/bench_sort.py has the figures); 64-bit integers keep it, as
eight radix passes took longer.
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from graphc.kernels import dispatch

# Rows this short are sorted by insertion: ns an element on one thread,
# insertion / radix, float32 rows of 48 11.8/16.8, 64 13.3/14.3, 96 17/12;
# float64 (eight radix passes) 64 14.4/32, 96 19/27, 128 24/24-28, 192 33/22
PACKED_INSERTION_MAX, PAIRS_INSERTION_MAX = 48, 128
_BYTE = np.uint64(255)


@dispatch.unliteral_calls
@dispatch.called_by_symbol
@njit(cache=True, nogil=True, error_model="numpy")
def argsort_rows(x, out):
    _argsort_rows(x, out)


def _argsort_rows(x, out):
    """out[r] = the stable argsort of x[r], for each row r."""


@overload(_argsort_rows)
def _argsort_rows_of_dtype(x, out):
    dtype = x.dtype
    if dtype == types.float32:
        return _packed_rows(_float32_key, np.uint32)
    if dtype == types.float64:
        return _keyed_rows(_float64_key, np.uint64)
    if isinstance(dtype, types.Boolean) or dtype.bitwidth <= 32:
        signed = not isinstance(dtype, types.Boolean) and dtype.signed
        return _packed_rows(_signed_key if signed else _unsigned_key, dtype)

    def by_mergesort(x, out):       # 64-bit integers: eight radix passes took longer
        for r in range(x.shape[0]):
            out[r] = np.argsort(x[r], kind="mergesort")
    return by_mergesort


# Keys: (value, its bits as read through `bits`) -> an unsigned integer that
# orders as the value does (floats: nan last)
@njit(inline="always")
def _float_key(v, bits, top, ones):
    if v != v:
        return ones
    if v == 0:
        return top
    return ~bits if bits & top else bits | top


@njit(inline="always")
def _float32_key(v, bits):
    return np.uint64(_float_key(v, bits, np.uint32(0x80000000), np.uint32(0xFFFFFFFF)))


@njit(inline="always")
def _float64_key(v, bits):
    return _float_key(v, bits, np.uint64(0x8000000000000000), np.uint64(0xFFFFFFFFFFFFFFFF))


@njit(inline="always")
def _signed_key(v, bits):
    return np.uint64(np.int64(v) + (1 << 31))      # signed ints of up to 32 bits


@njit(inline="always")
def _unsigned_key(v, bits):
    return np.uint64(v)                             # bool, unsigned ints of up to 32 bits


def _packed_rows(key_of, bits_type):
    """Keys of 32 bits: key << 32 | index, one uint64 a value."""
    def sort(x, out):
        rows, n = x.shape
        keys, spare = np.empty(n, np.uint64), np.empty(n, np.uint64)
        counts = np.empty(256, np.int64)
        bits = x.view(bits_type)
        for r in range(rows):
            for j in range(n):
                keys[j] = (key_of(x[r, j], bits[r, j]) << np.uint64(32)) | np.uint64(j)
            if n <= PACKED_INSERTION_MAX:
                for j in range(1, n):
                    k, i = keys[j], j - 1
                    while i >= 0 and keys[i] > k:
                        keys[i + 1] = keys[i]
                        i -= 1
                    keys[i + 1] = k
                done = keys
            else:
                done = _radix_packed(keys, spare, counts, 32)
            for j in range(n):
                out[r, j] = done[j] & np.uint64(0xFFFFFFFF)
    return sort


def _keyed_rows(key_of, bits_type):
    """Keys of 64 bits, and the indices beside them."""
    def sort(x, out):
        rows, n = x.shape
        keys, spare_keys = np.empty(n, np.uint64), np.empty(n, np.uint64)
        index, spare_index = np.empty(n, np.int64), np.empty(n, np.int64)
        counts = np.empty(256, np.int64)
        bits = x.view(bits_type)
        for r in range(rows):
            for j in range(n):
                keys[j] = key_of(x[r, j], bits[r, j])
                index[j] = j
            if n <= PAIRS_INSERTION_MAX:
                for j in range(1, n):
                    k, m, i = keys[j], index[j], j - 1
                    while i >= 0 and keys[i] > k:
                        keys[i + 1], index[i + 1] = keys[i], index[i]
                        i -= 1
                    keys[i + 1], index[i + 1] = k, m
                done = index
            else:
                done = _radix_pairs(keys, spare_keys, index, spare_index, counts)
            out[r] = done
    return sort


@njit(inline="always")
def _starts(keys, shift, counts):
    """Where each value of the keys' byte at `shift` starts in the sorted
    order (counts, made running), or False when all keys share that byte."""
    n = keys.size
    counts[:] = 0
    for j in range(n):
        counts[(keys[j] >> np.uint64(shift)) & _BYTE] += 1
    if counts.max() == n:       # one byte for all: this pass moves nothing
        return False
    total = 0
    for d in range(256):
        counts[d], total = total, total + counts[d]
    return True


@njit(inline="always")
def _radix_packed(keys, spare, counts, low_bit):
    """Sort `keys` stably by their bytes from bit `low_bit` up; returns the
    array (keys or spare) that holds them sorted."""
    for shift in range(low_bit, 64, 8):
        if _starts(keys, shift, counts):
            for j in range(keys.size):
                d = (keys[j] >> np.uint64(shift)) & _BYTE
                spare[counts[d]] = keys[j]
                counts[d] += 1
            keys, spare = spare, keys
    return keys


@njit(inline="always")
def _radix_pairs(keys, spare_keys, items, spare_items, counts):
    """Sort `items` stably by their `keys`, all 64 bits; returns the array
    (items or spare_items) that holds them sorted."""
    for shift in range(0, 64, 8):
        if _starts(keys, shift, counts):
            for j in range(keys.size):
                d = (keys[j] >> np.uint64(shift)) & _BYTE
                spare_keys[counts[d]], spare_items[counts[d]] = keys[j], items[j]
                counts[d] += 1
            keys, spare_keys = spare_keys, keys
            items, spare_items = spare_items, items
    return items
