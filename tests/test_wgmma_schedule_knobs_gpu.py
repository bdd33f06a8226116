"""flash_fwd_wgmma's non-rule schedules on the GPU against the float64 reference (the knobs themselves:
tests/test_wgmma_schedule_knobs.py): ping-pong on without causal, off with causal, and one CTA per item,
on dense launches with more items than SMs (so persistent CTAs loop), ragged lengths, GQA, and varlen."""
import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import Problem

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
# (causal, pingpong, persistent): every non-rule schedule of the D 128 default tiles
SCHEDULES = [(False, 1, -1), (False, -1, 0), (False, 1, 0), (True, 0, -1), (True, -1, 0), (True, 0, 0)]
# (batch, heads_q, heads_kv, seq_q, seq_k): > 132 items at 128-row tiles; ragged; GQA with seq_k > seq_q
SHAPES = [(2, 8, 8, 2048, 2048), (3, 4, 2, 1000, 1000), (1, 6, 2, 333, 1100)]


def kernel(causal, pingpong, persistent, head_dim=128):
    from autoflash.kernels.device import device_arch
    from autoflash.serve.api import loaded_kernel

    if device_arch(0)[0] not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs sm_90a")
    cfg = WG.default("sm_90a", {"dtype": "bf16", "head_dim": head_dim, "causal": causal})
    cfg = cfg.replace(block_m=128, block_n=128, warps=12, pingpong=pingpong, persistent=persistent)
    assert not cfg.problems(), cfg.problems()
    return loaded_kernel(cfg, 0)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: "causal{}_pp{}_persist{}".format(*s))
def test_other_schedules_match_the_reference(schedule):
    from autoflash.ops.forward_launch import run_checked

    k = kernel(*schedule)
    causal = schedule[0]
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        p = Problem(b, hq, hkv, nq, nk, 128, causal, causal_offset=nk - nq if causal else 0)
        check = run_checked(k, p, seed=i)
        assert check.passed, f"{k.config.name} {(b, hq, hkv, nq, nk)}: {check.describe()}"


@pytest.mark.parametrize("schedule", [(False, 1, 0), (True, 0, 0)], ids=["full_pp1_persist0", "causal_pp0_persist0"])
def test_other_schedules_varlen(schedule):
    from autoflash.ops.forward_launch import run_varlen_checked

    k = kernel(*schedule)
    lens = [0, 1, 127, 129, 1000, 2049, 384, 7]
    check = run_varlen_checked(k, lens, lens, 4, 2, bottom_right=True, seed=5)
    assert check.passed, f"{k.config.name}: {check.describe()}"
