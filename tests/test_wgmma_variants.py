"""flash_fwd_wgmma's variants and head dims (issue 17) and varlen launches (issue 15) without a
GPU: every combination of window / softcap / sinks / alibi renders, and compiles for sm_90a without
spills; the plain kernels carry none of the variants' code; the register rule keeps softcap/ALiBi
off three consumer warpgroups; every multiple of 8 as head dim renders (tiles padded to 64-column
blocks in shared memory, the tensor maps exact) and a spread of them compiles; varlen launches
build their tensor maps over the packed tensors. GPU correctness: tests/test_variants_gpu.py and
tests/test_varlen_gpu.py (-k wgmma), tests/test_wgmma_head_dims_gpu.py."""
import itertools
import re

import pytest

from autoflash.kernels import tma
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render
from autoflash.ops.forward_base import VARIANT_FLAGS, Problem

WG = TEMPLATES["flash_fwd_wgmma"]
COMBOS = [dict(zip(VARIANT_FLAGS, f)) for f in itertools.product((False, True), repeat=4)]


def key(d: int, causal: bool, **flags) -> dict:
    return {"dtype": "bf16", "head_dim": d, "causal": causal, **flags}


def combo_id(flags: dict) -> str:
    return "+".join(f for f in VARIANT_FLAGS if flags[f]) or "plain"


@pytest.mark.parametrize("flags", COMBOS, ids=combo_id)
@pytest.mark.parametrize("d,causal", [(64, False), (64, True), (128, False), (128, True), (256, True)])
def test_every_combination_renders_with_its_constants(flags, d, causal):
    cfg = WG.default("sm_90a", key(d, causal, **flags))
    assert not cfg.problems()
    source = render(cfg)
    for flag in VARIANT_FLAGS:
        assert f"constexpr bool {flag.upper()} = {'true' if flags[flag] else 'false'};" in source
    assert all(f"_{f}" in cfg.name for f in VARIANT_FLAGS if flags[f])


# D 64 without causal (three consumer warpgroups where the registers allow it) and D 128 causal
# (two, ping-pong) for every combination; both causalities of the heaviest combination at D 64.
# Head dims off the 64-column grid: below one block (8, all variants), 2.5 k-steps (40), 1.25 blocks (80),
# 3.125 blocks (200).
ALL = dict.fromkeys(VARIANT_FLAGS, True)
COMPILED = [(64, False, f) for f in COMBOS] + [(128, True, f) for f in COMBOS] + [
    (64, True, ALL), (128, False, ALL), (8, True, ALL), (40, False, ALL), (80, True, COMBOS[0]), (200, False, ALL)]


@pytest.mark.parametrize("d,causal,flags", COMPILED, ids=lambda x: combo_id(x) if isinstance(x, dict) else str(x))
def test_every_combination_compiles_for_sm90a_without_spills(d, causal, flags):
    from autoflash.kernels.compile import compile_kernel

    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    compiled = compile_kernel(WG.default("sm_90a", key(d, causal, **flags)))
    assert compiled.report.spills == 0 and not compiled.report.wgmma_serialized, compiled.report
    assert compiled.report.stack_frame == 0, compiled.report
    assert "C7508" not in compiled.log, "ptxas ignored setmaxnreg"


# kernel parameter index of each variant argument (shared 23 + 3 tensor maps + batch, then the tail)
VARIANT_PARAMS = {"window_left": 30, "window_right": 31, "softcap": 32, "sinks": 33, "alibi_slopes": 34,
                  "alibi_batch_stride": 35}
FLAG_PARAMS = {"window": ("window_left", "window_right"), "softcap": ("softcap",), "sinks": ("sinks",),
               "alibi": ("alibi_slopes", "alibi_batch_stride")}


def loaded_params(cfg) -> set[int]:
    """Indices of the kernel parameters the optimised PTX reads (dead code is gone by then)."""
    cupy = pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import include_dir

    nvrtc = cupy.cuda.nvrtc
    prog = nvrtc.createProgram(render(cfg), f"{cfg.name}.cu", [], [])
    try:
        nvrtc.compileProgram(prog, ["--gpu-architecture=compute_90a", "--use_fast_math", "--std=c++17",
                                    f"-I{include_dir()}"])
        ptx = nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    return {int(i) for i in re.findall(rf"ld\.param\.\w+\s+%\w+, \[{cfg.name}_param_(\d+)", ptx)}


@pytest.mark.parametrize("flag", [None, *VARIANT_FLAGS])
def test_only_a_kernels_own_variants_read_their_arguments(flag):
    """Every variant sits behind `if constexpr`: a kernel reads exactly its own variants' arguments,
    so the plain kernel keeps none of their code (and the cu_seqlens/seqused_k pointers, run-time
    switches, are read by every kernel)."""
    cfg = WG.default("sm_90a", key(128, True, **({flag: True} if flag else {})))
    shift = int(WG.o_store_tma(cfg))  # a TMA O store's kernel takes O's map (index 26) before the batch
    read = {i - shift if i >= 26 else i for i in loaded_params(cfg)}
    own = {VARIANT_PARAMS[n] for n in FLAG_PARAMS.get(flag, ())}
    assert read & set(VARIANT_PARAMS.values()) == own
    assert {27, 28, 29} <= read  # cu_seqlens_q, cu_seqlens_k, seqused_k


