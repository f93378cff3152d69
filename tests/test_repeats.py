"""graphc.repeats: repeated stretches of a driver outlined as one function.

Outlining must not change what the driver computes: the driver bodies here
run as plain Python, outlined and not, and must agree; compiled models with
a Python loop must still equal the NumPy reference interpreter."""
import io
import re
import tokenize

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import graphc as gc
from graphc import repeats


class _Alloc:
    """kernels.alloc's carve and reshape, as the drivers here call them."""

    @staticmethod
    def carve(ws, offset, shape, dtype):
        return ws[offset:offset + int(np.prod(shape))].reshape(shape)

    @staticmethod
    def reshape(x, shape):
        return x.reshape(shape)


def _driver(lines, functions=()):
    """`run(a, w)` with the body `lines` (and the parts `functions`) as plain
    Python; `ws`, a workspace it may carve at offsets o0-o4."""
    source = ("\n\n".join(functions) + "\n\ndef run(a, w):\n    ws = np.zeros(64)\n"
              + "".join(f"    o{k} = {8 * k}\n" for k in range(5)) + "\n".join(lines) + "\n")
    scope = {"np": np, "alloc": _Alloc}
    exec(source, scope)
    return scope["run"]


def _outlined(lines, same_line=lambda a, b: a == b):
    return repeats.outline(lines, 4, {"np", "alloc"}, "run", "", [], same_line)


def _loop(step, returned: str, steps=6, before=("    h0 = a + 0.0",)) -> list[str]:
    """A driver body: the lines `before`, `step(t)`'s lines for t in
    range(steps), then `return (returned,)`."""
    lines = list(before)
    for t in range(steps):
        lines += step(t)
    return lines + [f"    return ({returned},)"]


def _assert_same_results(lines, functions, outlined):
    """The driver `lines` and its outlined form return the same arrays."""
    a, w = np.linspace(-1, 1, 4), np.linspace(0.5, 1.5, 4)
    want = _driver(lines)(a.copy(), w.copy())
    got = _driver(outlined, functions)(a.copy(), w.copy())
    assert len(got) == len(want)
    for g, e in zip(got, want):
        np.testing.assert_array_equal(g, e)


@pytest.fixture
def small_limits(monkeypatch):
    monkeypatch.setattr(repeats, "MIN_STATEMENTS", 2)
    monkeypatch.setattr(repeats, "MIN_SAVED", 4)


def _step(t, h, out, message_node=None):
    """One repeat: a state carried from `h`, a step constant, a loop, an output."""
    check = (f"    if v{t}a[0] > 1e300:\n        raise ValueError('too large (at node {message_node})')"
             if message_node is not None else "    v{t}a[0] = v{t}a[0]".format(t=t))
    return [f"    v{t}a = np.tanh({h} * w) + np.uintp({t})",
            f"    v{t}b = v{t}a * 2.0",
            f"    for i{t} in range(3):",
            f"        v{t}b[i{t}] += a[i{t}]",
            check,
            f"    {out} = v{t}b - v{t}a"]


def test_a_loop_body_becomes_one_function_called_once_a_step(small_limits):
    lines = _loop(lambda t: _step(t, f"h{t}", f"h{t + 1}", message_node=100 + t),
                  "h6, v2a, v5b")
    # error marks of nodes 100-105, all of one source line
    functions, outlined = _outlined(lines, same_line=lambda a, b: True)
    assert len(functions) == 1 and functions[0].count("\ndef run_part0(") == 1
    calls = [line for line in outlined if "run_part0(" in line]
    assert len(calls) >= 5
    # the step constant is a parameter; the first repeat's error message is kept
    assert re.search(r"np\.uintp\(step__0\)", functions[0])
    assert "(at node 100)" in functions[0] or "(at node 101)" in functions[0]
    _assert_same_results(lines, functions, outlined)


