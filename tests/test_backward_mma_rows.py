"""flash_bwd_mma's S_ROWS without a GPU: off, no config renders the S-form code; on (served: D 128), the 2-D
layout's plain non-causal tiles with block_m <= block_n render it (causal keys, variants and warps_q 1 do not), and
they compile, the D 128 (served) and D 64 tiles with 0 B spilled. GPU checks: tests/test_backward_mma_rows_gpu.py."""
from autoflash.kernels.render import render
from autoflash.ops import backward_mma_switches
from autoflash.ops.backward import TEMPLATE

MARK = "gemm_rows<2, KN_TILES, HEAD_DIM>"


def cfg(d, causal=False, warps_q=2, dtype="bf16", **kw):
    key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=False, **kw)
    bm = 128 if d == 64 and warps_q == 2 else 64
    return TEMPLATE.config("sm_90", key, block_m=bm, block_n=128, warps=8, stages=2, warps_q=warps_q)


def test_off_renders_no_s_form(monkeypatch):
    monkeypatch.setattr(backward_mma_switches, "S_ROWS", ())
    assert not any(MARK in render(cfg(d, c)) for d in (64, 128) for c in (False, True))


def test_on_renders_it_for_the_plain_non_causal_2d_layout_only(monkeypatch):
    assert backward_mma_switches.S_ROWS == (128,)  # (served: NOTES s28e, s28f)
    assert MARK in render(cfg(128)) and MARK not in render(cfg(64)) and MARK not in render(cfg(128, True))
    monkeypatch.setattr(backward_mma_switches, "S_ROWS", (64, 128, 256))
    assert MARK in render(cfg(64)) and not any(MARK in render(cfg(d, True)) for d in (64, 128))
    assert MARK not in render(cfg(64, warps_q=1)) and MARK not in render(cfg(128, window=True))


def test_on_the_tiles_compile_and_the_served_one_clean(monkeypatch):
    from autoflash.kernels.compile import compile_kernel

    for dtype in ("bf16", "fp16"):
        report = compile_kernel(cfg(128, dtype=dtype)).report
        assert report.spill_stores == report.spill_loads == 0, report
    monkeypatch.setattr(backward_mma_switches, "S_ROWS", (64, 128, 256))
    report = compile_kernel(cfg(64)).report  # (not served: 0.98x S^T, s29b-c)
    assert report.spill_stores == report.spill_loads == 0, report


def test_dp_product_comes_before_the_exps():
    """S_ROWS issues dP's product right after S's, before the exps (FA2's order: s29c-d, +2 % at D 128)."""
    source = render(cfg(128))
    s_product, dp_product = source.index(MARK), source.index("gemm_rows<2, KN_TILES, HEAD_DIM_V>")
    assert s_product < dp_product < source.index("exp2f(fmaf(acc_p", s_product)
