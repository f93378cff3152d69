"""How the kernels' Numba dispatchers are called from generated code."""
from numba import types


def unliteral_calls(dispatcher):
    """Make `dispatcher` compile for the types of constants, not their values.

    Called from compiled code with a constant (`alloc.slot_offsets(ws, 5,
    ...)`, a literal shape, gemm's transpose flags), a Numba dispatcher
    compiles a version for that one value: a cold test suite compiled these
    helpers 148 times, about 51 s of its CPU. Typed as int64 or bool they
    compile once, and the caller casts its constants to those types."""
    resolve = dispatcher.get_call_template

    def get_call_template(args, kws):
        return resolve(tuple(types.unliteral(a) for a in args),
                       {k: types.unliteral(v) for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template
    return dispatcher
