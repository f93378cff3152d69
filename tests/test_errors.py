"""Every error of API.md section 4 that tracing and differentiation raise."""
import ast
import re
import types
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import errors

THIS_FILE = "test_errors.py:"


def _line_of(fn, offset):
    return f"{THIS_FILE}{fn.__code__.co_firstlineno + offset}"


def test_python_if_on_a_traced_value():
    def f(x):
        if x.sum() > 0:
            return x
        return -x

    with pytest.raises(gc.TracerError) as e:
        gc.jit(f)(np.ones(3))
    assert isinstance(e.value, TypeError) and isinstance(e.value, gc.GraphcError)
    assert "np.where" in str(e.value) and "static_argnums" in str(e.value)
    assert _line_of(f, 1) in str(e.value)


@pytest.mark.parametrize("convert", [float, int, bool])
def test_float_int_bool_of_a_traced_value(convert):
    with pytest.raises(gc.TracerError, match=convert.__name__ if convert is not bool else "bool"):
        gc.jit(lambda x: convert(x))(np.ones(()))


def test_len_of_a_0d_traced_array_names_the_line():
    with pytest.raises(TypeError, match=r"len\(\) of unsized object.*test_errors.py:\d+"):
        gc.jit(lambda x: len(x))(np.ones(()))


def test_formatting_a_traced_value_says_when_its_value_is_known():
    def loss(w):
        z = np.sum(w ** 2)
        shown = f"{z}"                  # the tracer's type, as print shows it
        return z, f"{z:.3f}" + shown

    with pytest.raises(gc.TracerError) as e:
        gc.grad(loss, has_aux=True)(np.ones(3))
    assert "formatting" in str(e.value) and "has_aux" in str(e.value)
    assert _line_of(loss, 3) in str(e.value)


def test_indexing_a_numpy_array_with_a_traced_one_says_what_to_write():
    def one_hot(y):
        return np.eye(4)[y]

    with pytest.raises(gc.TracerError) as e:
        gc.jit(one_hot)(np.array([1, 0, 3]))
    assert "indexing a NumPy array" in str(e.value) and "np.arange(k)" in str(e.value)
    assert _line_of(one_hot, 1) in str(e.value)
    y = np.array([1, 0, 3])       # what it suggests traces
    one_hot = gc.jit(lambda y: y[:, None] == np.arange(4))(y)
    np.testing.assert_array_equal(one_hot, np.eye(4)[y] == 1)


def test_numpy_style_writes_into_arrays_say_what_to_write_instead():
    """Found writing real models: a conv loop's `out += ...`, an RNN's `hs[:, t] = h`,
    np.sum of a list and np.asarray(x) gave messages about np.add(out=) and one-hots."""
    def accumulate(x):
        out = np.zeros(3)
        out += x
        return out

    def fill(x):
        hs = np.empty((2, 3))
        hs[0] = x
        return hs

    def fill_one(x):
        hs = np.empty(3)
        hs[0] = x[0]        # a 0-d tracer: NumPy's own ValueError, named and explained
        return hs

    with pytest.raises(gc.UnsupportedOpError, match=r"in-place np.add into a NumPy array "
                                                    r"\(a \+= x.*write a = a \+ x") as e:
        gc.trace(accumulate, np.ones(3))
    assert _line_of(accumulate, 2) in str(e.value)
    with pytest.raises(gc.TracerError, match=r"for a\[i\] = x into a NumPy array \(make the "
                                             r"array with np.zeros_like\(x\) of a traced x.*"
                                             r"np.stack") as e:
        gc.trace(fill, np.ones(3))
    assert _line_of(fill, 2) in str(e.value)
    with pytest.raises(gc.TracerError, match=r"NumPy could not store a value in a NumPy array "
                                             r"\(setting an array element with a sequence\).*"
                                             r"np.zeros_like\(x\)") as e:
        gc.trace(fill_one, np.ones(3))
    assert _line_of(fill_one, 2) in str(e.value)

    def converted(x):
        return np.asarray(x) * 2

    def listed(x):
        return np.sum([x, x])

    def stacked(x):
        return np.array([x, 2 * x])

    table = np.arange(3.0)

    def looked_up(x):
        return table[x.astype(np.int64)]

    def listed_table(x):
        return np.array([1.0, 2.0, 3.0])[x.astype(np.int64)]

    # the user's line says which conversion it is: that advice alone
    for convert, advice in [(converted, r"Here NumPy converts it for np.asarray\(x\) or "
                                        r"np.array\(x\) \(drop them"),
                            (stacked, r"Here NumPy converts it for np.array\(\[...\]\) of "
                                      r"traced values \(np.stack\(\[...\]\) them instead\)"),
                            (looked_up, r"a 1-d table is np.take_along_axis\(table, y, axis=0\)"),
                            (listed_table, r"a 1-d table is np.take_along_axis"),
                            (listed, r"Here NumPy converts it for np.sum or np.mean of a Python "
                                     r"list of traced arrays \(np.stack the list first\)")]:
        with pytest.raises(gc.TracerError, match=advice) as e:
            gc.trace(convert, np.ones(3))
        assert "np.eye(k)[y]" not in str(e.value) and _line_of(convert, 1) in str(e.value)
    # a line that cannot be read (made by exec): every conversion is named
    namespace = {"np": np}
    exec("def hidden(x):\n    return np.asarray(x)\n", namespace)
    with pytest.raises(gc.TracerError, match=r"np.asarray\(x\).*np.stack the list first.*"
                                             r"np.eye\(k\)\[y\].*a\[i\] = x"):
        gc.trace(namespace["hidden"], np.ones(3))