def test_repeats_whose_errors_name_other_lines_stay_apart(small_limits):
    # the same code traced from two loops: each keeps the line its error names
    lines = _loop(lambda t: _step(t, f"h{t}", f"h{t + 1}", message_node=100 if t < 4 else 200),
                  "h8", steps=8)
    functions, outlined = _outlined(lines, same_line=lambda a, b: a == b)
    assert 1 <= len(functions) <= 2
    assert "(at node 100)" in "\n".join(functions + outlined)
    assert "(at node 200)" in "\n".join(functions + outlined)
    _assert_same_results(lines, functions, outlined)


def test_short_or_unequal_stretches_stay_as_they_are(small_limits, monkeypatch):
    lines = ["    h0 = a + 0.0"] + _step(0, "h0", "h1") + _step(1, "h1", "h2") + ["    return h2"]
    assert len(_outlined(lines)[0]) == 1
    monkeypatch.setattr(repeats, "MIN_SAVED", 20)     # 2 repeats of 5 statements save 5
    assert _outlined(lines) == ([], lines)
    # a constant that is not a typed integer must be equal in every repeat
    lines = _loop(lambda t: [f"    h{t + 1} = h{t} * w + {t}.5", f"    g{t} = h{t + 1} * 2.0",
                             f"    k{t} = g{t} - h{t}"], "h6, k3")
    assert _outlined(lines) == ([], lines)


def test_a_name_assigned_only_inside_a_loop_is_not_handed_out(small_limits):
    lines = _loop(lambda t: [f"    for i{t} in range(2):", f"        u{t} = h{t} + i{t}",
                             f"    h{t + 1} = h{t} * w", f"    z{t} = h{t + 1} + 1.0"], "h6, u4")
    _assert_same_results(lines, *_outlined(lines))


# Random straight-line drivers: repeats of a random step, each reading the
# step before it, names the first repeat's code reads from before the
# stretch, and its own earlier results; statements after the stretch read
# random results of any repeat.
_TEMPLATES = [
    "    {new} = {x} * w + {y}",
    "    {new} = np.tanh({x}) + np.uintp({t})",
    "    {new} = {x} + a\n    for i{new} in range(2):\n        {new}[i{new}] += {y}[i{new}]",
    "    {new} = {x}.copy()\n    {new}[0] = {y}[1]",
    "    {x}[1] += 0.5",
    "    c0 = c0 * 0.5 + {x}",           # a name from before the stretch, read and rebound
    # a workspace slot (the caller carves it again), one slot for several steps
    "    {new} = alloc.carve(ws, o{slot}, (4,), np.float64)\n    {new}[:] = {x} * 2.0",
    "    {new} = alloc.reshape({x}, (4,))",
    "    c0 = alloc.reshape({x}, (4,))",     # a view bound to a name rebound elsewhere
]


@st.composite
def _programs(draw):
    n_steps = draw(st.integers(3, 6))
    template = draw(st.lists(st.tuples(st.integers(0, len(_TEMPLATES) - 1),
                                       st.integers(0, 8), st.integers(0, 8)),
                             min_size=2, max_size=6))
    lines, names = ["    s0 = a + 0.0", "    c0 = w * 2.0"], ["s0", "c0"]
    carried = "s0"
    for t in range(n_steps):
        local = [carried, "c0", "a"]     # a: read, never assigned
        for j, (kind, x, y) in enumerate(template):
            new = f"v{t}_{j}"
            code = _TEMPLATES[kind].format(new=new, x=local[x % len(local)],
                                           y=local[y % len(local)], t=t, slot=(t + j) % 5)
            lines += code.split("\n")
            if "{new}" in _TEMPLATES[kind]:
                local.append(new)
        carried = local[-1]
        names += local[3:]
    reads = draw(st.lists(st.sampled_from(names), min_size=1, max_size=4))
    lines.append(f"    return ({', '.join(reads)},)")
    return lines


@settings(max_examples=60, deadline=None)
@given(_programs())
def test_random_drivers_compute_the_same_outlined(lines):
    import graphc.repeats as r
    saved = r.MIN_STATEMENTS, r.MIN_SAVED
    r.MIN_STATEMENTS, r.MIN_SAVED = 2, 4
    try:
        functions, outlined = _outlined(lines)
    finally:
        r.MIN_STATEMENTS, r.MIN_SAVED = saved
    _assert_same_results(lines, functions, outlined)


