"""flash_fwd_wgmma's ALiBi column form with an immediate (WgmmaTemplate.alibi_columns = 1, an experiment: on unmasked
tiles left or right of every diagonal, x' = S scale / slope + SIDE j, the row max on x', P = exp2(slope x' + col0 - m))
on an sm_90 GPU against float64 (O and LSE; tolerances: autoflash/ops/reference.py): the served ALiBi tiles (D 128:
128 x 160, 2 stages; D 64: 128 x 128, 3 stages), causal (the served keys) and non-causal (both sides), bf16 and fp16,
with window, sinks and softcap (which keeps the old form); in both causal alignments with Nq < Nk and Nq > Nk; the
usual slopes, per-batch slopes, and heads whose slopes take the old form (0, below 2^-10 in base 2, negative) beside
large ones in one launch; varlen. CPU checks: tests/test_wgmma_alibi_columns.py."""
import numpy as np
import pytest

from autoflash import KernelConfig
from autoflash.ops.forward_base import Problem
from switched_loader import switched_loader

pytestmark = pytest.mark.gpu

MARKER = "if constexpr (SIDE != 0)"
# (batch, heads_q, heads_kv, seq_q, seq_k): odd + GQA; Nq < Nk; Nq > Nk; long enough for unmasked tiles on both
# sides of the diagonals (non-causal) and many items per CTA
SHAPES = [(2, 6, 2, 257, 257), (1, 6, 3, 100, 700), (1, 6, 6, 300, 90), (2, 6, 2, 1024, 1024), (1, 6, 1, 700, 2000)]
# base-e slopes per head: the old form for 0, 2^-12 (below 2^-10 in base 2) and a negative one; the new for the rest
MIXED = np.array([0.0, 2.0 ** -12, -0.01, 2.0 ** -8, 0.5, 4.0], np.float32)


def wgmma(head_dim, causal, dtype="bf16", **flags):
    """tuned_configs/sm_90.json's ALiBi tiles; softcap + ALiBi: the softcap's 128 x 128, 3 stages (at 128 x 160,
    2 stages it spills 48-88 B at D 128 with the switch off or on)."""
    block_n, stages = (160, 2) if head_dim == 128 and not flags.get("softcap") else (128, 3)
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, 128, block_n, 12, stages, alibi=True,
                        **flags)


COMBOS = [dict(), dict(dtype="fp16"), dict(window=True), dict(sinks=True), dict(softcap=True),
          dict(window=True, sinks=True)]
CONFIGS = [wgmma(d, causal, **combo) for d in (64, 128) for causal in (True, False) for combo in COMBOS]


@pytest.fixture
def columns(monkeypatch):
    """A loader of kernels built with alibi_columns = 1."""
    return switched_loader(monkeypatch, "alibi_columns", 1, MARKER)


def slopes(kind: str, batch: int, heads_q: int) -> np.ndarray:
    from autoflash.ops.forward_launch import alibi_slopes

    if kind == "usual":
        return alibi_slopes(heads_q)
    if kind == "per-batch":
        return np.outer(1 + np.arange(batch), alibi_slopes(heads_q)).astype(np.float32)
    return MIXED[:heads_q]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_kernels_match_the_reference(columns, cfg):
    from autoflash.ops.forward_launch import default_scale, run_checked

    k = columns(cfg)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        for offset in sorted({0, nk - nq}):
            for kind in ("usual", "per-batch", "mixed"):
                fields = {}
                if cfg.window:
                    fields.update(window_left=300, window_right=0 if cfg.causal else 200)
                if cfg.softcap:
                    fields["softcap"] = 5.0
                p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, cfg.causal, causal_offset=offset, **fields)
                host = {"alibi_slopes": slopes(kind, b, hq)}
                if cfg.sinks:
                    host["sinks"] = (2 * np.random.default_rng(i).standard_normal(hq)).astype(np.float32)
                check = run_checked(k, p, seed=100 + i, scale=2 * default_scale(cfg.head_dim), **host)
                assert check.passed, f"{cfg.name} {p} slopes {kind}: {check.describe()}"


@pytest.mark.parametrize("causal", [True, False])
def test_varlen(columns, causal):
    from autoflash.ops.forward_launch import run_varlen_checked

    lens = [0, 1, 63, 65, 127, 129, 1000, 2049, 384, 7]
    for cfg in (wgmma(64, causal), wgmma(128, causal)):
        for kind in ("usual", "mixed"):
            check = run_varlen_checked(columns(cfg), lens, lens, 6, 2, bottom_right=True, seed=3,
                                       alibi_slopes=slopes(kind, len(lens), 6))
            assert check.passed, f"{cfg.name} slopes {kind}: {check.describe()}"