def test_unsupported_numpy_function_names_it():
    def f(x):
        return np.fft.fft(x)

    with pytest.raises(gc.UnsupportedOpError, match="fft") as e:
        gc.jit(f)(np.ones(4))
    assert isinstance(e.value, NotImplementedError)
    with pytest.raises(gc.UnsupportedOpError, match="linalg.eig"):
        gc.jit(lambda x: np.linalg.eig(x))(np.eye(2))
    with pytest.raises(gc.UnsupportedOpError, match="copysign"):
        gc.jit(lambda x: np.copysign(x, x))(np.ones(4))


def test_shape_error_names_the_op_both_shapes_and_the_line():
    def f(a, b):
        return a + b

    with pytest.raises(gc.ShapeError) as e:
        gc.jit(f)(np.ones((3, 4)), np.ones(5))
    msg = str(e.value)
    assert isinstance(e.value, ValueError)
    assert "add" in msg and "(3, 4)" in msg and "(5,)" in msg and _line_of(f, 1) in msg

    with pytest.raises(gc.ShapeError, match=r"matmul.*\(3, 4\).*\(3, 2\)"):
        gc.jit(lambda a, b: a @ b)(np.ones((3, 4)), np.ones((3, 2)))


def test_grad_of_an_integer_argument_is_a_type_error():
    # named after the transform the user called
    for transform in (gc.grad, gc.value_and_grad):
        with pytest.raises(TypeError, match=rf"^{transform.__name__}: argument 0 has dtype "
                                            r"int64") as e:
            transform(lambda x: np.sum(x * 1.0))(np.arange(3))
        assert isinstance(e.value, gc.GraphcError)


def test_grad_of_a_non_scalar_output_is_a_type_error():
    with pytest.raises(TypeError, match="scalar") as e:
        gc.grad(lambda x: x * 2.0)(np.ones(3))
    assert isinstance(e.value, gc.GraphcError)
    with pytest.raises(TypeError, match="float"):
        gc.grad(lambda x: np.sum(x > 0))(np.ones(3))
    pair = lambda p, x: (np.sum(p["w"] * x), x.sum())      # noqa: E731
    with pytest.raises(TypeError, match=r"returns \(loss, aux\) takes grad\(..., has_aux=True"):
        gc.grad(pair)({"w": np.ones(3)}, np.ones(3))
    with pytest.raises(TypeError, match=r"takes compile_step\(..., has_aux=True"):
        gc.compile_step(pair, gc.optim.SGD(0.1))({"w": np.ones(3)}, np.ones(3))
    with pytest.raises(TypeError) as e:
        gc.grad(lambda x: x * 2.0)(np.ones(2))
    assert "has_aux" not in str(e.value)


def test_math_functions_on_traced_values_name_numpys():
    import math
    with pytest.raises(gc.TracerError, match=r"float\(\) \(which math.cos .*np.cos for math.cos"):
        gc.grad(lambda x: math.cos(x))(1.0)


