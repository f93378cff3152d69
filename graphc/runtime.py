"""Runtime: the on-disk source cache, importing generated modules, calling them.

A generated module is written as a real `.py` file named by a hash of its
source, graphc's version and the graphc.kernels sources, then imported, so
Numba's `cache=True` works across processes (it cannot cache code made with
`exec`). Files are written to a temporary name and renamed, so concurrent
processes never see a half-written entry; an existing file is never
rewritten, since Numba keys its cache on the file's modification time.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import pathlib
import sys
import tempfile
import threading

import graphc

_modules: dict[str, object] = {}
_lock = threading.Lock()


def cache_dir() -> pathlib.Path:
    """`$GRAPHC_CACHE_DIR`, else `$XDG_CACHE_HOME/graphc`, else `~/.cache/graphc`."""
    env = os.environ.get("GRAPHC_CACHE_DIR")
    if env:
        return pathlib.Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "graphc"


def _kernels_fingerprint() -> str:
    import graphc.kernels as kernels
    h = hashlib.sha256()
    for path in sorted(pathlib.Path(kernels.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


_FINGERPRINT = None


def module_key(source: str) -> str:
    global _FINGERPRINT
    if _FINGERPRINT is None:
        _FINGERPRINT = _kernels_fingerprint()
    h = hashlib.sha256(f"{graphc.__version__}\n{_FINGERPRINT}\n".encode() + source.encode())
    return h.hexdigest()[:24]


def load(source: str):
    """Import the module with this source from the cache directory (writing it if new)."""
    key = module_key(source)
    with _lock:
        if key in _modules:
            return _modules[key]
        directory = cache_dir()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / f"graphc_{key}.py"
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".py")
            with os.fdopen(fd, "w") as f:
                f.write(source)
            os.replace(tmp, path)
        name = f"graphc_generated_{key}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _modules[key] = module
        return module
