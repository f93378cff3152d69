"""The shape test at the top of every generated `run`, as one intrinsic.

Written as `a.shape[0] != b.shape[1] or ...`, each comparison cost Numba
about 17 ms to compile (a block, a getattr, a getitem and a compare each
in its IR); W4's test has 39 of them (30 between its arrays' shapes, 9
against the workspace's header). `differ` emits the same comparisons
straight as LLVM instructions from a constant description: about 5 ms each.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic


def _term(text: str):
    """'#7' -> 7; '2.1' -> ('shape', 2, 1): arrays[2].shape[1]; '3[4]' ->
    ('item', 3, 4): arrays[3][4] of a 1-D integer array."""
    if text.startswith("#"):
        return int(text[1:])
    if text.endswith("]"):
        k, index = text[:-1].split("[")
        return ("item", int(k), int(index))
    k, d = text.split(".")
    return ("shape", int(k), int(d))


def parse(spec: str) -> list[tuple]:
    """The pairs of terms a spec 'left=right;left=right' compares."""
    return [tuple(_term(t) for t in pair.split("=")) for pair in spec.split(";")]


@intrinsic(prefer_literal=True)
def differ(typingctx, spec, arrays):
    """Whether any pair of terms the constant string `spec` names differs,
    over the tuple `arrays` (see parse: shape entries, items of 1-D integer
    arrays such as the workspace header, integer constants)."""
    if not isinstance(spec, types.StringLiteral):
        raise TypingError("shapes.differ: the spec must be a constant string")
    pairs = parse(spec.literal_value)
    for pair in pairs:
        for term in pair:
            if isinstance(term, tuple) and not (
                    term[1] < len(arrays) and isinstance(arrays[term[1]], types.Array)):
                raise TypingError(f"shapes.differ: no array {term[1]} for {spec.literal_value!r}")

    def codegen(context, builder, sig, args):
        _, tup = args
        intp = context.get_value_type(types.intp)

        def value(term):
            if isinstance(term, int):
                return ir.Constant(intp, term)
            kind, k, index = term
            aryty = sig.args[1][k]
            ary = context.make_array(aryty)(context, builder, builder.extract_value(tup, k))
            if kind == "shape":
                return builder.extract_value(ary.shape, index)
            ptr = cgutils.get_item_pointer2(
                context, builder, ary.data, cgutils.unpack_tuple(builder, ary.shape),
                cgutils.unpack_tuple(builder, ary.strides), aryty.layout,
                [ir.Constant(intp, index)])
            return context.cast(builder, builder.load(ptr), aryty.dtype, types.intp)

        out = cgutils.false_bit
        for left, right in pairs:
            out = builder.or_(out, builder.icmp_signed("!=", value(left), value(right)))
        return out

    return types.boolean(spec, arrays), codegen
