"""ops/backward_wgmma.PINGPONG without a GPU: off (the default) renders `PINGPONG = false` everywhere; on, only the
two-consumer producer tiles of stages 2 (not deterministic) take turns, and they compile clean (0 spills, wgmma not
serialised, both barriers' bar.arrive in the SASS). GPU checks: tests/test_backward_wgmma_pingpong_gpu.py."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, cfg, kernel_sass, key


def test_off_by_default_and_only_where_it_applies(monkeypatch):
    assert backward_wgmma.PINGPONG is False
    assert "PINGPONG = false" in render(WG.default("sm_90a", key("bf16", 64, False)))
    monkeypatch.setattr(backward_wgmma, "PINGPONG", True)
    for d in (64, 128):
        assert "PINGPONG = true" in render(WG.default("sm_90a", key("bf16", d, True)))
        assert "PINGPONG = false" in render(WG.default("sm_90a", key("bf16", d, True, deterministic=True)))
        assert "PINGPONG = false" in render(cfg(d=d, warps=12, stages=3))  # the pipelined loop
    assert "PINGPONG = false" in render(cfg(d=128, bn=128, warps=8))  # no producer


@pytest.mark.parametrize("d", [64, 128])
def test_on_compiles_clean(d, monkeypatch, tmp_path):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "PINGPONG", True)
    c = WG.default("sm_90a", key("bf16", d, False))
    kernel = compile_kernel(c)
    assert kernel.report.spills == 0 and not kernel.report.wgmma_serialized, kernel.report
    main = kernel_sass(kernel, c.name, tmp_path)
    assert "BAR.ARV" in main and "BAR.SYNC" in main
