"""Differential fuzzing: random programs over the op registry.

Hypothesis draws a program (1-30 ops over 1-3 inputs of broadcastable random
shapes). The same Python function runs as real NumPy on arrays (the oracle),
through graphc's reference interpreter, and compiled with fusion; gradients
are checked in a random direction against central differences in float64.
`make fuzz` runs many more examples (HYPOTHESIS_PROFILE=fuzz).
"""
import os

import numpy as np
import scipy.special
from hypothesis import example, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import graphc as gc


def _stable_log_softmax(z):
    """The hand-written form graphc rewrites into its log_softmax op."""
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


UNARY = {
    "neg": lambda a: -a,
    "log": lambda a: np.log(np.abs(a) + 1.0),
    "sqrt": lambda a: np.sqrt(np.abs(a) + 1.0),
    "exp": lambda a: np.exp(np.tanh(a)),
    "expm1": lambda a: np.expm1(np.tanh(a)),
    "log1p": lambda a: np.log1p(np.abs(a)),
    "sin": np.sin, "cos": np.cos, "tanh": np.tanh, "erf": scipy.special.erf,
    "arctan": np.arctan, "arcsinh": np.arcsinh, "sinh": lambda a: np.sinh(np.tanh(a)),
    "log2": lambda a: np.log2(np.abs(a) + 1.0),
    "square": np.square, "cube": lambda a: a ** 3.0,
    "sigmoid": gc.nn.sigmoid, "softplus": gc.nn.softplus, "relu": gc.nn.relu,
    "sigmoid_by_hand": lambda a: 1 / (1 + np.exp(-a)),      # the sigmoid op (simplify)
    "scale": lambda a: 0.5 * a + 1.0,
    "sum_keep": lambda a: np.sum(a, axis=-1, keepdims=True),
    "max_keep": lambda a: np.max(a, axis=0, keepdims=True),
    "mean_keep": lambda a: a.mean(axis=-1, keepdims=True),
    "softmax": lambda a: gc.nn.softmax(a, axis=-1),
    "log_softmax": lambda a: _stable_log_softmax(a - np.max(a, axis=-1, keepdims=True)),
    "flip": lambda a: a[..., ::-1],
    "transpose": lambda a: a.T,
    "gram": lambda a: a @ a.T if a.ndim == 2 else a * a,
    # a product added to a value nothing else reads: one GEMM adding into it
    "plus_gram": lambda a: np.tanh(a) + a @ a.T if a.ndim == 2 and a.shape[0] == a.shape[1] else a,
    "concat": lambda a: np.concatenate([a, a * 2.0], axis=-1)[..., : a.shape[-1]],
}
# Each example compiles a new module (4-8 s for a random gradient program on
# a slow night): few in the normal suite, which must stay near 10 minutes in
# CI, and many under `make fuzz` (300).
EXAMPLES = int(os.environ.get("GRAPHC_FUZZ_EXAMPLES", "4"))

BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply,
    "div": lambda a, b: a / (np.abs(b) + 1.0),
    "maximum": np.maximum, "minimum": np.minimum,
    "where": lambda a, b: np.where(a > b, a, b * 0.5),
    "logaddexp": np.logaddexp,
    "hypot": lambda a, b: np.hypot(a, np.abs(b) + 1.0),
    "arctan2": lambda a, b: np.arctan2(a, np.abs(b) + 1.0),
}


@st.composite
def programs(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=draw(st.integers(1, 3)),
                                                    min_dims=1, max_dims=3, min_side=1,
                                                    max_side=4))
    steps = draw(st.lists(st.tuples(st.sampled_from(sorted(UNARY) + sorted(BINARY)),
                                    st.integers(0, 1000), st.integers(0, 1000)),
                          min_size=1, max_size=30))
    return list(shapes.input_shapes), steps


def run_program(steps, *inputs):
    values = list(inputs)
    for name, i, j in steps:
        a = values[i % len(values)]
        if name in UNARY:
            values.append(UNARY[name](a))
            continue
        b = values[j % len(values)]
        try:
            np.broadcast_shapes(np.shape(a), np.shape(b))
        except ValueError:
            values.append(np.tanh(a))            # shapes do not meet: stay unary
            continue
        values.append(BINARY[name](a, b))
    # every value feeds the output, so every op is exercised and differentiated
    return sum(np.sum(np.tanh(v)) for v in values[len(inputs):])


@settings(max_examples=EXAMPLES)
@given(program=programs(), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2 ** 16))
def test_random_programs_compiled_equal_numpy_and_interpreter(program, dtype, seed):
    shapes, steps = program
    note(f"shapes={shapes} steps={steps}")
    rng = np.random.default_rng(seed)
    args = [rng.normal(size=s).astype(dtype) for s in shapes]
    fn = lambda *a: run_program(steps, *a)  # noqa: E731
    expected = np.asarray(fn(*args))
    compiled = gc.jit(fn)
    out = compiled(*args)
    assert out.dtype == expected.dtype
    tol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(out, compiled.interpret(*args), rtol=tol, atol=tol * 10)


# Shrunk failures, kept as regression examples.
# Two fused groups, each convex alone, that reached each other both ways
# (codegen found no kernel order): fusion now checks with all groups contracted.
CROSSED_GROUPS = ([(3, 1), (1, 1, 1), (1,)], [
    ("logaddexp", 241, 470), ("minimum", 233, 70), ("relu", 585, 760), ("concat", 623, 220),
    ("mean_keep", 0, 196), ("mul", 126, 37), ("sin", 0, 88), ("mean_keep", 165, 150),
    ("sub", 798, 642), ("logaddexp", 625, 126), ("sin", 977, 65), ("scale", 515, 158),
    ("sin", 784, 154), ("where", 462, 536)])


@settings(max_examples=EXAMPLES)
@given(program=programs(), seed=st.integers(0, 2 ** 16))
@example(program=CROSSED_GROUPS, seed=0)
def test_random_program_gradients_in_a_random_direction(program, seed):
    shapes, steps = program
    note(f"shapes={shapes} steps={steps}")
    rng = np.random.default_rng(seed)
    args = [rng.normal(size=s) for s in shapes]
    directions = [rng.normal(size=s) for s in shapes]
    fn = lambda *a: run_program(steps, *a)  # noqa: E731
    grads = gc.grad(fn, argnums=tuple(range(len(args))))(*args)
    analytic = sum(float(np.sum(g * d)) for g, d in zip(grads, directions))
    reference = gc.jit(fn)
    h = 1e-6

    def at(t):
        return float(reference.interpret(*[a + t * d for a, d in zip(args, directions)]))

    numeric = (at(h) - at(-h)) / (2 * h)
    assert abs(analytic - numeric) <= 1e-5 * max(1.0, abs(numeric)), (analytic, numeric)
