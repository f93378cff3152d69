"""The bad-input matrix: each row is an argument a user might pass, the error
it must get (a GraphcError plus the built-in type) or the NumPy result it
must match, and a check that params and optimizer state are bitwise intact."""
import contextlib
import warnings

import numpy as np
import pytest

import graphc as gc


def loss(p, x, y):
    return gc.nn.cross_entropy(x @ p["W"] + p["b"], y)


def _fresh():
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(3, 4)), "b": np.zeros(4)}
    x, y = rng.normal(size=(6, 3)), np.array([0, 1, 2, 3, 0, 1])
    step = gc.compile_step(loss, gc.optim.Adam(0.01))
    step(params, x, y)
    return params, x, y, step


def _frozen(params, step):
    return ({k: v.tobytes() for k, v in params.items()},
            {s: {k: a.tobytes() for k, a in step.state[s].items()} for s in ("m", "v")},
            step.state["count"])


@contextlib.contextmanager
def _naming(case):
    """An error raised inside names `case` (a module that checks many cases)."""
    try:
        yield
    except BaseException as e:     # pytest.raises' Failed too
        e.add_note(f"case: {case}")
        raise


# (id, how to corrupt the call, expected error type, message fragment)
STEP_ROWS = [
    ("labels_out_of_range", lambda p, x, y: (p, x, np.array([0, 1, 2, 4, 0, 1])), IndexError, "[0, 4)"),
    ("negative_label", lambda p, x, y: (p, x, np.array([0, -1, 2, 3, 0, 1])), IndexError, "[0, 4)"),
    ("float_labels", lambda p, x, y: (p, x, y.astype(float)), TypeError, "integer"),
    ("mismatched_batch", lambda p, x, y: (p, x, y[:4]), ValueError, "(N, C)"),
    ("complex_data", lambda p, x, y: (p, x.astype(complex), y), TypeError, "complex128"),
    ("object_data", lambda p, x, y: (p, x.astype(object), y), TypeError, "object"),
    ("string_data", lambda p, x, y: (p, np.array([["a"] * 3] * 6), y), TypeError, "<U1"),
    ("wrong_param_shape", lambda p, x, y: ({**p, "W": np.zeros((4, 3))}, x, y), TypeError, "['W']"),
    ("wrong_param_dtype", lambda p, x, y: ({**p, "W": p["W"].astype(np.float32)}, x, y), TypeError, "float32"),
    ("integer_param", lambda p, x, y: ({**p, "b": np.zeros(4, int)}, x, y), TypeError, "['b']"),
    ("missing_param", lambda p, x, y: ({"W": p["W"]}, x, y), TypeError, "structure"),
    ("list_param", lambda p, x, y: ({**p, "b": [0.0] * 4}, x, y), TypeError, "structure"),
    ("read_only_param", lambda p, x, y: ({**p, "b": _read_only(p["b"])}, x, y), ValueError, "read-only"),
    ("fortran_param", lambda p, x, y: ({**p, "W": np.asfortranarray(p["W"])}, x, y), ValueError, "C-contiguous"),
    ("strided_param", lambda p, x, y: ({**p, "b": np.zeros(8)[::2]}, x, y), ValueError, "C-contiguous"),
    ("same_array_twice", lambda p, x, y: ({"W": p["W"], "b": p["W"][0]}, x, y), ValueError, "same array"),
    # ndarray subclasses whose values are not their data's (a review found both silently wrong)
    ("masked_data", lambda p, x, y: (p, np.ma.masked_greater(x, 1.0), y), TypeError, "x.filled"),
    ("matrix_data", lambda p, x, y: (p, _matrix(x), y), TypeError, "np.matrix's `*`"),
    ("masked_param", lambda p, x, y: ({**p, "b": np.ma.array(p["b"])}, x, y), TypeError, "mask"),
]


def _matrix(a):
    with warnings.catch_warnings():     # (NumPy's advice against np.matrix)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(a)


