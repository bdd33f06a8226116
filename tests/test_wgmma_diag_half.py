"""flash_fwd_wgmma's DIAG_HALF switch (forward_wgmma, off by default; issue 18) without a GPU: the kernels it changes
compile for sm_90a with it on without spills or serialised wgmma (a first draft that picked an m64n64 S wgmma for half
tiles made ptxas serialise every wgmma: C7511, and a per-k-step choice C7515), run more P V wgmmas of half a tile
(m64nD, KSTEPS_PV / 2 of them) and keep the whole tile's; tiles whose half is not whole k16 steps (bc 80) compile to the
kernel (SASS) the switch leaves off. The float64 comparison: tests/test_wgmma_diag_half_gpu.py."""
import re

import pytest

from autoflash import KernelConfig
from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops import forward_wgmma
from sass import sass

WG = TEMPLATES["flash_fwd_wgmma"]


def wgmma(head_dim=64, block_m=128, block_n=128, stages=2, dtype="bf16", causal=True, **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


CONFIGS = [wgmma(stages=4), wgmma(stages=4, dtype="fp16", pingpong=0), wgmma(head_dim=128, block_n=160),
           wgmma(block_n=96, stages=3), wgmma(block_m=192), wgmma(head_dim=96, dtype="fp16"),
           wgmma(window=True, sinks=True), wgmma(softcap=True, alibi=True, sinks=True)]


def compiled(monkeypatch, cfg, on):
    monkeypatch.setattr(forward_wgmma, "DIAG_HALF", on)
    assert WG.values(cfg)["diag_half"] == ("true" if on else "false")
    return compile_kernel(cfg)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_on_compiles_clean_with_half_tile_wgmmas(monkeypatch, tmp_path, cfg):
    off, on = compiled(monkeypatch, cfg, False), compiled(monkeypatch, cfg, True)
    for ck in (off, on):
        assert ck.report.spills == 0 and ck.report.stack_frame == 0, (cfg.name, ck.report)
        assert not ck.report.wgmma_serialized, cfg.name
    code = {label: sass(ck.cubin, tmp_path) for label, ck in (("off", off), ("on", on))}
    # S = Qi Kj^T stays m64n{BLOCK_N} (whole) in both; P V is m64n{Dv} in both: the half tile runs fewer of them
    shapes = {label: set(re.findall(r"HGMMA\.64x(\d+)x16", text)) for label, text in code.items()}
    assert shapes["on"] == shapes["off"], (cfg.name, shapes)
    assert code["on"].count("HGMMA") > code["off"].count("HGMMA"), cfg.name


def test_tiles_without_whole_half_steps_are_unchanged(monkeypatch, tmp_path):
    cfg = wgmma(head_dim=256, block_n=80)  # HALF_N 40: not whole k16 steps of P V
    on, off = (sass(compiled(monkeypatch, cfg, flag).cubin, tmp_path) for flag in (True, False))
    assert on == off
