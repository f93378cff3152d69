"""`solve_with_factors`: np.linalg.solve with a Cholesky factor in the graph
solves with the factor's triangle, not an LU factorization of its own.

- solve(L, b) and solve(L^T, b), L = cholesky(x): L is lower triangular by
  construction (its upper triangle is zeros), so these are triangular
  solves (BLAS ?trsm, n^2 k multiply-adds where LU takes n^3 / 3 more);
  solve's gradient solves with L^T and is caught the same way. So is a
  factor converted to another float type and back (float32's L: float32
  linear algebra computes in float64, as NumPy's).
- solve(K, b) and solve(K^T, b) where cholesky(K) is also computed (a
  Gaussian process's likelihood, K^-1 y and log det K): `cholesky_solve`,
  which checks at run time that the matrix is symmetric and then solves with
  L and L^T; a matrix that is not (cholesky reads only K's lower triangle)
  is solved by LU, as before. In such a graph a product of an array with its
  own transpose is made symmetric bit for bit (`symmetric`: GEMM sums the
  two triangles in different orders), as NumPy's (BLAS ?syrk) is, so a K
  made of one passes the test; elsewhere that pass over the product cost up
  to 2x a product of few columns (a review), and nothing needs it.
Gaussian process likelihood at n = 400 (benchmarks/bench_gaussian_process.py):
the forward's solve 1.7 ms by LU, against about 0.2 ms with the factor.
"""
from __future__ import annotations

from graphc.ir import Graph
from graphc.passes.rewrite import rewrite
from graphc.passes.simplify import swaps_last_two


def _under_swaps(graph: Graph, nid: int) -> tuple[int, int]:
    """(m, count): node `nid` is m under `count` swaps of the last two axes (a
    gradient's solve with a^T, where a is L^T, reads (L^T)^T)."""
    count = 0
    while swaps_last_two(node := graph.node(nid)):
        nid, count = node.inputs[0], count + 1
    return nid, count


def _triangle_under(graph: Graph, nid: int) -> int | None:
    """The number of swaps of the last two axes between node `nid` and a
    Cholesky factor it is made of by swaps and float conversions (a float32
    L is cholesky's float64 one converted: graphc/matrices.py), else None:
    each keeps a triangle's zeros, so `nid` is lower triangular when the
    count is even, upper when odd."""
    count = 0
    while True:
        node = graph.node(nid)
        if node.op == "cholesky":
            return count
        if swaps_last_two(node):
            count += 1
        elif not (node.op == "convert" and node.dtype.kind == "f"
                  and graph.node(node.inputs[0]).dtype.kind == "f"):
            return None
        nid = node.inputs[0]


def _is_gram(node) -> bool:
    """x @ x.T or x.T @ x (the transposes folded into flags by simplify)."""
    return (node.op == "matmul" and node.inputs[0] == node.inputs[1]
            and node.p.get("transpose_a", False) != node.p.get("transpose_b", False)
            and not node.p.get("symmetric", False))


def _transpose_of(new: Graph, nid: int) -> int:
    """Node `nid` with its last two axes swapped, in the new graph (Graph.add
    gives the rewritten graph's own transpose node, when it has one)."""
    x = new.node(nid)
    rank = len(x.shape)
    perm = tuple(range(rank - 2)) + (rank - 1, rank - 2)
    return new.add("transpose", (nid,), {"perm": perm}, x.shape[:-2] + x.shape[:-3:-1],
                   x.dtype, x.weak, x.loc).id


def solve_with_factors(graph: Graph) -> Graph:
    # each factored matrix under its transposes (cholesky(K, upper=True) factors K^T,
    # which is K where the run-time check lets cholesky_solve use the factor)
    factors = {_under_swaps(graph, n.inputs[0])[0]: n for n in graph.topo()
               if n.op == "cholesky"}
    if not factors or not any(n.op == "solve" for n in graph.topo()):
        return graph        # (a rebuild is 1-2 ms of a new batch size's trace)

    def rule(new: Graph, node, inputs):
        if _is_gram(node):      # (x @ x.T: symmetric bit for bit, so a K made of it passes)
            return ("matmul", inputs, {**node.p, "symmetric": True})
        if node.op != "solve":
            return None
        swaps = _triangle_under(graph, node.inputs[0])
        if swaps is not None:       # a factor, transposed or converted: the triangle it is
            return ("triangular_solve", inputs, {"lower": swaps % 2 == 0, "transposed": False})
        matrix, swaps = _under_swaps(graph, node.inputs[0])
        if matrix not in factors:
            return None
        below = inputs[0]           # the matrix, without its swaps, in the new graph
        for _ in range(swaps):
            below = new.node(below).inputs[0]
        # the factor: the graph's own cholesky node, added here if the solve comes
        # first (Graph.add then gives the cholesky node this one)
        c = factors[matrix]
        factored = below        # the cholesky's own operand, rewritten: K or a transpose of it
        for _ in range(_under_swaps(graph, c.inputs[0])[1]):
            factored = _transpose_of(new, factored)
        cholesky = new.add("cholesky", (factored,), c.p, c.shape, c.dtype, c.weak, c.loc)
        return ("cholesky_solve", (inputs[0], cholesky.id, inputs[1]), {})
    return rewrite(graph, rule)
