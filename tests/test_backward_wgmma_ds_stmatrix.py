"""ops/backward_wgmma.DS_STMATRIX without a GPU: off, no config renders stmatrix (the 4-byte stores as before); on,
every valid config stores dS^T by stmatrix_x4 and the served tiles compile clean (0 spills, no stack, no serialised
wgmma) with STSM in their SASS. The GPU checks: tests/test_backward_wgmma_ds_stmatrix_gpu.py."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import _valid_configs, cfg, kernel_sass

SERVED = [cfg(dt, d, causal, bm=64, bn=128, warps=12, stages=2)
          for dt in ("bf16", "fp16") for d in (64, 128) for causal in (False, True)]


def test_off_by_default_no_stmatrix():
    assert backward_wgmma.DS_STMATRIX is False
    for _, c in _valid_configs("split"):
        assert "stmatrix" not in render(c), c.name


def test_on_every_config_stores_ds_by_stmatrix(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "DS_STMATRIX", True)
    for _, c in _valid_configs("split"):
        source = render(c)
        assert "stmatrix_x4(ds_row" in source and "= dfrag[kk][i];" not in source, c.name


@pytest.mark.parametrize("c", SERVED, ids=lambda c: c.name)
def test_served_tiles_compile_clean(c, monkeypatch, tmp_path):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "DS_STMATRIX", True)
    kernel = compile_kernel(c)
    report = kernel.report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
    assert "STSM" in kernel_sass(kernel, c.name, tmp_path)
