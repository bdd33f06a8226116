"""flash_bwd_mma's HEAVY_BY_BATCH without a GPU: off, no kernel renders it; on, the plain causal kernels take their
indices from a 3-D grid's blockIdx (non-causal and variant kernels do not), and the D 128 causal tile (the 2-D layout)
then compiles with 0 B spilled even with DQ_INTERLEAVE on, which spills there with the grouped heavy-first order.
GPU checks: tests/test_backward_heavy_by_batch_gpu.py."""
from autoflash.kernels.render import render
from autoflash.ops import backward_kernels
from autoflash.ops.backward import TEMPLATE

MARK = "const int head_kv = blockIdx.x, kv_tile = blockIdx.y, batch = blockIdx.z;"


def cfg(d, causal=True, **kw):
    key = dict(dtype="bf16", head_dim=d, causal=causal, deterministic=False, **kw)
    return TEMPLATE.config("sm_90", key, block_m=128 if d == 64 else 64, block_n=128 if d < 256 else 64, warps=8,
                           stages=2, warps_q=2 if d < 256 else 4)


def test_off_renders_it_nowhere():
    assert backward_kernels.HEAVY_BY_BATCH == ()
    assert not any(MARK in render(cfg(d)) for d in (64, 128, 256))


def test_on_the_plain_causal_kernels_only(monkeypatch):
    monkeypatch.setattr(backward_kernels, "HEAVY_BY_BATCH", (64, 128, 256))
    assert all(MARK in render(cfg(d)) for d in (64, 128, 256))
    assert MARK not in render(cfg(128, causal=False)) and MARK not in render(cfg(128, window=True))


def test_d128_causal_with_dq_interleave_compiles_clean(monkeypatch):
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_kernels, "DQ_INTERLEAVE", (64, 128, 256))
    monkeypatch.setattr(backward_kernels, "HEAVY_BY_BATCH", (64, 128, 256))
    report = compile_kernel(cfg(128)).report
    assert report.spill_stores == report.spill_loads == 0, report
