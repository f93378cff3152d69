"""np.einsum and np.tensordot, written with the ops graphc already has.

Operands are folded left to right. A pair becomes one batched matmul:
letters in both operands and still needed later are batch dims, letters in
both and not needed are contracted, and each operand's own letters are its
rows or columns. A pair with nothing to contract is a broadcast multiply.
Letters needed by no one are summed out first. So the gradient, the fusion
and the GEMMs are those of matmul, sum and transpose; nothing new to
differentiate or compile.

A letter repeated within one operand ('ii->i', 'ii->' for a trace) first
takes that operand's diagonal, by integer-array indexing. Not supported
(refused with its reason): the interleaved call form np.einsum(a, [0, 1],
b, [1, 2]).
"""
from __future__ import annotations

import math
import string

import numpy as np

from graphc import errors
from graphc import prims as P


def _refuse(message: str):
    raise errors.users_error(errors.UnsupportedOpError, f"np.einsum: {message}")


def _shape_error(message: str, name: str = "np.einsum"):
    raise errors.users_error(errors.ShapeError, f"{name}: {message}")


def parse(subscripts: str, ndims: list[int]) -> tuple[list[str], str]:
    """Each operand's letters and the output's, with '...' spelt out as
    capital letters (right-aligned, as NumPy broadcasts them)."""
    if not isinstance(subscripts, str):
        _refuse("the interleaved form einsum(a, [0, 1], b, [1, 2]) is not supported; "
                "write the subscripts as a string, 'ij,jk->ik'")
    text = subscripts.replace(" ", "")
    inputs, arrow, output = text.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(ndims):
        _shape_error(f"{subscripts!r} names {len(terms)} operands, but {len(ndims)} were given")
    ellipsis_ndim = 0
    for term, ndim in zip(terms, ndims):
        letters = term.replace("...", "")
        if not all(c in string.ascii_letters for c in letters) or term.count("...") > 1:
            _shape_error(f"bad subscripts {subscripts!r}: letters, ',', '->' and one '...' a term")
        if "..." not in term and len(letters) != ndim:
            _shape_error(f"{term!r} has {len(letters)} letters for an operand of {ndim} dims")
        if "..." in term:
            if len(letters) > ndim:
                _shape_error(f"{term!r} has more letters than its operand's {ndim} dims")
            ellipsis_ndim = max(ellipsis_ndim, ndim - len(letters))
    spare = [c for c in string.ascii_uppercase if c not in text][::-1]
    if len(spare) < ellipsis_ndim:
        _refuse("too many dims under '...' for the capital letters left free")
    broadcast = "".join(spare[:ellipsis_ndim])

    def spelt(term: str, ndim: int | None) -> str:
        if "..." not in term:
            return term
        n = ellipsis_ndim if ndim is None else ndim - len(term.replace("...", ""))
        return term.replace("...", broadcast[ellipsis_ndim - n:])

    letters = [spelt(t, n) for t, n in zip(terms, ndims)]
    if arrow:
        if ellipsis_ndim and "..." not in output:
            _shape_error(f"the operands have dims under '...', and the output {output!r} has "
                         f"no '...' for them")
        out = spelt(output, None)
        if len(set(out)) != len(out) or any(c not in "".join(letters) for c in out):
            _shape_error(f"output {output!r}: each letter once, and only letters of the inputs")
    else:   # NumPy's implicit output: '...' first, then each letter used once, in order
        counts = "".join(letters)
        out = broadcast + "".join(sorted(c for c in set(counts) - set(broadcast)
                                         if counts.count(c) == 1))
    return letters, out


def einsum(subscripts, *operands, optimize=False, **kwargs):
    from graphc import numpy_api as fnp
    for name, value in kwargs.items():
        if value is not None and not (name == "order" and value == "K") and not (
                name == "casting" and value == "safe"):
            _refuse(f"{name}= is not supported")
    operands = [fnp.strong_array(a) for a in operands]     # as NumPy's
    arrays = [fnp._as_array(a) for a in fnp._promote(*operands)] if operands else []
    if not arrays:
        _shape_error("needs at least one operand")
    letters, out = parse(subscripts, [a.ndim for a in arrays])
    sizes: dict[str, int] = {}
    for term, a in zip(letters, arrays):
        for c, n in zip(term, a.shape):
            if sizes.get(c, 1) not in (1, n) and n != 1:
                _shape_error(f"letter {c!r} has sizes {sizes[c]} and {n}")
            sizes[c] = n if sizes.get(c, 1) == 1 else sizes[c]
    for k, term in enumerate(letters):
        arrays[k], letters[k] = _diagonal(fnp, arrays[k], term)
    acc, acc_letters = arrays[0], letters[0]
    for k in range(1, len(arrays)):
        later = out + "".join(letters[k + 1:])
        acc, acc_letters = _pair(fnp, acc, acc_letters, arrays[k], letters[k], later, sizes)
    acc, acc_letters = _sum_out(fnp, acc, acc_letters, keep=out)
    return fnp.transpose(acc, [acc_letters.index(c) for c in out]) if out else acc


def _diagonal(fnp, x, term: str):
    """x's diagonal over each letter its term repeats ('ii' -> 'i'): those
    axes moved to the front and indexed by one arange each."""
    for c in dict.fromkeys(term):
        axes = [i for i, t in enumerate(term) if t == c]
        if len(axes) == 1:
            continue
        sizes = {x.shape[i] for i in axes}
        if len(sizes) > 1:
            _shape_error(f"letter {c!r} repeats in {term!r} over axes of sizes {sorted(sizes)}")
        rest = [i for i in range(len(term)) if i not in axes]
        x = fnp.transpose(x, axes + rest)
        index = np.arange(sizes.pop())
        x = fnp.getitem(x, (index,) * len(axes))
        term = c + "".join(term[i] for i in rest)
    return x, term


