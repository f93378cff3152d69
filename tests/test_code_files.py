"""graphc.code_files.kernels_module: the kernels an exported step embeds, run
as one module per text from a file in graphc's cache directory (else beside
the exported module, else in a temporary folder)."""
import hashlib
import os
import stat
import sys
import tempfile

import pytest

from graphc import code_files


@pytest.fixture
def module_of(tmp_path, monkeypatch):
    """module_of(text, beside=None): code_files.kernels_module(text, beside),
    dropped from sys.modules after the test; temporary folders go in tmp_path."""
    monkeypatch.setattr(code_files, "_temporary", [])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    made = []

    def module(text, beside=None):
        made.append(code_files.kernels_module(text, beside))
        return made[-1]
    yield module
    for m in made:
        sys.modules.pop(m.__name__, None)


def _folder(module):
    return os.path.dirname(module.__file__)


def test_a_text_runs_once_per_process_from_a_file_named_by_its_hash(private_cache, module_of):
    text = "import math\nRAN = []\nRAN.append(math.pi)\n"
    module = module_of(text)
    assert module_of(text) is module and module.RAN == [pytest.approx(3.14159265)]
    path = private_cache / "exported_kernels" / f"{module.__name__}.py"
    assert module.__file__ == str(path) and path.read_text() == text
    assert module.__name__ == "graphc_kernels_" + hashlib.sha256(text.encode()).hexdigest()[:24]
    assert sys.modules[module.__name__] is module
    for folder in (path.parent, path.parent / "__pycache__"):   # Numba's pickles go there
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_threads_asking_at_once_get_one_module(private_cache, module_of, run_concurrently):
    text = "import itertools\nRUNS = next(itertools.count())\n"
    got = [None] * 4
    run_concurrently(lambda k: got.__setitem__(k, module_of(text)), 4)
    assert all(m is got[0] for m in got)


def test_an_intact_file_is_never_rewritten_and_a_damaged_one_is(private_cache, module_of):
    # Numba keys its cache on the file (older Numbas on its time). The code
    # run is the text held, never what the file says.
    text = "VALUE = 1\n"
    path = code_files._source_file("graphc_kernels_intact", text, None)
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    assert code_files._source_file("graphc_kernels_intact", text, None) == path
    assert path.stat().st_mtime_ns == before - 10**9
    for damage in (b"VALUE = 2\n", b"\xff\xfe not utf-8"):
        path.write_bytes(damage)
        assert code_files._source_file("graphc_kernels_intact", text, None) == path
        assert path.read_text() == text


def test_our_own_folders_are_made_private_and_a_cache_directory_others_write_is_refused(
        private_cache, tmp_path, module_of):
    (private_cache / "exported_kernels").mkdir(parents=True)
    (private_cache / "exported_kernels").chmod(0o777)       # ours: made private
    assert _folder(module_of("OURS = 1\n")) == str(private_cache / "exported_kernels")
    assert stat.S_IMODE((private_cache / "exported_kernels").stat().st_mode) == 0o755
    private_cache.chmod(0o777)          # GRAPHC_CACHE_DIR itself: refused, as graphc's runtime does
    beside = tmp_path / "module_dir" / "__pycache__"
    assert _folder(module_of("BESIDE = 1\n", str(beside))) == str(beside / "exported_kernels")


def test_a_symbolic_link_in_place_of_our_folder_is_refused(private_cache, tmp_path, module_of):
    private_cache.mkdir()
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (private_cache / "exported_kernels").symlink_to(tmp_path / "elsewhere")
    with pytest.warns(RuntimeWarning, match="no private writable folder"):
        module = module_of("LINKED = 1\n")
    assert _folder(module) == str(code_files._temporary[0])
    assert not os.listdir(tmp_path / "elsewhere")


def test_a_write_that_fails_takes_the_next_folder(private_cache, tmp_path, module_of, monkeypatch):
    write = code_files.write_atomic

    def full_disk(path, *args):
        if str(path).startswith(str(private_cache)):
            raise OSError(28, "No space left on device")
        return write(path, *args)
    monkeypatch.setattr(code_files, "write_atomic", full_disk)
    beside = tmp_path / "module_dir" / "__pycache__"
    assert _folder(module_of("FULL = 1\n", str(beside))) == str(beside / "exported_kernels")


def test_without_a_usable_folder_one_temporary_folder_serves_the_process(
        tmp_path, monkeypatch, module_of):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "a_file" / "cache"))
    with pytest.warns(RuntimeWarning, match="for this process only"):
        first = module_of("FIRST = 1\n", str(tmp_path / "a_file" / "__pycache__"))
    second = module_of("SECOND = 2\n")      # one folder, one warning
    assert _folder(first) == _folder(second) == str(code_files._temporary[0])
    assert os.path.dirname(_folder(first)) == str(tmp_path)
    assert (first.FIRST, second.SECOND) == (1, 2)


def test_a_relative_cache_directory_names_the_same_folder_after_a_chdir(
        tmp_path, monkeypatch, module_of):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", "relative_cache")
    module = module_of("WHERE = 1\n")
    monkeypatch.chdir("/")
    assert os.path.exists(module.__file__)
    assert module.__file__ == str(tmp_path / "relative_cache" / "exported_kernels" /
                                  f"{module.__name__}.py")


def test_a_text_that_fails_leaves_no_module_behind(private_cache, module_of):
    text = "BROKEN = 1 / 0\n"
    with pytest.raises(ZeroDivisionError):
        module_of(text)
    assert "graphc_kernels_" + hashlib.sha256(text.encode()).hexdigest()[:24] not in sys.modules
    assert module_of("BROKEN = 1 / 1\n").BROKEN == 1.0


def test_a_file_removed_since_its_module_ran_is_written_again(private_cache, module_of):
    # (`graphc cache clear` in another process): Numba cannot cache without it
    import shutil
    text = "AGAIN = 1\n"
    module = module_of(text)
    shutil.rmtree(private_cache / "exported_kernels")
    assert module_of(text) is module
    with open(module.__file__) as f:
        assert f.read() == text
