"""The compile cache's size bound (graphc/cache_limit.py): least recently used entries go first."""
import os
import pathlib
import time

import numpy as np
import pytest

import graphc as gc
from graphc import cache_limit, cli, lowering, runtime

HOUR = 3600.0


def _entry(directory, key, size, age, extra=(".run-40.py311.nbi", ".run-40.py311.1.nbc")):
    """A module entry of `size` bytes per file, last used `age` seconds ago."""
    (directory / "__pycache__").mkdir(parents=True, exist_ok=True)
    files = [directory / f"graphc_{key}.py"]
    files += [directory / "__pycache__" / f"graphc_{key}{suffix}" for suffix in extra]
    when = time.time() - age
    for f in files:
        f.write_bytes(b"x" * size)
        os.utime(f, (when, when))
    return files


@pytest.fixture
def marked(monkeypatch):
    """The paths cache_limit.mark_used is called with. (Reading a file may
    change its access time by itself, depending on the mount options, so the
    test watches the call.)"""
    paths, mark = [], cache_limit.mark_used
    monkeypatch.setattr(cache_limit, "mark_used", lambda path: (paths.append(path), mark(path)))
    return paths


@pytest.fixture(autouse=True)
def checks_every_write(monkeypatch):
    monkeypatch.setattr(cache_limit, "_last_check", None)


def test_prune_removes_whole_entries_least_recently_used_first(tmp_path):
    oldest = _entry(tmp_path, "a" * 24, 1000, 5 * HOUR)
    older = _entry(tmp_path, "b" * 24, 1000, 4 * HOUR)
    lowered = tmp_path / f"graphc_{'c' * 32}.lowered"
    lowered.write_bytes(b"x" * 1000)
    os.utime(lowered, (time.time() - 3 * HOUR,) * 2)
    newest = _entry(tmp_path, "d" * 24, 1000, 2 * HOUR)
    others = [tmp_path / "notes.txt", tmp_path / "__pycache__" / "notes.cpython-311.pyc"]
    for f in others:
        f.write_bytes(b"x" * 100_000)

    assert cache_limit.prune(tmp_path, 4500)[:2] == (2, 6000)     # 10,000 bytes of graphc's -> 4,000
    assert not any(f.exists() for f in oldest + older)
    assert lowered.exists() and all(f.exists() for f in newest + others)
    assert cache_limit.prune(tmp_path, 4000)[:2] == (0, 0)      # within the bound: nothing more


def test_entries_used_in_the_last_ten_minutes_are_kept_over_the_bound(tmp_path):
    old = _entry(tmp_path, "a" * 24, 1000, HOUR)
    recent = _entry(tmp_path, "b" * 24, 1000, cache_limit.RECENT_SECONDS - 60)
    assert cache_limit.prune(tmp_path, 0)[:2] == (1, 3000)
    assert not any(f.exists() for f in old) and all(f.exists() for f in recent)


def test_an_entry_read_later_outlives_one_written_later(tmp_path):
    # an entry's access time counts as its use
    read = _entry(tmp_path, "a" * 24, 1000, 3 * HOUR)
    written = _entry(tmp_path, "b" * 24, 1000, 2 * HOUR)
    os.utime(read[0], (time.time() - HOUR, read[0].stat().st_mtime))   # read an hour ago
    assert cache_limit.prune(tmp_path, 3000)[:2] == (1, 3000)
    assert all(f.exists() for f in read) and not any(f.exists() for f in written)


def test_only_graphcs_own_files_are_removed(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "big.bin").write_bytes(b"x" * 100_000)
    cache = tmp_path / "cache"
    cache.mkdir()
    theirs = [cache / "graphc_helpers.py", cache / ".tmp_editor_backup.py",
              cache / "graphc_weights.lowered", cache / "graphc_report.tmp"]
    for f in theirs:
        f.write_bytes(b"x" * 1000)
        os.utime(f, (time.time() - HOUR,) * 2)
    link = cache / f"graphc_{'a' * 24}.py"
    link.symlink_to(outside / "big.bin")
    (cache / "__pycache__").symlink_to(outside)
    (outside / f"graphc_{'b' * 24}.run-40.py311.nbi").write_bytes(b"x")
    assert cache_limit.entries(cache) == [] and cache_limit.prune(cache, 0)[:2] == (0, 0)
    assert all(f.exists() for f in theirs) and link.is_symlink() and len(list(outside.iterdir())) == 2