def test_index_out_of_range_is_an_index_error_at_run_time():
    f = gc.jit(lambda x, i: x[i])
    x = np.arange(5.0)
    np.testing.assert_array_equal(f(x, np.array([0, -5, 4])), [0.0, 0.0, 4.0])
    with pytest.raises(IndexError, match=r"out of range \[-5, 5\)") as e:
        f(x, np.array([1, 5]))
    assert isinstance(e.value, gc.GraphcError)
    with pytest.raises(IndexError):
        f(x, np.array([-6]))
    with pytest.raises(IndexError, match="out of bounds"):
        gc.jit(lambda x: x[7])(x)


def test_unsupported_dtype_argument():
    with pytest.raises(TypeError, match="complex128"):
        gc.jit(lambda x: x * 2)(np.ones(2, complex))
    with pytest.raises(TypeError, match="str"):
        gc.jit(lambda x: x)("hello")


def test_boolean_mask_indexing_is_unsupported_with_advice():
    with pytest.raises(gc.UnsupportedOpError, match="np.where"):
        gc.jit(lambda x: x[x > 0])(np.ones(3))


def test_a_true_or_false_index_is_refused_where_numpy_adds_an_axis():
    # NumPy: x[True] is x[None], x[False] an empty new axis; not row 1 or row 0
    for index in (lambda x: x[True], lambda x: x[np.False_, 0]):
        with pytest.raises(gc.UnsupportedOpError, match=r"boolean mask; use x\[None\] .* "
                           rf"\(at {__file__}:{index.__code__.co_firstlineno}\)"):
            gc.jit(index)(np.ones((2, 3)))


# Checks inside NumPy-style functions that raise without a line of their own
TRACE_TIME_ERRORS = [
    (gc.ShapeError, lambda x: np.stack([x, x[:, :2]])),
    (gc.ShapeError, lambda x: np.sum(x, axis=(0, 0))),
    (gc.ShapeError, lambda x: x.transpose(0, 0)),
    (gc.UnsupportedOpError, lambda x: np.where(x)),
    (gc.ShapeError, lambda x: np.max(x[:0])),
]


def test_errors_raised_while_tracing_name_the_users_line():
    for error, f in TRACE_TIME_ERRORS:
        with pytest.raises(error) as raised:
            gc.jit(f)(np.ones((2, 3)))
        assert str(raised.value).endswith(f"(at {__file__}:{f.__code__.co_firstlineno})")
        assert str(raised.value).count(" (at ") == 1


def test_a_nested_trace_names_the_line_once():
    def inner(w):
        return np.sum(np.stack([w, w[:1]]))

    with pytest.raises(gc.ShapeError) as raised:
        gc.jit(lambda x: gc.grad(inner)(x))(np.ones(3))
    line = inner.__code__.co_firstlineno + 1
    assert str(raised.value).endswith(f"(at {__file__}:{line})")
    assert str(raised.value).count(" (at ") == 1


def test_methods_and_operators_traced_arrays_lack_are_named_with_the_line():
    cases = [(gc.UnsupportedOpError, "x.partition of a traced array", lambda x: x.partition(1)),
             (gc.UnsupportedOpError, "x.searchsorted of a traced array", lambda x: x.searchsorted(1)),
             (gc.UnsupportedOpError, r"x.item\(\) needs the value", lambda x: x.item()),
             (gc.UnsupportedOpError, "np.fmod", lambda x: np.fmod(x, 2.0))]
    for error, message, f in cases:
        line = f.__code__.co_firstlineno
        with pytest.raises(error, match=rf"{message} .*\(at {__file__}:{line}\)"):
            gc.jit(f)(np.arange(3.0))
    for method in (lambda x: x.argpartition(1), lambda x: x.tolist()):   # hasattr() is False
        with pytest.raises(AttributeError):
            gc.jit(method)(np.arange(3.0))
    with pytest.raises(AttributeError, match="'Tracer' object has no attribute 'nonsense'"):
        gc.jit(lambda x: x.nonsense)(np.arange(3.0))
    x = np.arange(3.0)
    copied = gc.jit(lambda x: (x.copy(), hasattr(x, "partition")))(x)      # a value: x itself
    np.testing.assert_array_equal(copied[0], x)
    assert not np.shares_memory(copied[0], x) and not copied[1]


