"""The registry-driven test table: at least one row per primitive op.

Each row is a NumPy function that exercises the primitive when traced (and
runs as plain NumPy on arrays: that is the value oracle), with argument
specs. `tests/test_ops.py` checks values, compiled == interpreted, float32
preservation and gradients for every row, and fails if an op has no row.
"""
from dataclasses import dataclass, field

import numpy as np
import scipy.special

import graphc as gc
from graphc import prims as P


@dataclass
class Arg:
    shape: tuple
    kind: str = "normal"   # normal | positive | unit (-0.9..0.9) | int:N | bool | separated
    diff: bool = True      # differentiate with respect to it


@dataclass
class Case:
    ops: tuple             # the primitives this row covers
    fn: object
    args: list
    grad: bool = True      # check the gradient
    f32: bool = True       # check float32 preservation
    reference: object = None   # NumPy oracle when fn itself is not plain NumPy
    id: str = field(default="")


def make_arg(arg: Arg, rng, dtype=np.float64):
    if arg.kind.startswith("int:"):
        return rng.integers(0, int(arg.kind[4:]), size=arg.shape)
    if arg.kind == "bool":
        return rng.random(arg.shape) > 0.5
    if arg.kind == "positive":
        x = rng.uniform(0.5, 2.0, arg.shape)
    elif arg.kind == "unit":
        x = rng.uniform(-0.9, 0.9, arg.shape)
    elif arg.kind == "separated":
        # distinct values, well away from each other: max/abs/sign have no ties or kinks
        n = int(np.prod(arg.shape))
        x = (rng.permutation(n) - (n - 1) / 2 + 0.25).reshape(arg.shape) * 0.7
    else:
        x = rng.normal(size=arg.shape)
    return np.asarray(x, dtype)


def _tie_free(x, y):
    return x, y + 0.37


def _recurrences(a, b):
    """s[i] = b[i] + a[i] s[i-1] plus the reverse scan reading a[i+1]: by hand."""
    forward, backward = np.zeros_like(b), np.zeros_like(b)
    s = np.zeros(b.shape[0], b.dtype)
    for i in range(b.shape[1]):
        s = b[:, i] + a[:, i] * s
        forward[:, i] = s
    s = np.zeros(b.shape[0], b.dtype)
    for i in reversed(range(b.shape[1])):
        s = b[:, i] + (a[:, i + 1] if i + 1 < b.shape[1] else 0) * s
        backward[:, i] = s
    return forward + backward


