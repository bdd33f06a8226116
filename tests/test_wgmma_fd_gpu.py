"""flash_fwd_wgmma's causal trim (WgmmaTemplate.causal_trim = 1, an experiment: each consumer warpgroup skips the
GEMMs of key tiles past its rows' diagonals and trims its last tile to BLOCK_N - 64 keys) on an sm_90 GPU against
float64 (O and LSE): the served tiles of the rows it targets (D 64: 128 x 128 with and without ping-pong, 192 x 128
three consumers; D 256: 128 x 80) and others (D 128 with the TMA O store, 64-key tiles: skips only), top-left and
bottom-right causal with Nq < Nk and Nq > Nk (fully masked rows), ragged lengths, GQA, many items per CTA, window,
sinks/softcap/ALiBi, varlen (paged launches run the same consumer code: compiled on the CPU only).
CPU checks: tests/test_wgmma_fd.py."""
import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import Problem
from switched_loader import switched_loader

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
# (batch, heads_q, heads_kv, seq_q, seq_k): many items per CTA; ragged + GQA; Nq < Nk; Nq > Nk (rows seeing no key
# when the offset is bottom-right); a short one
SHAPES = [(4, 16, 16, 1024, 1024), (3, 4, 2, 1000, 1000), (1, 6, 2, 333, 1100), (2, 4, 4, 1100, 333), (1, 2, 1, 77, 77)]


def wgmma(head_dim, block_m=128, block_n=128, stages=2, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, True, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


CONFIGS = [wgmma(64, stages=4), wgmma(64, stages=4, dtype="fp16", pingpong=0), wgmma(64, block_m=192),
           wgmma(256, block_n=80), wgmma(256, block_n=80, dtype="fp16"), wgmma(128, block_n=160),
           wgmma(128, block_n=64), wgmma(64, block_m=192, block_n=80, stages=3), wgmma(192, head_dim_v=128)]
VARIANTS = [wgmma(128, window=True), wgmma(64, block_m=192, window=True, sinks=True),
            wgmma(128, softcap=True, alibi=True, sinks=True)]


@pytest.fixture
def trimmed(monkeypatch):
    """A loader of kernels built with causal_trim = 1."""
    return switched_loader(monkeypatch, "causal_trim", 1, "n_own")


def check_shapes(k, cfg, shapes, sinks=False, alibi=False, **variant):
    from autoflash.ops.forward_launch import run_checked

    for i, (b, hq, hkv, nq, nk) in enumerate(shapes):
        host = {}
        if sinks:
            host["sinks"] = [0.5 * h - 1.0 for h in range(hq)]
        if alibi:
            host["alibi_slopes"] = [2.0 ** (-(h + 1)) for h in range(hq)]
        for bottom_right in (False, True):
            p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, True, causal_offset=nk - nq if bottom_right else 0,
                        head_dim_v=cfg.head_dim_v, **variant)
            check = run_checked(k, p, seed=i, **host)
            assert check.passed, f"{cfg.name} {(b, hq, hkv, nq, nk)} bottom_right={bottom_right}: {check.describe()}"


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_trimmed_kernels_match_the_reference(trimmed, cfg):
    check_shapes(trimmed(cfg), cfg, SHAPES)


@pytest.mark.parametrize("cfg", VARIANTS, ids=lambda c: c.name)
def test_trimmed_variants_match_the_reference(trimmed, cfg):
    variant = {}
    if cfg.window:
        variant.update(window_left=300, window_right=0)
    if cfg.softcap:
        variant.update(softcap=30.0)
    check_shapes(trimmed(cfg), cfg, SHAPES[1:4], sinks=cfg.sinks, alibi=cfg.alibi, **variant)


def test_trimmed_varlen(trimmed):
    from autoflash.ops.forward_launch import run_varlen_checked

    for cfg in (wgmma(64, stages=4), wgmma(256, block_n=80), wgmma(64, block_m=192)):
        k = trimmed(cfg)
        lens = [0, 1, 63, 65, 127, 129, 1000, 2049, 384, 7]
        check = run_varlen_checked(k, lens, lens, 4, 2, bottom_right=True, seed=5)
        assert check.passed, f"{cfg.name}: {check.describe()}"
