"""flash_fwd_wgmma with paged K/V (chunked prefill on a paged cache, issue 15) without a GPU: the
`paged` flag is accepted (two consumer warpgroups at most), what it renders (cp.async by the producer
warpgroup through the block table, the page-0 guard, the proxy fence), its kernel signature against
the launch arguments, the register split, and NVRTC + ptxas compiles without spills.
The GPU side is tests/test_wgmma_paged_gpu.py."""
import pytest

from autoflash.kernels import tma
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render
from autoflash.ops import forward_wgmma
from autoflash.ops.forward_base import VARIANT_FLAGS, Problem
from autoflash.ops.forward_wgmma import reg_split
from conftest import fwd_key as K
from test_forward_signature import NUMPY, SHARED, VARIANT, kernel_params

WG = TEMPLATES["flash_fwd_wgmma"]
PAGED_TAIL = ["const int*", "long long", "int", "int"]  # block_table, table_stride, page_size, num_pages
ALL = dict.fromkeys(VARIANT_FLAGS, True)


def paged(d=128, causal=True, dtype="bf16", **flags):
    key = K(dtype, d, causal)
    key.update(flags)
    for knobs in WG.default_tiles(key):
        cfg = WG.config("sm_90a", key, **knobs).replace(paged=True)
        if not cfg.problems():
            return cfg
    raise AssertionError(f"no paged wgmma config for {key}")


def test_paged_is_accepted_with_at_most_two_consumers():
    cfg = paged()
    assert cfg.name.endswith("_paged") and not cfg.problems()
    three = WG.default("sm_90a", K("bf16", 64, True)).replace(paged=True)
    assert three.block_m == 192 and any("paged K/V needs block_m 64 or 128" in p for p in three.problems())
    assert paged(64).block_m == 128  # the next default tile


def test_register_split_gives_the_producer_room_and_fits_the_sm():
    for cfg in (paged(64), paged(128), paged(256), paged(128, **ALL)):
        producer, consumer = reg_split(cfg)
        assert producer >= 40 and 128 * (producer + 2 * consumer) <= 65536
        assert WG.consumer_registers(cfg) <= consumer
    assert reg_split(paged(128).replace(paged=False)) == forward_wgmma.REG_SPLIT[2]


def test_render_loads_kv_through_the_table_only_when_paged():
    on, off = render(paged()), render(paged().replace(paged=False))
    assert "constexpr bool PAGED = true;" in on and "constexpr bool PAGED = false;" in off
    body_on, body_off = on.split('extern "C"')[1], off.split('extern "C"')[1]
    assert "load_paged_tile<HEAD_DIM>" in body_on and "load_paged_tile" not in body_off
    assert "cp.async.mbarrier.arrive.noinc" in body_on and "block_table" not in body_off
    assert "(unsigned)page < (unsigned)num_pages ? page : 0" in on  # a bad entry reads page 0
    assert f"setmaxnreg.dec.sync.aligned.u32 {reg_split(paged())[0]};" in on  # 40: D 128's consumers need 232
    assert "setmaxnreg.dec.sync.aligned.u32 24;" in off


@pytest.mark.parametrize("causal", [False, True])
def test_paged_signature_is_wgmma_plus_four_and_matches_launch_args(causal, monkeypatch):
    made = []
    monkeypatch.setattr(tma, "attention_operand_map", lambda *g: made.append(g) or tma.TensorMap())
    tma._CACHE.clear()
    cfg = paged(causal=causal)
    params = kernel_params(render(cfg))
    wgmma = SHARED + ["TmaDesc"] * 3 + ["int"] + VARIANT
    assert params == wgmma + PAGED_TAIL
    assert kernel_params(render(cfg.replace(paged=False))) == wgmma
    strides = ((300 * 8 * 128, 128, 8 * 128), (64 * 2 * 128, 128, 2 * 128), (64 * 2 * 128, 128, 2 * 128),
               (8 * 300 * 128, 300 * 128, 128))
    p = Problem(2, 8, 2, 300, 1024, 128, causal, strides=strides, seqused_k=112, block_table=4096, table_stride=16,
                page_size=64, num_pages=40)
    args = WG.launch_args(cfg, p, 0.1)(16, 32, 48, 64, 0)
    assert len(args) == len(params)
    for a, t in zip(args, params):
        if t != "TmaDesc":
            assert type(a) is NUMPY[t], (t, a)
    assert [int(a) for a in args[-4:]] == [4096, 16, 64, 40]
    assert len(made) == 3 and made[0][:6] == (16, "bf16", 2, 8, 300, 128)
    # K's and V's maps cover the pages as (num_pages, Hkv, page_size, D), 16-row boxes (one 16-key group)
    assert made[1] == (32, "bf16", 40, 2, 64, 128, strides[1], 16, 64)
    assert made[2] == (48, "bf16", 40, 2, 64, 128, strides[2], 16, 64)
    tma._CACHE.clear()
    with pytest.raises(ValueError, match="dense launches only"):
        WG.launch_args(cfg, Problem(2, 8, 2, 300, 1024, 128, causal, cu_seqlens_q=8, cu_seqlens_k=16, block_table=1,
                                    table_stride=16, page_size=64, num_pages=40, total_q=300, total_k=600), 0.1)


CASES = [(d, c, {}) for d in (64, 128, 256) for c in (False, True)] + \
        [(40, True, {}), (80, True, {}), (192, False, {}), (128, True, ALL), (64, False, ALL)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"d{c[0]}-{'causal' if c[1] else 'full'}{'-all' if c[2] else ''}")
def test_paged_configs_compile_without_spills(case):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    d, causal, flags = case
    cfg = paged(d, causal, **flags)
    report = afc.compile_kernel(cfg).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, (cfg.name, report)