def test_assignment_where_numpy_would_share_memory_is_refused():
    """graphc's assignment makes a new array; where NumPy's views would see it
    (or write through to their base), graphc refuses instead of differing."""
    def view_used_after(x):
        x = x.copy()            # not the caller's array (see the test after)
        v = x[0]
        x[0, 1] = 5.0
        return v + 1

    def strided_view_used_after(x):
        x = x.copy()
        v = x[:, ::2]           # columns 0 and 2
        x[1, 2:] = 5.0          # meets it at [1, 2]
        return v + 1

    def transpose_returned_after(x):
        x = x.copy()
        t = x.T
        x[0, 0] = 9.0
        return t

    def assigned_through_a_view(x):
        x = x.copy()
        v = x[0]
        v[1] = 5.0
        return x

    def at_traced_positions(x):
        x = x.copy()
        x[np.argmax(x)] = 1.0
        return x

    def copies_are_copies(x):      # NumPy's copies and new arrays keep their values
        x = x.copy()
        c, a, p = x.copy(), x.astype(x.dtype), np.positive(x)
        m = np.median(x, axis=0, keepdims=True)     # graphc's own reshapes are no views
        x[0, 0] = 9.0
        m[0, 0] = 1.0
        return c + a + p, m

    x = np.ones((2, 3))
    for got, want in zip(gc.jit(copies_are_copies).interpret(x), copies_are_copies(x.copy())):
        np.testing.assert_array_equal(got, want)
    for f, message in ((view_used_after, "taken out of another"),
                       (strided_view_used_after, "taken out of another"),
                       (transpose_returned_after, "taken out of another"),
                       (assigned_through_a_view, "assignment into an array indexed out of another"),
                       (at_traced_positions, "assignment at traced positions")):
        with pytest.raises(gc.UnsupportedOpError, match=message) as e:
            gc.jit(f).interpret(x)
        assert "test_errors.py:" in str(e.value)


def test_check_grad_names_the_worst_element():
    from graphc import api

    def wrong(x):          # a deliberately wrong gradient: stop_gradient hides x*x
        from graphc import prims
        return np.sum(prims.stop_gradient(x * x) + x)

    with pytest.raises(AssertionError, match=r"index \(2,\).*analytic.*numeric"):
        api.check_grad(wrong, np.array([0.1, 0.2, 3.0]))


def test_check_grad_takes_a_non_finite_element_as_right_only_where_both_sides_equal():
    # sqrt's slope at 0 is inf, its difference quotient there nan: a mismatch
    # of its own, which hid the kink's (0 against 0.5) when any nan passed
    with pytest.raises(AssertionError, match=r"index \(0,\): analytic inf vs numeric nan"):
        gc.check_grad(lambda x: gc.nn.relu(x[1]) + np.sqrt(x[0]), np.array([0.0, 0.0]))
    gc.check_grad(lambda x: np.sum(np.sqrt(x)), np.array([-1.0]))     # nan and nan agree


def test_code_run_by_exec_is_the_users_wherever_the_current_directory_is(monkeypatch):
    # "<string>" was made absolute against the current directory, so from
    # inside graphc's package exec'd code counted as graphc's own
    import graphc.errors
    monkeypatch.chdir(graphc.errors._GRAPHC_DIR)
    scope = {"np": np}
    exec("def f(a, b):\n    return a + b\n", scope)
    with pytest.raises(gc.ShapeError, match=r"at <string>:2"):
        gc.jit(scope["f"])(np.ones((3, 4)), np.ones(5))
    # a sibling directory whose name starts like the package's is not graphc's
    assert not graphc.errors.is_internal(graphc.errors._GRAPHC_DIR + "_examples/train.py")
    assert graphc.errors.is_internal(graphc.errors._GRAPHC_DIR + "/api.py")


# A loss with a label lookup, whose compiled code checks the labels
_LOSS_SOURCE = '''
import numpy as np
def loss(p, x, y):
    logits = x @ p["w"]
    logp = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    return -np.mean(logp[np.arange(x.shape[0]), y])
'''