def _sum_out(fnp, x, term: str, keep: str):
    """x with the letters that `keep` lacks summed out, in x's own dtype as
    NumPy's einsum (int8 wraps; a bool sum is an or)."""
    gone = tuple(i for i, c in enumerate(term) if c not in keep)
    if not gone:
        return x, term
    dtype = fnp.aval_of(x)[1]
    total = fnp.max(x, axis=gone) if dtype == np.bool_ else fnp.sum(x, axis=gone, dtype=dtype)
    return total, "".join(c for c in term if c in keep)


def _pair(fnp, a, ta: str, b, tb: str, later: str, sizes: dict):
    """The product of two operands over their shared letters that `later` does
    not need, as (array, its letters)."""
    a, ta = _sum_out(fnp, a, ta, keep=later + tb)
    b, tb = _sum_out(fnp, b, tb, keep=later + ta)
    # Letters in the order the operands store them: each reads its own in
    # that order without a copy. The contracted ones, shared, take the
    # larger operand's order, so that only the smaller is copied.
    sa, sb = _stored_order(a, ta), _stored_order(b, tb)
    batch = [c for c in sa if c in tb and c in later]
    contract = [c for c in (sa if math.prod(a.shape) >= math.prod(b.shape) else sb)
                if c in ta and c in tb and c not in later]
    rows = [c for c in sa if c not in tb]
    cols = [c for c in sb if c not in ta]
    if not contract:    # nothing to add up: a broadcast product
        order = batch + rows + cols
        return fnp.multiply(_arranged(fnp, a, ta, order), _arranged(fnp, b, tb, order)), \
            "".join(order)
    a2 = _grouped(fnp, a, ta, batch, rows, contract, sizes)
    b2 = _grouped(fnp, b, tb, batch, contract, cols, sizes)
    product = fnp.matmul(a2, b2)
    shape = tuple(sizes[c] for c in batch + rows + cols)
    return fnp.reshape(product, shape), "".join(batch + rows + cols)


def _stored_order(x, term: str) -> str:
    """x's letters in the order of the array a traced transpose made x from
    (sliding windows with channels: composites._windows_taken), else `term`.
    A transpose into that order cancels with x's own (passes/simplify.py)."""
    node = getattr(x, "node", None)
    if node is None or node.op != "transpose":
        return term
    perm = node.p["perm"]
    return "".join(term[perm.index(k)] for k in range(len(perm)))


def _arranged(fnp, x, term: str, order: list[str]):
    """x's axes in `order`, with a size-1 axis for each letter x lacks."""
    own = [c for c in order if c in term]
    x = fnp.transpose(x, [term.index(c) for c in own]) if own else x
    return fnp.reshape(x, tuple(x.shape[own.index(c)] if c in term else 1 for c in order))


def _grouped(fnp, x, term: str, batch, first, second, sizes: dict):
    """x as batch dims + (prod first, prod second), broadcast to the sizes.
    Where x is stored as batch + second + first, it is grouped that way and
    its last two axes swapped: the matmul reads that as a transposed operand
    (passes/simplify.py), no copy."""
    swapped = _stored_order(x, term) == "".join(batch + second + first)
    order = batch + (second + first if swapped else first + second)
    x = fnp.transpose(x, [term.index(c) for c in order])
    full = tuple(sizes[c] for c in order)
    if tuple(x.shape) != full:
        x = fnp.broadcast_to(x, full)
    groups = (second, first) if swapped else (first, second)
    x = fnp.reshape(x, tuple(sizes[c] for c in batch) + tuple(
        math.prod(sizes[c] for c in group) for group in groups))
    return P.swap_last(x) if swapped else x


def tensordot(a, b, axes=2):
    """np.tensordot as the einsum it is: a's last `axes` dims against b's first
    (or the two lists of axes)."""
    from graphc import numpy_api as fnp
    a, b = fnp.strong_array(a), fnp.strong_array(b)
    na, nb = fnp.ndim(a), fnp.ndim(b)
    if isinstance(axes, (int, np.integer)):
        axes_a, axes_b = list(range(na - axes, na)), list(range(axes))
    else:
        axes_a, axes_b = ([x] if isinstance(x, (int, np.integer)) else list(x) for x in axes)
    if len(axes_a) != len(axes_b):
        _shape_error(f"{len(axes_a)} axes of a against {len(axes_b)} of b", "np.tensordot")
    for axes, n, name in ((axes_a, na, "a"), (axes_b, nb, "b")):
        if any(not -n <= int(x) < n for x in axes) or len({int(x) % n for x in axes}) < len(axes):
            _shape_error(f"axes {list(axes)} of {name} are out of range or repeated for its "
                         f"{n} dims", "np.tensordot")
    axes_a = [int(x) % na for x in axes_a]
    axes_b = [int(x) % nb for x in axes_b]
    shape_a, shape_b = fnp.aval_of(a)[0], fnp.aval_of(b)[0]
    for i, j in zip(axes_a, axes_b):
        if shape_a[i] != shape_b[j]:
            _shape_error(f"shape-mismatch for sum: axis {i} of a has {shape_a[i]}, axis {j} "
                         f"of b has {shape_b[j]}", "np.tensordot")
    letters = iter(string.ascii_letters)
    ta = [next(letters) for _ in range(na)]
    tb = [next(letters) for _ in range(nb)]
    for i, j in zip(axes_a, axes_b):
        tb[j] = ta[i]
    out = [c for i, c in enumerate(ta) if i not in axes_a] + [
        c for j, c in enumerate(tb) if j not in axes_b]
    return einsum(f"{''.join(ta)},{''.join(tb)}->{''.join(out)}", a, b)
