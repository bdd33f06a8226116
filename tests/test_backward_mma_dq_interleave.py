"""flash_bwd_mma's DQ_INTERLEAVE without a GPU (ops/backward_mma_switches: dQ's product before dK's, its adds spread
among dK's mmas): served at D 64 (s30h) and, on the HEAVY_BY_BATCH kernels, at D 128 causal (s31a), on the plain dense
S^T-form 2-D layouts only (not warps_q 1, deterministic, varlen or the variants, whose kernels keep one run of adds
after every product, nor D 128's S form); on, the source issues the adds inside dK's product (after dQ's), and the
served tiles compile with 0 B spilled. On a GPU the mma tests run it wherever it is served (tests/test_backward_gpu.py;
s30h ran them with it on at every tile dim: 102 passed)."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_mma_switches
from autoflash.ops.backward import TEMPLATE

MARK = "(DQ_INTERLEAVE) dV_w += P^T dO, then dQ's product"


def cfg(d, causal=False, warps_q=2, dtype="bf16", deterministic=False, **kw):
    key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=deterministic, **kw)
    bm = 128 if d == 64 and warps_q == 2 and not deterministic else 64
    return TEMPLATE.config("sm_90", key, block_m=bm, block_n=128, warps=8, stages=2, warps_q=warps_q)


def test_served_at_d64_and_d128_causal_plain_2d_layouts_only(monkeypatch):
    assert backward_mma_switches.DQ_INTERLEAVE == (64, 128)
    assert all(MARK in render(cfg(64, c)) for c in (False, True)) and MARK in render(cfg(128, True))
    assert MARK not in render(cfg(128, False)) and MARK not in render(cfg(64, warps_q=1))  # (D 128: the S form)
    d256 = TEMPLATE.config("sm_90", dict(dtype="bf16", head_dim=256, causal=True, deterministic=False), block_m=64,
                           block_n=64, warps=8, stages=2, warps_q=2)
    assert MARK not in render(d256)
    assert MARK not in render(cfg(64, True, deterministic=True))
    for variant in ("window", "softcap", "sinks", "alibi", "varlen"):
        assert MARK not in render(cfg(64, True, **{variant: True})), variant
    monkeypatch.setattr(backward_mma_switches, "HEAVY_BY_BATCH", ())  # D 128 takes it by batch only (else spills)
    assert MARK not in render(cfg(128, True))


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_the_adds_sit_among_the_dk_mmas_and_the_served_tiles_compile_clean(dtype):
    from autoflash.kernels.compile import compile_kernel

    for d, causal in ((64, False), (64, True), (128, True)):
        kernel = compile_kernel(cfg(d, causal, dtype=dtype))
        assert kernel.report.spill_stores == kernel.report.spill_loads == 0, (d, causal, kernel.report)
    # in the source: dQ's product, then dK's with the adds inside its step hook, and no run of adds after it
    source = render(cfg(64, dtype=dtype))
    tail = source[source.index(MARK):source.index("cp_async_wait<0>();  // only empty groups can be left")]
    dq_product, dk_product = tail.index("acc_dq[mt][2 * p]"), tail.index("gemm_smem_by_rows_but_own<DKV_TILES")
    assert dq_product < dk_product < tail.index("add_dq<true>(") and "add_dq_rows<" not in tail
