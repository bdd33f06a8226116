"""flash_fwd_wgmma's dense kernels, whose consumers read their warpgroup index by a lane-0 shuffle (the tile loop's
bookkeeping in uniform registers; adopted after the ninth session's H200 A/B), on an sm_90 GPU against the float64
reference (O and LSE): the H200's served D 64 tiles (causal br128 bc128 s4 bf16 / fp16 pingpong 0, causal br192 bc128
s2, non-causal br192 bc128 s3 / s2), D 128 and D 256's causal tiles, Dqk 192 / Dv 128, and two variant kernels (window
+ softcap at D 64, sinks + ALiBi at D 128). Causal top-left and bottom-right, Nq != Nk both ways, odd N, GQA, more items
than SMs and a 3-CTA grid (each CTA walks many items: the ring's slot and parity run on across them); varlen (items
numbered per sequence); attention() on the served bf16 D 64 causal N 1024 config. The CPU checks:
tests/test_wgmma_uniform_wg.py."""
import numpy as np
import pytest

from autoflash import KernelConfig
from autoflash.ops.forward_base import Problem

from wgmma_gpu import load_checked, on_grid

pytestmark = pytest.mark.gpu

SHUFFLED = "const int wg = __shfl_sync(0xffffffffu, warpgroup - 1, 0);"
# (batch, heads_q, heads_kv, seq_q, seq_k): > 132 items; odd N; GQA with Nk > Nq; Nq > Nk
SHAPES = [(4, 8, 8, 1024, 1024), (3, 4, 2, 999, 999), (1, 6, 2, 333, 1100), (2, 4, 4, 777, 500)]


def wgmma(head_dim=64, causal=True, block_m=128, block_n=128, stages=4, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


CONFIGS = [wgmma(), wgmma(dtype="fp16", pingpong=0), wgmma(block_m=192, stages=2),
           wgmma(block_m=192, stages=2, dtype="fp16"), wgmma(causal=False, block_m=192, stages=3),
           wgmma(causal=False, block_m=192, stages=2, dtype="fp16"), wgmma(128, stages=3),
           wgmma(256, block_n=80, stages=2), wgmma(192, stages=2, head_dim_v=128)]


def load(cfg):
    return load_checked(cfg, SHUFFLED)  # the uniform index (dense kernels)


@pytest.mark.parametrize("sms", ["all", 3])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_matches_the_reference(monkeypatch, cfg, sms):
    from autoflash.ops.forward_launch import run_checked

    on_grid(monkeypatch, sms)
    k = load(cfg)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        # causal: top-left (offset 0) and bottom-right (Nk - Nq; negative when Nq > Nk: rows with no key)
        for offset in ((0, nk - nq) if cfg.causal and nq != nk else (0,)):
            p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, cfg.causal, causal_offset=offset,
                        head_dim_v=cfg.head_dim_v)
            check = run_checked(k, p, seed=i)
            assert check.passed, f"{cfg.name} {(b, hq, hkv, nq, nk)} offset {offset} sms={sms}: {check.describe()}"


@pytest.mark.parametrize("cfg, sinks_alibi", [(wgmma(stages=3, window=True, softcap=True), False),
                                              (wgmma(128, stages=2, sinks=True, alibi=True), True)],
                         ids=lambda x: x.name if isinstance(x, KernelConfig) else str(x))
def test_variants_match_the_reference(cfg, sinks_alibi):
    from autoflash.ops.forward_launch import alibi_slopes, run_checked

    k = load(cfg)
    extra = dict(sinks=np.linspace(-2, 2, 4).astype(np.float32), alibi_slopes=alibi_slopes(4)) if sinks_alibi else {}
    window = (70, 0) if cfg.window else (-1, -1)
    for nq, nk in ((300, 500), (1024, 1024)):
        p = Problem(2, 4, 2, nq, nk, cfg.head_dim, True, causal_offset=nk - nq, window_left=window[0],
                    window_right=window[1], softcap=5.0 if cfg.softcap else 0.0)
        check = run_checked(k, p, seed=nq, **extra)
        assert check.passed, f"{cfg.name} {(nq, nk)}: {check.describe()}"


@pytest.mark.parametrize("cfg", [wgmma(), wgmma(causal=False, block_m=192, stages=3)], ids=lambda c: c.name)
def test_varlen(cfg):
    from autoflash.ops.forward_launch import run_varlen_checked

    k = load(cfg)
    lens = [0, 1, 127, 129, 1000, 2049, 384, 7]
    check = run_varlen_checked(k, lens, lens, 4, 2, bottom_right=True, seed=5)
    assert check.passed, f"{cfg.name}: {check.describe()}"


def test_attention_on_the_served_config():
    """attention() through its call plans: the served bf16 D 64 causal N 1024 config."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    import autoflash
    from autoflash.kernels.device import device_arch
    from autoflash.kernels.render import render
    from autoflash.serve import api

    arch, name = device_arch(0)
    if arch not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs sm_90a")
    cfg = api.choose_config(arch, name, "bf16", 64, True, 1024)
    assert cfg.template == "flash_fwd_wgmma" and SHUFFLED in render(cfg), cfg.name  # what attention() compiles
    g = torch.Generator(device="cuda").manual_seed(13)
    q, k, v = (torch.randn(2, 8, 1024, 64, generator=g, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True).float()
    for _ in range(2):
        err = (autoflash.attention(q, k, v, causal=True).float() - ref).abs().max().item()
        assert err < 2e-2, err
