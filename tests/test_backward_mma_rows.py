"""flash_bwd_mma's S_ROWS without a GPU: off, every config renders as before (no S-form code); on, the 2-D layout's
plain tiles with block_m <= block_n render it (variants and warps_q 1 do not), and the served H200 tiles compile. GPU
checks: tests/test_backward_mma_rows_gpu.py."""
from autoflash.kernels.render import render
from autoflash.ops import backward_kernels
from autoflash.ops.backward import TEMPLATE

MARK = "gemm_rows<2, KN_TILES, HEAD_DIM>"


def cfg(d, causal=False, warps_q=2, **kw):
    key = dict(dtype="bf16", head_dim=d, causal=causal, deterministic=False, **kw)
    bm = 128 if d == 64 and warps_q == 2 else 64
    return TEMPLATE.config("sm_90", key, block_m=bm, block_n=128, warps=8, stages=2, warps_q=warps_q)


def test_off_renders_no_s_form(monkeypatch):
    monkeypatch.setattr(backward_kernels, "S_ROWS", ())
    assert not any(MARK in render(cfg(d, c)) for d in (64, 128) for c in (False, True))


def test_on_renders_it_for_the_plain_2d_layout_only(monkeypatch):
    monkeypatch.setattr(backward_kernels, "S_ROWS", (64, 128, 256))
    assert all(MARK in render(cfg(d, c)) for d in (64, 128) for c in (False, True))
    assert MARK not in render(cfg(64, warps_q=1)) and MARK not in render(cfg(128, True, window=True))


def test_on_the_served_tiles_compile(monkeypatch):
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_kernels, "S_ROWS", (64, 128, 256))
    for d in (64, 128):
        for causal in (False, True):
            report = compile_kernel(cfg(d, causal)).report
            assert report.registers <= 255 and not report.wgmma_serialized
