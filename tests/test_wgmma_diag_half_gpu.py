"""flash_fwd_wgmma with DIAG_HALF on (a consumer warpgroup's last key tile runs S, the softmax and P V over the
tile's first half when no row of the warpgroup sees a key past it; forward_wgmma, off by default) on an sm_90 GPU,
against the float64 reference (O and LSE): 128-row tiles (warpgroup 0 on every aligned causal diagonal tile) with
bc 128 (the served D 64 / D 128 entries, both ping-pong settings), bc 160 (HALF_N 80, five P V steps) and bc 96
(HALF_N 48), 192-row tiles (three warpgroups, diagonals crossing key tiles), D 96; causal top-left and bottom-right
(offsets move the diagonal into and out of the first half), seq_k < seq_q (rows that see no key: O = 0,
LSE = -inf), non-causal launches whose last tile ends within its first half (the half test's key-end arm), GQA,
varlen, a grid of 3 CTAs (each walks many items, half and whole tiles through one K/V ring), and the variants (window,
sinks, softcap, ALiBi) with causal."""
import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops import forward_wgmma
from autoflash.ops.forward_base import Problem

from wgmma_gpu import load_checked, on_grid

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
MARKER = "constexpr bool DIAG_HALF = true"  # the switched source (the compile cache is keyed by the source)
# (batch, heads_q, heads_kv, seq_q, seq_k): aligned, 1000, 65 (a half tile that is the only tile), GQA, seq_k < / > seq_q
SHAPES = [(2, 4, 4, 1024, 1024), (1, 4, 2, 1000, 1000), (2, 4, 1, 1000, 700), (2, 6, 2, 65, 65),
          (2, 2, 1, 129, 300), (1, 2, 2, 4097, 4097)]


def wgmma(head_dim=64, block_m=128, block_n=128, stages=2, dtype="bf16", causal=True, **extra):
    warps = 4 * (block_m // 64 + 1)
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n, warps, stages, **extra)


CONFIGS = [wgmma(stages=4), wgmma(stages=4, dtype="fp16", pingpong=0), wgmma(head_dim=128, block_n=160),
           wgmma(block_n=96, stages=3), wgmma(block_m=192), wgmma(head_dim=96, dtype="fp16")]


@pytest.fixture
def switched(monkeypatch):
    monkeypatch.setattr(forward_wgmma, "DIAG_HALF", True)

    def load(cfg):
        assert WG.values(cfg)["diag_half"] == "true", cfg.name
        return load_checked(cfg, MARKER)

    return load


@pytest.mark.parametrize("sms", ["all", 3])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_matches_the_reference(monkeypatch, switched, cfg, sms):
    from autoflash.ops.forward_launch import run_checked

    on_grid(monkeypatch, sms)
    k = switched(cfg)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        for offset in sorted({0, nk - nq, 64, -37}):  # top-left, bottom-right, the diagonal moved by half a tile
            p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, True, causal_offset=offset)
            check = run_checked(k, p, seed=i)
            assert check.passed, f"{cfg.name} {(b, hq, hkv, nq, nk)} offset {offset} sms={sms}: {check.describe()}"


@pytest.mark.parametrize("cfg", [wgmma(causal=False), wgmma(block_m=192, stages=3, causal=False)],
                         ids=lambda c: c.name)
def test_non_causal_key_end(switched, cfg):
    """Non-causal: the last key tile is a half tile when seq_k ends within its first half (1000 = 7 x 128 + 104: no;
    1090 = 8 x 128 + 66: no; 1050 = 8 x 128 + 26: yes; 40: the only tile)."""
    from autoflash.ops.forward_launch import run_checked

    k = switched(cfg)
    for i, (nq, nk) in enumerate(((1000, 1000), (300, 1090), (700, 1050), (129, 40))):
        check = run_checked(k, Problem(2, 4, 2, nq, nk, cfg.head_dim, False), seed=i)
        assert check.passed, f"{cfg.name} {(nq, nk)}: {check.describe()}"


@pytest.mark.parametrize("cfg", CONFIGS[:2], ids=lambda c: c.name)
def test_varlen(switched, cfg):
    from autoflash.ops.forward_launch import run_varlen_checked

    lens = [1, 64, 65, 200, 0, 1024, 129, 7, 385]
    check = run_varlen_checked(switched(cfg), lens, lens, 4, 2, bottom_right=True, seed=5)
    assert check.passed, f"{cfg.name}: {check.describe()}"
    check = run_varlen_checked(switched(cfg), lens, [n + 100 for n in lens], 4, 2, bottom_right=True, seed=6)
    assert check.passed, f"{cfg.name} seq_k > seq_q: {check.describe()}"


@pytest.mark.parametrize("cfg", [wgmma(window=True, sinks=True), wgmma(softcap=True), wgmma(alibi=True),
                                 wgmma(softcap=True, alibi=True, sinks=True)], ids=lambda c: c.name)
def test_variants(switched, cfg):
    from autoflash.ops.forward_launch import run_checked

    k = switched(cfg)
    sinks = [0.5 * h - 1.0 for h in range(8)] if cfg.sinks else None
    slopes = [2.0 ** -(h + 1) for h in range(8)] if cfg.alibi else None
    window = (300, 0) if cfg.window else (-1, -1)
    for nq, nk, offset in ((1000, 1100, 100), (1024, 1024, 0), (1000, 700, -300)):
        p = Problem(2, 8, 4, nq, nk, cfg.head_dim, True, causal_offset=offset, window_left=window[0],
                    window_right=window[1], softcap=30.0 if cfg.softcap else 0.0)
        check = run_checked(k, p, seed=3, sinks=sinks, alibi_slopes=slopes)
        assert check.passed, f"{cfg.name} {(nq, nk, offset)}: {check.describe()}"
