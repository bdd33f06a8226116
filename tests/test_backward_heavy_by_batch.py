"""flash_bwd_mma's HEAVY_BY_BATCH without a GPU: served at D 128 (s31a), where the plain causal kernels take their
indices from a 3-D grid's blockIdx (non-causal and variant kernels do not; on at every tile dim, the D 64 / 256 ones
too), and the D 128 causal tile (the 2-D layout) then compiles with 0 B spilled with DQ_INTERLEAVE on, which spills
there with the grouped heavy-first order.
GPU checks: tests/test_backward_heavy_by_batch_gpu.py."""
import numpy as np
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_mma_switches
from autoflash.ops.backward import TEMPLATE
from autoflash.ops.backward_gpu import BackwardLaunch
from autoflash.ops.backward_kernels import check_inputs

from test_backward import specs
from test_backward_host_plans import fake_kernel

MARK = "const int head_kv = blockIdx.x, kv_tile = blockIdx.y, batch = blockIdx.z;"


def cfg(d, causal=True, **kw):
    key = dict(dtype="bf16", head_dim=d, causal=causal, deterministic=False, **kw)
    return TEMPLATE.config("sm_90", key, block_m=128 if d == 64 else 64, block_n=128 if d < 256 else 64, warps=8,
                           stages=2, warps_q=2 if d < 256 else 4)


def test_served_at_d128_causal():
    assert backward_mma_switches.HEAVY_BY_BATCH == (128,)
    assert MARK in render(cfg(128)) and not any(MARK in render(cfg(d)) for d in (64, 256))
    assert MARK not in render(cfg(128, causal=False))


def test_on_the_plain_causal_kernels_only(monkeypatch):
    monkeypatch.setattr(backward_mma_switches, "HEAVY_BY_BATCH", (64, 128, 256))
    assert all(MARK in render(cfg(d)) for d in (64, 128, 256))
    assert MARK not in render(cfg(128, causal=False)) and MARK not in render(cfg(128, window=True))


def test_d128_causal_with_dq_interleave_compiles_clean(monkeypatch):
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_mma_switches, "DQ_INTERLEAVE", (64, 128, 256))
    monkeypatch.setattr(backward_mma_switches, "HEAVY_BY_BATCH", (64, 128, 256))
    report = compile_kernel(cfg(128)).report
    assert report.spill_stores == report.spill_loads == 0, report


def main_grid(c, nk):
    p = check_inputs(**specs(b=3, hq=8, hkv=2, nq=1000, nk=nk, d=c.head_dim), causal=True)
    kernel = fake_kernel(c)
    kernel.values = TEMPLATE.values(c)
    return BackwardLaunch(kernel, p, 0.1).launches(tuple(np.uint64(0) for _ in range(18)))[1][1]


def test_launch_plan_grid_and_its_limit():
    assert main_grid(cfg(128), 1000) == (2, 8, 3)  # (K/V heads, K/V tiles of 128, batch)
    with pytest.raises(ValueError, match=r"the main kernel's grid \(2, 65536, 3\) exceeds CUDA's"):
        main_grid(cfg(128), 65536 * 128)