def test_a_loss_moved_in_its_file_reuses_its_compiled_code_and_errors_name_its_new_line():
    # the same loss further down another file: an edit above it, a notebook cell run again
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(6, 3)), rng.normal(size=(3, 4))
    y, bad_y = np.array([0, 1, 2, 3, 0, 1]), np.array([0, 1, 2, 4, 0, 1])
    drivers = []
    for k, filename in enumerate(["first_place.py", "second_place.py"]):
        namespace = {}
        exec(compile("\n" * (10 * k) + _LOSS_SOURCE, filename, "exec"), namespace)
        where = f"{filename}:{6 + 10 * k}"      # the lookup's line
        grad = gc.jit(gc.grad(namespace["loss"]))
        grad({"w": w}, x, y)
        (entry,) = grad._cache.values()
        drivers.append(entry.driver)
        assert filename not in entry.module.source
        with pytest.raises(IndexError, match=r"out of range \[-4, 4\)") as e:
            grad({"w": w}, x, bad_y)
        assert where in str(e.value)
        # compile_step's call and gc.train's native epoch name it too
        params = {"w": w.copy()}
        step = gc.compile_step(namespace["loss"], gc.optim.SGD(lr=0.1))
        step(params, x, y)
        with pytest.raises(IndexError) as e:
            step(params, x, bad_y)
        assert where in str(e.value)
        with pytest.raises(IndexError) as e:
            gc.train(namespace["loss"], params, (x, bad_y), gc.optim.SGD(lr=0.1), batch_size=3,
                     epochs=1, progress=False)
        assert where in str(e.value)
    assert drivers[0] is drivers[1]         # one module, compiled once
    assert len(drivers[0].signatures) == 1


class _LocatedGraph:
    """The part of a Graph that errors.with_locations reads: node id -> loc."""

    def __init__(self, locs):
        self.nx = locs

    def node(self, node_id):
        return types.SimpleNamespace(loc=self.nx[node_id])


@pytest.mark.parametrize("message", ["labels out of range [0, 4)", "it's out of range"])
def test_node_marks_become_the_users_line_in_messages_and_in_exported_source(message):
    odd = "/tmp/it's a \"dir\"\\ with\na newline/é.py:3"
    graph = _LocatedGraph({7: odd})
    marked = message + errors.at_node(types.SimpleNamespace(id=7))
    assert errors.with_locations(marked, graph) == f"{message} (at {odd})"
    # in source (repr picks either quote), the literal still reads back exactly
    source = errors.with_locations(repr(marked), graph, in_literals=True)
    assert ast.literal_eval(source) == f"{message} (at {odd})"
    # a mark of a node the graph lacks is dropped, never an error hiding the real one
    assert errors.with_locations(marked.replace("node 7", "node 8"), graph) == message


_RNG = np.random.default_rng(0)


def test_random_draws_while_tracing_are_refused_not_frozen():
    """Noise drawn inside a traced function would be drawn once and reused by
    every call (a VAE's noise, a dropout mask): graphc names the generator."""
    x = np.ones((4, 3))

    def global_noise(x):
        return np.mean((x + np.random.standard_normal(x.shape)) ** 2)

    def module_generator(x):
        return np.sum(x * (_RNG.random(x.shape) > 0.5))

    def closure():
        rng = np.random.default_rng(1)
        return lambda x: np.sum(x * rng.normal(size=x.shape))

    class Dropout:
        def __init__(self):
            self.rng = np.random.default_rng(2)

        def __call__(self, x):
            return np.sum(x * (self.rng.random(x.shape) > 0.5))

    def default_generator(x, rng=np.random.default_rng(3)):
        return np.sum(x * rng.normal(size=x.shape))

    calls = (lambda f: gc.jit(f)(x), lambda f: gc.grad(f)(x),
             lambda f: gc.compile_step(lambda p, batch: f(p), gc.optim.SGD(0.1))(x, x))
    for fn, name in ((global_noise, r"NumPy's global generator \(np.random.\*\)"),
                     (module_generator, "_RNG"), (closure(), "rng"),
                     (Dropout().__call__, r"self.rng"), (default_generator, "rng")):
        for call in calls:
            _refused_or_warned(lambda: call(fn), rf"draws random numbers from {name} "
                                                 rf"\(at {re.escape(__file__)}:\d+\): they would be "
                                                 rf"drawn once")


