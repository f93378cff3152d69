"""SciPy's special-function ufuncs graphc computes (graphc.special): values and
dtypes equal SciPy's, gradients equal central differences, compiled equals
the interpreter; the SciPy functions it cannot trace are named."""
import numpy as np
import pytest
import scipy.special as sp

import graphc as gc
from graphc import api

RNG = np.random.default_rng(0)
X = RNG.normal(size=6) * 3
P = RNG.uniform(0.05, 0.95, 6)
Y = np.array([0.0, 0.0, 3.0, -1.0, np.nan, np.inf])     # xlogy's special cases, x = 0 below
ZEROS_AND_TWO = np.array([0.0, 2.0, 0.0, 0.0, 0.0, 0.0])

CASES = [   # (function, arguments): one a line, so a failure names its line
    (sp.expit, (X,)),
    (sp.log_expit, (X * 30,)),                          # far into both tails
    (sp.logit, (P,)),
    (sp.erf, (X,)),
    (sp.xlogy, (ZEROS_AND_TWO, Y)),                     # 0 where x is 0 and y is not nan
    (sp.xlog1py, (ZEROS_AND_TWO, Y - 1)),
    (sp.expit, (np.array([1, -2], np.int8),)),          # SciPy's float64 loop comes first
    (sp.erf, (np.array([1, -2], np.int16),)),
    (sp.xlogy, (X.astype(np.float32), 2)),              # a Python number: float64
    (sp.xlogy, (X.astype(np.float32), P.astype(np.float32))),
    (sp.logit, (P.astype(np.float32),)),
    (sp.expm1, (np.array([1, -2], np.int8),)),          # SciPy's rules, not np.expm1's float32
    (sp.cbrt, (X.astype(np.float32),)),
]


@pytest.mark.parametrize("fn, args", CASES, ids=[f"{f.__name__}-{k}" for k, (f, _) in enumerate(CASES)])
def test_values_and_dtypes_equal_scipys(fn, args):
    with np.errstate(invalid="ignore", divide="ignore"):
        want = fn(*args)
        got = gc.jit(fn).interpret(*args)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6 if want.dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("fn, args", [
    (sp.expit, (X,)), (sp.log_expit, (X,)), (sp.logit, (P,)),
    (sp.xlogy, (X, P + 0.5)), (sp.xlog1py, (X, P)),
    (sp.xlogy, (ZEROS_AND_TWO, P + 0.5)),               # at x = 0 the slope in x is log(y)
], ids=["expit", "log_expit", "logit", "xlogy", "xlog1py", "xlogy-at-0"])
def test_gradients_equal_central_differences(fn, args):
    def loss(*a):
        return np.sum(fn(*a) * np.arange(1.0, 7.0))

    argnums = tuple(range(len(args)))
    api.check_grad_values(loss, args, gc.grad(loss, argnums=argnums).interpret(*args), argnums)


def test_compiled_equals_the_interpreter():
    f = gc.jit(lambda x, p, z, y: (sp.expit(x), sp.log_expit(x), sp.logit(p), sp.xlogy(z, y),
                                   sp.xlog1py(z, y - 1), sp.erf(x.astype(np.float32))))
    args = (X, P, ZEROS_AND_TWO, Y)
    with np.errstate(divide="ignore"):      # 2 * log(0) = -inf: NumPy warns, SciPy does not
        expected = f.interpret(*args)
    for got, want in zip(f(*args), expected):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-300)


def test_what_scipy_graphc_lacks_is_named_with_the_line():
    with pytest.raises(gc.UnsupportedOpError,
                       match=r"ufunc scipy.special.gammaln is not supported by graphc \(at .*test_special"):
        gc.jit(sp.gammaln).interpret(P)
    # SciPy's Python functions convert their arguments: graphc names the function and its own
    with pytest.raises(gc.TracerError, match=r"scipy's logsumexp, which converts .*gc.nn.logsumexp"):
        gc.jit(lambda x: sp.logsumexp(x)).interpret(X)
    import scipy.linalg
    with pytest.raises(gc.TracerError, match=r"scipy's solve_triangular, which converts .*"
                                             r"np.linalg's solve, cholesky"):
        gc.jit(lambda x: scipy.linalg.solve_triangular(x[:4].reshape(2, 2), x[:2])).interpret(X)
