"""flash_fwd_wgmma with CROSS_ITEM (WgmmaTemplate.cross_item = 1 with q_buffers = 2, an experiment, not yet timed:
an item's last O += P V is issued with the next item's first S = Qi K0^T and its epilogue runs after that softmax)
on an sm_90 GPU against float64 (O and LSE): dense launches with many more items than SMs (every CTA defers across
many items and drains its last), ragged, GQA, bottom-right causal, window (1024, 0), both O stores, varlen. The
checks run in a child process with a time limit, so a synchronisation mistake (a hang) fails this test instead of
stalling the suite. CPU checks: tests/test_wgmma_q_buffers.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

CHILD = r'''
import json, sys
from autoflash import KernelConfig
from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.kernels.loaded import LoadedKernel
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import Problem
from autoflash.ops.forward_launch import run_checked, run_varlen_checked

if device_arch(0)[0] not in ("sm_90", "sm_90a"):
    print(json.dumps({"skip": "flash_fwd_wgmma needs sm_90a"})); sys.exit(0)
WG = TEMPLATES["flash_fwd_wgmma"]
WG.q_buffers, WG.cross_item = 2, 1
def cfg(d, causal, **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", "bf16", d, causal, 128, 128, 12, 2, **extra)
results = {}
for c in (cfg(128, True), cfg(128, False), cfg(128, True, window=True), cfg(128, True, o_store=0), cfg(64, True)):
    assert not c.problems(), c.problems()
    compiled = compile_kernel(c)
    assert compiled.report.spills == 0, compiled.report
    k = LoadedKernel(compiled)
    for i, (b, hq, hkv, nq, nk) in enumerate([(2, 8, 8, 2048, 2048), (3, 4, 2, 1000, 1000), (1, 6, 2, 333, 1100)]):
        window = dict(window_left=1024, window_right=0) if c.window else {}
        p = Problem(b, hq, hkv, nq, nk, c.head_dim, c.causal, causal_offset=nk - nq if c.causal else 0, **window)
        check = run_checked(k, p, seed=i)
        results[f"{c.name} {(b, hq, hkv, nq, nk)}"] = None if check.passed else check.describe()
    if c.name.endswith("s2_causal"):
        lens = [0, 1, 127, 129, 1000, 2049, 384, 7]
        check = run_varlen_checked(k, lens, lens, 4, 2, bottom_right=True, seed=5)
        results[f"{c.name} varlen"] = None if check.passed else check.describe()
print(json.dumps(results))
'''


def test_cross_item_matches_the_reference():
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    try:
        done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=240, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("CROSS_ITEM kernels did not finish in 240 s (a hang: a barrier or turn mismatch)")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    if "skip" in results:
        pytest.skip(results["skip"])
    failed = {name: why for name, why in results.items() if why}
    assert len(results) >= 16 and not failed, failed