def _refused_or_warned(call, message):
    """Refused; or, for NumPy's and Python's global generators while other
    threads run (a test before may have left one), warned."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            call()
        except gc.UnsupportedOpError as e:
            assert re.search(message, str(e)), str(e)
            return
    assert any(re.search(message, str(w.message)) for w in caught), [str(w.message) for w in caught]


class _Dropout:
    def __init__(self):
        self.rng = np.random.default_rng(4)

    def __call__(self, h):
        return h * (self.rng.random(h.shape) > 0.5)


_DROP = _Dropout()
_NOISE = {"eps": np.random.default_rng(5)}


def test_generators_one_step_away_are_seen_too():
    """A dropout layer object, a dict of generators, Python's random module."""
    import random
    x = np.ones(3)
    for fn, name in ((lambda x: np.sum(_DROP(x)), "_DROP.rng"),
                     (lambda x: np.sum(x * _NOISE["eps"].random(3)), "_NOISE.'eps'"),
                     (lambda x: np.sum(x * random.random()), "Python's random module")):
        _refused_or_warned(lambda: gc.grad(fn)(x), f"draws random numbers from {re.escape(name)}")


def test_another_thread_drawing_from_numpys_global_generator_only_warns():
    import threading
    stop = threading.Event()
    drawing = threading.Thread(target=lambda: [np.random.standard_normal(10)
                                               for _ in iter(stop.is_set, True)])
    drawing.start()
    try:
        with warnings.catch_warnings(record=True):      # the thread's draws may be seen
            warnings.simplefilter("always")
            np.testing.assert_allclose(gc.grad(lambda x: np.sum(x ** 2))(np.ones(3)), 2.0)
    finally:
        stop.set()
        drawing.join()


def test_in_place_operators_update_the_array_as_numpy():
    """x += y keeps x's dtype and is seen by every name bound to x, and a view
    of slices writes through to its base (x[1:] += 1, v = x[0]; v *= 2)."""
    def updated(x):
        x = x.copy()
        y = x
        y += 1.0
        x[1:] += 2.0
        v = x[0]
        v *= 10.0
        x[:, 0] //= 2.0
        return x

    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(gc.jit(updated).interpret(x), updated(x.copy()))

    def loss(w):
        w = w.copy()
        v = w[:1]
        v *= 2.0
        return np.sum(w ** 2)

    np.testing.assert_allclose(gc.grad(loss).interpret(np.array([1.0, 2.0])), [8.0, 4.0])


def test_in_place_operators_on_scalars_rebind_and_masks_update():
    """NumPy's scalars (a sum, x[i], a Python number) are rebound by /= as in
    NumPy; boolean &= and |= update the mask itself; x.sort() sorts x."""
    def metrics(p, y, n):
        correct = ((p > 0.5) == y).sum()
        correct /= n                     # int64 scalar to float64, as NumPy's scalars
        mask = p > 0.1
        alias = mask
        mask &= p < 0.5
        mask |= p > 0.85
        q = p.copy()
        q.sort()
        return correct, alias, q

    p, y = np.array([0.2, 0.9, 0.4]), np.array([0, 1, 1])
    for got, want in zip(gc.jit(metrics).interpret(p, y, 3), metrics(p, y, 3)):
        np.testing.assert_array_equal(got, want)


def test_assignments_numpy_refuses_are_refused():
    def to_float_in_place(i):
        i = i.copy()
        i += 1.5
        return i

    def out_of_range(i):
        i = i.astype(np.int8)
        i[0] = 300
        return i

    def nan_into_integers(i):
        i = i.copy()
        i[0] = np.nan
        return i

    def out_of_range_through_a_mask(i):
        i = i.astype(np.int8)
        i[i > 0] = 300
        return i

    i = np.arange(3)
    for fn, error, message in ((to_float_in_place, TypeError, "Cannot cast ufunc 'add' output"),
                               (out_of_range, ValueError, "300 out of bounds for int8"),
                               (nan_into_integers, ValueError, "cannot convert float NaN"),
                               (out_of_range_through_a_mask, ValueError, "300 out of bounds")):
        with pytest.raises(error, match=message) as e:
            gc.jit(fn).interpret(i)
        assert "test_errors.py:" in str(e.value)


