"""The IR as text, CSE, verify, DOT, weak typing and the jit cache."""
import collections
import re

import numpy as np
import pytest

import graphc as gc


def test_listing_is_deterministic_jaxpr_like_text():
    def f(x, b):
        return np.sum(np.tanh(x @ b + 1.0) * 2.0, axis=1)

    x, b = np.ones((4, 3), np.float32), np.ones((3, 2), np.float32)
    text = str(gc.trace(f, x, b))
    assert text == str(gc.trace(f, x, b))
    assert text == "\n".join([
        "%0:f32[4,3] = input 0",
        "%1:f32[3,2] = input 1",
        "%2:f32[4,2] = matmul %0 %1",
        "%3:f32[] = const 1.0",
        "%4:f32[4,2] = add %2 %3",
        "%5:f32[4,2] = tanh %4",
        "%6:f32[] = const 2.0",
        "%7:f32[4,2] = mul %5 %6",
        "%8:f32[4] = sum %7 axis=(1,) keepdims=False",
        "return %8",
    ])


def test_operands_are_kept_in_order_on_the_node():
    g = gc.trace(lambda x: x * x - x / 2.0, np.ones(2))
    mul = next(n["node"] for n in g.nx.nodes.values() if n["node"].op == "mul")
    assert mul.inputs[0] == mul.inputs[1]
    sub = next(n["node"] for n in g.nx.nodes.values() if n["node"].op == "sub")
    assert g.node(sub.inputs[0]).op == "mul" and g.node(sub.inputs[1]).op == "div"


def test_identical_subexpressions_are_shared():
    g = gc.trace(lambda x: np.exp(x) + np.exp(x), np.ones(3))
    assert sum(n["node"].op == "exp" for n in g.nx.nodes.values()) == 1


def test_nodes_record_the_users_source_line():
    def f(x):
        return np.log(x)   # this line

    g = gc.trace(f, np.ones(2))
    log = next(n["node"] for n in g.nx.nodes.values() if n["node"].op == "log")
    assert log.loc.endswith(f"test_tracing.py:{f.__code__.co_firstlineno + 1}")


def test_verify_and_dot():
    g = gc.trace(lambda x: np.maximum(x, 0.0).sum(), np.ones(3))
    g.verify()
    dot = g.to_dot()
    assert dot.startswith("digraph") and "maximum" in dot and "->" in dot
    assert g.nx.number_of_nodes() == len(g)


def test_verify_catches_a_mistyped_node():
    from graphc.ir import Node
    g = gc.trace(lambda x: x + 1.0, np.ones(3))
    add = next(n["node"] for n in g.nx.nodes.values() if n["node"].op == "add")
    g.nx.nodes[add.id]["node"] = Node(add.id, "add", add.inputs, add.params, (4,), add.dtype)
    with pytest.raises(gc.GraphcError, match="typed"):
        g.verify()


WEAK_PROMOTIONS = [              # one a line: an error names the line of its case
    (lambda x: 0.5 * x, np.float32),
    (lambda x: x ** 2.0, np.float32),
    (lambda x: x / 3.0, np.float32),
    (lambda x: x + 1, np.float32),
    (lambda x: x * np.float64(2), np.float64),
    (lambda x: x + np.ones(3), np.float64),
    (lambda x: x > 0, np.bool_),
    (lambda x: (x > 0) * x, np.float32),
]


def test_numpy2_promotion_with_weak_python_scalars():
    # one module for every expression (compile time: a module each was 8)
    x = np.ones(3, np.float32)
    results = gc.jit(lambda x: [expr(x) for expr, _ in WEAK_PROMOTIONS])(x)
    for k, ((expr, dtype), got) in enumerate(zip(WEAK_PROMOTIONS, results)):
        assert got.dtype == dtype == expr(x).dtype, (
            f"WEAK_PROMOTIONS[{k}] (line {expr.__code__.co_firstlineno})")


def test_python_scalar_arguments_are_weakly_typed():
    f = gc.jit(lambda a, x: a * x)
    assert f(2.0, np.ones(2, np.float32)).dtype == np.float32
    assert f(2.0, np.ones(2)).dtype == np.float64
    out = gc.jit(lambda a: a * 2)(3)
    assert out.dtype == np.int64 and out.shape == () and int(out) == 6