def _read_only(a):
    a = a.copy()
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("name, corrupt, error, fragment", STEP_ROWS, ids=[r[0] for r in STEP_ROWS])
def test_bad_step_input_raises_and_modifies_nothing(name, corrupt, error, fragment):
    params, x, y, step = _fresh()
    before = _frozen(params, step)
    args = corrupt(params, x, y)
    with pytest.raises(error) as e:
        step(*args)
    assert isinstance(e.value, gc.GraphcError), type(e.value)
    assert fragment in str(e.value)
    assert _frozen(params, step) == before


def test_masked_arrays_and_matrices_are_refused_wherever_they_enter():
    """As arguments of jit and grad, as train's data, and as a constant the
    function reads: each raises naming the line, where graphc read the data
    alone (a masked mean over the masked elements too; np.matrix's `*`, a
    matrix product, elementwise)."""
    masked = np.ma.array([1.0, 100.0, 3.0], mask=[False, True, False])
    matrix = _matrix(np.eye(2))
    mean_square = lambda x: np.mean(x ** 2)   # noqa: E731
    for bad in (masked, matrix):
        for call in (gc.jit(mean_square), gc.grad(mean_square)):
            with pytest.raises(TypeError, match=r"cannot trace.*test_bad_input.py"):
                call(bad)
        with pytest.raises(TypeError, match=r"cannot trace.*test_bad_input.py"):
            gc.jit(lambda x: x * bad)(np.ones(bad.shape))
        params = {"w": np.zeros(bad.shape[-1])}
        with pytest.raises(TypeError, match=r"cannot trace.*test_bad_input.py"):
            gc.train(lambda p, x: np.sum((x * p["w"]) ** 2), params, (bad,), gc.optim.SGD(0.1),
                     epochs=1, progress=False)
        assert not params["w"].any()
    # a plain view of the data is what graphc can take
    np.testing.assert_allclose(gc.jit(mean_square)(masked.filled(0.0)), 10 / 3)


def test_same_array_twice_is_caught_even_as_a_view():
    params, x, y, step = _fresh()
    w = params["W"]
    with pytest.raises(ValueError):
        step({"W": w, "b": w.reshape(-1)[:4]}, x, y)    # shares memory with W


@pytest.mark.parametrize("view", [
    lambda x: np.asfortranarray(x), lambda x: x[::-1], lambda x: x[:, ::-1],
    lambda x: np.concatenate([x, x], 1)[:, ::2],
])
def test_non_contiguous_data_is_read_as_numpy_would(view):
    params, x, y, step = _fresh()
    other, _, _, other_step = _fresh()               # the same state, independently
    xv = view(x)
    assert step(params, xv, y) == other_step(other, np.ascontiguousarray(xv), y)
    for k in params:
        np.testing.assert_array_equal(params[k], other[k])


def test_nan_and_inf_in_data_propagate_without_crashing():
    params, x, y, step = _fresh()
    x[0, 0] = np.nan
    assert np.isnan(step(params, x, y))
    x[0, 0] = np.inf
    assert not np.isfinite(step(params, x, y))


def test_lists_and_tuples_where_arrays_are_expected():
    # as arguments, lists and tuples are pytrees of Python scalars (as in JAX)
    assert float(gc.jit(lambda xs: xs[0] + xs[1])([1.0, 2.0])) == 3.0
    assert float(gc.jit(lambda xs: np.sum(np.stack(xs)))((1.0, 2.0, 3.0))) == 6.0
    # inside a traced function, a list next to a traced array converts as NumPy would
    np.testing.assert_allclose(gc.jit(lambda x: x @ [1.0, 2.0, 3.0])(np.ones((2, 3))), [6.0, 6.0])
    np.testing.assert_allclose(gc.jit(lambda x: x + [1, 2, 3])(np.zeros(3, np.float32)),
                               np.zeros(3, np.float32) + [1, 2, 3])


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0)])
def test_zero_size_arrays(shape):
    x = np.ones(shape)
    np.testing.assert_array_equal(gc.jit(lambda x: np.tanh(x) * 2.0)(x), np.tanh(x) * 2.0)
    np.testing.assert_array_equal(gc.jit(lambda x: np.sum(x, axis=0))(x), np.sum(x, axis=0))
    with pytest.raises(ValueError):
        gc.jit(lambda x: np.max(x, axis=0))(np.ones((0, 3)))


