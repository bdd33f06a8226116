"""flash_bwd_mma's heavy-first block order (ops/backward_mma_switches.HEAVY_FIRST: tile head dims; HEAVY_GROUP_MB),
without a GPU: off, the default configs read their K/V tile from blockIdx.x; on (served), dense causal configs map a 1-D
grid of K/V tiles x (batch, head) pairs themselves, heaviest first in groups of pairs (D 128: by batch, HEAVY_BY_BATCH,
its own tests), and the launch plan's main grid is that 1-D grid, while non-causal and varlen configs render as off; the
H200's causal tiles compile clean. The GPU checks: tests/test_backward_mma_order_gpu.py."""
import numpy as np
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_kernels, backward_mma_switches
from autoflash.ops.backward_gpu import BackwardLaunch
from autoflash.ops.backward_kernels import TEMPLATE, check_inputs

from test_backward import specs
from test_backward_host_plans import fake_kernel

OFF_LINE = "const int kv_tile = blockIdx.x, head_kv = blockIdx.y, batch = blockIdx.z;"
ON_LINE = "const int kv_tile = r / in_group, head_kv = (first_pair + r % in_group) % heads_kv,"
BY_BATCH_LINE = "const int head_kv = blockIdx.x, kv_tile = blockIdx.y, batch = blockIdx.z;"
ALL = (64, 128, 256)


def configs(**extra):
    return [TEMPLATE.default(arch, dict(dtype=dt, head_dim=d, causal=causal, deterministic=det, **extra))
            for arch in ("sm_80", "sm_90") for dt in ("bf16", "fp16") for d in ALL for causal in (False, True)
            for det in (False, True)]


def test_off_renders_the_plain_order(monkeypatch):
    monkeypatch.setattr(backward_mma_switches, "HEAVY_FIRST", ())
    for c in configs():
        source = render(c)
        assert OFF_LINE in source and ON_LINE not in source, c.name


def test_served_on_dense_causal_configs_only():
    assert backward_mma_switches.HEAVY_FIRST == ALL  # measured: benchmarks/NOTES.md, twenty-fifth session
    for c in configs():
        by_batch = c.head_dim in backward_mma_switches.HEAVY_BY_BATCH
        assert (ON_LINE in render(c)) == (c.causal and not by_batch), c.name
        assert (BY_BATCH_LINE in render(c)) == (c.causal and by_batch), c.name
    varlen = [c for c in (x.replace(varlen=True) for x in configs() if x.causal) if not c.problems()]
    assert varlen
    for c in varlen:
        assert ON_LINE not in render(c), c.name  # (varlen keeps its grid)


@pytest.mark.parametrize("causal", [False, True])
def test_launch_plan_grid(monkeypatch, causal):
    monkeypatch.setattr(backward_mma_switches, "HEAVY_FIRST", ALL)
    monkeypatch.setattr(backward_mma_switches, "HEAVY_BY_BATCH", ())
    c = TEMPLATE.default("sm_90", dict(dtype="bf16", head_dim=128, causal=causal, deterministic=False))
    p = check_inputs(**specs(b=3, hq=8, hkv=2, nq=1000, nk=1000, d=128), causal=causal)
    kernel = fake_kernel(c)
    kernel.values = TEMPLATE.values(c)
    main = BackwardLaunch(kernel, p, 0.1).launches(tuple(np.uint64(0) for _ in range(18)))[1]
    assert main[1] == ((8 * 2 * 3, 1, 1) if causal else (8, 2, 3))  # 1000 keys: 8 tiles of 128


@pytest.mark.parametrize("d, bm", [(64, 128), (128, 64)])
def test_h200_causal_tiles_compile_clean(monkeypatch, d, bm):
    """The H200's tuned causal tiles (bm x 128, 8 warps, 2 stages, the 2-D layout), heavy first."""
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_mma_switches, "HEAVY_FIRST", ALL)
    c = TEMPLATE.config("sm_90", dict(dtype="bf16", head_dim=d, causal=True, deterministic=False), block_m=bm,
                        block_n=128, warps=8, stages=2, warps_q=2)
    report = compile_kernel(c, use_cache=False).report
    assert report.spills == 0 and report.stack_frame == 0, report


@pytest.mark.parametrize("template", ["mma", "wgmma"])
def test_heavy_groups_grid(monkeypatch, template):
    """Both templates' heavy-first kernels map a 1-D grid of K/V tiles x pairs, in groups of HEAVY_GROUP_MB."""
    from test_backward_wgmma import cfg as wgmma_cfg

    monkeypatch.setattr(backward_mma_switches, "HEAVY_GROUP_MB", 32)
    monkeypatch.setattr(backward_mma_switches, "HEAVY_BY_BATCH", ())
    c = (TEMPLATE.default("sm_90", dict(dtype="bf16", head_dim=128, causal=True, deterministic=False))
         if template == "mma" else wgmma_cfg("bf16", 128, True, bm=64, bn=128, warps=12, stages=2))
    assert "(32LL << 20)" in render(c) and ON_LINE in render(c)
    p = check_inputs(**specs(b=3, hq=8, hkv=2, nq=1000, nk=1000, d=128), causal=True)
    kernel = fake_kernel(c)
    kernel.values = kernel.template.values(c)
    main = BackwardLaunch(kernel, p, 0.1).launches(tuple(np.uint64(0) for _ in range(18)))[1]
    assert main[1] == (8 * 2 * 3, 1, 1)
