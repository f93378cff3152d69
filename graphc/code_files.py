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
import hashlib
import os
import pathlib
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
        return pathlib.Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "graphc"


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


KERNELS_FOLDER = "exported_kernels"     # in cache_dir(); the cache's size bound leaves it be


def kernels_module(text: str) -> types.ModuleType:
    """The module running `text` (embedded graphc.kernels), one per text and
    process, registered in sys.modules under a name made from its hash."""
    name = "graphc_kernels_" + hashlib.sha256(text.encode()).hexdigest()[:24]
    with _LOCK:
        module = sys.modules.get(name)
        if module is None:
            module = _run_as_module(name, text)
    return module


def _run_as_module(name: str, text: str) -> types.ModuleType:
    path = _source_file(name, text)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module      # before it runs: Numba's cache finds functions by module
    try:
        # the text this process holds, never the file's: the file is there
        # for Numba's cache, which keys on its path and modification time
        exec(compile(text, str(path), "exec"), vars(module))
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _source_file(name: str, text: str) -> pathlib.Path:
    """A file holding `text` in a folder that only this user can write (so
    Numba's cached code beside it is ours), written only when missing or
    different: rewriting it would change its time and void Numba's cache."""
    directory = _private_folder(cache_dir() / KERNELS_FOLDER)
    if directory is None:
        directory = _temporary_folder()
    path = directory / f"{name}.py"
    try:
        if path.read_text(encoding="utf-8") == text:
            return path
    except (OSError, UnicodeDecodeError):
        pass
    write_atomic(path, text.encode("utf-8"), ".tmp_", ".py")
    return path


def _private_folder(directory: pathlib.Path) -> pathlib.Path | None:
    """`directory` (and its __pycache__, made before Numba makes it with the
    umask's mode), created if need be, if this user alone can write them."""
    try:
        for folder in (directory, directory / "__pycache__"):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if unsafe_reason(folder) is not None or not os.access(folder, os.W_OK):
                return None
    except OSError:
        return None
    return directory


# one lock for every copy of this file in the process (graphc's, each exported
# step's): dict.setdefault is atomic
_LOCK = vars(sys.modules.setdefault("_graphc_code_files", types.ModuleType("_graphc_code_files"))
             ).setdefault("lock", threading.Lock())
_temporary = []     # this process's fallback folder, once made


def _temporary_folder() -> pathlib.Path:
    if not _temporary:
        _temporary.append(pathlib.Path(tempfile.mkdtemp(prefix="graphc-kernels-")))
        warnings.warn(f"graphc's cache directory {cache_dir()} cannot be used for the "
                      f"exported step's kernels; they are compiled in {_temporary[0]} for this "
                      f"process only. Set GRAPHC_CACHE_DIR to a private writable directory "
                      f"to keep them.", RuntimeWarning, stacklevel=5)
    return _temporary[0]
