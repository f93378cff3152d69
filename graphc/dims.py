"""Symbolic dimensions: every node's shape as source expressions over the driver's inputs.

Codegen writes `np.empty((in7.shape[0], in2.shape[1]), ...)` instead of
`np.empty((128, 10), ...)`, so the generated module does not change when
only a batch size does, and the module already compiled in this process (or
on disk) is reused without compiling again.

How: every (node, axis) is a variable. The ops' shape rules say which are
equal (an elementwise output axis equals the aligned axis of each operand
that is not broadcast along it, a matmul's inner axes equal each other, a
reduction keeps its other axes, ...), and union-find merges them into
classes. A class containing an axis of a graph input is written as that
input's `.shape[j]`; a class made by a reshape as a product or quotient of
other classes (a split of merged axes as their factors); what no rule
reaches (a `broadcast_to` target, a scatter's size) takes a class of the
same value, preferring an argument's axis at the same place, then an
earlier node's of the same shape, else the literal.

Every class holds axes of one value in the traced shapes, so every
expression is right for the trace it came from. Reusing a compiled module
is therefore sound exactly when the generated text is identical: a choice
that does not carry over to another batch size changes the text, and that
size is compiled afresh. Index bounds (`index_check`) and partial slices
stay literals, so a gather or slice along the batch axis is one of those.
"""
from __future__ import annotations

import re

from graphc.ir import Graph, Node
from graphc.ops import CHECKS, inverse_permutation


_SHAPE_READ = re.compile(r"\b\w+\.shape\[\d+\]")     # an argument's axis in an expression
_FIRST_AXIS = re.compile(r"\w+\.shape\[0\]")           # an argument's first axis, alone


def _product(exprs: list[str]) -> str:
    exprs = [e for e in exprs if e != "1"]
    return exprs[0] if len(exprs) == 1 else "(" + " * ".join(exprs) + ")" if exprs else "1"


def _pieces(expr: str, operator: str) -> list[str]:
    """The operands of `operator` (" * ", " // ") at the top level within
    `expr`'s outer parentheses, else [expr]."""
    if not _wrapped(expr):
        return [expr]               # no outer pair: "a", or "(a) * (b)"
    pieces, depth, start, inner = [], 0, 0, expr[1:-1]
    for k, ch in enumerate(inner):
        depth += (ch in "([") - (ch in ")]")
        if depth == 0 and inner.startswith(operator, k):
            pieces.append(inner[start:k])
            start = k + len(operator)
    pieces.append(inner[start:])
    return pieces if len(pieces) > 1 else [expr]


def _factors(expr: str) -> list[str]:
    """The factors of a product made by `_product`, else [expr]."""
    pieces = _pieces(expr, " * ")
    # a piece with a quotient of its own is one factor only within parentheses of its own
    return pieces if all(" // " not in p or _wrapped(p) for p in pieces) else [expr]


def _fraction(expr: str) -> tuple[list[str], list[str]]:
    """The factors above and below a quotient made by `_quotient`, else
    (`_factors(expr)`, [])."""
    pieces = _pieces(expr, " // ")
    if len(pieces) == 2:
        return _factors(pieces[0]), _factors(pieces[1])
    return _factors(expr), []


def _wrapped(expr: str) -> bool:
    """Whether `expr` is all within one pair of parentheses: "(a // b)", not "(a) // (b)"."""
    depth = 0
    for k, ch in enumerate(expr):
        depth += (ch in "([") - (ch in ")]")
        if depth == 0:
            return k == len(expr) - 1 and ch == ")"
    return False


def _quotient(numerator: list[str], denominator: list[str]) -> str:
    """prod(numerator) // prod(denominator), with common factors cancelled."""
    num, den = [f for e in numerator for f in _factors(e)], []
    for factor in denominator:
        if factor in num:
            num.remove(factor)
        elif factor != "1":
            den.append(factor)
    # parenthesized: the quotient may itself be divided by, or divide, another
    return f"({_product(num)} // {_product(den)})" if den else _product(num)


def _aligned(out_rank: int, operand: Node, d: int) -> int | None:
    """The operand axis that broadcasting lines up with output axis `d`, if any."""
    j = d - (out_rank - len(operand.shape))
    return j if j >= 0 else None


