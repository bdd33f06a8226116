"""ops/backward_wgmma.DIVISION_FREE without a GPU: off, every valid flash_bwd_wgmma config renders its loops' integer
divisions as before; on, no loop divides by per_head, and the served tiles compile clean (0 spills, no stack, no
serialised wgmma). The GPU checks: tests/test_backward_wgmma_division_free_gpu.py."""
import re

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import _valid_configs, cfg

LOOP_DIVISION = re.compile(r"(\bit|\bcur|\bj|\btile|\(it - 1\)) [/%] per_head")  # a pair index divided


def code(source: str) -> str:
    return "\n".join(line.split("//")[0] for line in source.splitlines())


SERVED = [cfg(dt, d, causal, bm=64, bn=128, warps=12, stages=2)
          for dt in ("bf16", "fp16") for d in (64, 128) for causal in (False, True)]


def test_off_by_default_and_the_loops_divide():
    assert backward_wgmma.DIVISION_FREE is False
    for _, c in _valid_configs("split"):
        source = render(c)
        assert "head_and_tile" not in source and LOOP_DIVISION.search(code(source)), c.name


def test_on_no_loop_divides_by_per_head(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "DIVISION_FREE", True)
    for _, c in _valid_configs("split"):
        source = render(c)
        assert not LOOP_DIVISION.search(code(source)) and "head_and_tile(" in source, c.name


@pytest.mark.parametrize("c", SERVED, ids=lambda c: c.name)
def test_served_tiles_compile_clean(c, monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "DIVISION_FREE", True)
    report = compile_kernel(c).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
