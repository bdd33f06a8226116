"""flash_fwd_wgmma with V's own head dim (Dqk != Dv, issue 17 item 2) without a GPU: the rules size
shared memory and registers by each dim, the template renders V tiles, O and its store at head_dim_v,
V's tensor map gets its own head dim, the tuning space of a 192/128 key has valid wgmma candidates,
and NVRTC + ptxas compile the defaults (and a variant / padded pair) without spills.
The GPU side is tests/test_wgmma_dv_gpu.py."""
import pytest

from autoflash.kernels import tma
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render
from autoflash.ops.forward_base import VARIANT_FLAGS, Problem
from autoflash.ops.forward_wgmma import map_geometry
from autoflash.tuning.keys import StudyKey
from autoflash.tuning.space import space

WG = TEMPLATES["flash_fwd_wgmma"]
PAIRS = [(192, 128), (128, 64), (64, 128)]


def key(d, dv, causal=False, dtype="bf16", **flags):
    return {"dtype": dtype, "head_dim": d, "causal": causal, "head_dim_v": dv, **flags}


@pytest.mark.parametrize("d, dv", PAIRS + [(40, 72), (256, 128)])
def test_defaults_pass_the_rules_and_name_dv(d, dv):
    for causal in (False, True):
        cfg = WG.default("sm_90a", key(d, dv, causal))
        assert not cfg.problems() and cfg.head_dim == d and cfg.head_dim_v == dv
        assert f"_d{d}_dv{dv}_" in cfg.name


def test_192_128_default_is_two_stage_128_by_128():
    cfg = WG.default("sm_90a", key(192, 128))
    assert (cfg.block_m, cfg.block_n, cfg.stages, cfg.warps) == (128, 128, 2, 12)
    # the plain D 192 key keeps its own default (its V tiles are 192 wide: 128 x 128 s2 does not fit)
    assert (WG.default("sm_90a", key(192, 0)).block_n, WG.default("sm_90a", key(192, 0)).head_dim_v) == (80, 0)


def test_shared_memory_and_registers_count_each_dim():
    cfg = WG.config("sm_90a", key(192, 128), block_m=128, block_n=128, warps=12, stages=2)
    lay = WG.smem_layout(cfg)
    assert lay["q_bytes"] == 128 * 192 * 2 and lay["kv_bytes"] == 128 * 192 * 2 and lay["v_bytes"] == 128 * 128 * 2
    assert lay["bar_off"] == lay["v_off"] + 2 * lay["v_bytes"] and lay["v_off"] == lay["k_off"] + 2 * lay["kv_bytes"]
    assert WG.consumer_registers(cfg) == 64 + 32 + 64 + 24  # O holds Dv / 2
    plain = WG.config("sm_90a", key(192, 0), block_m=128, block_n=128, warps=12, stages=2)
    assert any("shared memory" in p for p in plain.problems())  # V at 192 pushes the same tiles past 227 KB
    wide_v = WG.config("sm_90a", key(64, 256), block_m=128, block_n=128, warps=12, stages=2)
    assert any("registers per consumer" in p for p in wide_v.problems())  # O 128 + S 64 + P 32 + 24 > 240
    assert WG.smem_layout(WG.config("sm_90a", key(40, 72), block_m=128, block_n=64, warps=12,
                                    stages=2))["v_bytes"] == 64 * 128 * 2  # 72 columns: two 64-wide blocks


def test_render_gives_each_side_its_head_dim():
    src = render(WG.default("sm_90a", key(192, 128, True)))
    assert "constexpr int HEAD_DIM = 192;" in src and "constexpr int HEAD_DIM_V = 128;" in src
    assert "m64n128k16" in src  # P.V at N = Dv
    assert "COL_BLOCKS_V" in src and "V_BYTES = 32768;" in src
    plain = render(WG.default("sm_90a", key(128, 0)))
    assert "constexpr int HEAD_DIM_V = 128;" in plain  # Dv = Dqk: one constant, the same kernel as before


def test_tuning_space_of_a_192_128_key_has_valid_wgmma_candidates():
    study = StudyKey.of("forward", "sm_90", "H200", **key(192, 128, True))
    ok = [c for c in space(study, None) if c.template == "flash_fwd_wgmma" and not c.problems()]
    assert len(ok) >= 4 and all(c.head_dim == 192 and c.head_dim_v == 128 for c in ok)
    assert WG.default("sm_90a", key(192, 128, True)) in ok or any(
        (c.block_m, c.block_n, c.stages) == (128, 128, 2) for c in ok)


def test_v_map_has_its_own_head_dim(monkeypatch):
    made = []
    monkeypatch.setattr(tma, "attention_operand_map", lambda *g: made.append(g) or tma.TensorMap())
    tma._QKV_CACHE.clear()
    cfg = WG.default("sm_90a", key(192, 128))
    p = Problem(2, 8, 2, 300, 400, 192, False, head_dim_v=128)
    geom = map_geometry(cfg, p)
    assert geom[-1] == 128
    tma.qkv_map_args(0x1000, 0x2000, 0x3000, *geom)
    (q_map, k_map, v_map) = made
    assert (q_map[5], k_map[5], v_map[5]) == (192, 192, 128)  # head_dim argument of each map
    assert v_map[6] == (2 * 400 * 128, 400 * 128, 128)  # V's strides at its own head dim
    made.clear()
    tma._QKV_CACHE.clear()
    plain = WG.default("sm_90a", key(128, 0))
    tma.qkv_map_args(0x1000, 0x2000, 0x2000, *map_geometry(plain, Problem(1, 2, 2, 64, 64, 128, False)))
    assert len(made) == 2  # k and v the same tensor at the same head dim: one map serves both
    tma._QKV_CACHE.clear()


def test_varlen_map_geometry_keeps_v_head_dim():
    cfg = WG.default("sm_90a", key(128, 64))
    strides = ((0, 128, 8 * 128), (0, 128, 2 * 128), (0, 64, 2 * 64), (0, 64, 8 * 64))
    p = Problem(3, 8, 2, 100, 200, 128, False, strides=strides, cu_seqlens_q=1, cu_seqlens_k=2, total_q=250,
                total_k=400, head_dim_v=64)
    geom = map_geometry(cfg, p)
    assert geom[-1] == 64 and geom[9] == (64 * 2 + 2 * 64 * 400, 64, 128)


ALL = dict.fromkeys(VARIANT_FLAGS, True)
CASES = [(d, dv, c, {}) for d, dv in PAIRS for c in (False, True)] + \
        [(192, 128, True, ALL), (128, 64, False, ALL), (40, 72, True, {}), (256, 128, False, {})]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"d{c[0]}-dv{c[1]}-{'causal' if c[2] else 'full'}"
                         f"{'-all' if c[3] else ''}")
def test_configs_compile_without_spills(case):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    d, dv, causal, flags = case
    for dtype in ("bf16", "fp16") if not flags else ("bf16",):
        cfg = WG.default("sm_90a", key(d, dv, causal, dtype, **flags))
        report = afc.compile_kernel(cfg).report
        assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, (cfg.name, report)
