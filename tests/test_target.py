"""graphc.target: Numba's CPU features, chosen before Numba is imported."""
import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, os, sys
import numpy as np
{before}
import graphc as gc
f = gc.jit(lambda x: np.exp(x) * 2.0 + 1.0)
f(np.ones(1 << 22))     # big enough that codegen asks graphc.threads, which imports Numba
run = [m for n, m in sys.modules.items() if n.startswith("graphc_generated_")][0].run
asm = "".join(run.inspect_asm().values())
import llvmlite.binding as llvm
from graphc import target
print(json.dumps({{"features": os.environ.get("NUMBA_CPU_FEATURES"), "zmm": "%zmm" in asm,
                  "avx512": bool(llvm.get_host_cpu_features().get("avx512f")),
                  "widened": target.widened(), "host_avx512": target.host_has_avx512()}}))
"""


def probe(tmp_path, before="", **env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("NUMBA_CPU_FEATURES", "GRAPHC_VECTOR_WIDTH")}
    environ.update(GRAPHC_CACHE_DIR=str(tmp_path), **env)
    out = subprocess.run([sys.executable, "-c", PROBE.format(before=before)], env=environ,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_avx512_hosts_get_full_width_vectors(tmp_path):
    seen = probe(tmp_path)
    assert seen["widened"] == seen["avx512"] == seen["host_avx512"]    # `graphc bench` reports it
    if not seen["avx512"]:
        assert seen["features"] is None
        pytest.skip("this host has no AVX-512")
    assert seen["features"].endswith(",-prefer-256-bit") and "+avx512f" in seen["features"]
    assert seen["zmm"]


@pytest.mark.parametrize("how", ["opt-out", "numba-imported-first"])
def test_left_alone_when_opted_out_or_too_late(tmp_path, how):
    if how == "opt-out":
        seen = probe(tmp_path, GRAPHC_VECTOR_WIDTH="256")
    else:
        seen = probe(tmp_path, before="import numba")
    if not seen["avx512"]:
        pytest.skip("this host has no AVX-512: nothing to leave alone")
    assert seen["features"] is None and not seen["zmm"]
    assert not seen["widened"]