def test_an_entry_whose_index_lock_another_process_holds_is_kept(tmp_path):
    import fcntl
    files = _entry(tmp_path, "a" * 24, 1000, HOUR,
                   extra=(".run-40.py311.nbi", ".run-40.py311.nbi.lock"))
    with open(files[-1], "ab") as held:
        fcntl.flock(held, fcntl.LOCK_SH)        # loading from Numba's cache
        assert cache_limit.prune(tmp_path, 0)[:2] == (0, 0)
        assert all(f.exists() for f in files)
    assert cache_limit.prune(tmp_path, 0)[:2] == (1, 3000)
    assert not any(f.exists() for f in files)


def _times_open(path) -> int:
    """How many of this process's file descriptors are open on `path`."""
    return sum(1 for fd in pathlib.Path("/proc/self/fd").iterdir()
               if os.path.realpath(fd) == str(path))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to see the open file")
def test_a_numba_index_lock_removed_before_it_was_taken_is_taken_again(tmp_path):
    # a process opens the lock file, the cache bound removes it (holding it),
    # then the process locks the removed file: it must lock the new one
    import fcntl
    import threading

    from graphc.kernels import _under_index_lock
    path = tmp_path / "f.nbi.lock"
    held = open(path, "ab")
    fcntl.flock(held, fcntl.LOCK_EX)
    seen = []

    class Index:
        _index_path = str(tmp_path / "f.nbi")

        def save(self):
            with open(path, "ab") as other:     # the lock at the path is taken: by us
                try:
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    seen.append("not held")
                except BlockingIOError:
                    seen.append("held")

    saving = threading.Thread(target=_under_index_lock(Index.save, fcntl.LOCK_EX), args=(Index(),))
    saving.start()
    deadline = time.monotonic() + 30
    while _times_open(path) < 2:    # until the thread has opened it too (and waits for the lock)
        assert time.monotonic() < deadline, "the locking thread never opened the lock file"
        time.sleep(0.01)
    path.unlink()
    held.close()
    saving.join(10)
    assert seen == ["held"]


def test_an_entry_is_as_recent_as_its_latest_file(tmp_path):
    # Numba writes a new signature's code into an old module's entry
    files = _entry(tmp_path, "a" * 24, 1000, HOUR)
    os.utime(files[-1])         # now
    assert cache_limit.prune(tmp_path, 0)[:2] == (0, 0)
    assert all(f.exists() for f in files)


def test_numbas_files_under_numba_cache_dir_belong_to_their_entry(private_cache, tmp_path,
                                                                    monkeypatch):
    from numba.core import config
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "numba"))
    assert gc.jit(lambda x: (x * 7.0).sum())(np.arange(4.0)) == 42.0
    numbas = [f for e in cache_limit.entries(private_cache) for f in e.files
              if f.is_relative_to(tmp_path / "numba")]
    assert any(f.suffix == ".nbc" for f in numbas)
    assert not list(private_cache.glob("__pycache__/*.nbc"))      # (graphc's bytecode is there)
    for f in numbas + list(private_cache.rglob("*")):
        os.utime(f, (time.time() - HOUR,) * 2)
    cache_limit.prune(private_cache, 0)
    assert not any(f.exists() for f in numbas)


def test_an_unfinished_write_is_an_entry_of_its_own(tmp_path):
    module = _entry(tmp_path, "a" * 24, 1000, 2 * HOUR, extra=())
    abandoned = tmp_path / ".tmp_k2j3x_9q.py"          # tempfile.mkstemp's name
    abandoned.write_bytes(b"x" * 1000)
    os.utime(abandoned, (time.time() - 3 * HOUR,) * 2)
    assert cache_limit.prune(tmp_path, 1000)[:2] == (1, 1000)
    assert not abandoned.exists() and module[0].exists()


