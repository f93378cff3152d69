"""Where graphc keeps code it writes for Numba, and the kernels module that
exported steps share. Standard library only (and no `from __future__`): gc.export
embeds this file in each exported module, which needs no graphc, and
graphc.runtime uses it.

Numba's `cache=True` keys compiled code on a function's source file. An
exported step used to run the graphc.kernels it embeds as part of its own
file, so each exported module compiled them afresh on its first call: 6-7 s
of the 7.5 s first call of an MLP's Adam step, most of it gemm. Now the
embedded text becomes a module of its own (`kernels_module`) at a file named
by a hash of that text, in graphc's cache directory: every exported step
embedding the same kernels, in this process or a later one, loads them as
graphc's own steps load graphc.kernels.
"""
import atexit
import hashlib
import os
import pathlib
import shutil
import stat
import sys
import tempfile
import threading
import types
import warnings


def cache_dir() -> pathlib.Path:
    """`$GRAPHC_CACHE_DIR`, else `$XDG_CACHE_HOME/graphc`, else `~/.cache/graphc`."""
    env = os.environ.get("GRAPHC_CACHE_DIR")
    if env:
        return pathlib.Path(env).absolute()     # (the same folder after an os.chdir)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return (pathlib.Path(base) / "graphc").absolute()


def unsafe_reason(path: pathlib.Path) -> str | None:
    """Why `path` must not be trusted for imported code, or None if it is safe."""
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"{path} is owned by another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} can be written by other users (mode {stat.filemode(st.st_mode)})"
    return None


def write_atomic(path: pathlib.Path, data: bytes, prefix: str, suffix: str) -> None:
    """Write `path` through a temporary file and a rename: another process
    reading it never sees half of it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def private(directory: pathlib.Path) -> None:
    """Make our own `directory` writable by us alone: Numba or Python creates
    __pycache__ with the umask's mode (0775 under umask 002), and the
    bytecode (and Numba's pickles) there is code that gets run."""
    st = directory.stat()
    others_write = stat.S_IWGRP | stat.S_IWOTH
    if hasattr(os, "getuid") and st.st_uid == os.getuid() and st.st_mode & others_write:
        directory.chmod(stat.S_IMODE(st.st_mode) & ~others_write)


KERNELS_FOLDER = "exported_kernels"     # in cache_dir(), else beside the exported module


def kernels_module(text: str, beside: str | None = None) -> types.ModuleType:
    """The module running `text` (embedded graphc.kernels), one per text and
    process, registered in sys.modules under a name made from its hash. Its
    file goes in graphc's cache directory, else in the folder `beside` (an
    exported module's own __pycache__), else in a temporary folder for this
    process (with a warning: every process compiles the kernels again)."""
    name = "graphc_kernels_" + hashlib.sha256(text.encode()).hexdigest()[:24]
    with _LOCK:
        module = sys.modules.get(name)
        if module is None:
            module = _run_as_module(name, text, beside)
        else:
            _restore(pathlib.Path(module.__file__), text)
    return module


def _restore(path: pathlib.Path, text: str) -> None:
    """Write the file of a module made earlier again where it went missing
    (`graphc cache clear` from another process): Numba cannot cache a function
    whose file is gone, and a kernel compiling at import raised."""
    if not _holds(path, text) and _private_folder(path.parent):
        try:
            write_atomic(path, text.encode("utf-8"), ".tmp_", ".py")
        except OSError:
            pass


def _run_as_module(name: str, text: str, beside: str | None) -> types.ModuleType:
    path = _source_file(name, text, beside)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module      # before it runs: Numba's cache finds functions by module
    try:
        # the text this process holds, never the file's: the file is there
        # for Numba's cache, which finds its compiled code by the file
        exec(compile(text, str(path), "exec"), vars(module))
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _source_file(name: str, text: str, beside: str | None) -> pathlib.Path:
    """A file holding `text`, in the first folder of those kernels_module
    names that this user alone can write (so Numba's cached code beside it
    is ours). It is written only when missing or different: Numba keys its
    cache on the file (older Numbas on its modification time)."""
    folders = [cache_dir() / KERNELS_FOLDER] + (
        [pathlib.Path(beside) / KERNELS_FOLDER] if beside else [])
    for directory in folders:
        if _private_folder(directory):
            path = directory / f"{name}.py"
            try:
                if not _holds(path, text):
                    write_atomic(path, text.encode("utf-8"), ".tmp_", ".py")
                return path
            except OSError:         # full, or read-only after all: the next folder
                pass
    path = _temporary_folder(folders) / f"{name}.py"
    write_atomic(path, text.encode("utf-8"), ".tmp_", ".py")
    return path


def _holds(path: pathlib.Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


def _private_folder(directory: pathlib.Path) -> bool:
    """Whether `directory`, its parent and its __pycache__ (made here before
    Numba makes it with the umask's mode) are, or could be made, this user's
    alone to write; our own folders are no symbolic links (another could be
    put in their place between this check and Numba reading its cache)."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if unsafe_reason(directory.parent) is not None:
            return False
        for folder in (directory, directory / "__pycache__"):
            folder.mkdir(exist_ok=True, mode=0o700)
            if folder.is_symlink():
                return False
            private(folder)
            if unsafe_reason(folder) is not None or not os.access(folder, os.W_OK):
                return False
    except OSError:
        return False
    return True


# one lock for every copy of this file in the process (graphc's, each exported
# step's): dict.setdefault is atomic
_LOCK = vars(sys.modules.setdefault("_graphc_code_files", types.ModuleType("_graphc_code_files"))
             ).setdefault("lock", threading.Lock())
_temporary = []     # this process's fallback folder, once made


def _temporary_folder(tried: list) -> pathlib.Path:
    if not _temporary:
        _temporary.append(pathlib.Path(tempfile.mkdtemp(prefix="graphc-kernels-")))
        atexit.register(shutil.rmtree, _temporary[0], True)    # its code is this process's
        warnings.warn(f"no private writable folder for the exported step's kernels "
                      f"({' or '.join(map(str, tried))}); they are compiled in {_temporary[0]} "
                      f"for this process only. Set GRAPHC_CACHE_DIR to a private writable "
                      f"directory to keep them.", RuntimeWarning, stacklevel=5)
    return _temporary[0]
