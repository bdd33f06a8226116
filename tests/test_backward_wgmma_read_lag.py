"""flash_bwd_wgmma's DQ_READ_LAG switch (ops/backward_wgmma.py, off by default) without a GPU: off, nothing renders
the lagged wait; on, exactly the dq_via_producer=2 configs with two staging buffers change, and they compile for
sm_90a with 0 spills, no wgmma serialisation and the bulk-read wait that leaves one op in flight (DEPBAR.LE SB0, 0x1).
GPU: tests/test_backward_wgmma_read_lag_gpu.py."""
import itertools

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_wgmma import TEMPLATE as W

from sass import sass

LAG_WAIT = 'cp.async.bulk.wait_group.read 1;'


def valid_configs():
    for dtype, d, causal, det in itertools.product(("bf16", "fp16"), (64, 128), (False, True), (False, True)):
        key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=det, window=False, softcap=False,
                   sinks=False, alibi=False)
        for bm, bn, warps, stages, dq in itertools.product((64, 128), (64, 128), (4, 8, 12), (2, 3), (-1, 0, 1, 2)):
            cfg = W.config("sm_90a", key, block_m=bm, block_n=bn, warps=warps, stages=stages, warps_q=1,
                           dq_via_producer=dq)
            if not cfg.problems():
                yield cfg


def lagged(cfg) -> bool:
    return W.dq_mode(cfg) == 2 and W.smem_layout(cfg)["dq_bufs"] == 2


def test_on_changes_exactly_the_two_buffer_tile_reductions(monkeypatch):
    configs = list(valid_configs())
    off = {c.name: render(c) for c in configs}
    assert not any(LAG_WAIT in src for src in off.values())
    monkeypatch.setattr(backward_wgmma, "DQ_READ_LAG", True)
    changed = {c.name for c in configs if render(c) != off[c.name]}
    assert changed == {c.name for c in configs if lagged(c)}
    assert any(c.head_dim == 64 for c in configs if lagged(c)) and any(c.head_dim == 128 for c in configs if lagged(c))


@pytest.mark.parametrize("d, stages", [(64, 2), (64, 3), (128, 2)])
def test_on_compiles_with_one_op_left_in_flight(monkeypatch, tmp_path, d, stages):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "DQ_READ_LAG", True)
    key = dict(dtype="bf16", head_dim=d, causal=True, deterministic=False, window=False, softcap=False,
               sinks=False, alibi=False)
    cfg = W.config("sm_90a", key, block_m=64, block_n=128, warps=12, stages=stages, warps_q=1, dq_via_producer=-1)
    assert lagged(cfg) and LAG_WAIT in render(cfg)
    kernel = compile_kernel(cfg, use_cache=False)
    assert kernel.report.spills == 0 and not kernel.report.wgmma_serialized, kernel.report
    code = sass(kernel.cubin, tmp_path, cfg.name)
    assert "DEPBAR.LE SB0, 0x1" in code and "LDL" not in code and "STL" not in code
