import os
import pathlib
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# One compile cache for the whole session (and across local runs): Numba's
# compile time dominates the suite, and the cache is what users get too.
_ROOT = pathlib.Path(__file__).resolve().parent.parent
os.environ.setdefault("GRAPHC_CACHE_DIR", str(_ROOT / ".graphc-test-cache"))

settings.register_profile("default", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
# With the CI variable set, Hypothesis derandomizes by itself: CI draws the
# same examples every run (local runs and `make fuzz` draw new ones).
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def own_lowerings():
    """Each test lowers the graphs it traces itself (graphc.lowering shares
    them between equal traces in a process): a test that switches a code
    generation rule off then gets code made without it."""
    from graphc import lowering
    lowering.forget()


@pytest.fixture
def import_exported(tmp_path, monkeypatch):
    """import_exported(step, name): `step` exported as module `name` and imported."""
    import importlib

    import graphc as gc

    def exported(step, name):
        gc.export(step, tmp_path / f"{name}.py")
        monkeypatch.syspath_prepend(str(tmp_path))
        return importlib.import_module(name)
    return exported


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A compile cache directory of the test's own (not yet created)."""
    from graphc import runtime
    directory = tmp_path / "cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(directory))
    monkeypatch.setattr(runtime, "_fallback_dir", None)
    return directory


@pytest.fixture
def raised_line():
    """raised_line(call, error, match): the line number of the user's line
    that the `error` raised by call() names ("... (at file:line)")."""
    def line(call, error, match):
        with pytest.raises(error, match=match + r".*\(at .*:(\d+)\)") as e:
            call()
        return int(str(e.value).rsplit(":", 1)[1].rstrip(")"))
    return line


@pytest.fixture
def run_concurrently():
    """run(work, n): call work(0) ... work(n - 1) on n threads at once, then
    re-raise the first exception any of them raised."""
    def run(work, n):
        errors = []

        def guarded(k):
            try:
                work(k)
            except Exception as e:  # noqa: BLE001 - re-raised below
                errors.append(e)

        workers = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if errors:
            raise errors[0]
    return run


class _NeverKept(list):
    """A workspace pool that keeps nothing: every call takes a new workspace."""

    def append(self, ws):
        pass


_GRAPHC_WORKSPACES = {}     # graphc's own pool and workspace maker, while poisoned


@pytest.fixture(autouse=True, scope="session")
def poisoned_workspaces():
    """Every compiled call carves its intermediates from a new workspace of
    0xFF bytes (NaN in both float types, -1 in the int ones) rather than one
    kept from an earlier call: a kernel that reads an intermediate before
    writing it then gives NaN or a wrong index, and the test comparing its
    result fails. Tests of the pool itself use `kept_workspaces`."""
    from graphc import api
    _GRAPHC_WORKSPACES.update(pool=api._workspace_pool, new=api._Entry.new_workspace)
    api._workspace_pool = _NeverKept
    new = _GRAPHC_WORKSPACES["new"]
    api._Entry.new_workspace = lambda self, fill=None: new(self, fill=0xFF)
    yield
    api._workspace_pool = _GRAPHC_WORKSPACES["pool"]
    api._Entry.new_workspace = _GRAPHC_WORKSPACES["new"]


@pytest.fixture
def kept_workspaces(monkeypatch):
    """graphc's own workspace pool, as users get it, for functions compiled in the test."""
    from graphc import api
    monkeypatch.setattr(api, "_workspace_pool", _GRAPHC_WORKSPACES["pool"])
    monkeypatch.setattr(api._Entry, "new_workspace", _GRAPHC_WORKSPACES["new"])
