"""ops/backward_wgmma.LATE_DQ without a GPU (s23): the persistent walk's dQ consumer stages tile t's dQ in iteration
t + 1, after issuing that tile's S^T, dP^T wgmmas (so the stores, the fence and the buffer wait run under them), and
the block's last tile's after the loop. Checked here: only the walk renders it; on, the walk compiles clean. GPU: the
walk's and TAIL_SPLIT's float64 tests with AUTOFLASH_TEST_SWITCHES."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, key
from test_backward_wgmma_persistent import tiles

MARK = "(LATE_DQ) the previous tile's dQ"


def test_only_the_walk_renders_it(monkeypatch):
    assert not any(MARK in render(c) for c in tiles())
    monkeypatch.setattr(backward_wgmma, "LATE_DQ", True)
    assert any(WG.persistent(c) for c in tiles())
    for c in tiles():
        assert (MARK in render(c)) == WG.persistent(c), c.name


def test_on_the_walk_compiles_clean(monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "LATE_DQ", True)
    cfg = WG.default("sm_90a", key("bf16", 64, False))
    report = compile_kernel(cfg).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
