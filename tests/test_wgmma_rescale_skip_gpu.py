"""flash_fwd_wgmma's rescale skip (WgmmaTemplate.rescale_skip = 1, an experiment: rescale_o returns when no row of the
warp moved its max) on an sm_90 GPU: O and LSE BITWISE equal to the switch off on the same inputs (multiplying by an
alpha of exactly 1 is the identity), and within the float64 reference's tolerances (autoflash/ops/reference.py). The
served plain tiles (tuned_configs/sm_90.json: D 64, 128, 256, causal or not) in bf16 and fp16 on random data; inputs
whose scores increase along the keys (the max moves on every tile: the rescale path) and whose max sits in the first
key (it never moves: the skip path); one variant combo (softcap + window + ALiBi + sinks). CPU checks:
tests/test_wgmma_rescale_skip.py."""
import numpy as np
import pytest

from autoflash import KernelConfig
from autoflash.ops.forward_base import Problem
from switched_loader import WG, switched_loader
from test_wgmma_rescale_skip import served_plain

pytestmark = pytest.mark.gpu

MARKER = "if (!__any_sync(0xffffffffu, alpha0 != 1.f || alpha1 != 1.f)) return;"
# (batch, heads_q, heads_kv, seq_q, seq_k): odd + GQA; Nq < Nk and Nq > Nk (bottom-right causal); many tiles
SHAPES = [(2, 4, 2, 257, 257), (1, 4, 1, 100, 700), (1, 2, 2, 300, 90), (2, 8, 8, 1024, 1024)]


def wgmma(head_dim, causal, block_m, block_n, stages, dtype="bf16", **flags):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **flags)


TILES = {  # plain tiles served for some dtype, causal and N (tuned_configs/sm_90.json); the served ones are kept
    64: [(192, 128, 2), (128, 224, 2)], 128: [(128, 128, 3), (128, 192, 2)], 256: [(128, 80, 2)]}
CONFIGS = [wgmma(d, causal, *tile, dtype=dtype) for d, tiles in TILES.items() for tile in tiles
           for causal in (False, True) for dtype in ("bf16", "fp16")]
CONFIGS = [c for c in CONFIGS if c in set(served_plain())]  # 17 of the 20
COMBO = wgmma(128, True, 128, 128, 3, softcap=True, window=True, alibi=True, sinks=True)


@pytest.fixture
def pair(monkeypatch):
    """cfg -> (kernel with the switch off, kernel with it on), both compiled without spills."""
    from autoflash.kernels.compile import compile_kernel
    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.kernels.render import render

    load_on = switched_loader(monkeypatch, "rescale_skip", 1, MARKER)

    def load(cfg):
        monkeypatch.setattr(WG, "rescale_skip", 0)
        assert MARKER not in render(cfg)
        off = compile_kernel(cfg)
        assert off.report.spills == 0, off.report
        monkeypatch.setattr(WG, "rescale_skip", 1)
        return LoadedKernel(off), load_on(cfg)

    return load


def run_both(kernels, p: Problem, q, k, v, scale: float, sinks=None, slopes=None):
    """Both kernels on the same inputs into NaN-poisoned outputs: [(o, lse)] as host arrays, and p with the
    variant arrays' device pointers."""
    import cupy

    from autoflash.kernels.arrays import poisoned
    from autoflash.ops.forward_launch import _device_f32, launch, with_variant_arrays

    d_sinks, d_slopes = _device_f32(sinks), _device_f32(slopes)
    p = with_variant_arrays(p, d_sinks, d_slopes)
    results = []
    for kernel in kernels:
        o = poisoned(q.shape[:3] + (p.dim_v,), kernel.config.dtype)
        lse = cupy.full(q.shape[:3], cupy.nan, dtype=cupy.float32)
        launch(kernel, q.data.ptr, k.data.ptr, v.data.ptr, o.data.ptr, lse.data.ptr, p, scale)
        cupy.cuda.get_current_stream().synchronize()
        results.append((o, lse))
    return results, p, d_sinks, d_slopes


