"""The compile cache's files, and its size bound: the entries used least recently go first.

Every model graphc compiles adds an entry to the cache directory: its module,
the bytecode and Numba's compiled code for it in __pycache__ (runtime.py), and
its stored lowering (stored_lowerings.py). Edited models and new graphc
versions leave entries nothing uses again, so the directory is kept near a
size (`GRAPHC_CACHE_MAX_MB`, default 1024; 0 for no bound) by removing whole
entries, least recently used first.

- An entry is every file named `graphc_<hex key>.*` (its module or lowering,
  and their files in __pycache__); a module's unfinished write (`.tmp_*.py`)
  is an entry of its own. Nothing else is graphc's (GRAPHC_CACHE_DIR may be
  shared), symbolic links included. Where NUMBA_CACHE_DIR is set, Numba keeps
  its files in a folder of its own there (`_numba_folder`), listed too.
- An entry's last use is the latest access or modification time of its
  files. Reading an entry marks it used (`mark_used`): its access time only,
  since older Numbas key their cache on the module's modification time.
- Never removed: entries used in the last RECENT_SECONDS (another process may
  have just found one and be about to import it; runtime.load writes a module
  again if it vanishes all the same), and entries whose Numba index lock
  another process holds (it is loading or saving code there). An entry's
  files go while its locks are held here (kernels/__init__.py,
  _under_index_lock). So the bound is soft: what a session compiles in ten
  minutes stays until later.
- A process checks after it writes an entry, at most once every
  CHECK_SECONDS: listing the directory is not free (tens of milliseconds for
  tens of thousands of files).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import re
import time
import warnings

from graphc.errors import CacheWarning

try:
    import fcntl
except ImportError:        # Windows: no index locks (kernels/__init__.py)
    fcntl = None

DEFAULT_MAX_MB = 1024
RECENT_SECONDS = 600.0
CHECK_SECONDS = 60.0
_last_check: float | None = None     # time.monotonic() of this process's last check

# names are hashes: runtime.module_key (24 hex digits), stored_lowerings.name (32)
_ENTRY_FILE = re.compile(r"(graphc_[0-9a-f]{16,64})\.")
_UNFINISHED = re.compile(r"\.tmp_[a-z0-9_]{8}\.py")            # tempfile.mkstemp's names


@dataclasses.dataclass
class Entry:
    name: str                   # graphc_<key>, or an unfinished write's file name
    files: list[pathlib.Path]
    size: int                   # bytes
    last_used: float            # seconds since the epoch

    @property
    def is_module(self) -> bool:
        return any(f.name == f"{self.name}.py" and f.parent.name != "__pycache__"
                   for f in self.files)


def max_bytes() -> int | None:
    """The bound from `GRAPHC_CACHE_MAX_MB` (megabytes, 10**6 bytes), None for no bound."""
    text = os.environ.get("GRAPHC_CACHE_MAX_MB", "").strip()
    megabytes = DEFAULT_MAX_MB
    if text:
        try:
            megabytes = float(text)
            if not megabytes >= 0 or megabytes == float("inf"):
                raise ValueError
        except ValueError:
            warnings.warn(f"GRAPHC_CACHE_MAX_MB={text!r} is not a number of megabytes (0 for no "
                          f"bound); bounding the compile cache at {DEFAULT_MAX_MB} MB",
                          CacheWarning, stacklevel=3)
            megabytes = DEFAULT_MAX_MB
    return None if megabytes == 0 else int(megabytes * 1e6)


def mark_used(path: pathlib.Path) -> None:
    """Record that the entry whose main file is `path` was just used."""
    try:
        mtime = os.stat(path).st_mtime_ns
        os.utime(path, ns=(time.time_ns(), mtime))
    except OSError:
        pass        # gone or not ours to touch: its age is then its modification time


def _numba_folder(directory: pathlib.Path) -> pathlib.Path | None:
    """Where Numba keeps the compiled code of the modules in `directory` when
    NUMBA_CACHE_DIR is set (its UserProvidedCacheLocator), else None."""
    from numba.core import caching, config
    subpath = getattr(getattr(caching, "_CacheLocator", None), "get_suitable_cache_subpath", None)
    if not config.CACHE_DIR or subpath is None:
        return None
    return pathlib.Path(config.CACHE_DIR) / subpath(str(directory / "graphc_.py"))


def _files(directory: pathlib.Path):
    """(entry name, path, os.stat_result) of graphc's regular files in
    `directory`, its __pycache__ and Numba's folder for it, not through
    symbolic links."""
    for folder in (directory, directory / "__pycache__", _numba_folder(directory)):
        if folder is None or folder.is_symlink():
            continue
        try:
            listing = list(os.scandir(folder))
        except OSError:
            continue        # none yet
        for item in listing:
            match = _ENTRY_FILE.match(item.name)
            if not (match or _UNFINISHED.fullmatch(item.name)):
                continue
            try:
                if item.is_file(follow_symlinks=False):
                    yield (match.group(1) if match else item.name, pathlib.Path(item.path),
                           item.stat(follow_symlinks=False))
            except OSError:
                continue        # removed meanwhile by another process


def entries(directory: pathlib.Path) -> list[Entry]:
    """The cache entries in `directory`, least recently used first."""
    grouped: dict[str, Entry] = {}
    for name, path, st in _files(directory):
        entry = grouped.setdefault(name, Entry(name, [], 0, 0.0))
        entry.files.append(path)
        entry.size += st.st_size
        entry.last_used = max(entry.last_used, _use_time(st))
    return sorted(grouped.values(), key=lambda e: e.last_used)


def _use_time(st: os.stat_result) -> float:
    return max(st.st_atime, st.st_mtime)


def _used_since(entry: Entry, since: float) -> bool:
    for path in entry.files:
        with contextlib.suppress(OSError):     # removed meanwhile
            if _use_time(path.stat()) >= since:
                return True
    return False


def remove_entry(entry: Entry) -> tuple[int, int]:
    """Remove `entry`'s files while holding the Numba index locks among them
    (nothing if another process holds one: it is loading or saving code
    there); (files, bytes) removed."""
    with contextlib.ExitStack() as held:
        try:
            for path in entry.files:
                if path.name.endswith(".lock") and fcntl is not None:
                    fcntl.flock(held.enter_context(open(path, "ab")), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0, 0
        files = freed = 0
        for path in entry.files:
            try:
                size = path.stat().st_size
                path.unlink()
            except OSError:
                continue        # removed meanwhile, or not ours to remove
            files, freed = files + 1, freed + size
        return files, freed


def prune(directory: pathlib.Path, limit: int) -> tuple[int, int, int]:
    """Remove the least recently used entries of `directory` until its files
    take at most `limit` bytes, keeping those used in the last RECENT_SECONDS.
    Returns (entries removed, bytes removed, bytes kept)."""
    found = entries(directory)
    total = sum(e.size for e in found)
    recent = time.time() - RECENT_SECONDS
    removed = freed = 0
    for entry in found:
        if total <= limit or entry.last_used >= recent:
            break
        if _used_since(entry, recent):      # looked at again: used since it was listed
            continue
        files, gone = remove_entry(entry)
        removed += files > 0
        freed += gone
        total -= gone
    return removed, freed, total


def after_write(directory: pathlib.Path) -> None:
    """Keep `directory` within its bound after this process added an entry
    (checked at most once every CHECK_SECONDS)."""
    global _last_check
    now = time.monotonic()
    if _last_check is not None and now - _last_check < CHECK_SECONDS:
        return
    _last_check = now
    limit = max_bytes()
    if limit is not None:
        prune(directory, limit)