def test_zero_d_arrays():
    assert gc.jit(lambda x: x * 2.0)(np.array(3.0)).shape == ()
    assert float(gc.grad(lambda x: x ** 3)(np.array(2.0))) == 12.0


def test_a_loss_that_returns_a_non_scalar_or_an_integer():
    params, x, y, _ = _fresh()
    # named as the call the user made, not the value_and_grad inside it
    with pytest.raises(TypeError, match="^compile_step: the function must return a float "
                                        "scalar") as e:
        gc.compile_step(lambda p, x, y: x @ p["W"], gc.optim.SGD(0.1))(params, x, y)
    assert isinstance(e.value, gc.GraphcError)
    with pytest.raises(TypeError, match="^compile_step: .*float"):
        gc.compile_step(lambda p, x, y: np.sum(y), gc.optim.SGD(0.1))(params, x, y)


# one lambda a line: the line an error names tells which refused the int
OUT_OF_TYPE = {"add": lambda x, n: x + n,
               "power": lambda x, n: x ** n,
               "maximum": lambda x, n: np.maximum(n, x)}


def test_a_python_int_outside_its_arrays_integer_type_is_refused_as_numpy_does():
    # NumPy converts a Python int to the array's integer type and refuses one
    # that does not fit; a compiled conversion would wrap it (uint8 -1 -> 255).
    # One module for the three ops, each with an int argument of its own
    # (compile time: a module per op and array type was 6); an int refused for
    # one op is passed next to ints that fit for the others, so each refusal
    # is still that op's, and names its line.
    x = np.array([2, 3], np.uint8)
    wide = np.array([2, 3], np.int64)       # int64 takes anything an int64 holds
    fns = list(OUT_OF_TYPE.values())
    f = gc.jit(lambda x, ns, wide, bigs: ([fn(x, n) for fn, n in zip(fns, ns)],
                                          [fn(wide, big) for fn, big in zip(fns, bigs)]))
    bigs = [2 ** 62] * len(fns)

    def check_values(n):
        narrow, wides = f(x, [n] * len(fns), wide, bigs)
        for name, fn, got, got_wide in zip(OUT_OF_TYPE, fns, narrow, wides):
            np.testing.assert_array_equal(got, fn(x, n), err_msg=f"{name}, uint8 and {n}")
            np.testing.assert_array_equal(got_wide, fn(wide, 2 ** 62), err_msg=f"{name}, int64")

    check_values(2)                              # compiled for this signature
    for k, (name, fn) in enumerate(OUT_OF_TYPE.items()):
        line = f"test_bad_input.py:{fn.__code__.co_firstlineno}"
        for n in (-1, 256, 2 ** 63):
            with pytest.raises(OverflowError):
                fn(x, n)
            ns = [2] * len(fns)
            ns[k] = n
            for run in (f, f.interpret):
                with _naming(f"{name}, {n}"), pytest.raises(gc.GraphcError) as info:
                    run(x, ns, wide, bigs)
                assert isinstance(info.value, OverflowError), (name, n)
                assert f"Python integer {n} out of bounds for" in str(info.value), (name, n)
                assert line in str(info.value), (name, n, str(info.value))   # the user's line
    check_values(255)
    for name, fn in OUT_OF_TYPE.items():      # a literal, refused when traced
        with _naming(f"{name}, literal -1"), pytest.raises(gc.GraphcError) as info:
            gc.jit(lambda x: fn(x, -1))(x)
        assert isinstance(info.value, OverflowError), name
        assert "test_bad_input.py" in str(info.value), name


