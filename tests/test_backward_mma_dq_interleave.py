"""flash_bwd_mma's DQ_INTERLEAVE without a GPU (ops/backward_kernels: dQ's product before dK's, its adds spread among
dK's mmas): served at D 64 (s30h), on the plain dense 2-D layouts only (not warps_q 1, deterministic, varlen or the
variants, whose kernels keep one run of adds after every product); on, the source issues the adds inside dK's product
(after dQ's), and the served D 64 tiles compile with 0 B spilled. On a GPU the mma tests run it wherever it is served
(tests/test_backward_gpu.py; s30h ran them with it on at every tile dim: 102 passed)."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_kernels
from autoflash.ops.backward import TEMPLATE

MARK = "(DQ_INTERLEAVE) dV_w += P^T dO, then dQ's product"


def cfg(d, causal=False, warps_q=2, dtype="bf16", deterministic=False, **kw):
    key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=deterministic, **kw)
    bm = 128 if d == 64 and warps_q == 2 and not deterministic else 64
    return TEMPLATE.config("sm_90", key, block_m=bm, block_n=128, warps=8, stages=2, warps_q=warps_q)


def test_served_at_d64_plain_2d_layouts_only():
    assert backward_kernels.DQ_INTERLEAVE == (64,)
    assert all(MARK in render(cfg(64, c)) for c in (False, True))
    assert MARK not in render(cfg(128, True)) and MARK not in render(cfg(64, warps_q=1))
    assert MARK not in render(cfg(64, True, deterministic=True))
    for variant in ("window", "softcap", "sinks", "alibi", "varlen"):
        assert MARK not in render(cfg(64, True, **{variant: True})), variant


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_the_adds_sit_among_the_dk_mmas_and_the_d64_tiles_compile_clean(dtype):
    from autoflash.kernels.compile import compile_kernel

    for causal in (False, True):
        kernel = compile_kernel(cfg(64, causal, dtype=dtype))
        assert kernel.report.spill_stores == kernel.report.spill_loads == 0, kernel.report
    # in the source: dQ's product, then dK's with the adds inside its step hook, and no run of adds after it
    source = render(cfg(64, dtype=dtype))
    tail = source[source.index(MARK):source.index("cp_async_wait<0>();  // only empty groups can be left")]
    dq_product, dk_product = tail.index("acc_dq[mt][2 * p]"), tail.index("gemm_smem_by_rows_but_own<DKV_TILES")
    assert dq_product < dk_product < tail.index("add_pair(") and "add_dq_rows<" not in tail
