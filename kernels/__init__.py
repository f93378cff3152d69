"""graphc.kernels: hand-written Numba code that graphc's generated modules call.

Numerics live here once: the NumPy reference interpreter and the generated
Numba code call the same functions.
"""
