"""A lowering (optimized graph and generated module) stored on disk is read
by later processes instead of running the passes and code generation again
(graphc.stored_lowerings); anything the code depends on keeps them apart."""
import logging
import os
import pickle
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, strategies as st

import graphc as gc
from graphc import codegen, lowering, runtime, stored_lowerings


@pytest.fixture
def passes_ran(caplog):
    """passes_ran(): how many times the lowering's passes ran since the last
    call (graphc.passes logs each pass; fusion is the lowering's alone)."""
    caplog.set_level(logging.DEBUG, logger="graphc.passes")

    def count():
        n = sum(r.getMessage().startswith("fuse_elementwise:") for r in caplog.records)
        caplog.clear()
        return n
    return count


def _entry(compiled):
    (entry,) = compiled._cache.values()
    return entry


def _stored(directory):
    return sorted(directory.glob("graphc_*.lowered"))


def _model(x):
    return np.sum(np.tanh(x * 3.0) ** 2, axis=1)


def test_a_later_process_reads_the_stored_lowering(private_cache, passes_ran):
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    first = gc.jit(_model)
    want = first(x)
    assert passes_ran() > 0 and len(_stored(private_cache)) == 1
    lowering.forget()           # what a new process has kept: nothing
    second = gc.jit(_model)
    np.testing.assert_array_equal(second(x), want)
    assert passes_ran() == 0
    assert _entry(second).module.source == _entry(first).module.source
    assert _entry(second).optimized.to_dot() == _entry(first).optimized.to_dot()  # names inputs


def test_a_second_process_trains_on_the_first_ones_lowering(tmp_path):
    script = textwrap.dedent("""
        import logging, numpy as np, graphc as gc
        records = []
        logging.getLogger("graphc.passes").addHandler(logging.Handler())
        logging.getLogger("graphc.passes").handlers[0].emit = records.append
        logging.getLogger("graphc.passes").setLevel(logging.DEBUG)
        rng = np.random.default_rng(0)
        p = {"w": rng.normal(size=(5, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}
        x = rng.normal(size=(16, 5)).astype(np.float32)
        y = rng.normal(size=(16, 3)).astype(np.float32)
        loss = lambda p, x, y: np.mean((np.tanh(x @ p["w"] + p["b"]) - y) ** 2)
        step = gc.compile_step(loss, gc.optim.Adam(0.01))
        losses = [float(step(p, x, y)) for _ in range(3)]
        fused = [r for r in records if r.getMessage().startswith("fuse_elementwise:")]
        print(len(fused), repr(losses), p["w"].tobytes().hex())
    """)
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path / "cache"))
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, check=True).stdout.split(" ", 1) for _ in range(2)]
    (ran_first, result_first), (ran_second, result_second) = runs
    assert int(ran_first) > 0 and int(ran_second) == 0      # the second: no lowering
    assert result_second == result_first                    # bit for bit


def test_a_rule_changed_in_the_process_is_neither_read_nor_stored(private_cache, monkeypatch):
    x = np.random.default_rng(1).standard_normal((40, 10))
    f = gc.jit(lambda x: np.exp(x) * 2.0)
    assert "_blk[" in f.inspect(x).source            # rows of 10 are short: flat
    stored = _stored(private_cache)
    lowering.forget()
    monkeypatch.setattr(codegen, "SHORT_ROW", 8)     # now they are not
    g = gc.jit(f.fn)
    assert "_blk[" not in g.inspect(x).source
    np.testing.assert_allclose(g(x), np.exp(x) * 2.0, rtol=1e-12)
    assert _stored(private_cache) == stored and len(stored) == 1


def test_the_same_code_on_other_lines_reads_it_and_names_its_own_lines(private_cache, passes_ran,
                                                                       raised_line):
    first = gc.jit(lambda x, i: x[i] * 2.0)
    second = gc.jit(lambda x, i: x[i] * 2.0)
    x = np.arange(5.0)
    np.testing.assert_array_equal(first(x, np.array([1, -2])), [2.0, 6.0])
    passes_ran()
    lowering.forget()
    np.testing.assert_array_equal(second(x, np.array([1, -2])), [2.0, 6.0])
    assert passes_ran() == 0
    first_line, second_line = (
        raised_line(lambda: f(x, np.array([1, 7])), IndexError, r"index out of range \[-5, 5\)")
        for f in (first, second))
    assert second_line == first_line + 1


def test_a_namedtuple_result_comes_back_as_the_users_class(private_cache, passes_ran):
    import collections
    Pair = collections.namedtuple("Pair", "low high")
    fn = lambda x: Pair(np.min(x), np.max(x))     # noqa: E731
    x = np.arange(6.0)
    gc.jit(fn)(x)
    assert passes_ran() > 0
    lowering.forget()
    got = gc.jit(fn)(x)
    assert passes_ran() == 0 and type(got) is Pair and (float(got.low), float(got.high)) == (0, 5)


def test_a_damaged_lowering_is_made_again_with_a_warning(private_cache, passes_ran):
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    want = gc.jit(_model)(x)
    (path,) = _stored(private_cache)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    lowering.forget()
    passes_ran()
    with pytest.warns(runtime.CacheWarning, match=f"{path.name} is corrupted"):
        np.testing.assert_array_equal(gc.jit(_model)(x), want)
    assert passes_ran() > 0
    lowering.forget()
    np.testing.assert_array_equal(gc.jit(_model)(x), want)     # written again, whole
    assert passes_ran() == 0


