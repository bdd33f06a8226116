"""flash_fwd_wgmma's softcap by a MUFU reciprocal (WgmmaTemplate.softcap_rcp = 1, an experiment: softcap_r's
1 / (1 + 2^z) by one rcp.approx.ftz.f32, no clamp) on an sm_90 GPU against float64 (O and LSE; tolerances:
autoflash/ops/reference.py): the served softcap tiles (128 x 128, 3 stages) at D 64 and 128, causal or not,
bf16 and fp16, softcap alone and with window, ALiBi, sinks and all of them, in both causal alignments with
Nq < Nk and Nq > Nk; large logits (scale 1, caps 30, 50, 1); varlen; NaN scores give NaN rows (the clamp
made them cap). CPU checks: tests/test_wgmma_softcap_rcp.py."""
import math

import numpy as np
import pytest

from autoflash import KernelConfig
from autoflash.ops.forward_base import Problem
from switched_loader import switched_loader

pytestmark = pytest.mark.gpu

MARKER = 'asm("rcp.approx.ftz.f32'
# (batch, heads_q, heads_kv, seq_q, seq_k): odd + GQA; Nq < Nk (the alignments differ); Nq > Nk (bottom-right rows
# without a key); many items per CTA
SHAPES = [(2, 4, 2, 257, 257), (1, 4, 1, 100, 700), (1, 2, 2, 300, 90), (2, 8, 8, 1024, 1024)]


def wgmma(head_dim, causal, dtype="bf16", **flags):
    """The served softcap tile (tuned_configs/sm_90.json, D 64 and 128): 128 x 128, 3 stages."""
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, 128, 128, 12, 3, softcap=True, **flags)


COMBOS = [dict(), dict(dtype="fp16"), dict(window=True), dict(alibi=True), dict(dtype="fp16", sinks=True),
          dict(window=True, alibi=True, sinks=True)]
CONFIGS = [wgmma(d, causal, **combo) for d in (64, 128) for causal in (False, True) for combo in COMBOS]


@pytest.fixture
def rcp(monkeypatch):
    """A loader of kernels built with softcap_rcp = 1."""
    return switched_loader(monkeypatch, "softcap_rcp", 1, MARKER)


def host_arrays(cfg: KernelConfig, heads_q: int, seed: int) -> dict:
    from autoflash.ops.forward_launch import alibi_slopes

    arrays = {}
    if cfg.sinks:
        arrays["sinks"] = (2 * np.random.default_rng(seed).standard_normal(heads_q)).astype(np.float32)
    if cfg.alibi:
        arrays["alibi_slopes"] = alibi_slopes(heads_q)
    return arrays


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_variants_match_the_reference(rcp, cfg):
    """Softcap 5 on scores of scale 4 / sqrt(d) (bent, not saturated); a window narrower than the tiles."""
    from autoflash.ops.forward_launch import default_scale, run_checked

    k = rcp(cfg)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        for offset in sorted({0, nk - nq}):
            window = dict(window_left=37, window_right=0 if cfg.causal else 11) if cfg.window else {}
            p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, cfg.causal, causal_offset=offset, softcap=5.0, **window)
            check = run_checked(k, p, seed=100 + i, scale=4 * default_scale(cfg.head_dim), **host_arrays(cfg, hq, i))
            assert check.passed, f"{cfg.name} {p}: {check.describe()}"


@pytest.mark.parametrize("cap", [30.0, 50.0, 1.0])
@pytest.mark.parametrize("d, dtype", [(64, "bf16"), (128, "bf16"), (128, "fp16")])
def test_large_logits(rcp, cap, d, dtype):
    """Scale 1: logits ~ N(0, d) reach +-60 and beyond; the cap keeps them within +-cap."""
    from autoflash.ops.forward_launch import run_checked

    for causal in (False, True):
        cfg = wgmma(d, causal, dtype)
        p = Problem(2, 4, 2, 333, 333, d, causal, softcap=cap)
        check = run_checked(rcp(cfg), p, seed=7, scale=1.0)
        assert check.passed, f"{cfg.name} softcap {cap}: {check.describe()}"


@pytest.mark.parametrize("causal", [False, True])
def test_varlen(rcp, causal):
    from autoflash.ops.forward_launch import run_varlen_checked

    lens = [0, 1, 63, 65, 127, 129, 1000, 2049, 384, 7]
    for cfg in (wgmma(64, causal), wgmma(128, causal, alibi=True)):
        check = run_varlen_checked(rcp(cfg), lens, lens, 4, 2, bottom_right=True, seed=3, scale=1.0, softcap=30.0,
                                   **({"alibi_slopes": host_arrays(cfg, 4, 0)["alibi_slopes"]} if cfg.alibi else {}))
        assert check.passed, f"{cfg.name}: {check.describe()}"


@pytest.mark.parametrize("d", [64, 128])
def test_nan_scores_give_nan_rows(rcp, d):
    """A NaN in one query row makes that row's scores NaN: its O row is NaN (the reference's too; the clamp of the
    switch-off kernel turned NaN scores into cap), its LSE not finite, and every other row matches float64."""
    import cupy

    from autoflash.kernels.arrays import to_float64, to_storage
    from autoflash.ops.forward_launch import launch, random_inputs
    from autoflash.ops.reference import compare, reference_attention

    for causal in (False, True):
        cfg = wgmma(d, causal)
        p = Problem(2, 4, 2, 300, 300, d, causal, softcap=30.0)
        q, k, v = random_inputs(p, cfg.dtype, seed=11)
        bad = [(0, 1, 5), (1, 3, 299), (1, 0, 128)]  # (batch, head, row): first tile, last row, a tile's first row
        for b, h, row in bad:
            q[b, h, row, 3] = to_storage(cupy.full((1,), math.nan, dtype=cupy.float32), cfg.dtype)[0]
        # outputs start at 7, not NaN: a NaN row must be the kernel's own
        out = to_storage(cupy.full(q.shape[:3] + (d,), 7.0, dtype=cupy.float32), cfg.dtype)
        lse = cupy.full(q.shape[:3], 7.0, dtype=cupy.float32)
        launch(rcp(cfg), q.data.ptr, k.data.ptr, v.data.ptr, out.data.ptr, lse.data.ptr, p, 1.0)
        cupy.cuda.get_current_stream().synchronize()
        o64 = to_float64(out, cfg.dtype)
        ref, ref_lse = reference_attention(to_float64(q, cfg.dtype), to_float64(k, cfg.dtype),
                                           to_float64(v, cfg.dtype), causal=causal, scale=1.0, softcap=30.0)
        rows = cupy.zeros(q.shape[:3], dtype=bool)
        for b, h, row in bad:
            rows[b, h, row] = True
            assert bool(cupy.isnan(o64[b, h, row]).all()) and bool(cupy.isnan(ref[b, h, row]).all()), (b, h, row)
            assert not math.isfinite(float(lse[b, h, row])), (b, h, row, float(lse[b, h, row]))
        check = compare(o64[~rows], ref[~rows], cfg.dtype, lse[~rows], ref_lse[~rows])
        assert check.passed, f"{cfg.name} rows without NaN: {check.describe()}"