def test_assigning_into_an_argument_warns_that_the_caller_keeps_its_array():
    def clip_negatives(x):
        x[x < 0] = 0.0
        return x

    x = np.array([-1.0, 2.0])
    with pytest.warns(RuntimeWarning, match="the caller's array keeps its values"):
        np.testing.assert_array_equal(gc.jit(clip_negatives).interpret(x), [0.0, 2.0])
    np.testing.assert_array_equal(x, [-1.0, 2.0])
    # through gc.grad too, whose function is traced inside grad's own trace
    with pytest.warns(RuntimeWarning, match="the caller's array keeps its values"):
        g = gc.grad(lambda x: np.sum(clip_negatives(x) ** 2))(x)
    np.testing.assert_array_equal(g, [0.0, 4.0])
    np.testing.assert_array_equal(x, [-1.0, 2.0])


def test_a_generator_seeded_inside_the_function_draws_the_same_numbers_as_numpy():
    def fixed_noise(x):                # the same noise on every call, in NumPy too
        return np.sum(x * np.random.default_rng(7).normal(size=x.shape))

    x = np.ones(5)
    np.testing.assert_allclose(gc.jit(fixed_noise)(x), fixed_noise(x))


def test_a_singular_matrix_raises_and_leaves_the_parameters():
    """LAPACK's refusal comes out of the compiled step as NumPy's does
    (a ValueError), before any parameter is updated."""
    step = gc.compile_step(lambda p, x: np.sum(np.linalg.inv(p["a"]) @ x), gc.optim.SGD(0.1))
    params = {"a": np.eye(2) * 3.0}
    step(params, np.ones(2))
    singular = {"a": np.ones((2, 2))}
    with pytest.raises(ValueError, match="Singular matrix"):
        step(singular, np.ones(2))
    np.testing.assert_array_equal(singular["a"], np.ones((2, 2)))


def test_lapack_refusals_raise_numpys_linalgerror_from_compiled_code():
    """The kernels run as C functions (kernels/linalg.py) that return a status:
    each refusal comes back as the LinAlgError NumPy's code would catch, with
    NumPy's message and the line that called np.linalg. (A nan or inf is
    refused as by Numba's wrappers, where NumPy's LAPACK may give nan.) One
    module, each call with one matrix LAPACK refuses."""
    def f(a, b, c, d):
        x = np.sum(np.linalg.inv(a))
        x = x + np.sum(np.linalg.solve(b, np.ones(2)))
        x = x + np.linalg.det(c)
        return x + np.sum(np.linalg.eigh(d)[0])

    f_jit, good = gc.jit(f), np.eye(2) * 3.0
    f_jit(good, good, good, good)
    singular, with_nan = np.array([[1.0, 2.0], [2.0, 4.0]]), np.array([[1.0, np.nan], [0.0, 1.0]])
    for k, (bad, message) in enumerate([(singular, "Singular matrix"), (singular, "Singular matrix"),
                                        (with_nan, "infs or NaNs"), (with_nan.T, "infs or NaNs")]):
        args = [good] * 4
        args[k] = bad
        with pytest.raises(np.linalg.LinAlgError, match=message) as e:
            f_jit(*args)
        assert _line_of(f, k + 1) in str(e.value)


def test_a_matrix_that_is_not_positive_definite_raises_and_leaves_the_parameters():
    step = gc.compile_step(lambda p, x: np.sum(np.linalg.cholesky(p["a"]) @ x), gc.optim.SGD(0.1))
    params = {"a": np.eye(2) * 3.0}
    step(params, np.ones(2))
    indefinite = {"a": np.array([[1.0, 2.0], [2.0, 1.0]])}
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        step(indefinite, np.ones(2))
    np.testing.assert_array_equal(indefinite["a"], [[1.0, 2.0], [2.0, 1.0]])


