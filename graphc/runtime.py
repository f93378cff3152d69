"""Runtime: the on-disk source cache, importing generated modules.

A generated module is written as a real `.py` file named by a hash of its
source, graphc's version and the graphc.kernels sources, then imported, so
Numba's `cache=True` works across processes (it cannot cache code made with
`exec`). The cache holds code that gets imported, so:

- the directory is created owner-only (0700), and a directory or file that
  another user could write is refused with a warning naming it;
- each file starts with a checksum of its body: a truncated or corrupted
  entry is rebuilt with a warning, never imported;
- files are written to a temporary name and renamed, so concurrent processes
  never see half a file; an intact file is never rewritten, since Numba keys
  its own cache on the file's modification time;
- a module's bytecode is graphc's own file, checked the same way (_code),
  not Python's .pyc;
- an unusable cache directory (read-only, refused, missing) falls back to a
  private temporary directory for this process, with a warning.
"""
from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import importlib.util
import marshal
import os
import pathlib
import sys
import tempfile
import threading
import warnings

import graphc
from graphc import cache_limit
from graphc.code_files import cache_dir, private, unsafe_reason, write_atomic
from graphc.errors import CacheWarning


_modules: dict[str, object] = {}
_lock = threading.Lock()
_fallback_dir: pathlib.Path | None = None
_CHECKSUM_PREFIX = "# graphc-sha256: "


@functools.cache
def kernels_fingerprint() -> str:
    import graphc.kernels as kernels
    return kernels.sources_fingerprint()


def module_key(source: str) -> str:
    prefix = f"{graphc.__version__}\n{kernels_fingerprint()}\n"
    h = hashlib.sha256(prefix.encode() + source.encode())
    return h.hexdigest()[:24]


def usable_dir() -> pathlib.Path:
    """The configured cache directory if it is private and writable, else a fallback."""
    global _fallback_dir
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        reason = unsafe_reason(directory)
        if reason is None and not os.access(directory, os.W_OK):
            reason = f"{directory} is not writable"
    except OSError as e:
        reason = f"{directory} cannot be created ({e.strerror})"
    if reason is None:
        return directory
    if _fallback_dir is None:
        _fallback_dir = pathlib.Path(tempfile.mkdtemp(prefix="graphc-"))
        warnings.warn(f"graphc compile cache not used: {reason}. Compiling into a private "
                      f"temporary directory for this process instead ({_fallback_dir}); set "
                      f"GRAPHC_CACHE_DIR to a private writable directory to keep compiled code.",
                      CacheWarning, stacklevel=4)
    return _fallback_dir


def _checksummed(source: str) -> str:
    return f"{_CHECKSUM_PREFIX}{hashlib.sha256(source.encode()).hexdigest()}\n{source}"


def _checked_text(path: pathlib.Path) -> str | None:
    """The text of the cache entry at `path` if its checksum holds, else None."""
    text = path.read_text(encoding="utf-8")     # as written, and as Python reads source
    header, _, body = text.partition("\n")
    return text if header == _CHECKSUM_PREFIX + hashlib.sha256(body.encode()).hexdigest() else None


def _intact(path: pathlib.Path) -> bool:
    return _checked_text(path) is not None


def _write(path: pathlib.Path, source: str) -> None:
    write_atomic(path, _checksummed(source).encode(), ".tmp_", ".py")


def _bytecode_path(path: pathlib.Path) -> pathlib.Path:
    return path.parent / "__pycache__" / f"{path.stem}.{sys.implementation.cache_tag}.code"


def _bytecode_header(path: pathlib.Path, text: str) -> bytes:
    """Python's magic number and a hash of what the code object depends on:
    the text, the file name compiled into it (Numba finds its cache from that
    name: a cache directory moved or reached by another path needs code naming
    the new one), and -O."""
    made_from = f"{sys.flags.optimize}\n{path}\n{text}"
    return importlib.util.MAGIC_NUMBER + hashlib.sha256(made_from.encode()).digest()


def checked_body(path: pathlib.Path, header: bytes, stacklevel: int = 5) -> bytes | None:
    """The body of a binary cache file written by `write_checked` with this
    `header`; None where there is none, it was made from other things (its
    header differs: replaced quietly), another user could have written it
    or its directory (a warning: it may be code, never run), or its body's
    hash does not hold (a warning: damaged, rebuilt)."""
    try:
        data = path.read_bytes()
        reason = unsafe_reason(path.parent) or unsafe_reason(path)
    except OSError:
        return None     # none yet
    if reason is not None:
        _warn_refused(reason, stacklevel + 1)
        return None
    if not data.startswith(header):
        return None
    digest, body = data[len(header):len(header) + 32], data[len(header) + 32:]
    if digest == hashlib.sha256(body).digest():
        return body
    _warn_corrupted(path, stacklevel + 1)
    return None