def test_python_int_checks_hold_through_gradients_and_training_steps():
    # the gradient traces the function again, inside: its conversions count too
    u, w = np.array([1, 200], np.uint8), np.array([1.0, 2.0])

    def loss(w, idx, n):
        return np.sum(w * (idx + n))

    for run in (gc.grad(loss), gc.value_and_grad(loss)):
        with pytest.raises(gc.GraphcError, match="Python integer -1 out of bounds for uint8"):
            run(w, u, -1)
    np.testing.assert_array_equal(gc.grad(loss)(w, u, 3), (u + 3).astype(np.float64))
    params = {"w": w.copy()}
    step = gc.compile_step(lambda p, idx, n: loss(p["w"], idx, n), gc.optim.SGD(0.1))
    step(params, u, 1)
    before = params["w"].copy()
    with pytest.raises(OverflowError):
        step(params, u, -1)
    np.testing.assert_array_equal(params["w"], before)      # nothing ran
    assert step.state["count"] == 1


@pytest.mark.parametrize("fn", [lambda x, n: x + (-n), lambda x, n: x + n * 300,
                                lambda x, n: np.maximum(x, n - 10), lambda x, n: x * (n + 0)],
                         ids=["neg", "mul", "maximum", "add"])
def test_a_python_int_computed_in_the_function_is_checked_as_numpy_does(fn):
    # NumPy computes -n as a Python int and refuses it for uint8; graphc
    # computes it in the graph, so the graph checks it before converting
    # (it wrapped: uint8 + (-1) was x + 255)
    x = np.array([20, 30], np.uint8)
    f = gc.jit(fn)
    for n in (0, 1, 10, -1, 200, -200):
        try:
            expected = fn(x, n)
        except OverflowError:
            for run in (f, f.interpret):
                with pytest.raises(gc.GraphcError, match="out of bounds for uint8") as info:
                    run(x, n)
                assert isinstance(info.value, OverflowError)
                assert "test_bad_input.py" in str(info.value)     # the user's line
            continue
        for got in (f(x, n), f.interpret(x, n)):
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)


def test_a_computed_python_int_out_of_range_leaves_the_params_alone():
    u, w = np.array([1, 200], np.uint8), np.array([1.0, 2.0])
    params = {"w": w.copy()}
    step = gc.compile_step(lambda p, idx, n: np.sum(p["w"] * (idx + (n - 1))), gc.optim.SGD(0.1))
    step(params, u, 2)
    before = params["w"].copy()
    with pytest.raises(OverflowError, match="out of bounds for uint8"):
        step(params, u, 0)
    np.testing.assert_array_equal(params["w"], before)      # nothing ran
    assert step.state["count"] == 1
    grad = gc.grad(lambda w, idx, n: np.sum(w * (idx + (n - 1))))
    with pytest.raises(OverflowError):
        grad(w, u, 0)
    np.testing.assert_array_equal(grad(w, u, 2), (u + 1).astype(np.float64))


CLIP_BOUNDS = [(-1, 300), (2, 300), (-5, 3), (300, 400), (-3, -1), (None, 3), (-1, None)]


