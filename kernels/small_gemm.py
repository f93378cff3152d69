"""GEMM for small matrices, in registers: no packing, no library call.

OpenBLAS's Haswell kernels (those AVX2 CPUs get) pack both operands into
buffers before every product, however small. For W4's 32x64 @ 64x64
float32 layers on this AMD EPYC VM that took 3.5 us a product (75
GFLOP/s) on a quiet machine, where the same FMAs straight from the
operands take 2.9 us (91 GFLOP/s); in a chain of eight layers through
blas.gemm, 4.2 against 3.3 us on a busy one. With more to sum than 64 the
operands outgrow L1 and OpenBLAS's cache blocking wins
(benchmarks/bench_small_gemm.py, blas._small_pays).

The micro-kernel keeps a block of ROWS x (VECTORS * lanes) of c in vector
registers and adds one rank-1 product a[:, p] b[p, :] per step of k: four
rows and two vectors of 8 float32 (or 4 float64) are 8 accumulators, 2
loads of b and 4 broadcasts of a, within AVX2's 16 registers. LLVM's
vectorizers do not find this from scalar loops (3 GFLOP/s), so it is
written in LLVM IR (`_micro_kernel`). Rows left over run one at a time,
a last vector of columns on its own; columns that are not a whole vector
are left to BLAS (blas._small_pays): scalar code for them took longer than
the whole BLAS call (64x64 @ 64x10 float32: 8.3 against 2.3 us), and so
did AVX2's masked loads and stores (2.8 against 1.8 us).

Generated code reaches it through blas.gemm's C function, called by its
address (blas.GEMM_TABLE), so its code is compiled once per install, not
again inside every model's module.
"""
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

ROWS, VECTORS = 4, 2


def _micro_kernel(rows: int, vectors: int):
    """An intrinsic computing c[i0:i0+rows, j0:j0+vectors*lanes] =
    alpha * a[i0:i0+rows, :] @ b[:, j0:...] + beta * c[...] (c not read
    when beta is 0, as in BLAS). Any strides for a; the rows of b and c must
    be contiguous (vector loads and stores)."""
    @intrinsic
    def micro(typingctx, a, b, c, i0, j0, alpha, beta):
        sig = types.void(a, b, c, types.intp, types.intp, c.dtype, c.dtype)

        def codegen(context, builder, sig, args):
            A, B, C = (context.make_array(t)(context, builder, v)
                       for t, v in zip(sig.args[:3], args[:3]))
            i0, j0, alpha, beta = args[3:]
            f = context.get_value_type(sig.args[2].dtype)
            lanes = 32 // context.get_abi_sizeof(f)
            vec = ir.VectorType(f, lanes)
            intp = context.get_value_type(types.intp)
            i8p = ir.IntType(8).as_pointer()

            def at(arr, row, col, ty):      # a pointer to arr[row, col] as ty*
                s0, s1 = (builder.extract_value(arr.strides, d) for d in range(2))
                offset = builder.add(builder.mul(row, s0), builder.mul(col, s1))
                return builder.bitcast(builder.gep(builder.bitcast(arr.data, i8p), [offset]),
                                       ty.as_pointer())

            def const(v):
                return ir.Constant(intp, v)

            def splat(x):
                one = builder.insert_element(ir.Constant(vec, ir.Undefined), x,
                                             ir.Constant(ir.IntType(32), 0))
                return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined),
                                              ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                          [0] * lanes))

            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vec, [vec] * 3),
                f"llvm.fma.v{lanes}{'f32' if lanes == 8 else 'f64'}")
            # accumulators in allocas: LLVM's mem2reg keeps them in registers
            acc = [[cgutils.alloca_once_value(builder, ir.Constant(vec, None))
                    for _ in range(vectors)] for _ in range(rows)]
            k = builder.extract_value(A.shape, 1)
            with cgutils.for_range(builder, k) as loop:
                p = loop.index
                bv = [builder.load(at(B, p, builder.add(j0, const(lanes * v)), vec), align=1)
                      for v in range(vectors)]
                for r in range(rows):
                    ar = splat(builder.load(at(A, builder.add(i0, const(r)), p, f)))
                    for v in range(vectors):
                        builder.store(builder.call(fma, [ar, bv[v], builder.load(acc[r][v])]),
                                      acc[r][v])
            zero = builder.fcmp_ordered("==", beta, ir.Constant(f, 0))
            for r in range(rows):
                for v in range(vectors):
                    ptr = at(C, builder.add(i0, const(r)), builder.add(j0, const(lanes * v)), vec)
                    scaled = builder.fmul(splat(alpha), builder.load(acc[r][v]))
                    with builder.if_else(zero) as (no_c, with_c):
                        with no_c:
                            builder.store(scaled, ptr, align=1)
                        with with_c:
                            old = builder.load(ptr, align=1)
                            builder.store(builder.call(fma, [splat(beta), old, scaled]), ptr,
                                          align=1)
            return context.get_dummy_value()

        return sig, codegen

    return micro


_block = _micro_kernel(ROWS, VECTORS)
_block_row = _micro_kernel(1, VECTORS)
_vector = _micro_kernel(ROWS, 1)
_vector_row = _micro_kernel(1, 1)


@njit(cache=True, nogil=True)
def gemm_in_registers(a, b, c, alpha, beta):
    """c = alpha * a @ b + beta * c for 2-D float32/float64 arrays (c not
    read when beta is 0), for c with a whole number of 256-bit vectors a row
    (n % 8 float32, n % 4 float64), the rows of b and c contiguous and c
    not overlapping a or b. a may be a transposed view."""
    m, n = c.shape
    k = a.shape[1]
    lanes = 32 // c.itemsize
    if a.shape[0] != m or b.shape[0] != k or b.shape[1] != n:
        raise ValueError("small_gemm: the shapes of a, b and c do not fit together")
    if n % lanes or (n and k and b.strides[1] != b.itemsize) or (
            n and m and c.strides[1] != c.itemsize):
        raise ValueError("small_gemm: the rows of b and c must be contiguous and whole vectors")
    width = VECTORS * lanes
    whole = m - m % ROWS
    for j in range(0, n - width + 1, width):
        for i in range(0, whole, ROWS):
            _block(a, b, c, i, j, alpha, beta)
        for i in range(whole, m):
            _block_row(a, b, c, i, j, alpha, beta)
    if n % width:       # one vector of columns left
        j = n - lanes
        for i in range(0, whole, ROWS):
            _vector(a, b, c, i, j, alpha, beta)
        for i in range(whole, m):
            _vector_row(a, b, c, i, j, alpha, beta)
