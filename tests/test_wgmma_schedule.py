"""flash_fwd_wgmma's varlen item numbering and its cheaper variant arithmetic, without a GPU:
- varlen items are numbered per sequence (slot(b) = cu_seqlens_q[b] / rows-per-item + b): every
  sequence's tiles (or causal pairs of its own tile count) get a slot, at most one spare each, and
  the host's item count is the kernel's;
- the softcap's 1 / (1 + 2^z) (bit-trick guess and a degree-4 correction, float32) keeps
  cap * tanh within 1e-6 * cap of float64;
- ALiBi's column form: on a tile whose keys are all on one side of every diagonal of a warpgroup's
  rows, -slope |diag_i - j| = c_j + rho_i as the template computes them.
The kernels themselves: tests/test_wgmma_schedule_gpu.py, tests/test_varlen_gpu.py, tests/test_variants_gpu.py."""
import math
from pathlib import Path

import numpy as np
import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import Problem

WG = TEMPLATES["flash_fwd_wgmma"]
TEMPLATE = (Path(__file__).resolve().parents[1] / "templates" / "flash_fwd_wgmma.cu.j2").read_text()


def slot(cu: np.ndarray, b: int, rows: int) -> int:
    """The template's first slot of sequence b (the expression is checked against its text below)."""
    return int(cu[b]) // rows + b


def test_the_slot_expression_is_the_templates():
    assert "cu_seqlens_q[mid] / UNIT_ROWS + mid <= u" in TEMPLATE
    assert "u -= cu_seqlens_q[b] / UNIT_ROWS + b;" in TEMPLATE
    assert "const int slots = cu_seqlens_q[batch] / UNIT_ROWS + batch;" in TEMPLATE
    assert "(cu_seqlens_q[batch] / UNIT_ROWS + batch) * heads_q" in TEMPLATE


# The tightest register budgets: three consumer warpgroups (160 registers each) at D 64, 2 and 3 stages
# (the tuned H200 D 64 causal entry is 192 x 128, 2 stages: holding the varlen slot count in a register
# spilled it 188 B), two consumers at D 256, one consumer.
@pytest.mark.parametrize("d,causal,block_m,block_n,stages", [
    (64, True, 192, 128, 2), (64, False, 192, 128, 2), (64, True, 192, 128, 3), (256, True, 128, 80, 2),
    (128, True, 64, 128, 3)])
def test_tight_register_configs_compile_without_spills(d, causal, block_m, block_n, stages):
    from autoflash.kernels.compile import compile_kernel

    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    cfg = WG.default("sm_90a", {"dtype": "bf16", "head_dim": d, "causal": causal})
    cfg = type(cfg)(**{**cfg.to_dict(), "block_m": block_m, "block_n": block_n, "stages": stages,
                       "warps": 4 * (block_m // 64 + 1)})
    assert not cfg.problems()
    report = compile_kernel(cfg).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report


@pytest.mark.parametrize("block_m", [64, 128, 192])
@pytest.mark.parametrize("causal", [False, True])
def test_every_sequence_gets_its_own_units_and_at_most_one_spare(block_m, causal):
    rng = np.random.default_rng(block_m + causal)
    rows = block_m * (2 if causal else 1)
    for trial in range(50):
        lens = rng.integers(0, 3 * rows, rng.integers(1, 40))
        lens[rng.random(len(lens)) < 0.2] = rows * rng.integers(0, 3)  # exact multiples, empty sequences
        cu = np.concatenate([[0], np.cumsum(lens)])
        batch = len(lens)
        total_slots = int(cu[-1]) // rows + batch
        for b in range(batch):
            tiles = math.ceil(lens[b] / block_m)
            units = (tiles + 1) // 2 if causal else tiles
            end = slot(cu, b + 1, rows) if b + 1 < batch else total_slots
            assert units <= end - slot(cu, b, rows) <= units + 1, (lens.tolist(), b)
        p = Problem(batch, 3, 1, int(lens.max(initial=1)), int(lens.max(initial=1)), 128, causal,
                    cu_seqlens_q=1, total_q=int(cu[-1]), total_k=int(cu[-1]))
        cfg = WG.default("sm_90a", {"dtype": "bf16", "head_dim": 128, "causal": causal})
        cfg = type(cfg)(**{**cfg.to_dict(), "block_m": block_m, "warps": 4 * (block_m // 64 + 1)})
        assert WG.items(cfg, p) == total_slots * 3


def test_dense_items_are_unchanged():
    cfg = WG.default("sm_90a", {"dtype": "bf16", "head_dim": 128, "causal": True})
    p = Problem(2, 16, 16, 4096, 4096, 128, True)
    assert WG.items(cfg, p) == 2 * 16 * ((math.ceil(4096 / cfg.block_m) + 1) // 2)  # (T-1-u, u) pairs
    noncausal = WG.default("sm_90a", {"dtype": "bf16", "head_dim": 128, "causal": False})
    assert WG.items(noncausal, Problem(3, 8, 8, 1000, 1000, 128, False)) == 3 * 8 * math.ceil(1000 / noncausal.block_m)


def softcap_r(z: np.ndarray) -> np.ndarray:
    """The template's softcap_r in float32 (ex2 exact here; the MUFU's 2^-22 is below the bound)."""
    f = np.float32
    d = (f(1) + np.exp2(np.minimum(z, f(64)))).astype(f)
    r0 = (np.int32(0x7EF311C7) - d.view(np.int32)).view(f)
    e = (f(1) - d * r0).astype(f)
    q = e
    for _ in range(3):
        q = (q * e + e).astype(f)
    return (r0 * q + r0).astype(f)


def test_softcap_reciprocal_keeps_cap_tanh_within_1e6_cap():
    for cap in (1.0, 30.0, 50.0):
        s = np.linspace(-40 * cap, 40 * cap, 400_001).astype(np.float32)  # scaled scores, past saturation
        z = (s * np.float32(2 * math.log2(math.e) / cap)).astype(np.float32)
        x = cap - 2 * cap * softcap_r(z).astype(np.float64)
        err = np.abs(x - cap * np.tanh(s.astype(np.float64) / cap)).max()
        assert err < 1e-6 * cap, (cap, err)


@pytest.mark.parametrize("block_n", [64, 128])
def test_alibi_column_form_equals_the_distance(block_n):
    """Rows wg_first..wg_first+63 (diagonals + off), a key tile k_start..k_start+block_n-1: where the
    template takes the column form, c_j + rho_i equals -slope |diag_i - j| for every (row, key)."""
    slope, taken = 0.37, 0
    for off in (0, 300, -200):
        for wg_first in range(0, 512, 64):
            for k_start in range(0, 1024, block_n):
                before = k_start + block_n - 1 <= wg_first + off
                if not (before or k_start >= wg_first + 63 + off):
                    continue
                taken += 1
                col_slope = slope if before else -slope
                rows = wg_first + np.arange(64)
                for g in [r for r in range(64) if r % 16 < 8]:  # a thread's rows g (diag0) and g + 8
                    diag0 = rows[g] + off
                    j = k_start + np.arange(block_n)
                    c = col_slope * (j - diag0)
                    for i, rho in ((g, 0.0), (g + 8, -8 * col_slope)):
                        exact = -slope * np.abs(rows[i] + off - j)
                        assert np.allclose(c + rho, exact), (off, wg_first, k_start, i)
    assert taken > 50