def test_mark_used_sets_the_access_time_and_keeps_the_modification_time(tmp_path):
    path = tmp_path / "graphc_0123.py"
    path.write_text("x")
    os.utime(path, (time.time() - HOUR, time.time() - 2 * HOUR))
    mtime = path.stat().st_mtime_ns            # Numba's cache is keyed on it
    cache_limit.mark_used(path)
    assert path.stat().st_mtime_ns == mtime and path.stat().st_atime > time.time() - 60
    cache_limit.mark_used(tmp_path / "gone.py")     # removed meanwhile: nothing to mark


def test_loading_a_module_marks_it_used(private_cache, marked):
    source = "def f(x):\n    return x + 1\n"
    runtime.load(source)
    assert marked == []                        # just written: its modification time says so
    runtime._modules.clear()
    assert runtime.load(source).f(1) == 2
    assert marked == [private_cache / f"graphc_{runtime.module_key(source)}.py"]


def test_reading_a_stored_lowering_marks_it_used(private_cache, marked):
    f = gc.jit(lambda x: (x * 3.0).sum())
    x = np.arange(4.0)
    assert f(x) == 18.0
    [stored] = private_cache.glob("graphc_*.lowered")
    lowering.forget()
    runtime._modules.clear()
    marked.clear()
    assert gc.jit(lambda x: (x * 3.0).sum())(x) == 18.0      # an equal trace: read from disk
    assert stored in marked


def test_a_new_module_brings_the_cache_within_its_bound(private_cache, monkeypatch):
    private_cache.mkdir(mode=0o700)
    old = _entry(private_cache, "a" * 24, 400_000, 2 * HOUR)
    monkeypatch.setenv("GRAPHC_CACHE_MAX_MB", "0.1")
    source = "def f(x):\n    return x + 2\n"
    assert runtime.load(source).f(1) == 3
    assert not any(f.exists() for f in old)
    assert (private_cache / f"graphc_{runtime.module_key(source)}.py").exists()


def test_a_process_checks_the_bound_at_most_once_a_minute(private_cache, monkeypatch):
    private_cache.mkdir(mode=0o700)
    monkeypatch.setenv("GRAPHC_CACHE_MAX_MB", "0.1")
    runtime.load("def f(x):\n    return x + 3\n")      # checks: within the bound
    old = _entry(private_cache, "a" * 24, 400_000, 2 * HOUR)
    runtime.load("def f(x):\n    return x + 4\n")      # a second write within the minute
    assert all(f.exists() for f in old)
    monkeypatch.setattr(cache_limit, "_last_check", time.monotonic() - cache_limit.CHECK_SECONDS)
    runtime.load("def f(x):\n    return x + 5\n")
    assert not any(f.exists() for f in old)


@pytest.mark.parametrize("when", ["_checked_text", "_code"])
def test_a_module_removed_by_another_process_while_loading_is_written_again(
        private_cache, monkeypatch, when):
    # removed before it is read, or before Numba's decorators find it (they
    # cannot cache a function whose file is gone)
    source = "import numba\n\n@numba.njit(cache=True)\ndef f(x):\n    return x + 1\n"
    runtime.load(source)
    runtime._modules.clear()
    path = private_cache / f"graphc_{runtime.module_key(source)}.py"
    original, calls = getattr(runtime, when), []

    def pruned_meanwhile(*args):
        if not calls:
            path.unlink()
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(runtime, when, pruned_meanwhile)
    assert runtime.load(source).f(1) == 2
    assert runtime._checked_text(path) is not None


def test_a_module_raising_on_import_is_imported_once(private_cache):
    source = "RUNS.append(1)\nraise RuntimeError('made by the module')\n"
    import builtins
    builtins.RUNS = []
    try:
        with pytest.raises(RuntimeError, match="made by the module"):
            runtime.load(source)
        assert builtins.RUNS == [1]
    finally:
        del builtins.RUNS


