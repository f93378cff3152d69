"""How the kernels' Numba dispatchers are called from generated code."""
from numba import types


def unliteral_calls(dispatcher):
    """Make `dispatcher` compile for the types of constants, not their values.

    Called from compiled code with a constant (`alloc.slot_offsets(ws, 5,
    ...)`, a literal shape, gemm's transpose flags), a Numba dispatcher
    compiles a version for that one value: a new model with a new slot
    count compiled slot_offsets again. Typed as int64 or bool they compile
    once per type, and the caller casts its constants to those types. (The
    test suite's time barely moved: 20m38s to 20m32s of CPU cold.)"""
    resolve = dispatcher.get_call_template

    def get_call_template(args, kws):
        return resolve(tuple(types.unliteral(a) for a in args),
                       {k: types.unliteral(v) for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template
    return dispatcher
