"""SciPy's special-function ufuncs that graphc computes: scipy.special.erf,
expit, log_expit, logit, xlogy, xlog1py, expm1, log1p, cbrt and exp2. They reach a traced array's
__array_ufunc__ as NumPy's ufuncs do, and are written with graphc's ops.

SciPy lists each ufunc's float64 loop first, so it computes integers and
mixed arguments in float64 (expit of int8 and xlogy of a float32 array and a
Python number are float64): float32 only when every argument is a float32
array. NumPy's own float ufuncs pick the smallest float instead.
"""
from __future__ import annotations

import numpy as np

from graphc import nn
from graphc import numpy_api as fnp
from graphc import prims as P


def _scipy_float(*xs):
    xs = fnp._arrays_of_lists(*xs)
    float32 = all(not fnp._is_weak(x) and fnp.aval_of(x)[1] == np.float32 for x in xs)
    dtype = np.dtype(np.float32 if float32 else np.float64)
    return [fnp.to_operand(x, dtype) for x in xs]


def expit(x):
    return nn.sigmoid(*_scipy_float(x))


def log_expit(x):
    """log(expit(x)) = -softplus(-x): finite far into both tails."""
    x, = _scipy_float(x)
    return fnp.negative(nn.softplus(fnp.negative(x)))


def logit(p):
    """log(p / (1 - p)), as log(p) - log1p(-p)."""
    p, = _scipy_float(p)
    return fnp.subtract(fnp.log(p), fnp.log1p(fnp.negative(p)))


def _x_log(log, finite_from):
    """x * log(y) (or log1p), 0 where x is 0 and y is not nan, as SciPy's.
    Only there y is replaced by a neutral 1, so the slope in x stays log(y)
    wherever log(y) is finite, and nothing meets 0 * inf."""
    def x_log(x, y):
        x, y = _scipy_float(x, y)
        finite = fnp.logical_and(fnp.greater(y, finite_from), fnp.less(y, np.inf))
        neutral = fnp.logical_and(fnp.logical_and(fnp.equal(x, 0), fnp.equal(y, y)),
                                  fnp.logical_not(finite))
        return fnp.multiply(x, log(fnp.where(neutral, 1 if log is fnp.log else 0, y)))
    return x_log


xlogy, xlog1py = _x_log(fnp.log, 0), _x_log(fnp.log1p, -1)

def _scipy_unary(prim):
    return lambda x: prim(*_scipy_float(x))


UFUNCS = {"erf": _scipy_unary(P.erf), "expit": expit, "log_expit": log_expit, "logit": logit,
          "xlogy": xlogy, "xlog1py": xlog1py, "expm1": _scipy_unary(P.expm1), "log1p": _scipy_unary(P.log1p),
          "cbrt": _scipy_unary(P.cbrt), "exp2": _scipy_unary(P.exp2)}
