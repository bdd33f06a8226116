"""flash_bwd_mma's warp layouts without a GPU: warps_q 4 (FlashAttention-2's D 256 layout: S^T over 2 key groups x 4
query quarters, dK/dV 32 keys x 64 columns a warp) is valid for plain head_dim 256 keys only, is the sm_90 default
there (two query buffers fit its 227 KB; sm_80's 163 KB does not, so sm_80 keeps its previous default) and compiles
clean; shared memory counts the two [key][query] tiles (dS^T, P^T) the 2-D layouts allocate, not one per warps_q; P^T
is stored early at tile dim 64 only. GPU checks: benchmarks/bench_backward_d256_layout.py's float64 checks and the
padded/256 backward GPU tests (tests/test_backward_gpu.py, tests/test_backward_head_dims_gpu.py)."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops.backward_kernels import TEMPLATE
from autoflash.ops.backward_mma_switches import P_STORE_EARLY

FLAGS = dict(deterministic=False, window=False, softcap=False, sinks=False, alibi=False)


def key(d, causal=False, **kw):
    return {"dtype": "bf16", "head_dim": d, "causal": causal, **FLAGS, **kw}


def wq4(d, **kw):
    return TEMPLATE.config("sm_90", key(d, **kw), block_m=64, block_n=64, warps=8, stages=2, warps_q=4)


@pytest.mark.parametrize("causal", [False, True])
def test_warps_q_4_is_the_sm_90_default_at_d256(causal):
    assert wq4(256, causal=causal).problems() == []
    assert TEMPLATE.default("sm_90", key(256, causal)).warps_q == 4
    assert TEMPLATE.default("sm_80", key(256, causal)).warps_q == 2  # (its two buffers need 231 KB)


@pytest.mark.parametrize("d, kw", [(64, {}), (128, {}), (160, {}), (248, {}), (256, {"deterministic": True}),
                                   (256, {"softcap": True}), (256, {"window": True}), (256, {"alibi": True}),
                                   (256, {"sinks": True})])
def test_warps_q_4_refused_elsewhere_with_the_reason(d, kw):
    problems = wq4(d, **kw).problems()
    # (padded head dims past 128 are refused block_m 64 first, for its spills)
    assert any("warps_q=4" in p or "padded to 256" in p for p in problems), problems
    default = TEMPLATE.default("sm_90", key(d, **kw))
    assert default.warps_q in (1, 2) and not default.problems()


def test_shared_memory_counts_two_key_query_tiles():
    two = TEMPLATE.smem_bytes(TEMPLATE.config("sm_90", key(256), block_m=64, block_n=64, warps=8, stages=2,
                                              warps_q=2))
    assert TEMPLATE.smem_bytes(wq4(256)) == two < 232448


def test_p_store_early_at_tile_64_only():
    assert P_STORE_EARLY == (64,)
    early = "(P_STORE_EARLY) P^T -> shared memory now"
    for d in (64, 128, 256):
        cfg = TEMPLATE.default("sm_90", key(d))
        assert (early in render(cfg)) == (d == 64), cfg.name


@pytest.mark.parametrize("causal", [False, True])
def test_warps_q_4_compiles_clean(causal):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    report = compile_kernel(wq4(256, causal=causal)).report
    assert report.spills == 0 and report.stack_frame == 0, report
