"""ops/backward_wgmma.DQ_SUM without a GPU (s23): the persistent walk's two consumers each compute dQ over their own
64 keys (4 k-steps each instead of 8 on consumer 0); consumer 1 stores its half in the staging tile, consumer 0 adds
its own into it (ldmatrix, add, stmatrix at the same addresses) and hands the sum to the producer's one bulk op.
Checked here: only the walk renders it; on, the walk compiles clean. GPU: the walk's and TAIL_SPLIT's float64 tests
with AUTOFLASH_TEST_SWITCHES."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, key
from test_backward_wgmma_persistent import tiles

MARK = "sum_bar = 7 + dq_buf"


def test_only_the_walk_renders_it(monkeypatch):
    assert not any(MARK in render(c) for c in tiles())
    monkeypatch.setattr(backward_wgmma, "DQ_SUM", True)
    assert any(WG.persistent(c) for c in tiles())
    for c in tiles():
        assert (MARK in render(c)) == WG.persistent(c), c.name


def test_on_the_walk_compiles_clean(monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "DQ_SUM", True)
    cfg = WG.default("sm_90a", key("bf16", 64, False))
    report = compile_kernel(cfg).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