COMPUTED_FROM_SCALARS = [        # one a line: an error names the line of its case
    (lambda x, n: x * (n + 1), 3),
    (lambda x, n: x * (2.0 * n), 3),
    (lambda x, n: x * (n * 0.5), 3.0),
    (lambda x, n: x / (1 - n), 0.25),
    (lambda x, n: x + (n + 0), 3),
    (lambda x, n: x - abs(n) * 2, -2),
    (lambda x, n: x * (np.float64(2) * n), 3),     # a NumPy scalar is strong
]


def test_python_numbers_computed_from_scalar_arguments_stay_weak():
    # NumPy computes `n + 1` as a Python number, which never widens an array;
    # graphc traced it with a strongly typed literal (float32 x * (n + 1) was
    # float64, uint8 x + (n + 0) was int64).
    # One module for every expression and array type, each with a scalar
    # argument of its own (compile time: a module each was 19)
    xs = {np.dtype(t).name: np.arange(1, 4).astype(t) for t in (np.float32, np.uint8, np.int16)}
    cases = [(k, expr, n, dtype) for dtype in xs
             for k, (expr, n) in enumerate(COMPUTED_FROM_SCALARS)]
    f = gc.jit(lambda xs, ns: [expr(xs[dtype], n) for (_, expr, _, dtype), n in zip(cases, ns)])
    results = f(xs, [n for _, _, n, _ in cases])
    for (k, expr, n, dtype), got in zip(cases, results):
        case = f"COMPUTED_FROM_SCALARS[{k}] (line {expr.__code__.co_firstlineno}), {dtype}"
        want = expr(xs[dtype], n)
        assert got.dtype == want.dtype, case
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=case)


NUMPY_FUNCTIONS_OF_SCALARS = [   # one a line: an error names the line of its case
    (lambda x, s: x * np.maximum(s, 0.0), np.ones(3, np.float32), 2.0),
    (lambda x, s: x * np.multiply(s, 0.5), np.ones(3, np.float32), 2.0),
    (lambda x, s: x * np.sqrt(s), np.ones(3, np.float32), 2.0),
    (lambda x, n: x + np.minimum(n, -1), np.array([1, 200, 3], np.uint8), 5),
    (lambda x, n: x + np.where(n > 0, n - 2, 0), np.array([1, 200, 3], np.uint8), 1),
    (lambda x, n: x + np.sum(n - 2), np.array([1, 200, 3], np.uint8), 1),
    (lambda x, s: np.logaddexp(x, 0.0) * s, np.ones(3, np.float32), 2.0),
]


def test_numpy_functions_of_python_numbers_are_strongly_typed():
    # np.maximum(s, 0.0) of a Python float is an np.float64, which widens a
    # float32 array, where s * 0.5 stays a Python float (found in review:
    # weak constants made these weak; logaddexp's literal was strong before).
    # One module for every case, each with arguments of its own (compile
    # time: a module each was 7)
    exprs = [expr for expr, _, _ in NUMPY_FUNCTIONS_OF_SCALARS]
    f = gc.jit(lambda xs, ns: [expr(x, n) for expr, x, n in zip(exprs, xs, ns)])
    xs = [x for _, x, _ in NUMPY_FUNCTIONS_OF_SCALARS]
    ns = [n for _, _, n in NUMPY_FUNCTIONS_OF_SCALARS]
    for run, how in ((f, "compiled"), (f.interpret, "interpreted")):
        for k, ((expr, x, n), got) in enumerate(zip(NUMPY_FUNCTIONS_OF_SCALARS, run(xs, ns))):
            case = f"NUMPY_FUNCTIONS_OF_SCALARS[{k}] (line {expr.__code__.co_firstlineno}), {how}"
            want = expr(x, n)
            assert got.dtype == want.dtype, case
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=case)


