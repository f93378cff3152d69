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
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


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
