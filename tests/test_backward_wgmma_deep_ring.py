"""ops/backward_wgmma.DEEP_RING without a GPU (off; s23): with it, stages 3 is a third query-tile buffer for the plain
consumer schedule (not the software-pipelined one), so the D 64 persistent walk can prefetch two tiles ahead. Checked
here: off, stages 3 keeps the pipelined schedule; on, the D 64 walk's stages-3 tile is valid, persistent, with the read
lag and a dS^T buffer a stage, renders the plain loop and compiles clean. GPU: tests/test_backward_wgmma_deep_ring_gpu.py."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, key

PLAIN = "constexpr bool PIPELINE = false;"


def walk_tile(stages: int):
    return WG.config("sm_90a", key("bf16", 64, False), block_m=64, block_n=128, warps=12, stages=stages, warps_q=1)


def test_off_by_default_and_stages_3_stays_pipelined():
    assert backward_wgmma.DEEP_RING is False
    cfg = walk_tile(3)
    assert backward_wgmma.pipelined(cfg) and not WG.persistent(cfg) and WG.ds_buffers(cfg) == 4
    assert PLAIN not in render(cfg)


def test_on_the_walk_takes_three_query_buffers(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "DEEP_RING", True)
    cfg = walk_tile(3)
    assert not cfg.problems() and not backward_wgmma.pipelined(cfg)
    assert WG.persistent(cfg) and WG.reads_dq_with_lag(cfg) and WG.ds_buffers(cfg) == 3
    assert WG.smem_layout(cfg)["total"] - WG.smem_layout(walk_tile(2))["total"] >= 2 * 64 * 64 * 2 + 128 * 64 * 2
    assert PLAIN in render(cfg)


def test_on_the_walk_compiles_clean(monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "DEEP_RING", True)
    report = compile_kernel(walk_tile(3)).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