def _tokenized(text):
    """The standard library's tokens of `text`, as repeats compares them."""
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return [(t.type, t.string, t.start, t.end) for t in tokens if t.type not in repeats._SKIPPED]


def _scan(text):
    scanned = repeats._scanned(text)
    return None if scanned is None else [(t.type, t.string, t.start, t.end) for t in scanned]


@pytest.mark.parametrize("text", [
    "v1 = alloc.carve(ws, ws_o3, (n, 4), np.float32)  # workspace slot 3\n",
    "raise IndexError('index out of range [-10, 10) (at node 8)')\n",
    "m = \"it's \\\"quoted\\\" \\\\\" + 'a\\'b'\n",
    "x **= 2; y //= 3; z @= w; q = a != b >= c <= d == e << 1 >> 2\n",
    "t = 1e-05 + 9.999999747378752e-06 * 1. - .5 + 4096 + 0 + 10E+3\n",
    "for i in range(n):\n    for j in range(m):\n        s += a[i, j]\n    b[i] = s\n",
    "if x:\n\n    # a comment line\n    y = f(a,\n          b)  # trailing\n        \nz = 0\n",
    "def f(a, *b, **c) -> None:\n    return a[...]\n",
    "k = [x for x in (1, 2)] if not a else {1: 2}\n",
])
def test_the_driver_scan_reads_as_tokenize_does(text):
    assert _scan(text) == _tokenized(text)


@pytest.mark.parametrize("text", [
    "x = 1\n\ty = 2\n",              # a tab
    "x = 1 + \\\n    2\n",           # a backslash continuation
    "s = f'{x}'\n", "s = b'x'\n", "s = '''x'''\n",
    "n = 0x1f\n", "n = 1_000\n", "n = 06\n", "n = 1j\n",
    "x = (1,\n", "x = 1)\n",         # unbalanced
    "if x:\n    y = 1\n  z = 2\n",   # a dedent to no level
    "é = 1\n", "x = a $ b\n",
    # found by a fuzzing review: digits other than 0-9, a carriage return after a comment
    "x = 1\u0661\n", "x = \uff11\n", "x.\u0661\n", "x  # c\r\n", "f(  # a\rb\n)\n",
])
def test_the_driver_scan_leaves_what_it_is_not_sure_of_to_tokenize(text):
    assert _scan(text) is None


def test_generated_drivers_scan_as_tokenize_does():
    """Every statement of a compiled RNN's `run` and train_epoch, and of W2's."""
    from graphc.benchmarks import workloads
    params, xs, ys = _rnn()
    sources = [gc.compile_step(rnn_loss, gc.optim.SGD(0.1)).lower(params, xs, ys).source]
    w = workloads.WORKLOADS["W2"]
    w_params, batch = w.make(np.float32)
    sources.append(gc.compile_step(w.loss_fn, gc.optim.SGD(w.lr)).lower(w_params, *batch).source)
    scanned = 0
    for source in sources:
        lines = source.split("\n")
        for indent in (4, 8):
            for group in repeats._groups(lines, indent):
                text = "\n".join(line[indent:] for line in group) + "\n"
                tokens = _scan(text)
                if tokens is not None:
                    assert tokens == _tokenized(text), text
                    scanned += 1
    assert scanned > 1000


def test_a_statement_read_before_under_other_module_names_is_read_again():
    groups = [["    k1(a, np.float32(2))"]]
    as_local = repeats._statements(groups, 4, {"np"})[0].tokens
    as_module = repeats._statements(groups, 4, {"np", "k1"})[0].tokens
    assert as_local[0] == ("L", "k1") and as_module[0] == ("T", "k1")
    assert repeats._statements(groups, 4, {"np"})[0].tokens == as_local


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), max_size=120), st.lists(st.integers(1, 40), max_size=6),
       st.integers(1, 12))