@pytest.mark.parametrize("d", range(8, 257, 8))
def test_every_multiple_of_8_renders_padded_to_whole_column_blocks(d):
    cfg = WG.default("sm_90a", key(d, d % 16 == 0))
    assert not cfg.problems()
    source = render(cfg)
    assert f"constexpr int HEAD_DIM = {d};" in source
    assert f"wgmma.mma_async.sync.aligned.m64n{d}k16" in source  # O += P V: N = the head dim exactly
    cols = -(-d // 64) * 64
    assert WG.smem_layout(cfg)["kv_bytes"] == cfg.block_n * cols * 2


def test_softcap_and_alibi_take_three_consumer_warpgroups_only_with_room_for_their_registers():
    """Three consumers get 160 registers each: softcap/ALiBi fit beside a smaller K/V tile (ptxas, 0 B spilled:
    softcap D 128 block_n 64, ALiBi D 128 block_n 80, both D 64 block_n 96), not beside the plain D 64 tile (block_n
    128 spilled 44 B); the defaults stay on two consumers (three measured 4-13 % slower on the H200, s15b)."""
    plain = WG.default("sm_90a", key(64, False))
    assert plain.block_m == 192 and plain.block_n == 128
    for flags in ({"softcap": True}, {"alibi": True}):
        assert any("three consumer warpgroups" in p for p in plain.replace(**flags).problems())
        assert not plain.replace(block_n=96, **flags).problems()
        widest = 64 if "softcap" in flags else 80
        d128 = WG.config("sm_90a", key(128, False, **flags), block_m=192, block_n=widest, warps=16, stages=2)
        assert not d128.problems()
        assert any("three consumer warpgroups" in p for p in d128.replace(block_n=widest + 16).problems())
        assert WG.default("sm_90a", key(64, False, **flags)).block_m == 128
    for flags in ({"window": True}, {"sinks": True}):
        assert WG.default("sm_90a", key(64, False, **flags)).block_m == 192


@pytest.fixture
def captured_geometry(monkeypatch):
    """The geometry each tensor map of a launch would be encoded with (no driver needed)."""
    seen = []

    def fake_map(ptr, dtype, batch, heads, rows, head_dim, strides, box_rows, box_cols=64):
        seen.append((ptr, batch, heads, rows, tuple(strides), box_rows, head_dim, box_cols))
        return type("M", (), {"kernel_arg": lambda self: "map"})()

    monkeypatch.setattr(tma, "attention_operand_map", fake_map)
    monkeypatch.setattr(tma, "_QKV_CACHE", tma._MapCache(size=4))
    return seen


def test_varlen_maps_cover_the_packed_tensors(captured_geometry):
    cfg = WG.default("sm_90a", key(128, True))
    hq, hkv, d = 8, 2, 128
    packed_q, packed_kv = (0, d, hq * d), (0, d, hkv * d)
    p = Problem(3, hq, hkv, 700, 900, d, True, causal_offset=1 << 30, strides=(packed_q, packed_kv, packed_kv, packed_q),
                cu_seqlens_q=4096, cu_seqlens_k=8192, total_q=1500, total_k=2000)
    args = WG.launch_args(cfg, p, 0.1)(16, 32, 48, 64, 80)
    (mq, bq, hq_, rows_q, sq, box_q, *_), (mk, bk, hk_, rows_k, sk, box_k, *_), (mv, *_) = captured_geometry
    assert (mq, mk, mv) == (16, 32, 48)
    assert (bq, bk) == (1, 1)  # one batch: the packed tokens
    assert (hq_, rows_q, box_q) == (hq, 1500, cfg.block_m) and (hk_, rows_k, box_k) == (hkv, 2000, cfg.block_n)
    assert sq[1:] == (d, hq * d) and sk[1:] == (d, hkv * d)
    assert sq[0] >= 1500 * hq * d and sk[0] >= 2000 * hkv * d  # the single batch's stride past every element
    assert int(args[26]) == 3  # the kernel's batch: the number of sequences
    assert [int(a) for a in args[27:29]] == [4096, 8192]


def test_dense_maps_keep_the_batch(captured_geometry):
    cfg = WG.default("sm_90a", key(64, False))
    WG.launch_args(cfg, Problem(2, 4, 4, 300, 500, 64, False), 0.1)(16, 32, 48, 64, 0)
    assert [(g[1], g[3]) for g in captured_geometry] == [(2, 300), (2, 500), (2, 500)]


def test_maps_of_an_odd_head_dim_end_at_the_head_dim(captured_geometry):
    """D 80: the maps' inner extent is 80 (TMA zero-fills columns 80..127 of the second block in
    shared memory; no padding is read from global memory), boxes stay 64 columns wide."""
    cfg = WG.default("sm_90a", key(80, False))
    WG.launch_args(cfg, Problem(1, 2, 2, 100, 100, 80, False), 0.1)(16, 32, 48, 64, 0)
    assert {(g[6], g[7]) for g in captured_geometry} == {(80, 64)}


def test_varlen_without_token_counts_is_refused():
    cfg = WG.default("sm_90a", key(128, False))
    p = Problem(2, 4, 4, 300, 500, 128, False, cu_seqlens_q=4096, cu_seqlens_k=8192)
    with pytest.raises(ValueError, match="total_q"):
        WG.launch_args(cfg, p, 0.1)
