"""ops/backward_wgmma.Q_ROTATE and DQ_FIRST_STORE without a GPU: off (the default), no config renders them and the
preprocess zeroes dq_accum; on, TAIL_SPLIT's configs (non-causal, not deterministic) render the rotation, those with
the producer's one bulk op a tile (dq_via_producer=2) also the first store and a preprocess that leaves dq_accum
alone; they compile clean. GPU checks: tests/test_backward_wgmma_rotate_store_gpu.py."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, key

ROTATE, STORE = "const u32 q_rot = (u32)kv_tile", "if (atomicCAS(flag, 0, 1) == 0)"
ZEROING = "acc[0] = acc[1] = make_float4(0.f, 0.f, 0.f, 0.f);"


def test_off_renders_neither():
    assert (backward_wgmma.Q_ROTATE, backward_wgmma.DQ_FIRST_STORE) == (False, False)
    for d in (64, 128):
        for causal in (False, True):
            for c in WG.space("sm_90a", key("bf16", d, causal)):
                if not c.problems():
                    source = render(c)
                    assert ROTATE not in source and STORE not in source and ZEROING in source, c.name


@pytest.mark.parametrize("d", [64, 96, 128])
@pytest.mark.parametrize("causal, det", [(False, False), (True, False), (False, True)])
def test_on_where_it_applies(d, causal, det, monkeypatch):
    monkeypatch.setattr(backward_wgmma, "Q_ROTATE", True)
    monkeypatch.setattr(backward_wgmma, "DQ_FIRST_STORE", True)
    c = WG.default("sm_90a", key("bf16", d, causal, deterministic=det))
    split = not (causal or det)
    store = split and WG.dq_mode(c) == 2 and WG.producer(c)
    source = render(c)
    assert (ROTATE in source) == split and (STORE in source) == store, c.name
    assert (ZEROING in source) == (not store), c.name
    assert store == (split and d != 96)  # (the padded tile has no producer warpgroup)


@pytest.mark.parametrize("d", [64, 128])
def test_on_compiles_clean(d, monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "Q_ROTATE", True)
    monkeypatch.setattr(backward_wgmma, "DQ_FIRST_STORE", True)
    report = compile_kernel(WG.default("sm_90a", key("bf16", d, False))).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