def _warn_refused(reason: str, stacklevel: int) -> None:
    warnings.warn(f"graphc refuses to import cached code: {reason}; rebuilding it",
                  CacheWarning, stacklevel=stacklevel)


def _warn_corrupted(path: pathlib.Path, stacklevel: int) -> None:
    warnings.warn(f"graphc cache entry {path.name} is corrupted (checksum mismatch); "
                  f"rebuilding it", CacheWarning, stacklevel=stacklevel)


def write_checked(path: pathlib.Path, header: bytes, body: bytes) -> bool:
    """Write `path` for `checked_body`; False where the cache cannot be written
    (made again next time, as without this file)."""
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        write_atomic(path, header + hashlib.sha256(body).digest() + body, f"{path.stem}.", ".tmp")
    except OSError:
        return False
    return True


def _code(path: pathlib.Path, text: str):
    """The code object of the cache entry at `path`, whose checked text is
    `text`: from graphc's own bytecode file in __pycache__ (beside Numba's
    files), else compiled and written there. Not Python's .pyc: where
    PYTHONDONTWRITEBYTECODE is set (many containers, this project's CI)
    Python never writes one, and every process compiled the module again (a
    16-step LSTM's 250 KB: 50 ms of a 0.8 s warm first call); and a damaged
    .pyc stops the import (EOFError), where this file is checked (a header
    of Python's magic number and a hash of what it was made from, then one
    of its body) and, damaged past its header, rebuilt with a warning; one
    whose header is not this module's is replaced."""
    code_path = _bytecode_path(path)
    header = _bytecode_header(path, text)
    with contextlib.suppress(OSError):
        private(code_path.parent)
    body = checked_body(code_path, header)
    if body is not None:
        try:
            return marshal.loads(body)
        except (EOFError, ValueError, TypeError):
            _warn_corrupted(code_path, 5)
    code = compile(text, str(path), "exec", dont_inherit=True)    # not this module's __future__
    write_checked(code_path, header, marshal.dumps(code))
    return code


def load(source: str):
    """Import the module with this source from the cache directory (writing it if new)."""
    key = module_key(source)
    with _lock:
        if key in _modules:
            return _modules[key]
        directory = usable_dir()
        path = directory / f"graphc_{key}.py"
        try:
            module, written = _found_or_written(key, path, source)
        except (FileNotFoundError, RuntimeError):
            if path.exists():
                raise
            # Another process's cache bound (cache_limit.py: an entry unused
            # for ten minutes) removed the file after it was found, before
            # Numba's decorators read it (they raise RuntimeError where it is
            # missing): written again.
            module, written = _found_or_written(key, path, source)
        _modules[key] = module
    if written:
        cache_limit.after_write(directory)
    return module


def _found_or_written(key: str, path: pathlib.Path, source: str):
    """(The module at `path`, imported, whether it had to be written first:
    missing, refused or damaged)."""
    text = None
    if path.exists():
        reason = unsafe_reason(path)
        if reason is not None:
            _warn_refused(reason, 5)
            path.unlink()
        else:
            text = _checked_text(path)
            if text is None:
                _warn_corrupted(path, 5)
                path.unlink()
    written = text is None
    if written:
        _write(path, source)
        text = _checksummed(source)
    else:
        cache_limit.mark_used(path)
    return _imported(key, path, text), written


def _imported(key: str, path: pathlib.Path, text: str):
    name = f"graphc_generated_{key}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(_code(path, text), module.__dict__)
    return module


_heap_settled = False      # the full GC pass after this process's first compile ran


@contextlib.contextmanager
def gc_paused(dispatcher=None):
    """Python's cyclic GC paused while graphc traces and Numba compiles.

    A cold W2 compile allocates about 360,000 container objects that live on
    (Numba's IR, types, caches), and the GC ran four or five full passes
    over that growing heap during it: 0.9 s of an 8.5 s first call. Paused,
    they do not run. After the process's first real compile (`dispatcher`,
    the Numba function called inside, compiled rather than loaded from disk)
    one full pass settles that heap (0.4 s then; 0.08 s since kernels are
    inlined as source, with fewer objects) so it does not land later, in
    a training step or the re-trace of a new batch size (0.2-0.35 s there
    before). Later compiles leave the GC to its own schedule: a full pass
    after each would make a session that compiles many functions quadratic
    (tests/test_ops.py: 100 s, 169 s with it, 107 s without any pause).
    Whether the GC was on is restored, so a caller that disabled it keeps it off.
    """
    global _heap_settled

    def compiled() -> int:      # Numba's count of signatures it had to compile
        stats = getattr(dispatcher, "stats", None)
        return sum(stats.cache_misses.values()) if stats is not None else 0

    was_enabled, before = gc.isenabled(), compiled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            if not _heap_settled and compiled() > before:
                _heap_settled = True
                gc.collect()