CASES = [
    Case(("neg",), lambda x: -x, [Arg((3, 4))]),
    Case(("exp",), np.exp, [Arg((3, 4))]),
    Case(("log",), np.log, [Arg((5,), "positive")]),
    Case(("log1p",), np.log1p, [Arg((2, 3), "unit")]),
    Case(("expm1",), np.expm1, [Arg((4,))]),
    Case(("sqrt",), np.sqrt, [Arg((2, 2), "positive")]),
    Case(("sin",), np.sin, [Arg((6,))]),
    Case(("cos",), np.cos, [Arg((6,))]),
    Case(("tanh",), np.tanh, [Arg((2, 3))]),
    Case(("abs",), np.abs, [Arg((7,), "separated")]),
    Case(("sign",), np.sign, [Arg((7,), "separated")]),
    Case(("erf",), scipy.special.erf, [Arg((5,))]),
    Case(("sigmoid",), gc.nn.sigmoid, [Arg((3, 4))], reference=scipy.special.expit),
    Case(("tan",), np.tan, [Arg((6,), "unit")]),
    Case(("arcsin", "arccos"), lambda x: np.arcsin(x) * np.arccos(x), [Arg((6,), "unit")]),
    Case(("arctan",), np.arctan, [Arg((2, 3))]),
    Case(("sinh", "cosh"), lambda x: np.sinh(x) * np.cosh(x), [Arg((6,))]),
    Case(("arcsinh",), np.arcsinh, [Arg((6,))]),
    Case(("arccosh",), lambda x: np.arccosh(x + 1), [Arg((6,), "positive")]),
    Case(("arctanh",), np.arctanh, [Arg((6,), "unit")]),
    Case(("log2", "log10"), lambda x: np.log2(x) - np.log10(x), [Arg((5,), "positive")]),
    Case(("exp2",), np.exp2, [Arg((5,))]),
    Case(("cbrt",), np.cbrt, [Arg((5,), "positive")]),
    # steps: no slope where they have one (the points stay clear of the steps)
    Case(("floor", "ceil", "trunc", "rint"),
         lambda x: np.floor(x) + 2 * np.ceil(x) + 3 * np.trunc(x) + 4 * np.rint(x) + x,
         [Arg((7,), "separated")]),
    Case(("floor_divide", "remainder"), lambda x, y: x % y + (x // y) * 0.5,
         [Arg((3, 4)), Arg((4,), "positive")]),
    Case(("floor_divide", "remainder"), lambda i, j: (i - 5) // (j + 1) * 100 + (i - 5) % (j + 1),
         [Arg((2, 3), "int:11"), Arg((3,), "int:4")], grad=False, f32=False),
    Case(("arctan2",), np.arctan2, [Arg((3, 4)), Arg((4,))]),
    Case(("hypot",), np.hypot, [Arg((3, 1)), Arg((1, 4))]),
    Case(("stop_gradient",), lambda x: gc.nn.logsumexp(x, axis=1), [Arg((3, 4))],
         reference=lambda x: scipy.special.logsumexp(x, axis=1)),
    Case(("log_softmax",), lambda x: gc.nn.log_softmax(x), [Arg((3, 4))],
         reference=lambda x: scipy.special.log_softmax(x, axis=-1)),
    Case(("log_softmax",), lambda x: gc.nn.log_softmax(x, axis=2), [Arg((2, 3, 5))],
         reference=lambda x: scipy.special.log_softmax(x, axis=2)),
    Case(("softmax",), lambda x: gc.nn.softmax(x), [Arg((3, 4))],
         reference=lambda x: scipy.special.softmax(x, axis=-1)),
    Case(("softmax",), lambda x: gc.nn.softmax(x, axis=2), [Arg((2, 3, 5))],
         reference=lambda x: scipy.special.softmax(x, axis=2)),
    Case(("max",), lambda x: gc.nn.log_softmax(x, axis=0), [Arg((3, 4))],   # not the last axis
         reference=lambda x: scipy.special.log_softmax(x, axis=0)),
    Case(("add",), lambda x, y: x + y, [Arg((3, 4)), Arg((4,))]),
    Case(("add",), lambda x, y: x + y, [Arg((3, 1)), Arg((1, 4))]),
    Case(("sub",), lambda x, y: x - y, [Arg((2, 3)), Arg((2, 1))]),
    Case(("mul",), lambda x, y: x * y, [Arg((2, 3, 4)), Arg((3, 1))]),
    Case(("mul",), lambda x: 0.5 * x * 3, [Arg((3,))]),
    Case(("div",), lambda x, y: x / y, [Arg((3, 4)), Arg((4,), "positive")]),
    Case(("div",), lambda x: x / 3.0, [Arg((3,))]),
    Case(("pow",), lambda x, y: x ** y, [Arg((3,), "positive"), Arg((3,))]),
    Case(("pow",), lambda x: x ** 3.0, [Arg((2, 2))]),
    Case(("maximum",), np.maximum, [Arg((3, 4), "separated"), Arg((4,), "separated")]),
    Case(("minimum",), lambda x, y: np.minimum(*_tie_free(x, y)), [Arg((5,)), Arg((5,))]),
    Case(("eq", "ne"), lambda x, y: (x == y) | (x != y * 2), [Arg((4,), "int:3"), Arg((4,), "int:3")],
         grad=False, f32=False),
    Case(("lt", "le", "gt", "ge"),
         lambda x, y: np.where((x < y) & (x <= y) | (x > y + 1) & (x >= y), x, y),
         [Arg((3, 3)), Arg((3,))]),
    Case(("logical_and", "logical_or", "logical_not"),
         lambda a, b: np.logical_or(np.logical_and(a, b), np.logical_not(b)),
         [Arg((4,), "bool"), Arg((4,), "bool")], grad=False, f32=False),
    Case(("where",), lambda c, x, y: np.where(c, x, y), [Arg((2, 3), "bool"), Arg((3,)), Arg((2, 3))]),
    Case(("convert",), lambda x, m: x * m.astype(x.dtype), [Arg((3,)), Arg((3,), "bool")]),
    Case(("convert",), lambda x, i: x * i, [Arg((3,)), Arg((3,), "int:5")]),
    Case(("cumsum",), lambda x: np.cumsum(x, axis=1), [Arg((3, 4))]),
    Case(("cumsum",), lambda x: x.cumsum(0) * np.cumsum(x).reshape(x.shape), [Arg((2, 3, 2))]),
    Case(("argsort", "take"), lambda x: np.sort(x, axis=0), [Arg((4, 3), "separated")]),
    # np.linalg (well-conditioned: a + 3 I), a stack of matrices for some
    Case(("inv",), lambda a: np.linalg.inv(a + 3 * np.eye(3)), [Arg((2, 3, 3))]),
    Case(("solve",), lambda a, b: np.linalg.solve(a + 3 * np.eye(3), b), [Arg((3, 3)), Arg((3, 2))]),
    Case(("det",), lambda a: np.linalg.det(a + 3 * np.eye(3)), [Arg((2, 3, 3))]),
    # each triangle and its transpose; the triangle not read has no gradient
    Case(("triangular_solve",),
         lambda a, b: P.triangular_solve(a + 3 * np.eye(3, dtype=a.dtype), b, lower=True)
         + P.triangular_solve(a + 3 * np.eye(3, dtype=a.dtype), b, lower=False, transposed=True),
         [Arg((2, 3, 3)), Arg((2, 3, 2))],
         reference=lambda a, b: np.linalg.solve(np.tril(a + 3 * np.eye(3, dtype=a.dtype)), b)
         + np.linalg.solve(np.swapaxes(np.triu(a + 3 * np.eye(3, dtype=a.dtype)), -1, -2), b)),
    Case(("triangular_solve",),
         lambda a, b: P.triangular_solve(a + 3 * np.eye(3, dtype=a.dtype), b, lower=False)
         * P.triangular_solve(a + 3 * np.eye(3, dtype=a.dtype), b, lower=True, transposed=True),
         [Arg((3, 3)), Arg((3, 4))],
         reference=lambda a, b: np.linalg.solve(np.triu(a + 3 * np.eye(3, dtype=a.dtype)), b)
         * np.linalg.solve(np.tril(a + 3 * np.eye(3, dtype=a.dtype)).T, b)),
    Case(("slogdet",), lambda a: np.linalg.slogdet(a + 3 * np.eye(3)).logabsdet, [Arg((3, 3))]),
    # solve beside cholesky of one symmetric matrix: compiled, a cholesky_solve
    # (passes/factor_solves.py)
    Case(("cholesky_solve",),
         lambda a, b: (lambda k: np.linalg.solve(k, b) + np.linalg.cholesky(k) @ b)(
             0.2 * (a + np.swapaxes(a, -1, -2)) + 3 * np.eye(3)),
         [Arg((2, 3, 3)), Arg((2, 3, 2))]),
    # cholesky and eigh of symmetric matrices made from a (their gradients are
    # the symmetric ones); eigenvectors squared: their signs are LAPACK's choice
    Case(("cholesky",), lambda a: np.linalg.cholesky(a @ np.swapaxes(a, -1, -2) + np.eye(3)),
         [Arg((2, 3, 3))]),
    Case(("eigh",), lambda a: (lambda w, v: w[..., None, :] * v ** 2)(*np.linalg.eigh(a + a.T)),
         [Arg((3, 3))]),
    # svd and qr of tall, wide and stacked matrices; singular vectors squared
    # (their signs are LAPACK's choice), all of each result seen
    Case(("svd",), lambda a: (lambda u, s, vh: np.concatenate(
        [(u ** 2).ravel(), s.ravel(), (vh ** 2).ravel()]))(*np.linalg.svd(a, full_matrices=False)),
         [Arg((4, 3))]),
    Case(("svd",), lambda a: (lambda u, s, vh: np.concatenate(
        [(u ** 2).ravel(), s.ravel(), (vh ** 2).ravel()]))(*np.linalg.svd(a, full_matrices=False)),
         [Arg((2, 2, 4))]),
    Case(("qr",), lambda a: (lambda q, r: np.concatenate([q.ravel(), r.ravel()]))(*np.linalg.qr(a)),
         [Arg((2, 4, 3))]),
    Case(("qr",), lambda a: (lambda q, r: np.concatenate([q.ravel(), r.ravel()]))(*np.linalg.qr(a)),
         [Arg((3, 5))]),
    Case(("pinv",), lambda a: np.linalg.pinv(a), [Arg((2, 4, 3))]),
    Case(("pinv",), lambda a: np.linalg.pinv(a, rtol=None), [Arg((3, 5))]),
    Case(("cumprod",), lambda x: np.cumprod(x, axis=1), [Arg((3, 4))]),
    Case(("cumprod",), lambda x: x.prod(axis=0) * np.cumprod(x[::-1], axis=0), [Arg((3, 2))]),
    # s = b + a s along rows, both directions and readings of a (cumprod's gradient)
    Case(("recurrence",), lambda a, b: P.recurrence(a, b, 1) + P.recurrence(a, b, 1, True, True),
         [Arg((2, 4), "unit"), Arg((2, 4))], reference=lambda a, b: _recurrences(a, b)),
    Case(("sum",), lambda x: x.sum(axis=1), [Arg((3, 4))]),
    Case(("sum",), lambda x: np.sum(x, axis=(0, -1), keepdims=True), [Arg((2, 3, 4))]),
    Case(("sum", "numel"), lambda x: x.mean(), [Arg((5, 2))]),
    Case(("numel",), lambda x: np.var(x, axis=(0, 2), ddof=1), [Arg((3, 2, 4))]),
    Case(("max",), lambda x: x.max(axis=0), [Arg((3, 4), "separated")]),
    Case(("max",), lambda x: np.min(x, axis=-1, keepdims=True), [Arg((2, 5), "separated")]),
    Case(("matmul",), lambda a, b: a @ b, [Arg((3, 4)), Arg((4, 2))]),
    Case(("matmul",), lambda a, b: a @ b, [Arg((4,)), Arg((4, 2))]),
    Case(("matmul",), lambda a, b: np.matmul(a, b), [Arg((2, 3, 4)), Arg((4, 5))]),
    # a stack times one matrix (a batch of 1, or a vector): one GEMM over all rows
    Case(("matmul",), lambda a, b: a @ b, [Arg((2, 1, 3, 4)), Arg((1, 4, 2))]),
    Case(("matmul",), lambda a, b: a @ b, [Arg((3, 2, 4)), Arg((4,))]),
    # one matrix times a stack, and a batch of 1 broadcast on the left: a GEMM per matrix
    Case(("matmul",), lambda a, b: a @ b, [Arg((3, 4)), Arg((2, 4, 5))]),
    Case(("matmul",), lambda a, b: a @ b, [Arg((1, 3, 4)), Arg((2, 4, 5))]),
    # stacks of matrices on both sides, one broadcast: a GEMM per matrix
    Case(("matmul",), lambda a, b: a @ np.swapaxes(b, -1, -2),
         [Arg((2, 1, 3, 4)), Arg((3, 5, 4))]),
    Case(("matmul",), lambda a, b: np.dot(a, b), [Arg((4,)), Arg((4,))]),
    # heads of (n, T, H, d) arrays read where they lie, one transposed, and the
    # product written back in that order (passes/strided_stacks.py)
    Case(("matmul",), lambda a, b: (a.transpose(0, 2, 1, 3)
                                    @ b.transpose(0, 2, 3, 1)).transpose(0, 2, 1, 3),
         [Arg((2, 3, 2, 4)), Arg((2, 5, 2, 4))]),
    # the permutations as the pass binds them
    Case(("matmul",), lambda a, b: P.bind("matmul", a, b, perm_a=(1, 2, 0, 3),
                                          perm_b=(1, 2, 0, 3), transpose_b=True,
                                          perm_out=(2, 0, 1, 3)),
         [Arg((4, 2, 3, 5)), Arg((6, 2, 3, 5))],
         reference=lambda a, b: (a.transpose(1, 2, 0, 3) @ np.swapaxes(
             b.transpose(1, 2, 0, 3), -1, -2)).transpose(2, 0, 1, 3)),
    # c + a @ b as one GEMM adding into c: into c's own buffer where only the
    # sum reads it (a tanh's), else into a copy of c (an input's)
    Case(("matmul_add",), lambda c, a, b: P.matmul_add(np.tanh(c), a, b),
         [Arg((3, 2)), Arg((3, 4)), Arg((4, 2))], reference=lambda c, a, b: np.tanh(c) + a @ b),
    Case(("matmul_add",), lambda c, a, b: P.matmul_add(c, a, b),
         [Arg((3, 2)), Arg((3, 4)), Arg((4, 2))], reference=lambda c, a, b: c + a @ b),
    Case(("matmul_add",), lambda c, a, b: P.matmul_add(np.tanh(c), a, b),
         [Arg((2, 3, 2)), Arg((2, 3, 4)), Arg((2, 4, 2))],
         reference=lambda c, a, b: np.tanh(c) + a @ b),
    # the addend is also the product's operand: a copy (the GEMM reads it)
    Case(("matmul_add",), lambda c, b: (lambda t: P.matmul_add(t, t, b))(np.tanh(c)),
         [Arg((3, 3)), Arg((3, 3))], reference=lambda c, b: np.tanh(c) + np.tanh(c) @ b),
    Case(("matmul_add",), lambda c, a, b: P.matmul_add(c * 2, a, b),
         [Arg((3, 2), "int:5"), Arg((3, 4), "int:5"), Arg((4, 2), "int:5")],
         grad=False, f32=False, reference=lambda c, a, b: c * 2 + a @ b),
    Case(("reshape",), lambda x: x.reshape(6, -1), [Arg((2, 3, 2))]),
    Case(("transpose",), lambda x: x.T, [Arg((3, 4))]),
    Case(("transpose",), lambda x: np.exp(x).T + 1, [Arg((19, 10))]),    # whole tiles and edges
    Case(("transpose",), lambda x: np.transpose(x, (1, 2, 0)), [Arg((2, 3, 4))]),
    Case(("broadcast_to",), lambda x: np.broadcast_to(x, (3, 4)), [Arg((4,))]),
    Case(("slice", "unslice"), lambda x: x[1:, ::2], [Arg((4, 5))]),
    Case(("slice", "unslice"), lambda x: x[::-1, 2, None], [Arg((3, 4))]),
    Case(("slice",), lambda x: x[..., 1], [Arg((2, 3, 4))]),
    Case(("concatenate", "concat_piece"), lambda x, y: np.concatenate([x, y], axis=1),
         [Arg((2, 3)), Arg((2, 2))]),
    Case(("concatenate", "concat_piece"), lambda x, y: np.stack([x, y]), [Arg((3,)), Arg((3,))]),
    # pieces one element wide (copied down their columns), on a middle axis, of no width
    Case(("concatenate", "concat_piece"), lambda x, y: np.stack([x, y, x * y], axis=-1),
         [Arg((2, 3, 4)), Arg((2, 3, 4))]),
    Case(("concatenate", "concat_piece"), lambda x, y: np.concatenate([x, y[:, :0], y], axis=1),
         [Arg((2, 1, 3)), Arg((2, 4, 3))]),
    # more pieces than codegen.INLINE_PIECES: copied by calls of kernels/pieces.py
    Case(("concatenate", "concat_piece"), lambda x, y: np.stack([x, y, x * y, x - y, y, x], axis=1),
         [Arg((2, 3)), Arg((2, 3))]),
    Case(("take", "scatter_add", "index_check"), lambda x, i: x[i], [Arg((5, 3)), Arg((7,), "int:5")]),
    Case(("take", "scatter_add", "index_check"), lambda x, i: x[:, i], [Arg((2, 4)), Arg((2, 3), "int:4")]),
    Case(("take", "index_check"), lambda x, i: x[np.arange(4), i], [Arg((4, 3)), Arg((4,), "int:3")]),
    # what a Python int computed in the function passes through before it
    # becomes a narrower integer (tests/test_bad_input.py has its refusals)
    Case(("int_range_check",), lambda x, i: x * P.int_range_check(i, np.uint8),
         [Arg((4,)), Arg((4,), "int:9")], reference=lambda x, i: x * i),
    Case(("take",), lambda x: x[np.array([-1, 0, -1])], [Arg((3, 2))]),
]
