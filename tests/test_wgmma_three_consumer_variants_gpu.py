"""Softcap and ALiBi on three consumer warpgroups (192-row tiles, 160 registers a consumer thread) against the
float64 reference: the tiles the register rule admits beside a smaller K/V tile (forward_wgmma.VARIANT_REGS), each
causal in both alignments and not, GQA and MQA, Nq != Nk; softcap with large logits. Tolerances: ops/reference.py."""
import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import VARIANT_FLAGS, Problem
from test_variants_gpu import SHAPES, offsets, values
from wgmma_gpu import load_checked

pytestmark = pytest.mark.gpu

# (head_dim, block_n, stages, flags): the largest admitted block_n at D 128 and D 64, and the two variants together
TILES = [(128, 64, 2, ("softcap",)), (128, 80, 2, ("alibi",)), (64, 96, 3, ("softcap",)), (64, 112, 3, ("alibi",)),
         (64, 64, 2, ("softcap", "alibi")), (40, 96, 2, ("softcap",))]


def three_consumer_kernel(d: int, block_n: int, stages: int, flags, causal: bool):
    key = {"dtype": "bf16", "head_dim": d, "causal": causal, **{f: f in flags for f in VARIANT_FLAGS}}
    cfg = TEMPLATES["flash_fwd_wgmma"].config("sm_90a", key, block_m=192, block_n=block_n, warps=16, stages=stages)
    return load_checked(cfg, "constexpr int BLOCK_M = 192;")


@pytest.mark.parametrize("tile", TILES, ids=lambda t: f"d{t[0]}-bc{t[1]}-s{t[2]}-{'+'.join(t[3])}")
@pytest.mark.parametrize("causal", [False, True], ids=["noncausal", "causal"])
def test_three_consumers_against_float64(tile, causal):
    from autoflash.ops.forward_launch import default_scale, run_checked

    d, block_n, stages, flags = tile
    kernel = three_consumer_kernel(d, block_n, stages, flags, causal)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES + [(1, 2, 1, 1000, 1000)]):
        for offset in offsets(nq, nk):
            fields, arrays = values(flags, causal, hq, b, seed=i)
            p = Problem(b, hq, hkv, nq, nk, d, causal, causal_offset=offset, **fields)
            check = run_checked(kernel, p, seed=400 + i, scale=4 * default_scale(d), **arrays)
            assert check.passed, f"{kernel.config.name} {p}: {check.describe()}"


@pytest.mark.parametrize("cap", [30.0, 50.0])
def test_three_consumer_softcap_with_large_logits(cap):
    from autoflash.ops.forward_launch import run_checked

    for d, block_n, stages, flags in TILES:
        if flags != ("softcap",):
            continue
        kernel = three_consumer_kernel(d, block_n, stages, flags, False)
        p = Problem(2, 4, 2, 500, 500, d, False, softcap=cap)
        check = run_checked(kernel, p, seed=8, scale=1.0)
        assert check.passed, f"{kernel.config.name} softcap {cap}: {check.describe()}"