def _runs(src: tuple, out: tuple) -> list[tuple[list[int], list[int]]]:
    """A reshape's axes in the smallest runs of equal products on each side,
    as (src axes, out axes), size-1 axes left out: (n, 6, 6, 9) -> (36n, 9)
    is ([0, 1, 2], [0]), ([3], [1]). No runs where a size is 0 (any
    grouping fits it)."""
    if 0 in src or 0 in out:
        return []
    a = [j for j, s in enumerate(src) if s != 1]
    b = [d for d, s in enumerate(out) if s != 1]
    runs, i, k = [], 0, 0
    while i < len(a) and k < len(b):
        i0, k0, pa, pb = i, k, src[a[i]], out[b[k]]
        i, k = i + 1, k + 1
        while pa != pb:
            if pa < pb:
                pa, i = pa * src[a[i]], i + 1
            else:
                pb, k = pb * out[b[k]], k + 1
        runs.append((a[i0:i], b[k0:k]))
    return runs


def _kept_axes(src: tuple, out: tuple) -> list[tuple[int, int]]:
    """(out axis, src axis) pairs a reshape carries over whole: the axes
    left alone when the others are merged, split, or are 1s added or
    dropped. (4, n) -> (1, 4, n, 1) keeps both; (n, 3) -> (3n,) keeps none.
    A gradient's reshape to keepdims form, (n,) -> (1, n), would otherwise
    cut n off from its class, and a guess could give it another input's
    axis of the same size, different text at the next batch size."""
    return [(outs[0], axes[0]) for axes, outs in _runs(src, out) if len(axes) == len(outs) == 1]


def _full_range(start, step, n, size) -> bool:
    return (start, step) == (0, 1) and n == size


def slice_start(size: str, p: dict, d: int) -> str | int:
    """Where a slice (params p) starts on axis d, whose size is the
    expression `size`: from the end when it was written so (prims.slice)."""
    back = p["ends"][d][0] if "ends" in p else None
    return p["starts"][d] if back is None else f"({size} - {back})"


def slice_length(size: str, n: int, p: dict, d: int, length: int) -> str:
    """The length of a slice (params p) of axis d, of n elements in the trace
    and `size` as an expression: one written from the end has a length
    computed from the size (x[1:] has n - 1, x[::-1] has n), checked to give
    the traced length; any other has the traced length."""
    if "ends" not in p or p["ends"][d][:2] == (None, None):
        return str(length)
    start_back, stop_back, stop = p["ends"][d]
    if start_back is not None and stop_back is not None and p["steps"][d] == 1:
        return str(length)      # both from the end: a fixed length (x[-3:] has 3)
    # start and stop as (expression, value in the trace)
    start, step = p["starts"][d], p["steps"][d]
    s = (str(start), start) if start_back is None else (f"({size} - {start_back})", start)
    e = (str(stop), stop) if stop_back is None else (f"({size} - {stop_back})", n - stop_back)
    if step > 0:
        expr = f"(({e[0]} - {s[0]} + {step - 1}) // {step})"
        value = (e[1] - s[1] + step - 1) // step
    else:
        expr = f"(({s[0]} - {e[0]} + {-step - 1}) // {-step})"
        value = (s[1] - e[1] - step - 1) // -step
    return expr if value == length else str(length)


