"""ops/backward_kernels.FRAGMENT_PIPELINE without a GPU (off by default; a prototype awaiting a GPU A/B): at the listed
tile head dims flash_bwd_mma's GEMM k-loops load k-step kk + 1's ldmatrix fragments before k-step kk's mmas. Checked
here: off leaves the default render without the pipelined code, the switch acts per tile head dim, and the served sm_90
D 64 / D 128 tiles compile with it on without spills or a stack frame. GPU checks: the float64 gradient tests with
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_kernels.FRAGMENT_PIPELINE=(64,128)"."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_kernels
from autoflash.ops.backward_kernels import TEMPLATE

MARK = "(FRAGMENT_PIPELINE)"  # in the pipelined gemm_rows_by_queries only
FLAGS = dict(deterministic=False, window=False, softcap=False, sinks=False, alibi=False)


def key(head_dim, causal=False):
    return {"dtype": "bf16", "head_dim": head_dim, "causal": causal, **FLAGS}


def served(head_dim, causal=False):
    """The tuned sm_90 flash_bwd_mma tile of tuned_configs/sm_90.json (D 128: also the default)."""
    bm = 128 if head_dim == 64 else 64
    return TEMPLATE.config("sm_90", key(head_dim, causal), block_m=bm, block_n=128, warps=8, stages=2, warps_q=2)


def test_off_by_default():
    assert backward_kernels.FRAGMENT_PIPELINE == ()
    for cfg in (served(64), served(128, True), TEMPLATE.default("sm_80", key(64))):
        assert MARK not in render(cfg), cfg.name


def test_the_switch_acts_per_tile_head_dim(monkeypatch):
    off = {d: render(served(d)) for d in (64, 128)}
    monkeypatch.setattr(backward_kernels, "FRAGMENT_PIPELINE", (128,))
    assert render(served(64)) == off[64]
    on = render(served(128))
    assert MARK in on and on != off[128]


@pytest.mark.parametrize("head_dim, causal", [(64, False), (64, True), (128, False), (128, True)])
def test_served_tiles_compile_clean_with_it_on(monkeypatch, head_dim, causal):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_kernels, "FRAGMENT_PIPELINE", (64, 128))
    cfg = served(head_dim, causal)
    assert MARK in render(cfg)
    report = compile_kernel(cfg).report
    assert report.spills == 0 and report.stack_frame == 0, report