def _refused(case, call, *args):
    """call(*args) raises OverflowError (as pytest.raises, naming the case if not)."""
    with _naming(case):
        try:
            call(*args)
        except OverflowError:
            return
    pytest.fail(f"{case}: no OverflowError")


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint64])
def test_clip_takes_python_int_bounds_beyond_the_type_as_numpy_does(dtype):
    # NumPy 2: a bound beyond the type's range on its own side clips nothing
    # (np.clip(u8, -1, 300) is u8); beyond the other side it is refused.
    # graphc refused every bound out of the type's range.
    # One module for every pair of bounds (compile time: a module per pair
    # and form was 31 in all): bounds passed as arguments, and computed from
    # them, compile to the same code for any ints, so it has a place for
    # each pattern of None (both ints, no lower, no upper), each called with
    # every pair of its pattern; the literals NumPy takes are all in it too.
    x = np.array([0, 5, 120], dtype)
    wants, refused = {}, []
    for lo, hi in CLIP_BOUNDS:
        try:
            wants[lo, hi] = np.clip(x, lo, hi)
        except OverflowError:
            refused.append((lo, hi))
    literals = list(wants)
    places = {}                     # pattern of None -> a pair NumPy takes, there by default
    for pair in literals:
        places.setdefault((pair[0] is None, pair[1] is None), pair)
    patterns = list(places)

    def forms(x, arguments, computed):
        return ([np.clip(x, a, b) for a, b in arguments],
                [np.clip(x, None if a is None else a + 0, None if b is None else b * 1)
                 for a, b in computed],
                [np.clip(x, lo, hi) for lo, hi in literals])

    def bounds(pair):               # the default pairs, with `pair` in its pattern's place
        return [pair if p == (pair[0] is None, pair[1] is None) else places[p] for p in patterns]

    f = gc.jit(forms)
    defaults = [places[p] for p in patterns]
    for run, how in ((f, "compiled"), (f.interpret, "interpreted")):
        for lo, hi in CLIP_BOUNDS:
            case = f"np.clip({np.dtype(dtype)}, {lo}, {hi}), {how}"
            if (lo, hi) in refused:
                _refused(f"{case}, arguments", run, x, bounds((lo, hi)), defaults)
                _refused(f"{case}, computed", run, x, defaults, bounds((lo, hi)))
                continue
            with _naming(case):
                arguments, computed, in_literals = run(x, bounds((lo, hi)), bounds((lo, hi)))
            k = patterns.index((lo is None, hi is None))
            for form, got in (("arguments", arguments[k]), ("computed", computed[k]),
                              ("literals", in_literals[literals.index((lo, hi))])):
                assert got.dtype == wants[lo, hi].dtype, f"{case}, {form}"
                np.testing.assert_array_equal(got, wants[lo, hi], err_msg=f"{case}, {form}")
    for lo, hi in refused:      # a literal NumPy refuses, refused when traced
        _refused(f"np.clip({np.dtype(dtype)}, {lo}, {hi}), literals",
                 gc.jit(lambda x: np.clip(x, lo, hi)), x)


def test_a_computed_python_int_is_checked_inside_a_nested_gradient():
    # grad inside jit traces the loss again: its conversion of `m` (computed
    # outside, n - 2) must be checked in the outer graph, where it was dropped
    # as dead code (the compiled result wrapped: u8 + 255)
    u = np.array([1, 200, 3], np.uint8)
    loss = lambda w, m, idx: np.sum(w * (idx + m))      # noqa: E731
    for nested in (gc.grad(loss), gc.jacobian(lambda w, m, idx: w * (idx + m))):
        f = gc.jit(lambda w, n, idx: nested(w, n - 2, idx))
        for run in (f, f.interpret):
            with pytest.raises(gc.GraphcError, match="out of bounds for uint8"):
                run(np.ones(3), 1, u)
    np.testing.assert_array_equal(gc.jit(lambda w, n, idx: gc.grad(loss)(w, n - 2, idx))(
        np.ones(3), 3, u), (u + 1).astype(np.float64))


# one a line: an error names the line of its case
UINT64_COMPARES = [(lambda x, n: x >= (n - 3), 0),
                   (lambda x, n: (n - 3) < x, 0),
                   (lambda x, n: x == n - 3, 4),
                   (lambda x, n: x < n, -1),
                   (lambda x, n: x != -3, 0),
                   (lambda x, n: x > n + 2 ** 40, 1),
                   (lambda x, n: np.sum(x) > n - 3, 1)]


