"""ops/backward_wgmma.DQ_THREE_BUFS without a GPU (off; s23): the persistent walk stages dQ in three tiles instead of
two (the read lag frees a buffer one tile late, so consumer 0 waited for one). Checked here: off, every staging config
keeps one or two; on, only the walk takes three (183 KB), keeps the read lag, renders DQ_BUFS 3, compiles clean. GPU:
the walk's float64 tests (tests/test_backward_wgmma_persistent_gpu.py) with AUTOFLASH_TEST_SWITCHES."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, key
from test_backward_wgmma_persistent import tiles


def test_off_by_default_at_most_two():
    assert backward_wgmma.DQ_THREE_BUFS is False
    assert all(WG.smem_layout(c)["dq_bufs"] <= 2 for c in tiles())


def test_on_only_the_walk_takes_three(monkeypatch):
    before = {c.name: WG.smem_layout(c)["dq_bufs"] for c in tiles()}
    monkeypatch.setattr(backward_wgmma, "DQ_THREE_BUFS", True)
    for c in tiles():
        lay = WG.smem_layout(c)
        assert lay["dq_bufs"] == (3 if WG.persistent(c) else before[c.name]), c.name
        if WG.persistent(c):
            assert WG.reads_dq_with_lag(c) and lay["total"] <= 227 * 1024
            assert "constexpr int DQ_BUFS = 3;" in render(c)
    assert any(WG.persistent(c) for c in tiles())


def test_on_the_walk_compiles_clean(monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "DQ_THREE_BUFS", True)
    cfg = WG.default("sm_90a", key("bf16", 64, False))
    assert WG.persistent(cfg)
    report = compile_kernel(cfg).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
