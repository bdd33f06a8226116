"""ops/backward_wgmma.HEAVY_FIRST (the head dims whose causal keys take it; served: D 64, 128), without a GPU: off,
every valid flash_bwd_wgmma config renders as before (the kernel reads its K/V tile from blockIdx.x); on, causal
configs map a 1-D grid of K/V tiles x (batch, head) pairs themselves (heaviest first, in groups: ops/backward_kernels
.HEAVY_GROUP_MB) and the launch plan's main grid is that 1-D grid, non-causal ones are unchanged; the served causal
tiles compile clean (0 spills, no stack, no serialised wgmma). The GPU checks:
tests/test_backward_wgmma_heavy_first_gpu.py and tests/test_backward_mma_order_gpu.py."""
import numpy as np
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_gpu import BackwardLaunch
from autoflash.ops.backward_kernels import check_inputs

from test_backward import specs
from test_backward_host_plans import fake_kernel
from test_backward_wgmma import _valid_configs, cfg

OFF_LINE = "const int kv_tile = blockIdx.x, head_kv = blockIdx.y, batch = blockIdx.z;"
ON_LINE = "const int kv_tile = r / in_group, head_kv = (first_pair + r % in_group) % heads_kv,"
SERVED = [cfg(dt, d, True, bm=64, bn=128, warps=12, stages=2) for dt in ("bf16", "fp16") for d in (64, 128)]


def test_served_for_d128_only_and_off_every_config_reads_blockidx_x(monkeypatch):
    assert backward_wgmma.HEAVY_FIRST == (64, 128)  # measured: benchmarks/NOTES.md, eleventh and twenty-fifth sessions
    monkeypatch.setattr(backward_wgmma, "HEAVY_FIRST", ())
    monkeypatch.setattr(backward_wgmma, "TAIL_SPLIT", False)  # (its 1-D grid: tests/test_backward_wgmma_tail_split.py)
    for _, c in _valid_configs("split"):
        source = render(c)
        assert OFF_LINE in source and ON_LINE not in source, c.name


def test_on_causal_configs_take_the_swapped_grid(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "HEAVY_FIRST", (64, 128, 256))
    monkeypatch.setattr(backward_wgmma, "TAIL_SPLIT", False)  # (its 1-D grid: tests/test_backward_wgmma_tail_split.py)
    monkeypatch.setattr(backward_wgmma, "CAUSAL_WALK", False)  # (its walk: tests/test_backward_wgmma_causal_walk.py)
    for _, c in _valid_configs("split"):
        source = render(c)
        assert (ON_LINE in source) == c.causal and (OFF_LINE in source) != c.causal, c.name


@pytest.mark.parametrize("causal", [False, True])
def test_launch_plan_grid(monkeypatch, causal):
    monkeypatch.setattr(backward_wgmma, "HEAVY_FIRST", (64, 128, 256))
    c = cfg("bf16", 128, causal, bm=64, bn=128, warps=12, stages=2)
    p = check_inputs(**specs(b=3, hq=8, hkv=2, nq=1000, nk=1000, d=128), causal=causal)
    plan = BackwardLaunch(fake_kernel(c), p, 0.1)
    main = plan.launches(tuple(np.uint64(0) for _ in range(18)))[1]
    assert main[1] == ((8 * 2 * 3, 1, 1) if causal else (8, 2, 3))  # 1000 keys: 8 tiles of 128


@pytest.mark.parametrize("built_on", [False, True])
def test_grid_follows_the_kernel_not_the_switch_now(monkeypatch, built_on):
    """A kernel keeps the order it was rendered with (LoadedKernel.values) when the switch changes after: the full GPU
    suite hung three times on a kernel built with the switch off (a test's monkeypatch, since undone) launched on the
    swapped grid; deterministic, its counter waits read past the workspace (benchmarks/NOTES.md, sixteenth session)."""
    c = cfg("bf16", 128, True, bm=64, bn=128, warps=12, stages=2)
    monkeypatch.setattr(backward_wgmma, "HEAVY_FIRST", (128,) if built_on else ())
    kernel = fake_kernel(c)
    kernel.values = backward_wgmma.TEMPLATE.values(c)
    monkeypatch.setattr(backward_wgmma, "HEAVY_FIRST", () if built_on else (128,))  # the switch flipped since
    p = check_inputs(**specs(b=3, hq=8, hkv=2, nq=1000, nk=1000, d=128), causal=True)
    main = BackwardLaunch(kernel, p, 0.1).launches(tuple(np.uint64(0) for _ in range(18)))[1]
    assert main[1] == ((8 * 2 * 3, 1, 1) if built_on else (8, 2, 3))


@pytest.mark.parametrize("c", SERVED, ids=lambda c: c.name)
def test_served_causal_tiles_compile_clean(c, monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "HEAVY_FIRST", (64, 128, 256))
    compiled = compile_kernel(c)
    assert compiled.values["heavy_first"] is True  # what a launch of it reads (loaded.rendered)
    from autoflash.tuning.compile_pool import compile_candidate

    assert compile_candidate(c.to_dict())["values"]["heavy_first"] is True  # and what the tuner hands its runner
    report = compiled.report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