NUMPY_2_CASES = [   # one a line: an error names the line of its case
    lambda i, f, u: np.sqrt(i),                            # float32, as NumPy 2
    lambda i, f, u: np.tanh(i.astype(np.int32)),           # float64
    lambda i, f, u: np.logaddexp(f, i.astype(np.int8)),    # the common type first: float32
    lambda i, f, u: np.logaddexp(i, i),                    # float32
    lambda i, f, u: np.logaddexp(i.astype(np.int64), f),   # float64
    lambda i, f, u: np.logaddexp(u, i.astype(np.int8)),  # float32: each fits it (int32 does not)
    lambda i, f, u: np.power(i > 1, 2),                    # int64: the ufunc has no square shortcut
    lambda i, f, u: (i > 1) ** 2,                          # int8: the operator squares
    lambda i, f, u: np.clip(2, f, f + 1),                  # float64: np.clip makes 2 an int64 array
    lambda i, f, u: np.mean(i),                            # float64, as np.mean and np.var do
    lambda i, f, u: np.var(i),
    lambda i, f, u: np.clip(f, min=0),                     # NumPy 2.1's names for a_min, a_max
    lambda i, f, u: f.clip(max=1.0),
]


def test_result_types_and_clips_keywords_follow_numpy_2():
    # found in review: every integer went to float64 in exp, sqrt, tanh, ...
    # and each side of logaddexp on its own (float32 with int8 was float64).
    # One module for every case (compile time)
    i, f = np.array([1, 2, 4], np.int16), np.array([0.5, -1.0, 3.0], np.float32)
    u = i.astype(np.uint16)
    jf = gc.jit(lambda i, f, u: [case(i, f, u) for case in NUMPY_2_CASES])
    for run, how in ((jf, "compiled"), (jf.interpret, "interpreted")):
        for case, got in zip(NUMPY_2_CASES, run(i, f, u)):
            where = f"NUMPY_2_CASES line {case.__code__.co_firstlineno}, {how}"
            want = case(i, f, u)
            assert got.dtype == want.dtype, where
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=where)
    # bool, int8 and uint8 compute in float16 in NumPy, which graphc lacks: float32
    got = gc.jit(lambda i: [np.exp(i > 1), np.sqrt(i.astype(np.uint8))]).interpret(i)
    assert [g.dtype for g in got] == [np.float32, np.float32]
    np.testing.assert_allclose(got[0], np.exp(i > 1), rtol=1e-3)


def test_nn_functions_of_integers_take_scipys_result_types():
    # expit and logsumexp compute integers in float64, softmax and log_softmax
    # as np.exp does (int16: float32); on the interpreter (no compile)
    special = pytest.importorskip("scipy.special")
    i = np.array([1, 2, 4], np.int16)
    for ours, scipys in ((gc.nn.sigmoid, special.expit), (gc.nn.logsumexp, special.logsumexp),
                         (gc.nn.softmax, special.softmax),
                         (gc.nn.log_softmax, special.log_softmax)):
        got, want = gc.jit(ours).interpret(i), scipys(i)
        assert got.dtype == want.dtype, ours.__name__
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=ours.__name__)


def test_scalar_results_are_0d_arrays_of_their_dtype():
    # the driver returns 0-d results as scalars; the caller gets 0-d arrays back
    x = np.array([1.5, -2.25, np.nan], np.float32)
    f = gc.jit(lambda x, k: (x[:2].sum(), x[0] > 0, k * 3, np.max(x), x))
    total, positive, count, peak, same = f(x, np.int64(7))
    for value, dtype, expected in ((total, np.float32, -0.75), (positive, np.bool_, True),
                                   (count, np.int64, 21)):
        assert type(value) is np.ndarray and value.shape == () and value.dtype == dtype
        assert value == expected
    assert peak.dtype == np.float32 and np.isnan(peak)
    assert same is not x and np.array_equal(same, x, equal_nan=True)


def test_results_never_alias_an_input_or_each_other():
    # NumPy's reshape is a view; a compiled result is the caller's own array
    a = np.arange(4.0)
    out = gc.jit(lambda x: (x.reshape(2, 2), x))(a)
    assert not any(np.shares_memory(o, a) for o in out)
    # two results that are one node of the graph are still two arrays
    ga, gb = gc.grad(lambda a, b: (a * 2.0 + b * 2.0).sum(), argnums=(0, 1))(a, a + 1)
    y1, y2 = gc.jit(lambda x: (x + 1, (x + 1).reshape(2, 2)))(a)
    assert not np.shares_memory(ga, gb) and not np.shares_memory(y1, y2)
    np.testing.assert_array_equal(gb, 2.0)


