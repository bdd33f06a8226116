"""flash_fwd_wgmma with SOFTCAP_POLY (P's exp2 of K of each thread's block_n / 4 columns a row by an FMA-pipe
polynomial; forward_wgmma.SOFTCAP_POLY, 0 = off) on an sm_90 GPU against float64 (O and LSE; tolerances:
autoflash/ops/reference.py): the served softcap tile (128 x 128, 3 stages) at D 64 and 128, bf16 and fp16, causal or
not, K 16 (half the columns) and 32 (all of them); softcap alone and with window and sinks; both causal alignments with
Nq < Nk and Nq > Nk (bottom-right rows that see no key: O exactly 0, LSE -inf); softcap 30 and 50 on logits up to
+-1e4 (scale 200); rows whose every key a window masks (-inf); varlen. Each kernel
is compiled here with the switch on (the compile cache is keyed by the rendered source). CPU checks:
tests/test_wgmma_softcap_poly.py."""
import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.ops import forward_wgmma
from autoflash.ops.forward_base import Problem

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
# (batch, heads_q, heads_kv, seq_q, seq_k): odd + GQA; Nq < Nk (the alignments differ); Nq > Nk (bottom-right rows
# without a key); more items than SMs
SHAPES = [(2, 4, 2, 257, 257), (1, 4, 1, 100, 700), (1, 2, 2, 300, 90), (2, 8, 8, 1024, 1024)]


def wgmma(head_dim, causal, dtype="bf16", **flags):
    """The served softcap tile (tuned_configs/sm_90.json, D 64 and 128): 128 x 128, 3 stages."""
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, 128, 128, 12, 3, softcap=True, **flags)


def load(monkeypatch, cfg, columns):
    from autoflash.kernels.compile import compile_kernel
    from autoflash.kernels.device import device_arch
    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.kernels.render import render

    if device_arch(0)[0] not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs sm_90a")
    monkeypatch.setattr(forward_wgmma, "SOFTCAP_POLY", columns)
    assert f"constexpr int SOFTCAP_POLY = {columns};" in render(cfg)
    compiled = compile_kernel(cfg)
    assert compiled.report.spills == 0 and not compiled.report.wgmma_serialized, compiled.report
    return LoadedKernel(compiled)


def sinks(cfg, heads_q, seed):
    import numpy as np

    return (2 * np.random.default_rng(seed).standard_normal(heads_q)).astype(np.float32) if cfg.sinks else None


COMBOS = [dict(), dict(dtype="fp16"), dict(window=True, sinks=True)]
CONFIGS = [wgmma(d, causal, **combo) for d in (64, 128) for causal in (False, True) for combo in COMBOS]


@pytest.mark.parametrize("columns", [16, 32])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_matches_the_reference(monkeypatch, cfg, columns):
    """Softcap 5 on scores of scale 4 / sqrt(d) (bent, not saturated); a window narrower than the tiles."""
    from autoflash.ops.forward_launch import default_scale, run_checked

    k = load(monkeypatch, cfg, columns)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        for offset in sorted({0, nk - nq}) if cfg.causal else [0]:
            window = dict(window_left=37, window_right=0 if cfg.causal else 11) if cfg.window else {}
            p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, cfg.causal, causal_offset=offset, softcap=5.0, **window)
            check = run_checked(k, p, seed=100 + i, scale=4 * default_scale(cfg.head_dim), sinks=sinks(cfg, hq, i))
            assert check.passed, f"{cfg.name} K {columns} {p}: {check.describe()}"


@pytest.mark.parametrize("cap", [30.0, 50.0])
@pytest.mark.parametrize("d, dtype", [(64, "bf16"), (128, "bf16"), (128, "fp16")])
def test_large_logits(monkeypatch, cap, d, dtype):
    """Scale 1 (logits ~ N(0, d), +-60 and beyond) and scale 200 (up to +-1e4): the cap keeps them within +-cap, so
    most of a row's P is far below its max (the polynomial's a down to -2 cap log2(e), and below -126.5: 0)."""
    from autoflash.ops.forward_launch import run_checked

    for causal in (False, True):
        cfg = wgmma(d, causal, dtype)
        k = load(monkeypatch, cfg, 16)
        for scale in (1.0, 200.0):
            p = Problem(2, 4, 2, 333, 333, d, causal, softcap=cap)
            check = run_checked(k, p, seed=7, scale=scale)
            assert check.passed, f"{cfg.name} softcap {cap} scale {scale}: {check.describe()}"


@pytest.mark.parametrize("d", [64, 128])
def test_rows_without_a_visible_key(monkeypatch, d):
    """A window (left 0, right 0) with Nq > Nk and a causal offset that puts many rows' diagonals before key 0:
    every key of those rows is masked (-inf: the polynomial's u = 0, P = +0), O exactly 0 and LSE -inf
    (compare() requires both); the other rows see one key each."""
    from autoflash.ops.forward_launch import run_checked

    cfg = wgmma(d, True, window=True)
    k = load(monkeypatch, cfg, 32)
    p = Problem(1, 2, 2, 400, 150, d, True, causal_offset=-200, softcap=30.0, window_left=0, window_right=0)
    check = run_checked(k, p, seed=5, scale=1.0)
    assert check.passed, f"{cfg.name}: {check.describe()}"


@pytest.mark.parametrize("causal", [False, True])
def test_varlen(monkeypatch, causal):
    from autoflash.ops.forward_launch import run_varlen_checked

    lens = [0, 1, 63, 65, 127, 129, 1000, 2049, 384, 7]
    for d in (64, 128):
        k = load(monkeypatch, wgmma(d, causal), 16)
        check = run_varlen_checked(k, lens, lens, 4, 2, bottom_right=True, seed=3, scale=1.0, softcap=30.0)
        assert check.passed, f"d{d} causal {causal}: {check.describe()}"