def test_a_list_of_numbers_where_an_array_goes_says_to_pass_an_array():
    # a list argument is a pytree of numbers: NumPy cannot convert its tracers
    X, y = np.ones((4, 3)), np.array([0, 1, 2, 0])
    loss = lambda p, x, y: gc.nn.cross_entropy(x @ p["W"], y)       # noqa: E731
    step = gc.compile_step(loss, gc.optim.SGD(0.1))
    params = {"W": np.ones((3, 3))}
    for batch, error in [((X.tolist(), y), gc.TracerError), ((X, y.tolist()), TypeError)]:
        with pytest.raises(error, match=r"^(?=.*test_errors.py:).*a list \(or tuple\) of numbers "
                                        r"passed as an argument is a pytree.*np.asarray\(the list"):
            step(params, *batch)
        np.testing.assert_array_equal(params["W"], 1.0)
    with pytest.raises(gc.TracerError, match="It is a Python number from the arguments"):
        gc.jit(lambda x: np.tanh(x) * 2)([0.1, 0.2])
    with pytest.raises(gc.TracerError) as e:    # a number alone: what its line does
        gc.jit(lambda x, k: np.eye(3)[k] @ x)(np.ones(3), 1)
    assert "one-hot" in str(e.value) and "list" not in str(e.value)


def test_an_object_as_params_or_argument_names_the_containers_that_are_traced():
    class Model:
        W = np.ones((3, 2))

    loss = lambda m, x: np.sum(x @ m.W)     # noqa: E731
    with pytest.raises(TypeError, match=r"^params is a Model; parameters must be NumPy float "
                                        r"arrays .* in dicts, lists, tuples or namedtuples"):
        gc.compile_step(loss, gc.optim.SGD(0.1))(Model(), np.ones(3))
    with pytest.raises(TypeError, match=r"type Model .* \(in dicts, lists, tuples or namedtuples: "
                                        r"an object's attributes are not traced"):
        gc.grad(loss)(Model(), np.ones(3))


def test_a_step_s_checks_and_misused_functions_name_the_calling_line():
    step = gc.compile_step(lambda p, x: np.sum(x * p["w"]), gc.optim.SGD(0.1))
    step({"w": np.ones(2)}, np.ones(2))
    for call, message in [
            (lambda: gc.compile_step(lambda p, x: p * x, gc.optim.SGD(0.1))(0.0, 1.0),
             "params is a float"),
            (lambda: step(0.0, np.ones(2)), r"params have structure \*, but this step was built "
                                            r"for \{'w': \*\}"),
            (lambda: step({"w": np.ones(2, np.float32)}, np.ones(2)),
             r"params\['w'\] is float32\[2\], but this step was built for float64\[2\]"),
            (lambda: gc.value_and_grad(lambda x: x * x, has_aux=True)(3.0),
             r"must return a pair \(value, aux\), got one array"),
            (lambda: gc.jit(lambda x, *, k: x * k)(1.0, k=2.0),
             r"keyword-only .* or bind them first with functools.partial")]:
        with pytest.raises(TypeError, match=message + r".*\(at .*test_errors.py:\d+\)"):
            call()


def test_argnums_big_endian_arrays_and_python_m_graphc():
    np.testing.assert_array_equal(gc.grad(lambda x: x @ x, argnums=np.int64(0))(np.ones(2)),
                                  [2.0, 2.0])         # one argument's, not a tuple of one
    for argnums in ("w", 1.0, ("w",), True):
        with pytest.raises(TypeError, match=r"argnums must be an int or a tuple of ints.*"
                                            r"test_errors.py:"):
            gc.grad(lambda x: x.sum(), argnums=argnums)(np.ones(2))
    with pytest.raises(TypeError, match=r"^hessian: the function must return a float scalar .*"
                                        r"\.mean\(\)\) \(at"):
        gc.hessian(lambda x: x * 2.0)(np.ones(2))
    with pytest.raises(TypeError, match=r"dtype >f8 \(float64 of the other byte order: "
                                        r"x.astype\(np.float64\)\)"):
        gc.jit(lambda x: x * 2)(np.ones(3, ">f8"))
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "graphc", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "usage: graphc" in done.stdout


def test_a_returned_string_and_an_unhashable_static_name_what_they_are():
    with pytest.raises(TypeError, match=r"^the function returned a str \('done'\): .*"
                                        r"test_errors.py:"):
        gc.jit(lambda x: (x * 2, "done"))(np.ones(2))
    with pytest.raises(TypeError, match=r"static argument \[1, 2\] must be hashable .*"
                                        r"tuple\(...\) of a list\) \(at .*test_errors.py:"):
        gc.jit(lambda x, n: x * len(n), static_argnums=1)(np.ones(2), [1, 2])