class DimTable:
    """`table[node_id]` is the node's dims as source expressions; `table.shape(id)` a tuple."""

    def __init__(self, graph: Graph, input_names: list[str], const_names: dict[int, str]):
        self.graph = graph
        self._parent: dict = {}
        self._expr: dict = {}            # class root -> expression
        # (node, axis) -> (outer node, slice params): the axis is a partial
        # slice of the outer node's axis, its length computed from that size
        self._sliced: dict = {}
        for node in graph.topo():
            self._equate(node)
        # an argument's axis expression -> (the argument's rank, the axis): _guess's tie-break
        self._argument_axes: dict[str, tuple[int, int]] = {}
        for i, name in list(zip(graph.inputs, input_names)) + list(const_names.items()):
            rank = len(graph.node(i).shape)
            for j in range(rank):
                self._name(i, j, f"{name}.shape[{j}]")
                self._argument_axes[f"{name}.shape[{j}]"] = (rank, j)
        self.exprs: dict[int, list[str]] = {}
        for node in graph.topo():
            self.exprs[node.id] = self._derive(node)

    def __getitem__(self, nid: int) -> list[str]:
        return self.exprs[nid]

    def count(self, nid: int, axes) -> str:
        """How many elements node `nid` holds along `axes` (exact divisions only, so
        a quotient among the factors evaluates left to right correctly)."""
        return _product([self.exprs[nid][a] for a in axes])

    def shape(self, nid: int) -> str:
        dims = self.exprs[nid]
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"

    # -- union-find over (node, axis) -------------------------------------------
    def _find(self, v):
        parent = self._parent.setdefault(v, v)
        if parent != v:
            parent = self._parent[v] = self._find(parent)
        return parent

    def _union(self, a, b):
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._parent[rb] = ra

    def _name(self, nid, axis, expr):
        root = self._find((nid, axis))
        if self.graph.node(nid).shape[axis] != 1:
            self._expr.setdefault(root, expr)

    def _equate(self, node: Node):
        """Union the axes the op's shape rule makes equal (only axes of equal size)."""
        g, n, p = self.graph, node.id, node.p
        ins = [g.node(i) for i in node.inputs]

        def same(a, i, b, j):
            if g.node(a).shape[i] == g.node(b).shape[j] != 1:
                self._union((a, i), (b, j))

        rank = len(node.shape)
        if node.op in ("matmul", "matmul_add"):
            *addend, a, b = ins         # matmul_add's addend: the product's shape
            for c in addend:
                for d in range(rank):
                    same(n, d, c.id, d)
            ta, tb = p.get("transpose_a", False), p.get("transpose_b", False)
            # (axis d of an operand as the product reads it is its axis perm[d];
            # axis d of the product is the result's axis inverse(perm_out)[d])
            pa, pb = p.get("perm_a") or range(rank), p.get("perm_b") or range(rank)
            po = inverse_permutation(p["perm_out"]) if p.get("perm_out") else range(rank)
            for d in range(rank - 2):
                same(n, po[d], a.id, pa[d])
                same(n, po[d], b.id, pb[d])
            same(n, po[rank - 2], a.id, pa[rank - 1 if ta else rank - 2])
            same(n, po[rank - 1], b.id, pb[rank - 2 if tb else rank - 1])
            same(a.id, pa[rank - 2 if ta else rank - 1], b.id, pb[rank - 1 if tb else rank - 2])
        elif node.op in ("sum", "max"):
            kept = [d for d in range(len(ins[0].shape)) if p["keepdims"] or d not in p["axes"]]
            for out_axis, d in enumerate(kept):
                if d not in p["axes"]:
                    same(n, out_axis, ins[0].id, d)
        elif node.op == "transpose":
            for d, src in enumerate(p["perm"]):
                same(n, d, ins[0].id, src)
        elif node.op in ("solve", "triangular_solve", "cholesky_solve", "det", "slogdet"):
            for d in range(rank):       # b's shape; the matrices' stack
                same(n, d, ins[-1].id if "solve" in node.op else ins[0].id, d)
        elif node.op in ("svd", "qr", "pinv"):  # the stack's axes; k = min(m, n), one of
            for d in range(rank - 2):           # the matrix's; pinv's (n, m)
                same(n, d, ins[0].id, d)
            rows, columns = ins[0].shape[-2:]
            if node.op == "pinv":
                same(n, rank - 2, ins[0].id, rank - 1)
                same(n, rank - 1, ins[0].id, rank - 2)
            else:
                same(n, rank - 1, ins[0].id, rank - 2 if rows < columns else rank - 1)
        elif node.op in CHECKS:         # the operand's shape
            for d in range(rank):
                same(n, d, ins[0].id, d)
        elif node.op in ("take", "scatter_add"):
            x, idx = ins
            axis, k = p["axis"], len(idx.shape)
            # take: out = x[:axis] + idx + x[axis+1:]; scatter_add: u = out[:axis] + idx + out[axis+1:]
            full, small = (n, x.id) if node.op == "take" else (x.id, n)
            small_rank = len(g.node(small).shape)
            for d in range(axis):
                same(full, d, small, d)
            for d in range(k):
                same(full, axis + d, idx.id, d)
            for d in range(axis + 1, small_rank):
                same(full, d + k - 1, small, d)
        elif node.op in ("slice", "unslice"):
            inner, outer = (node, ins[0]) if node.op == "slice" else (ins[0], node)
            for d, (start, step) in enumerate(zip(p["starts"], p["steps"])):
                if _full_range(start, step, inner.shape[d], outer.shape[d]):
                    same(inner.id, d, outer.id, d)
                else:
                    self._sliced[(inner.id, d)] = (outer.id, p)
        elif node.op == "concat_piece":     # the last operand's shape, the whole's off the axis
            for d in range(rank):
                same(n, d, ins[-1].id, d)
                if d != p["axis"]:
                    same(n, d, ins[0].id, d)
        elif node.op == "concatenate":
            for x in ins:
                for d in range(rank):
                    if d != p["axis"]:
                        same(n, d, x.id, d)
        elif node.op == "reshape":
            for d, j in _kept_axes(ins[0].shape, node.shape):
                same(n, d, ins[0].id, j)
        elif node.op not in ("input", "const", "numel"):     # elementwise, log_softmax
            for x in ins:
                for d in range(rank):
                    j = _aligned(rank, x, d)
                    if j is not None:
                        same(n, d, x.id, j)

    # -- expressions -----------------------------------------------------------
    def _named_of_size(self, value: int) -> list[str]:
        """The expressions of the named classes of this size, in naming order."""
        return [expr for (nid, axis), expr in self._expr.items()
                if self.graph.node(nid).shape[axis] == value]

    def _guess(self, node: Node, d: int) -> str:
        """Axis d of `node`, which no rule reaches: a named class of its size,
        else the literal. Where several classes have that size (a batch as long
        as the sequence), the one holding an argument's axis d, in an argument
        of the node's rank (a mean's gradient broadcast back to x's shape takes
        x's axes), else axis d of the first node of this shape (the forward
        value such a gradient is broadcast back to), else the first: the choice
        made at batch sizes where the sizes differ, so that those share one
        module."""
        value = node.shape[d]
        named = self._named_of_size(value) if value != 1 else []
        for expr in named:
            if self._argument_axes.get(expr) == (len(node.shape), d):
                return expr
        for nid, exprs in self.exprs.items():      # an earlier node of this shape's axis d
            if self.graph.node(nid).shape == node.shape and exprs[d] in named:
                return exprs[d]
        return named[0] if named else str(value)

    def _split(self, source: list[str], sizes: list[int]) -> list[str] | None:
        """The factors of the axes named `source` (products, of axes merged
        before), grouped in order into axes of these sizes, else None:
        (n*T, D) -> (n, T, D) takes n and T back, and (2n, 3) -> (n, 6) takes n
        and 2*3, by structure, not by a guess among axes of one size. Failing
        that, a quotient's factors above are grouped and its divisors divide
        the last axis: (n*T*D // 2, 2) -> (n, T, D // 2, 2), the rows of a
        product over a reshaped input, split back."""
        grouped = self._grouped([f for e in source for f in _factors(e)], sizes, [])
        if grouped is not None:
            return grouped
        above, below = [], []
        for e in source:
            factors, divisors = _fraction(e)
            above += factors
            below += divisors
        return self._grouped(above, sizes, below) if below else None

    def _grouped(self, factors: list[str], sizes: list[int], divisors: list[str]):
        """`factors` grouped in order into products of these sizes, the last
        one divided by `divisors`; None where they do not fit. Grouped by
        the traced values: a factor may be split between two axes
        (_may_share), and `parts` holds the value of the part left of it."""
        divided = 1
        for d in divisors:
            value = self._value_of(d)
            if value is None:
                return None
            divided *= value
        factors, groups, parts = list(factors), [], {}     # parts: a factor's part left
        for k, size in enumerate(sizes):
            target = size * divided if k == len(sizes) - 1 else size
            group, product = [], 1
            while product < target and factors:
                value = parts.get(factors[0]) or self._value_of(factors[0])
                if value is None:
                    return None
                need = target // product
                if (value > need and target % product == 0 and value % need == 0
                        and self._may_share(group, factors[0])):
                    # a factor shared by two axes (2n from n and T's 2): the
                    # group takes the part it needs, the next axis the rest
                    rest = (str(value // need) if factors[0].isdigit()
                            else _quotient([factors[0]], [str(need)]))
                    parts[rest] = value // need
                    factors[0] = rest
                    value = need
                    group.append(str(need))
                else:
                    group.append(factors.pop(0))
                product *= value
            if product != target:
                return None
            groups.append(_product(group))
        if factors or not groups:
            return None
        if divisors:
            groups[-1] = _quotient([groups[-1]], divisors)
        return groups

    @staticmethod
    def _may_share(group: list[str], factor: str) -> bool:
        """Whether `factor` may be split between `group` and the next axis: only
        after an axis read from an argument (as n in 2n), and never an
        argument's first axis, the batch by convention. Split by a literal, the
        batch would give that literal's batch sizes modules of their own:
        (4, n, 3) -> (n, 12) took 4 * 2 and n // 2 at n = 8. (A batch that
        is not first still can be: (3, n) -> (n, 3) takes 3 * 2 at n = 6.)"""
        return any(_SHAPE_READ.search(f) for f in group) and not _FIRST_AXIS.fullmatch(factor)

    def _value_of(self, expr: str) -> int | None:
        """The traced size of a literal or of a named class's expression."""
        if expr.isdigit():
            return int(expr)
        return next((self.graph.node(nid).shape[axis] for (nid, axis), e in self._expr.items()
                     if e == expr), None)

    def _derive(self, node: Node) -> list[str]:
        dims = []
        for d, value in enumerate(node.shape):
            if value == 1:
                dims.append("1")
                continue
            root = self._find((node.id, d))
            if root not in self._expr:
                self._expr[root] = self._slice_of(root) or self._rule(node, d, dims)
            dims.append(self._expr[root])
        return dims

    def _slice_of(self, root) -> str | None:
        """The length of a partial slice in the class (a static size, or one
        from the end), from its outer axis's expression, when that is known.
        Found through the class, not at the slice: an unslice (a slice's
        gradient) meets its inner axis first at the gradient flowing in, a
        broadcast_to (n, 2) for `x[:, 1:]` of x (n, 3), which would otherwise
        guess x.shape[0] for the 2 in a trace where n is 2."""
        for (nid, d), (outer, p) in self._sliced.items():
            outer_size = self.graph.node(outer).shape[d]
            size = "1" if outer_size == 1 else self._expr.get(self._find((outer, d)))
            if size is not None and self._find((nid, d)) == root:
                return slice_length(size, outer_size, p, d, self.graph.node(nid).shape[d])
        return None

    def _rule(self, node: Node, d: int, before: list[str]) -> str:
        """The expression of a class first met at axis d of `node` (earlier axes in `before`)."""
        ins = [self.graph.node(i) for i in node.inputs]
        if node.op == "concatenate":
            return "(" + " + ".join(self.exprs[x.id][d] for x in ins) + ")"
        if node.op == "eigh" and d == len(node.shape) - 2:     # a row of eigenvalues on n rows
            return f"({self.exprs[ins[0].id][d]} + 1)"
        if node.op in ("svd", "qr") and d == len(node.shape) - 2:  # m + 1 + n or m + n rows
            m, n = self.exprs[ins[0].id][-2:]
            return f"({m} + {'1 + ' if node.op == 'svd' else ''}{n})"
        if node.op == "reshape":
            reshaped = self._reshaped(node, d, before)
            if reshaped is not None:
                return reshaped
        return self._guess(node, d)

    def _reshaped(self, node: Node, d: int, before: list[str]) -> str | None:
        """Axis d of a reshape, by the run of axes it belongs to (see _runs): a
        merged run's product; a split axis's factors (_split); else what is left
        when the other axes are named. In a split run with axes still unnamed
        after d, a class of d's size that the source could hold (_could_split),
        else the traced size: a batch of 4 took the batch's class for 4 heads
        split off the width, and compiled a module of its own."""
        src = self.graph.node(node.inputs[0])
        runs = _runs(src.shape, node.shape)
        for axes, outs in runs:
            if outs == [d]:     # axes merged: their product (a convolution's rows)
                return _product([self.exprs[src.id][j] for j in axes])
            if d in outs:       # axes split: their factors, where they are products
                factors = self._split([self.exprs[src.id][j] for j in axes],
                                      [node.shape[k] for k in outs])
                if factors is not None:
                    return factors[outs.index(d)]
        rest = [self._derive_later(node, k) for k in range(d + 1, len(node.shape))]
        others = node.shape[:d] + node.shape[d + 1:]
        # the one axis left: the size over the others (unless one is 0:
        # then any size fits the trace's, and the quotient would be 0)
        if None not in rest and 0 not in others:
            return _quotient(self.exprs[src.id], before + rest)
        axes, outs = next(((a, o) for a, o in runs if d in o), (None, None))
        if outs is None or len(outs) < 2:
            return None
        source = [self.exprs[src.id][j] for j in axes]
        later = [self._derive_later(node, k) for k in outs if k > d]
        if None in later:
            named = [e for e in self._named_of_size(node.shape[d]) if self._could_split(source, e)]
            return named[0] if named else str(node.shape[d])
        return _quotient(source, [before[k] for k in outs if k < d] + later)

    def _could_split(self, source: list[str], expr: str) -> bool:
        """Whether `expr` may name an axis split off axes named `source`: made
        of the arguments' axes they are made of (the batch, where the axes
        split are a product or quotient of it)."""
        return set(_SHAPE_READ.findall(expr)) <= {r for e in source for r in _SHAPE_READ.findall(e)}

    def _derive_later(self, node: Node, k: int) -> str | None:
        """Axis k's expression if its class is already named (or is 1), else None."""
        if node.shape[k] == 1:
            return "1"
        return self._expr.get(self._find((node.id, k)))
