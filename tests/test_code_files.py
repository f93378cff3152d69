"""graphc.code_files.kernels_module: the kernels an exported step embeds, run
as one module per text from a file in graphc's cache directory."""
import hashlib
import os
import stat
import sys

import pytest

from graphc import code_files


@pytest.fixture
def module_of(monkeypatch):
    """module_of(text): code_files.kernels_module(text), dropped from
    sys.modules after the test (a fresh fallback folder for each test)."""
    monkeypatch.setattr(code_files, "_temporary", [])
    made = []

    def module(text):
        made.append(code_files.kernels_module(text))
        return made[-1]
    yield module
    for m in made:
        sys.modules.pop(m.__name__, None)


def test_a_text_runs_once_per_process_from_a_file_named_by_its_hash(private_cache, module_of):
    text = "import math\nRAN = []\nRAN.append(math.pi)\n"
    module = module_of(text)
    assert module_of(text) is module and module.RAN == [pytest.approx(3.14159265)]
    path = private_cache / "exported_kernels" / f"{module.__name__}.py"
    assert module.__file__ == str(path) and path.read_text() == text
    assert sys.modules[module.__name__] is module
    for folder in (path.parent, path.parent / "__pycache__"):   # Numba's pickles go there
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_an_intact_file_is_never_rewritten_and_a_damaged_one_is(private_cache, module_of):
    # Numba keys its cache on the file's time: rewriting an intact file would
    # void it. The code run is the text held, never what the file says.
    text = "VALUE = 1\n"
    path = code_files._source_file("graphc_kernels_intact", text)
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    assert code_files._source_file("graphc_kernels_intact", text) == path
    assert path.stat().st_mtime_ns == before - 10**9
    path.write_text("VALUE = 2\n")
    assert code_files._source_file("graphc_kernels_intact", text) == path
    assert path.read_text() == text
    path.write_bytes(b"\xff\xfe not utf-8")
    assert code_files._source_file("graphc_kernels_intact", text).read_text() == text


def test_a_folder_others_can_write_is_not_used(private_cache, module_of):
    (private_cache / "exported_kernels").mkdir(parents=True)
    (private_cache / "exported_kernels").chmod(0o777)
    with pytest.warns(RuntimeWarning, match="cannot be used for the exported step's kernels.*"
                                            "GRAPHC_CACHE_DIR"):
        module = module_of("FALLBACK = True\n")
    assert module.FALLBACK and not (private_cache / "exported_kernels" /
                                    f"{module.__name__}.py").exists()
    assert os.path.dirname(module.__file__) == str(code_files._temporary[0])


def test_a_cache_directory_that_cannot_be_made_falls_back_to_a_temporary_folder(
        tmp_path, monkeypatch, module_of):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "a_file" / "cache"))
    with pytest.warns(RuntimeWarning, match="for this process only"):
        first = module_of("FIRST = 1\n")
    second = module_of("SECOND = 2\n")      # one folder, one warning
    assert os.path.dirname(first.__file__) == os.path.dirname(second.__file__)
    assert (first.FIRST, second.SECOND) == (1, 2)


def test_a_text_that_fails_leaves_no_module_behind(private_cache, module_of):
    text = "BROKEN = 1 / 0\n"
    with pytest.raises(ZeroDivisionError):
        module_of(text)
    assert "graphc_kernels_" + hashlib.sha256(text.encode()).hexdigest()[:24] not in sys.modules
    assert module_of("BROKEN = 1 / 1\n").BROKEN == 1.0