def test_second_call_with_the_same_signature_does_not_retrace():
    calls = []

    def f(x):
        calls.append(1)
        return x * 2.0

    jf = gc.jit(f)
    jf(np.ones(3))
    jf(np.zeros(3))
    assert len(calls) == 1
    jf(np.ones(4))
    jf(np.ones(3, np.float32))
    assert len(calls) == 3


def test_static_argnums():
    calls = []

    def f(x, n, mode):
        calls.append(1)
        for _ in range(n):                     # Python control flow on a static value
            x = np.tanh(x) if mode == "tanh" else x * 2.0
        return x

    jf = gc.jit(f, static_argnums=(1, 2))
    np.testing.assert_allclose(jf(np.ones(2), 3, "tanh"), np.tanh(np.tanh(np.tanh(np.ones(2)))))
    np.testing.assert_allclose(jf(np.ones(2), 2, "double"), 4 * np.ones(2))
    jf(np.ones(2), 3, "tanh")
    assert len(calls) == 2


def test_static_values_that_compare_equal_but_differ_in_type_compile_apart():
    """2 == 2.0 == True, but int8 * 2 wraps in int8 where int8 * 2.0 is float64
    (NumPy 2); a static tuple's items are told apart the same way."""
    f = gc.jit(lambda x, s: x * (s[0] if isinstance(s, tuple) else s), static_argnums=1)
    x = np.array([100, 3], np.int8)
    Scale = collections.namedtuple("Scale", "s")
    for s in (2, 2.0, (2,), (2.0,), Scale(2.0), -0.0, 0.0):    # -0.0 == 0.0, but not x * it
        want = x * (s[0] if isinstance(s, tuple) else s)
        got = f(x, s)
        assert got.dtype == want.dtype, s
        np.testing.assert_array_equal(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want)), s
    assert len(f._cache) == 7


def test_static_argnums_out_of_range_are_refused_unless_they_name_a_default():
    def scale(x, n=3):
        return x * n

    np.testing.assert_array_equal(gc.jit(scale, static_argnums=1)(np.ones(2)), [3.0, 3.0])
    # a negative one counts from the end of the parameters, as in JAX
    np.testing.assert_array_equal(gc.jit(scale, static_argnums=-1)(np.ones(2)), [3.0, 3.0])
    for nums in (2, (1, 5), -3):
        with pytest.raises(ValueError, match=rf"scale: static_argnums {nums if isinstance(nums, int) else 5} "
                                             rf"is out of range: the call passed 1 argument\(s\), "
                                             rf"and the function has 2 positional parameter\(s\) "
                                             rf"\(at {re.escape(__file__)}:\d+\)"):
            gc.jit(scale, static_argnums=nums)(np.ones(2))
    for transform in (gc.grad, gc.value_and_grad, gc.jacobian):
        with pytest.raises(ValueError, match=rf"argnums 2 is out of range for 1 arguments "
                                             rf"\(at {re.escape(__file__)}:\d+\)"):
            transform(np.sum, argnums=2)(np.ones(2))


def test_inspect_reports_every_stage_and_lower_all_but_the_compile():
    f = gc.jit(lambda x, y: np.sum(np.exp(x) * y))
    lowered = f.lower(np.ones(3), np.ones(3))
    (entry,) = f._cache.values()
    assert lowered.compile_seconds is None and not entry.driver.signatures   # Numba compiled nothing
    info = f.inspect(np.ones(3), np.ones(3))
    assert "exp" in str(info.graph) and "exp" in str(info.optimized)
    compile(info.source, "<generated>", "exec")          # valid Python
    assert "@njit" in info.source and "def run(" in info.source
    assert info.kernels and all(k.name and k.ops and k.bytes > 0 for k in info.kernels)
    assert sum(k.flops for k in info.kernels) > 0
    assert info.compile_seconds >= 0 and entry.driver.signatures
    assert (lowered.source, lowered.kernels) == (info.source, info.kernels)
    assert f.lower(np.ones(3), np.ones(3)).compile_seconds == info.compile_seconds