def test_both_kinds_of_entries_check_the_bound_after_a_write(private_cache, monkeypatch):
    checked = []
    monkeypatch.setattr(cache_limit, "after_write", checked.append)
    assert gc.jit(lambda x: (x * 5.0).sum())(np.arange(4.0)) == 30.0
    assert checked == [private_cache, private_cache]     # the module, then the lowering


@pytest.mark.parametrize("text, expected", [
    (None, cache_limit.DEFAULT_MAX_MB * 10**6), ("", cache_limit.DEFAULT_MAX_MB * 10**6),
    ("250", 250 * 10**6), ("0.5", 500_000), ("0", None)])
def test_the_bound_comes_from_graphc_cache_max_mb(monkeypatch, text, expected):
    if text is None:
        monkeypatch.delenv("GRAPHC_CACHE_MAX_MB", raising=False)
    else:
        monkeypatch.setenv("GRAPHC_CACHE_MAX_MB", text)
    assert cache_limit.max_bytes() == expected


@pytest.mark.parametrize("text", ["lots", "-5", "nan", "inf", "1e400"])
def test_a_bad_bound_warns_and_keeps_the_default(monkeypatch, text):
    monkeypatch.setenv("GRAPHC_CACHE_MAX_MB", text)
    with pytest.warns(runtime.CacheWarning, match=f"GRAPHC_CACHE_MAX_MB='{text}' is not a number"):
        assert cache_limit.max_bytes() == cache_limit.DEFAULT_MAX_MB * 10**6


def test_graphc_cache_prune_and_info(tmp_path, monkeypatch, capsys):
    old = _entry(tmp_path, "a" * 24, 1_000_000, 2 * HOUR)
    new = _entry(tmp_path, "b" * 24, 1_000_000, HOUR)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHC_CACHE_MAX_MB", "5")
    assert cli.main(["cache", "info"]) == 0
    assert "size: 6.0 MB\nbound: 5 MB (GRAPHC_CACHE_MAX_MB)" in capsys.readouterr().out
    assert cli.main(["cache", "prune"]) == 0
    assert f"removed 1 entry (3.0 MB) from {tmp_path}; 3.0 MB kept" in capsys.readouterr().out
    assert not any(f.exists() for f in old) and all(f.exists() for f in new)
    assert cli.main(["cache", "prune", "--max-mb", "0.5"]) == 0
    assert "removed 1 entry (3.0 MB)" in capsys.readouterr().out
    monkeypatch.setenv("GRAPHC_CACHE_MAX_MB", "0")
    assert cli.main(["cache", "prune"]) == 0
    assert "has no bound" in capsys.readouterr().out


def test_graphc_cache_prune_refuses_a_bad_bound(capsys):
    with pytest.raises(SystemExit):
        cli.main(["cache", "prune", "--max-mb", "0"])
    assert ("argument --max-mb: must be a finite number > 0, got 0 (`graphc cache clear` empties "
            "the cache)") in capsys.readouterr().err


@pytest.mark.parametrize("action", ["info", "clear"])
def test_graphc_cache_max_mb_goes_with_prune_only(tmp_path, monkeypatch, capsys, action):
    files = _entry(tmp_path, "a" * 24, 1000, HOUR)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    with pytest.raises(SystemExit):
        cli.main(["cache", action, "--max-mb", "100"])
    assert "--max-mb goes with `graphc cache prune`" in capsys.readouterr().err
    assert all(f.exists() for f in files)


def test_graphc_cache_clear_keeps_an_entry_being_loaded(tmp_path, monkeypatch, capsys):
    import fcntl
    loading = _entry(tmp_path, "a" * 24, 1000, 0, extra=(".run-40.py311.nbi.lock",))
    idle = _entry(tmp_path, "b" * 24, 1000, 0)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    with open(loading[-1], "ab") as held:
        fcntl.flock(held, fcntl.LOCK_SH)
        assert cli.main(["cache", "clear"]) == 0
    assert f"removed 1 cached module from {tmp_path}" in capsys.readouterr().out
    assert all(f.exists() for f in loading) and not any(f.exists() for f in idle)
