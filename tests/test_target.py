"""graphc.target: generated loops vectorize at the CPU's full width, whatever
was imported first, without touching Numba's settings."""
import json
import os
import subprocess
import sys

import pytest

from graphc import target

PROBE = """
import json, os, sys
import numpy as np
{before}
import graphc as gc
from graphc import target
f = gc.jit(lambda x: np.exp(x) * 2.0 + 1.0)
# where the vectors' width is checked, big enough that the loop may also be
# threaded (a threaded module takes seconds more to compile, for nothing elsewhere)
f(np.ones(1 << 22 if target.host_has_avx512() else 8))
module = [m for n, m in sys.modules.items() if n.startswith("graphc_generated_")][0]
asm = "".join(module.run.inspect_asm().values())
import numba
widest = 64 if "%zmm" in asm else 32 if "%ymm" in asm else 16
print(json.dumps({{"zmm": "%zmm" in asm, "features": os.environ.get("NUMBA_CPU_FEATURES"),
                  "numba_features": numba.config.CPU_FEATURES,
                  "avx512": target.host_has_avx512(), "widest": widest,
                  "vector_bytes": target.vector_bytes()}}))
"""


def probe(tmp_path, before="", **env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("NUMBA_CPU_FEATURES", "GRAPHC_VECTOR_WIDTH")}
    environ.update(GRAPHC_CACHE_DIR=str(tmp_path), **env)
    out = subprocess.run([sys.executable, "-c", PROBE.format(before=before)], env=environ,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("before", ["", "import numba"])
def test_full_width_vectors_whatever_was_imported_first(tmp_path, before):
    seen = probe(tmp_path, before=before)
    # Numba's own settings are left as the user had them (none here)
    assert seen["features"] is None and seen["numba_features"] is None
    if target.host_is_x86():
        # codegen's idea of a whole vector (short rows) is the loop's own
        assert seen["vector_bytes"] == seen["widest"]
    if not seen["avx512"]:
        pytest.skip("this host has no AVX-512")
    assert seen["zmm"]


def test_opt_out_compiles_for_256_bit_vectors(tmp_path):
    seen = probe(tmp_path, GRAPHC_VECTOR_WIDTH="256")
    if target.host_is_x86():
        assert seen["vector_bytes"] == seen["widest"] <= 32
    if not seen["avx512"]:
        pytest.skip("this host has no AVX-512: nothing to opt out of")
    assert not seen["zmm"]