def test_uint64_compares_with_any_python_int_by_value():
    # NumPy compares uint64 with a negative Python int by value; graphc
    # converted the int to uint64 (wrapping: False) or refused it.
    # One module for every comparison, each with an int argument of its own
    # (compile time: a module each was 7)
    x = np.arange(3, dtype=np.uint64)
    fns = [fn for fn, _ in UINT64_COMPARES]
    f = gc.jit(lambda x, ns: [fn(x, n) for fn, n in zip(fns, ns)])
    ns = [n for _, n in UINT64_COMPARES]
    for run, how in ((f, "compiled"), (f.interpret, "interpreted")):
        for k, ((fn, n), got) in enumerate(zip(UINT64_COMPARES, run(x, ns))):
            np.testing.assert_array_equal(got, fn(x, n), err_msg=f"UINT64_COMPARES[{k}] "
                                          f"(line {fn.__code__.co_firstlineno}), {how}")


OPS_TAKING_ANY_INT = {"less": lambda x, n: x < n,              # one a line: an error
                      "equal": lambda x, n: x == n,             # names the line of its op
                      "where": lambda x, n: np.where(x > 1, x, n),
                      "divide": lambda x, n: x / n}


def test_ops_where_numpy_takes_any_python_int_take_it_too():
    # NumPy 2 compares a Python int by value, divides in float64 and lets
    # np.where cast it modulo 2**bits: none of them refuses one out of range.
    # One module for every op, with an int argument each and every int as a
    # literal (compile time: a module per op and literal was 19)
    x = np.array([1, 200], np.uint8)
    ns = (-1, 3, 256, 2 ** 40)
    f = gc.jit(lambda x, args: {name: (fn(x, args[name]), [fn(x, n) for n in ns])
                                for name, fn in OPS_TAKING_ANY_INT.items()})
    for n in ns:
        results = f(x, {name: n for name in OPS_TAKING_ANY_INT})
        for name, fn in OPS_TAKING_ANY_INT.items():
            argument, literals = results[name]
            expected = fn(x, n)
            for form, got in (("argument", argument), ("literal", literals[ns.index(n)])):
                assert got.dtype == expected.dtype, (name, n, form)
                np.testing.assert_array_equal(got, expected, err_msg=f"{name}, {n} as {form}")


def test_numpy_float64_scalars_are_strongly_typed_as_in_numpy():
    # np.float64 is a subclass of Python's float, but NumPy 2 promotes with it
    x = np.array([1.0, 2.0], np.float32)
    for scalar, dtype in ((np.float64(2.0), np.float64), (2.0, np.float32),
                          (np.float32(2.0), np.float32)):
        got = gc.jit(lambda x, s: x / s)(x, scalar)
        assert got.dtype == dtype == (x / scalar).dtype
        np.testing.assert_array_equal(got, x / scalar)


def test_bitwise_operators_on_integers_are_refused_and_booleans_work():
    # `&`, `|`, `~` are NumPy's bitwise ops; graphc has only the logical ones,
    # and computed those for integers (uint8 & 3 was [True, True], NumPy's [1, 0])
    u, b = np.array([1, 200], np.uint8), np.array([True, False])
    for fn in (lambda x: x & 3, lambda x: 1 | x, lambda x: ~x):
        with pytest.raises(gc.UnsupportedOpError, match="bitwise") as info:
            gc.jit(fn)(u)
        assert "test_bad_input.py" in str(info.value)
    for fn, arg in [(lambda x: x & ~x, b), (lambda x: x | True, b),
                    (lambda x: (x > 1) & (x < 250), u),
                    (lambda x: b & x, b), (lambda x: np.invert(x) | b, b)]:   # NumPy's on the left
        np.testing.assert_array_equal(gc.jit(fn)(arg), fn(arg))
    with pytest.raises(gc.UnsupportedOpError, match="bitwise"):
        gc.jit(lambda x: np.bitwise_and(x, 3))(u)
