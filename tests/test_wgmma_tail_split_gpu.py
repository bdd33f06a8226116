"""ops/forward_wgmma.TAIL_SPLIT on an sm_90 GPU (causal dense launches run the last, partial round's pairs as single
query tiles dealt in a snake): O and LSE against the float64 reference (autoflash/ops/reference.py tolerances), and
against the switch off bitwise (each tile's result does not depend on which CTA runs it). Shapes chosen for the
remainder of the items over the grid (0, 1, grid - 1, other, fewer items than CTAs), odd tile counts, GQA/MQA,
bottom-right alignment, a window with sinks, D 64 (two and three consumer warpgroups), 128 and 256.
CPU checks of the numbering: tests/test_wgmma_tail_split.py."""
import numpy as np
import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.ops import forward_wgmma
from autoflash.ops.forward_base import Problem

pytestmark = pytest.mark.gpu

WG = TEMPLATES["flash_fwd_wgmma"]
# (head_dim, block_m, block_n, stages): the served H200 D 64 / D 128 / D 256 causal tiles, three consumers at D 64
TILES = {64: (64, 128, 128, 4), 128: (128, 128, 160, 2), 256: (256, 128, 80, 2), "d64_br192": (64, 192, 128, 3)}
CASES = [  # tiles, batch, heads_q, heads_kv, seq_q, seq_k, bottom-right, items % grid (at 132 CTAs: checked below)
    (64, 3, 11, 1, 1024, 1024, False, 0),  # 132 pairs: tail 0, MQA
    (64, 1, 19, 19, 1600, 1600, False, 1),  # T = 13 (odd): 7 units x 19 = 133
    (64, 1, 79, 79, 1100, 1100, False, 131),  # T = 9 (odd): 5 x 79 = 395 = 2 x 132 + 131
    (64, 4, 16, 4, 1024, 1024, False, 124),  # GQA: 256 pairs
    (64, 2, 8, 8, 500, 500, False, None),  # 2 x 16 = 32 pairs: fewer than the CTAs (one per item)
    (64, 4, 16, 16, 700, 1500, True, 60),  # keys past the queries, T = 6
    (64, 4, 16, 16, 700, 1500, False, 60),
    ("d64_br192", 3, 16, 8, 1000, 1000, False, 12),  # 192-row tiles, T = 6
    (128, 4, 16, 16, 1024, 1024, False, 124),
    (128, 2, 12, 4, 1300, 2000, True, 12),  # T = 11 (odd)
    (256, 4, 16, 16, 1024, 1024, False, 124),
]


def loaded(tiles, on: bool, monkeypatch, **flags):
    from autoflash.kernels.compile import compile_kernel
    from autoflash.kernels.device import device_arch
    from autoflash.kernels.loaded import LoadedKernel

    if device_arch(0)[0] not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs sm_90a")
    d, block_m, block_n, stages = TILES[tiles]
    cfg = WG.default("sm_90a", {"dtype": "bf16", "head_dim": d, "causal": True, **flags})
    cfg = type(cfg)(**{**cfg.to_dict(), "block_m": block_m, "block_n": block_n, "stages": stages,
                       "warps": 4 * (block_m // 64 + 1)})
    assert not cfg.problems(), cfg.problems()
    monkeypatch.setattr(forward_wgmma, "TAIL_SPLIT", on)
    kernel = LoadedKernel(compile_kernel(cfg))
    monkeypatch.setattr(forward_wgmma, "TAIL_SPLIT", False)
    return kernel


def outputs(kernel, p: Problem, seed: int, sinks=None):
    """(O, LSE) of one launch on seeded inputs (NaN-poisoned outputs)."""
    import cupy

    from autoflash.kernels.arrays import poisoned
    from autoflash.ops.forward_launch import _device_f32, default_scale, launch, random_inputs, with_variant_arrays

    q, k, v = random_inputs(p, kernel.config.dtype, seed)
    out = poisoned(q.shape, kernel.config.dtype)
    lse = cupy.full(q.shape[:3], cupy.nan, dtype=cupy.float32)
    d_sinks = _device_f32(sinks)
    launch(kernel, q.data.ptr, k.data.ptr, v.data.ptr, out.data.ptr, lse.data.ptr,
           with_variant_arrays(p, d_sinks, None), default_scale(p.head_dim))
    cupy.cuda.get_current_stream().synchronize()
    return out, lse


def same_bits(a, b) -> bool:
    import cupy

    return bool(cupy.array_equal(a.view(cupy.uint16 if a.itemsize == 2 else cupy.uint32),
                                 b.view(cupy.uint16 if b.itemsize == 2 else cupy.uint32)))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "{}_b{}_h{}x{}_q{}_k{}{}".format(*c[:6], "_br" * c[6]))
def test_matches_float64_and_the_switch_off(case, monkeypatch):
    from autoflash.ops.forward_launch import plan, run_checked

    tiles, b, hq, hkv, nq, nk, bottom_right, remainder = case
    p = Problem(b, hq, hkv, nq, nk, TILES[tiles][0], True, causal_offset=nk - nq if bottom_right else 0)
    on, off = loaded(tiles, True, monkeypatch), loaded(tiles, False, monkeypatch)
    grid, items = plan(on, p, p.head_dim ** -0.5).grid[0], WG.items(on.config, p)
    if remainder is not None and grid == 132:
        assert items % grid == remainder, (items, grid)
    check = run_checked(on, p, seed=nq)
    assert check.passed, f"{on.config.name} {case}: {check.describe()}"
    (o_on, lse_on), (o_off, lse_off) = outputs(on, p, seed=nq), outputs(off, p, seed=nq)
    assert same_bits(o_on, o_off) and same_bits(lse_on, lse_off), (items, grid)


def test_window_and_sinks(monkeypatch):
    from autoflash.ops.forward_launch import run_checked

    sinks = np.linspace(-1.0, 2.0, 16).astype(np.float32)
    p = Problem(8, 16, 4, 1024, 1024, 64, True, window_left=300, window_right=0)  # 3 x 128 items: tail 120
    on = loaded("d64_br192", True, monkeypatch, window=True, sinks=True)  # the served window tile
    off = loaded("d64_br192", False, monkeypatch, window=True, sinks=True)
    check = run_checked(on, p, seed=5, sinks=sinks)
    assert check.passed, f"{on.config.name}: {check.describe()}"
    (o_on, lse_on), (o_off, lse_off) = outputs(on, p, 5, sinks), outputs(off, p, 5, sinks)
    assert same_bits(o_on, o_off) and same_bits(lse_on, lse_off)


def test_varlen_keeps_todays_numbering(monkeypatch):
    """Switch on, varlen (packed) causal launches take the template's other path (today's items, per sequence)."""
    from autoflash.ops.forward_launch import run_varlen_checked

    causal = loaded(64, True, monkeypatch)
    lens = [0, 1, 127, 128, 129, 255, 256, 257, 1000, 2049, 64, 191, 193, 7] * 3
    for bottom_right in (False, True):
        check = run_varlen_checked(causal, lens, lens, 16, 4, bottom_right=bottom_right, seed=8)
        assert check.passed, f"{causal.config.name} varlen: {check.describe()}"