def test_a_lowering_others_could_have_written_is_not_read(private_cache, passes_ran):
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    want = gc.jit(_model)(x)
    (path,) = _stored(private_cache)
    path.chmod(0o666)
    lowering.forget()
    passes_ran()
    with pytest.warns(runtime.CacheWarning, match="can be written by other users"):
        np.testing.assert_array_equal(gc.jit(_model)(x), want)
    assert passes_ran() > 0
    assert path.stat().st_mode & 0o022 == 0     # replaced by a private one


def test_graphs_holding_large_constants_are_not_stored(private_cache):
    table = np.random.default_rng(2).standard_normal(stored_lowerings.MAX_CONST_BYTES // 8 + 1)
    np.testing.assert_allclose(gc.jit(lambda v: np.sum(table * v[0]))(np.ones(4)), table.sum(),
                               rtol=1e-12)
    assert not _stored(private_cache)
    assert len(lowering._kept) == 1      # kept in the process all the same


def _name(key):
    return stored_lowerings.name(key, lowering._rules(), 0)


def test_the_name_depends_on_every_part_of_the_key_and_on_graphc(monkeypatch):
    key = ((("add", (0, 1), (("axis", (1, -1)),), (3, 4), np.dtype("float32"), False),),)
    names = {_name(key), _name(key + (True,)), _name(key + (1,)), _name(key + (1.0,)),
             _name(((("add", (0, 1), (("axis", (1, -2)),), (3, 4), np.dtype("float32"), False),),)),
             _name(((("add", (0, 1), (("axis", (1, -1)),), (3, 4), np.dtype("float64"), False),),))}
    assert len(names) == 6 and None not in names
    assert _name(key) == _name(key)
    monkeypatch.setattr(gc, "__version__", "0.0.0-other")
    stored_lowerings._environment.cache_clear()
    try:
        assert _name(key) not in names
    finally:
        monkeypatch.undo()
        stored_lowerings._environment.cache_clear()
    assert _name(key) in names
    assert _name(key + (object(),)) is None         # a value it cannot write out
    assert stored_lowerings.name(key, lowering._rules() + ((0, ()),), 0) is None
    assert stored_lowerings.name(key, lowering._rules(), stored_lowerings.MAX_CONST_BYTES + 1) \
        is None


def _typed(value):
    """value with each part's type beside it, floats by their bits."""
    if isinstance(value, (tuple, list)):
        return type(value), tuple(_typed(v) for v in value)
    if isinstance(value, float):
        return float, struct.pack("<d", value)
    if isinstance(value, np.generic):
        return type(value), value.tobytes()
    return type(value), value


_leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
           | st.text(max_size=4) | st.binary(max_size=4) | st.integers(-3, 3).map(np.int32)
           | st.floats(width=32).map(np.float32))
_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=3)
                       | st.lists(inner, max_size=3).map(tuple), max_leaves=8)


@given(_values, _values)
def test_two_values_are_written_out_alike_exactly_when_they_are_the_same(a, b):
    def encoded(v):
        out = []
        stored_lowerings._encoded(v, out)
        return b"".join(out)
    assert (encoded(a) == encoded(b)) == (_typed(a) == _typed(b))
    assert encoded(pickle.loads(pickle.dumps(a))) == encoded(a)     # as another process has it


def test_a_rule_is_held_while_compared_so_its_id_is_not_reused():
    value = object()
    same, freed_id = lowering._Same(value), id(value)
    del value       # alive in `same`: a new object cannot take its id and pass for it
    assert all(id(object()) != freed_id for _ in range(1000)) and same == same


def test_every_graphc_module_the_lowering_reads_is_a_rule_module():
    import types
    rule_modules = set(lowering._RULES) | {m for name, m in sys.modules.items()
                                           if name.startswith("graphc.passes")}
    in_key = {"graphc.threads"}     # its count is in the key itself
    read = set()
    for m in rule_modules:
        for value in vars(m).values():
            name = value.__name__ if isinstance(value, types.ModuleType) else \
                getattr(value, "__module__", None)
            if isinstance(name, str) and name.startswith("graphc") and name not in in_key:
                read.add(sys.modules[name])
    assert read <= rule_modules, sorted(m.__name__ for m in read - rule_modules)


def test_a_stored_file_of_other_contents_is_made_again(private_cache, passes_ran):
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    want = gc.jit(_model)(x)
    (path,) = _stored(private_cache)
    runtime.write_checked(path, stored_lowerings._FORMAT, pickle.dumps("not a lowering"))
    lowering.forget()
    passes_ran()
    np.testing.assert_array_equal(gc.jit(_model)(x), want)
    assert passes_ran() > 0


def test_a_source_file_that_cannot_be_read_is_left_out_of_the_fingerprint(tmp_path):
    from graphc import kernels
    (tmp_path / "a.py").write_text("A = 1\n")
    before = kernels.files_fingerprint(tmp_path, "**/*.py")
    (tmp_path / ".#a.py").symlink_to(tmp_path / "gone")     # an editor's lock file
    assert kernels.files_fingerprint(tmp_path, "**/*.py") == before
    (tmp_path / "a.py").write_text("A = 2\n")
    assert kernels.files_fingerprint(tmp_path, "**/*.py") != before