def test_lowering_a_training_step_updates_nothing():
    params = {"w": np.ones(3)}
    step = gc.compile_step(lambda p, x: np.sum((p["w"] * x) ** 2), gc.optim.Adam(0.1))
    lowered = step.lower(params, np.ones(3))
    assert lowered.compile_seconds is None and "def run(" in lowered.source
    assert any("sqrt" in k.ops for k in lowered.kernels)      # Adam's update is in the step
    np.testing.assert_array_equal(params["w"], np.ones(3))
    assert step.state["count"] == 0


def test_results_are_fresh_arrays_each_call():
    f = gc.jit(lambda x: x)
    x = np.ones(3)
    a = f(x)
    b = f(x)
    assert a is not x and a is not b
    a[0] = 5.0
    assert x[0] == 1.0 and b[0] == 1.0


def test_pytree_outputs_and_scalars():
    out = gc.jit(lambda p: {"s": np.sum(p["a"]), "t": (p["a"] * 2, [p["b"]])})(
        {"a": np.ones(2), "b": np.zeros(1)})
    assert isinstance(out["s"], np.ndarray) and out["s"].shape == ()
    assert isinstance(out["t"], tuple) and isinstance(out["t"][1], list)


INDEX_KEYS = [(slice(None), None, 1), (Ellipsis, None), (-1,), (slice(None, None, -2),),
              (np.array([[0, 2], [1, -1]]),), (slice(1, None), np.array([0, 0, 1]))]


def test_indexing_matches_numpy():
    # one module for every key (compile time: a module each was 6)
    x = np.arange(12.0).reshape(4, 3)
    results = gc.jit(lambda x: [x[key] for key in INDEX_KEYS])(x)
    for key, got in zip(INDEX_KEYS, results):
        np.testing.assert_array_equal(got, x[key], err_msg=f"x[{key}]")


TAKE_FORMS = [                  # one a line: an error names the line of its case
    lambda x: np.take_along_axis(x, np.array([[1], [0], [-1]])),      # axis defaults to -1
    lambda x: np.take_along_axis(x, np.array([3, 0, 11]), axis=None),
    lambda x: np.take(x, (0, 2)),
    lambda x: np.take(x, [0, 2], axis=1),
    lambda x: np.take(x, 2, axis=1),
    lambda x: np.take(x, -5),
    lambda x: np.take(x, np.array([True, False, True]), axis=0),        # booleans count as 0/1
    lambda x: np.take(x, np.array([[0, -1], [1, 2]]), axis=-1),
]


def test_take_forms_match_numpy():
    # one module for every form (compile time: a module each was 7)
    x = np.arange(12.0).reshape(3, 4)
    results = gc.jit(lambda x: [fn(x) for fn in TAKE_FORMS])(x)
    for k, (fn, got) in enumerate(zip(TAKE_FORMS, results)):
        want = fn(x)
        case = f"TAKE_FORMS[{k}] (line {fn.__code__.co_firstlineno})"
        assert got.shape == want.shape, case
        np.testing.assert_array_equal(got, want, err_msg=case)


@pytest.mark.parametrize("fn, error", [
    (lambda x: np.take(x, [0], axis=(1,)), "axis must be an integer"),
    (lambda x: np.take_along_axis(x, np.array([[1]]), axis=None), "indices must be 1-D"),
    (lambda x: np.take_along_axis(x, np.array([1]), axis=1), "1-D and the array 2-D"),
    (lambda x: np.take(x, [0], mode="clip"), "mode='clip'"),
])
def test_bad_take_arguments_name_the_problem_and_line(fn, error):
    with pytest.raises(gc.GraphcError, match=f"{error}.*test_tracing.py"):
        gc.jit(fn)(np.ones((3, 4)))


def test_nan_propagates_like_numpy():
    x = np.array([1.0, np.nan, 3.0])
    np.testing.assert_array_equal(gc.jit(lambda x: np.maximum(x, 2.0))(x), np.maximum(x, 2.0))
    assert np.isnan(gc.jit(lambda x: np.max(x))(x))


def test_integer_inputs_are_allowed_without_gradient():
    g = gc.grad(lambda w, idx: np.sum(w[idx] ** 2))(np.array([1.0, 2.0, 3.0]), np.array([2, 2, 0]))
    np.testing.assert_array_equal(g, [2.0, 0.0, 12.0])       # repeated indices accumulate