def assert_bitwise_and_accurate(kernels, p: Problem, q, k, v, scale: float, sinks=None, slopes=None):
    import cupy

    from autoflash.kernels.arrays import to_float64
    from autoflash.ops.reference import compare, reference_attention

    (off, on), p, d_sinks, d_slopes = run_both(kernels, p, q, k, v, scale, sinks, slopes)
    dtype = kernels[0].config.dtype
    o_bits = [cupy.asnumpy(o).view(np.uint16) for o, _ in (off, on)]
    lse_bits = [cupy.asnumpy(lse).view(np.uint32) for _, lse in (off, on)]
    differ = int((o_bits[0] != o_bits[1]).sum()), int((lse_bits[0] != lse_bits[1]).sum())
    assert differ == (0, 0), f"{kernels[1].config.name} {p}: O / LSE elements differing bitwise: {differ}"
    ref, ref_lse = reference_attention(to_float64(q, dtype), to_float64(k, dtype), to_float64(v, dtype),
                                       causal=p.causal, scale=scale, causal_offset=p.causal_offset,
                                       window=(p.window_left, p.window_right), softcap=p.softcap,
                                       sinks=d_sinks, alibi_slopes=d_slopes)
    check = compare(to_float64(on[0], dtype), ref, dtype, on[1], ref_lse)
    assert check.passed, f"{kernels[1].config.name} {p}: {check.describe()}"


def random_qkv(p: Problem, dtype: str, seed: int):
    from autoflash.ops.forward_launch import random_inputs

    return random_inputs(p, dtype, seed)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
def test_random_inputs_bitwise_equal(pair, cfg):
    from autoflash.ops.forward_launch import default_scale

    kernels = pair(cfg)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        for offset in sorted({0, nk - nq}) if cfg.causal else [0]:
            p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, cfg.causal, causal_offset=offset)
            q, k, v = random_qkv(p, cfg.dtype, 100 + i)
            assert_bitwise_and_accurate(kernels, p, q, k, v, default_scale(cfg.head_dim))


def built_inputs(p: Problem, dtype: str, moving: bool, seed: int):
    """q > 0 and keys along one positive direction u. moving: k_j = c_j u with c_j rising along the keys, so every
    row's scores rise and its max moves on every key tile. Not moving: key 0 is 3 u, the others ~0.05 N(0, 1), so the
    first tile sets every row's max (each row sees key 0, causal included) and it never moves."""
    import cupy

    from autoflash.kernels.arrays import to_storage

    rng = cupy.random.default_rng(seed)
    d = p.head_dim
    q = rng.uniform(0.5, 1.0, (p.batch, p.heads_q, p.seq_q, d), dtype=cupy.float32)
    u = rng.uniform(0.5, 1.0, (p.batch, p.heads_kv, 1, d), dtype=cupy.float32)
    if moving:
        c = cupy.linspace(0.0, 1.0, p.seq_k, dtype=cupy.float32)[None, None, :, None]
        k = c * u
    else:
        k = 0.05 * rng.standard_normal((p.batch, p.heads_kv, p.seq_k, d), dtype=cupy.float32)
        k[:, :, 0] = 3 * u[:, :, 0]
    v = rng.standard_normal((p.batch, p.heads_kv, p.seq_k, p.dim_v), dtype=cupy.float32)
    return tuple(to_storage(x, dtype) for x in (q, k, v))


@pytest.mark.parametrize("moving", [True, False], ids=["max_moves_every_tile", "max_never_moves"])
@pytest.mark.parametrize("cfg", [c for c in CONFIGS if c.dtype == "bf16"] + [CONFIGS[1]], ids=lambda c: c.name)
def test_built_inputs_bitwise_equal(pair, cfg, moving):
    """Scale 1 / d: scores up to ~1 (moving) or ~2 (key 0) in natural-log units, so P stays well inside bf16."""
    kernels = pair(cfg)
    for b, hq, hkv, nq, nk in SHAPES[1:]:
        p = Problem(b, hq, hkv, nq, nk, cfg.head_dim, cfg.causal)
        q, k, v = built_inputs(p, cfg.dtype, moving, seed=nk)
        assert_bitwise_and_accurate(kernels, p, q, k, v, 1.0 / cfg.head_dim)


def test_variant_combo_bitwise_equal(pair):
    """Softcap 5, a window narrower than the tiles, ALiBi slopes and sinks, both causal alignments."""
    from autoflash.ops.forward_launch import alibi_slopes, default_scale

    kernels = pair(COMBO)
    for i, (b, hq, hkv, nq, nk) in enumerate(SHAPES):
        for offset in sorted({0, nk - nq}):
            p = Problem(b, hq, hkv, nq, nk, COMBO.head_dim, True, causal_offset=offset, softcap=5.0,
                        window_left=37, window_right=0)
            q, k, v = random_qkv(p, COMBO.dtype, 200 + i)
            sinks = (2 * np.random.default_rng(i).standard_normal(hq)).astype(np.float32)
            assert_bitwise_and_accurate(kernels, p, q, k, v, 4 * default_scale(COMBO.head_dim), sinks,
                                        alibi_slopes(hq))