def test_runs_are_the_longest_repeats_of_each_period(sigs, periods, planted):
    """_runs against its definition, by brute force: signatures with a
    block repeated five times planted in them, then each period asked for."""
    sigs = sigs[:len(sigs) // 2] + sigs[:planted] * 5 + sigs[len(sigs) // 2:]
    n = len(sigs)
    periods = {p for p in periods + [planted] if p <= n // 2}

    def count(i, p):        # how many equal blocks of p follow from i
        c = 1
        while (i + (c + 1) * p <= n
               and sigs[i + (c - 1) * p:i + c * p] == sigs[i + c * p:i + (c + 1) * p]):
            c += 1
        return c
    min_saved = 4           # (MIN_SAVED's own 100 would leave most examples without a run)
    want = sorted((p * (count(i, p) - 1), i, p, count(i, p)) for p in periods
                  for i in range(n - p + 1)
                  if p * (count(i, p) - 1) >= min_saved and (i < p or count(i - p, p) == 1))
    saved, repeats.MIN_SAVED = repeats.MIN_SAVED, min_saved
    try:
        assert sorted(repeats._runs(sigs, periods)) == want
    finally:
        repeats.MIN_SAVED = saved


# ---- compiled models with a Python loop ----
T, B, H, V = 8, 4, 5, 3


def rnn_loss(p, xs, ys):
    h = np.zeros((xs.shape[1], H))
    total = 0.0
    for t in range(T):
        h = np.tanh(xs[t] @ p["Wx"] + h @ p["Wh"] + p["b"])
        total = total + gc.nn.cross_entropy(h @ p["Wy"], ys[t])
    return total / T


def _rnn(seed=0):
    rng = np.random.default_rng(seed)
    params = {"Wx": rng.normal(size=(V, H)) * 0.5, "Wh": rng.normal(size=(H, H)) * 0.5,
              "b": np.zeros(H), "Wy": rng.normal(size=(H, V)) * 0.5}
    return params, rng.normal(size=(T, B, V)), rng.integers(0, V, size=(T, B))


def test_an_unrolled_rnn_step_calls_one_part_per_time_step_and_equals_the_interpreter():
    params, xs, ys = _rnn()
    step = gc.compile_step(rnn_loss, gc.optim.SGD(0.1))
    source = step.lower(params, xs, ys).source
    run = source[source.index("\ndef run("):source.index("\ndef train_epoch(")]
    epoch = source[source.index("\ndef train_epoch("):]
    assert "run_part0(" in run
    assert run.count("run_part") >= T - 2
    # train_epoch repeats run's step: it calls run's part (compiled once), defines none
    assert epoch.count("run_part0(") >= T - 2 and "def epoch_part" not in source
    # against the NumPy reference interpreter of the same trace (no Numba code)
    loss, grads = gc.jit(gc.value_and_grad(rnn_loss)).interpret(params, xs, ys)
    expected = {k: v - 0.1 * grads[k] for k, v in params.items()}
    assert step(params, xs, ys) == pytest.approx(float(loss), rel=1e-12)
    for k in params:
        np.testing.assert_allclose(params[k], expected[k], rtol=1e-12, atol=1e-14)


def test_gc_train_of_an_unrolled_rnn_equals_its_steps_by_hand():
    params, xs, ys = _rnn()
    by_hand = {k: v.copy() for k, v in params.items()}
    X, Y = np.ascontiguousarray(xs.transpose(1, 0, 2)), np.ascontiguousarray(ys.T)

    def loss_rows(p, x, y):
        return rnn_loss(p, x.transpose(1, 0, 2), y.T)
    history = gc.train(loss_rows, params, (X, Y), gc.optim.SGD(0.1), batch_size=2, epochs=2,
                       shuffle=False, progress=False)
    step = gc.compile_step(loss_rows, gc.optim.SGD(0.1))
    losses = [step(by_hand, X[i:i + 2], Y[i:i + 2]) for _ in range(2) for i in (0, 2)]
    np.testing.assert_allclose(history, [np.mean(losses[:2]), np.mean(losses[2:])], rtol=1e-12)
    for k in params:
        np.testing.assert_allclose(params[k], by_hand[k], rtol=1e-12)


def test_an_error_inside_a_part_names_the_loops_line():
    params, xs, ys = _rnn()
    step = gc.compile_step(rnn_loss, gc.optim.SGD(0.1))
    step(params, xs, ys)
    before = {k: v.copy() for k, v in params.items()}
    bad = ys.copy()
    bad[5, 1] = V + 4               # a label out of range at a later time step
    line = rnn_loss.__code__.co_firstlineno + 5
    with pytest.raises(IndexError, match=rf"test_repeats.py:{line}\b"):
        step(params, xs, bad)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_an_exported_rnn_step_carries_each_signatures_parts(tmp_path, monkeypatch):
    params, xs, ys = _rnn()
    step = gc.compile_step(rnn_loss, gc.optim.SGD(0.1))
    step(params, xs, ys)
    step(params, xs[:, :2], ys[:, :2])      # a second signature: its parts renamed apart
    gc.export(step, tmp_path / "exported_rnn_step.py")
    text = (tmp_path / "exported_rnn_step.py").read_text()
    assert "def s0_run_part0(" in text and "def s1_run_part0(" in text
    assert "epoch_part" not in text         # train_epoch is not exported, nor its parts
    monkeypatch.syspath_prepend(str(tmp_path))
    import exported_rnn_step
    exported = {k: v.copy() for k, v in params.items()}
    for _ in range(2):      # one signature (each compiles apart: 5 s)
        assert exported_rnn_step.step(exported, xs, ys) == step(params, xs, ys)
        for k in params:
            np.testing.assert_array_equal(exported[k], params[k])


def test_statements_binding_names_otherwise_are_left_in_place(small_limits):
    # a comprehension's variable is not a name the part could be passed
    lines = _loop(lambda t: [f"    h{t + 1} = h{t} * w",
                             f"    g{t} = sum([q * 2.0 for q in h{t + 1}])",
                             f"    k{t} = h{t + 1} + g{t}"], "h6, k3")
    assert _outlined(lines) == ([], lines)


def test_the_caller_makes_again_only_views_nothing_rebinds(small_limits):
    # c is a view made from read-only names, then rebound: the caller must take
    # the part's c back rather than make the view again; u is a view it makes again
    lines = _loop(lambda t: ["    c = alloc.reshape(a, (4,))",
                             f"    u{t} = alloc.carve(ws, o{t % 3}, (4,), np.float64)",
                             f"    u{t}[:] = h{t} * 2.0", f"    c = c * 0.5 + u{t}",
                             f"    h{t + 1} = np.tanh(c) * w"],
                  "h6, c, u2, u5", before=("    c = a + 0.0", "    h0 = a + 0.0"))
    functions, outlined = _outlined(lines)
    assert len(functions) == 1
    remade = [line.strip() for line in outlined if "alloc." in line]
    assert remade and all(line.startswith("u") for line in remade)
    _assert_same_results(lines, functions, outlined)


def two_loops_loss(p, xs, ys):
    h = np.zeros((xs.shape[1], H))
    total = 0.0
    for t in range(T):
        h = np.tanh(xs[t] @ p["Wx"] + h @ p["Wh"])
        total = total + gc.nn.cross_entropy(h @ p["Wy"], ys[t])
    for t in range(T, 2 * T):       # the same cell, traced from other lines
        h = np.tanh(xs[t] @ p["Wx"] + h @ p["Wh"])
        total = total + gc.nn.cross_entropy(h @ p["Wy"], ys[t])
    return total


def test_the_same_cell_in_two_loops_names_the_line_of_the_loop_that_failed():
    rng = np.random.default_rng(0)
    params = {"Wx": rng.normal(size=(V, H)), "Wh": rng.normal(size=(H, H)) * 0.3,
              "Wy": rng.normal(size=(H, V))}
    xs, ys = rng.normal(size=(2 * T, B, V)), rng.integers(0, V, size=(2 * T, B))
    f = gc.jit(two_loops_loss)
    assert "run_part" in f.lower(params, xs, ys).source
    first = two_loops_loss.__code__.co_firstlineno
    for step, line in [(2, first + 5), (T + 4, first + 8)]:
        bad = ys.copy()
        bad[step, 1] = V + 2
        with pytest.raises(IndexError, match=rf"test_repeats.py:{line}\)"):
            f(params, xs, bad)


@pytest.mark.parametrize("binding", [
    lambda t: f"g{t} = q{t} = h{t + 1} * 2.0",          # chained
    lambda t: f"(g{t}, q{t}) = h{t + 1}, h{t}",         # parenthesized
    lambda t: f"g{t} = h{t + 1} * 2.0; q{t} = g{t}"])   # two on one line
def test_assignments_it_cannot_follow_keep_the_stretch_unrolled(small_limits, binding):
    lines = _loop(lambda t: [f"    h{t + 1} = h{t} * w", "    " + binding(t),
                             f"    k{t} = q{t} + g{t}"], "h6, k3, q5")
    assert _outlined(lines) == ([], lines)


def test_a_part_makes_the_workspace_views_it_reads_from_their_offsets(small_limits):
    # the state lives in two workspace buffers used in turn; each repeat reads
    # the view the one before carved: the part carves it from its offset too
    lines = _loop(lambda t: [f"    h{t + 1} = alloc.carve(ws, o{(t + 1) % 2}, (4,), np.float64)",
                             f"    h{t + 1}[:] = np.tanh(h{t} * w)", f"    g{t} = h{t + 1} * 2.0",
                             f"    k{t} = g{t} + h{t}"],
                  "h6.copy(), k2, k5",
                  before=("    h0 = alloc.carve(ws, o0, (4,), np.float64)", "    h0[:] = a"))
    functions, outlined = _outlined(lines)
    assert len(functions) == 1
    header, body = functions[0].split("\n", 2)[1:]
    assert re.match(r"\s*h0 = alloc\.carve\(ws, h0__\d+, \(4,\), np\.float64\)", body)
    params = header.split("(", 1)[1].rstrip("):").split(", ")
    assert "h0" not in params and any(p.startswith("h0__") for p in params)   # its offset
    _assert_same_results(lines, functions, outlined)


def test_the_caller_makes_again_only_the_views_later_lines_read(small_limits):
    # each repeat's views are read by the next repeat, which is a call passed
    # their offsets: the caller makes again only the last repeat's, which the
    # return reads (its carve because its reshape does), none of the others
    lines = _loop(lambda t: [f"    h{t + 1} = alloc.carve(ws, o{(t + 1) % 2}, (4,), np.float64)",
                             f"    r{t + 1} = alloc.reshape(h{t + 1}, (2, 2))",
                             f"    r{t + 1}[:] = np.tanh(h{t}.reshape(2, 2) * w[0])",
                             f"    k{t} = h{t + 1} * 2.0 + h{t}"],
                  "r6.copy(), k2, k5",
                  before=("    h0 = alloc.carve(ws, o0, (4,), np.float64)", "    h0[:] = a"))
    functions, outlined = _outlined(lines)
    assert len(functions) == 1
    views = [line.split("=")[0].strip() for line in outlined if "alloc." in line]
    assert views == ["h0", "h6", "r6"]
    _assert_same_results(lines, functions, outlined)


def test_views_with_other_shapes_are_passed_not_remade(small_limits):
    # carves of one offset pattern but shapes written out: the part must not
    # carve every repeat's array with the first's shape
    carves = tuple(f"    p{t} = alloc.carve(ws, o{t}, ({t + 2},), np.float64)" for t in range(4))
    lines = _loop(lambda t: [f"    x{t} = np.sum(p{t}) * w", f"    h{t + 1} = h{t} + x{t}",
                             f"    y{t} = h{t + 1} * 2.0"],
                  "h4", steps=4, before=carves + ("    ws[:] = np.arange(64.0)", "    h0 = a + 0.0"))
    functions, outlined = _outlined(lines)
    assert functions
    _assert_same_results(lines, functions, outlined)


def test_an_item_store_beside_a_name_binds_the_name(small_limits):
    lines = _loop(lambda t: [f"    x{t} = h{t} * w", f"    buf[0], y{t} = x{t}[0], x{t} + 1.0",
                             f"    h{t + 1} = y{t} * 0.5"],
                  "h4, y3, buf", steps=4, before=("    buf = np.zeros(4)", "    h0 = a + 0.0"))
    _assert_same_results(lines, *_outlined(lines))
