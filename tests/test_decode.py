"""Split-KV decode without a GPU: config rules, rendering, NVRTC compiles with no spills,
the split-count heuristic, the operation's registration and its problems, input checks."""
import math
import re

import pytest

from autoflash.kernels.config import ConfigError, OpConfig
from autoflash.ops import OPERATIONS, TEMPLATES
from autoflash.ops.decode import DECODE, DecodeConfig, DecodeProblem
from autoflash.serve.decode import decode_attention
from autoflash.ops.decode_kernels import HEAD_DIMS, MAX_SPLITS, MMA, m_tiles_for, split_heuristic
from decode_sections import kernel_sections, module_kernels


def cfg(**changes):
    base = dict(template="flash_decode_mma", arch="sm_90", dtype="bf16", head_dim=128, m_tiles=1, block_n=32,
                warps=4, stages=3, num_splits=0)
    return DecodeConfig(**{**base, **changes})


def test_registered_with_its_template():
    assert OPERATIONS["decode"] is DECODE
    assert TEMPLATES["flash_decode_mma"] is MMA


def test_name_is_deterministic_and_names_every_knob():
    assert cfg().name == "flash_decode_mma_sm_90_bf16_d128_mt1_bn32_w4_s3"
    assert cfg(num_splits=8).name.endswith("_ns8")


@pytest.mark.parametrize("changes, fragment", [
    (dict(block_n=24), "block_n=24"),
    (dict(warps=3), "warps=3"),
    (dict(head_dim=100), "head_dim 100"),  # decode takes every multiple of 8
    (dict(head_dim=256, m_tiles=2), "m_tiles * head_dim"),
    (dict(block_n=64, stages=6, warps=8), "shared memory"),
    (dict(dtype="fp32"), "dtype fp32"),
    (dict(stages=True), "stages must be an integer"),
    (dict(arch="sm_80", bulk_copy=True), "bulk_copy needs sm_90"),
    (dict(bulk_copy=True, l2_prefetch=256), "l2_prefetch applies to cp.async"),
    (dict(l2_prefetch=64), "l2_prefetch=64"),
])
def test_bad_configs_are_refused_with_the_reason(changes, fragment):
    problems = cfg(**changes).problems()
    assert problems and any(fragment in p for p in problems), problems
    with pytest.raises(ConfigError):
        cfg(**changes).validate()


def test_from_dict_round_trip_and_unknown_fields():
    c = cfg(num_splits=4)
    assert OpConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError):
        OpConfig.from_dict({**c.to_dict(), "evil": 1})


def test_smem_is_the_larger_of_pipeline_and_merge():
    c = cfg()
    stride = 128 + 8
    assert MMA.smem_bytes(c) == 96 + (16 + 4 * 3 * 2 * 32) * stride * 2  # 12 mbarriers, Q, K/V buffers
    tiny = cfg(block_n=16, stages=2, warps=8, m_tiles=2, head_dim=128)
    assert MMA.smem_bytes(tiny) == 128 + max((32 + 8 * 2 * 2 * 16) * stride * 2, 4 * 8 * 32 * (2 + 128 + 8))


def test_defaults_carry_the_measured_knobs():
    from autoflash.ops.decode_kernels import DEFAULT_L2_PREFETCH, MIN_SPLIT_KEYS

    c = DECODE.default("sm_90", {"dtype": "bf16", "head_dim": 128, "m_tiles": 1})
    assert c.l2_prefetch == DEFAULT_L2_PREFETCH == 128 and not (c.evict_first or c.fused_combine or c.bulk_copy)
    assert c.swizzle  # sm_90, D >= 64 (measured there); elsewhere the padded rows
    assert not DECODE.default("sm_80", {"dtype": "bf16", "head_dim": 128, "m_tiles": 1}).swizzle
    assert not DECODE.default("sm_90", {"dtype": "bf16", "head_dim": 32, "m_tiles": 1}).swizzle
    assert MIN_SPLIT_KEYS == 128


@pytest.mark.parametrize("arch", ["sm_80", "sm_86", "sm_89", "sm_90"])
@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_every_key_has_a_valid_default(arch, head_dim):
    for m_tiles in (1, 2):
        key = {"dtype": "fp16", "head_dim": head_dim, "m_tiles": m_tiles}
        if m_tiles * head_dim > 256:
            with pytest.raises(ValueError):
                DECODE.default(arch, key)
            continue
        c = DECODE.default(arch, key)
        assert c.problems() == [] and c.num_splits == 0


def test_render_fills_every_constant():
    from autoflash.kernels.render import render

    src = render(cfg(dtype="fp16"))
    assert "extern \"C\" __global__" in src and cfg(dtype="fp16").name + "_combine(" in src
    assert "constexpr int BLOCK_N = 32;" in src and "typedef __half elem_t;" in src
    assert "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" in src
    assert "{{" not in src and "{%" not in src


def test_cache_hint_and_fused_combine_knobs_render_their_code():
    from autoflash.kernels.render import render

    plain = render(cfg())
    assert "L2::cache_hint" not in plain and "L2::256B" not in plain and "merge_if_last_block" not in plain
    hinted = render(cfg(evict_first=True, l2_prefetch=256, fused_combine=True))
    assert "cp.async.cg.shared.global.L2::cache_hint.L2::256B" in hinted
    assert "createpolicy.fractional.L2::evict_first" in hinted and "merge_if_last_block(counters" in hinted
    bulk = render(cfg(bulk_copy=True, evict_first=True))
    assert "complete_tx::bytes.L2::cache_hint" in bulk
    assert cfg(l2_prefetch=128, evict_first=True, fused_combine=True).name.endswith("_pf128_evict_first_fused_combine")


KNOB_SETS = {"plain": {}, "bulk": dict(bulk_copy=True, l2_prefetch=0, swizzle=False),
             "hints+fused": dict(evict_first=True, l2_prefetch=256, fused_combine=True),
             "bulk+hint+fused": dict(bulk_copy=True, l2_prefetch=0, evict_first=True, fused_combine=True, swizzle=False)}


@pytest.mark.parametrize("arch, knobs", [("sm_80", "plain"), ("sm_80", "hints+fused"), ("sm_90", "plain"),
                                         ("sm_90", "bulk"), ("sm_90", "hints+fused"), ("sm_90", "bulk+hint+fused")])
@pytest.mark.parametrize("dtype, head_dim, m_tiles", [("bf16", 64, 1), ("bf16", 128, 1), ("fp16", 128, 2),
                                                      ("bf16", 256, 1)])
def test_nvrtc_compiles_both_kernels_without_spills(arch, knobs, dtype, head_dim, m_tiles):
    pytest.importorskip("cupy")
    from autoflash.kernels.compile import compile_kernel

    c = DECODE.default(arch, {"dtype": dtype, "head_dim": head_dim, "m_tiles": m_tiles}).replace(**KNOB_SETS[knobs])
    compiled = compile_kernel(c, use_cache=False)
    sections = kernel_sections(compiled.log)
    assert set(sections) == module_kernels(c), compiled.log
    for name, text in sections.items():
        assert re.search(r"0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads", text), (name, text)
        regs = int(re.search(r"Used (\d+) registers", text).group(1))
        assert regs <= 255


def test_split_heuristic_fills_the_gpu_and_is_one_when_full():
    slots = 132 * 2
    assert split_heuristic(2048, 1000, slots) == 1            # batch 256 x 8 KV heads: already full
    assert split_heuristic(8, 1, slots) == 1                  # one step: nothing to split
    s = split_heuristic(8, 1024, slots)                       # batch 1 x 8 KV heads, long cache
    waves = 8 * s / slots
    assert waves / math.ceil(waves) >= 0.8 and 8 * s <= slots  # 85 % of the best eligible count
    assert split_heuristic(1, 100_000, slots) <= MAX_SPLITS
    assert split_heuristic(1, 5, slots) <= 5                  # never more splits than steps


def test_split_heuristic_skips_counts_that_do_not_shorten_a_split():
    # 10 steps: 4 splits -> 3 steps each, 5 splits -> 2: but 4 is ineligible if 3 gives 4 steps too
    s = split_heuristic(1, 10, 1000)
    assert math.ceil(10 / s) != math.ceil(10 / (s - 1)) or s == 1


def test_m_tiles_follow_the_packed_rows():
    assert m_tiles_for(4, 128) == 1 and m_tiles_for(16, 128) == 1
    assert m_tiles_for(17, 128) == 2 and m_tiles_for(512, 64) == 2
    assert m_tiles_for(32, 256) == 1


def test_problems_of_the_operation():
    key = {"dtype": "bf16", "head_dim": 128, "m_tiles": 1}
    bench = DECODE.bench_problem(key, 8192, DECODE.default_tokens)
    p = DecodeProblem(**bench)
    assert p.batch * p.heads_kv * p.seq_k == DECODE.default_tokens and p.rows <= 16
    for problem in DECODE.check_problems(key) + DECODE.verify_problems(key, 4096):
        p = DecodeProblem(**problem)
        assert m_tiles_for(p.rows, p.head_dim) == 1
    key2 = {**key, "m_tiles": 2}
    assert all(m_tiles_for(DecodeProblem(**x).rows, 128) == 2 for x in DECODE.check_problems(key2))
    # bytes: Q and O once, K and V once per KV head
    p = DecodeProblem(2, 8, 2, 1, 100, 64, True)
    assert p.bytes_moved("bf16") == 2 * (2 * 2 * 8 * 1 * 64 + 2 * 2 * 100 * 2 * 64)
    assert DECODE.work(p.__dict__) == p.bytes_moved("bf16")


def test_non_torch_inputs_are_refused_before_anything_runs():
    import numpy as np

    q = np.zeros((1, 1, 8, 128), np.float16)
    with pytest.raises(ValueError, match="PyTorch CUDA tensors"):
        decode_attention(q, q, q)


def test_reference_matches_a_direct_computation():
    import numpy as np

    from autoflash.ops.decode_launch import reference_decode

    rng = np.random.default_rng(0)
    q = rng.standard_normal((3, 2, 4, 16))
    k = rng.standard_normal((3, 9, 2, 16))
    v = rng.standard_normal((3, 9, 2, 16))
    lengths = [0, 1, 7]
    out, lse = reference_decode(q, k, v, lengths, causal=True, scale=0.25)
    assert np.all(out[0] == 0) and np.all(np.isneginf(lse[0]))
    # sequence 1 (length 1): query 0 sits at position -1 (sees nothing), query 1 sees key 0
    assert np.all(out[1, 0] == 0) and np.allclose(out[1, 1, 3], v[1, 0, 1])
    # sequence 2, query token 0 at position 5 -> keys 0..5; head 3 reads KV head 1
    s = q[2, 0, 3] @ k[2, :6, 1].T * 0.25
    w = np.exp(s - s.max())
    assert np.allclose(out[2, 0, 3], (w / w.sum()) @ v[2, :6, 1])
    assert np.isclose(lse[2, 3, 0], np.log(np.exp(s).sum()))


def test_split_heuristic_keeps_nearly_every_sm_busy():
    # batch 1 x 8 KV heads, 32k cache, 128 keys a step, 132 SMs: 16 splits (128 blocks), not 14 (112)
    assert split_heuristic(8, 256, 132) == 16
    assert split_heuristic(1, 1024, 132) == 128  # MQA, batch 1: a block per SM but 4


D64_KEY = {"dtype": "bf16", "head_dim": 64, "m_tiles": 1, "paged": False}


def serve_only_entry(monkeypatch, tuned):
    """serve/decode finds only `tuned`, an H200 entry timed at batch 256 x 8 KV heads x 1024 keys (132 SMs)."""
    from autoflash.serve import decode as serve_decode

    entry = {"config": tuned.to_dict(), "problem": {"batch": 256, "heads_kv": 8, "group": 4, "seq_q": 1, "seq_k": 1024}}
    monkeypatch.setattr(serve_decode.dispatch, "select", lambda *a: tuned)
    monkeypatch.setattr(serve_decode.store, "entries_for_arch", lambda arch: [entry])
    monkeypatch.setattr(serve_decode.store, "lookup", lambda entries, *a: (entries[0], "tuned"))
    monkeypatch.setattr(serve_decode, "device_arch", lambda device: ("sm_90", "H200"))
    monkeypatch.setattr(serve_decode.decode_launch, "sm_count", lambda device: 132)
    serve_decode._entry_blocks.cache_clear()


def test_a_tuned_split_count_serves_only_its_own_grid(monkeypatch):
    from autoflash.serve import decode as serve_decode

    tuned = DECODE.default("sm_90", D64_KEY).replace(num_splits=2)
    serve_only_entry(monkeypatch, tuned)

    def chosen(batch, heads_kv=8):
        p = DecodeProblem(batch=batch, heads_q=4 * heads_kv, heads_kv=heads_kv, seq_q=1, seq_k=1024, head_dim=64,
                          causal=True)
        return serve_decode._choose_config(None, "bf16", p, 0).num_splits

    assert chosen(256) == 2                      # the grid it was timed on: the tuned count
    assert chosen(1) == 0 and chosen(256, 1) == 0  # other grids: the heuristic (0) decides
    pinned = tuned.replace(num_splits=3)          # a caller's own config keeps its count
    p = DecodeProblem(batch=1, heads_q=32, heads_kv=8, seq_q=1, seq_k=1024, head_dim=64, causal=True)
    assert serve_decode._choose_config(pinned, "bf16", p, 0).num_splits == 3
    serve_decode._entry_blocks.cache_clear()


def test_an_entry_rewritten_while_serving_is_seen_on_the_next_call(monkeypatch):
    """The own-grid look-up is cached by the tuned files' state (dispatch.recent_files_stamp), as dispatch.explain is:
    an entry re-tuned on another grid while the process runs stops pinning its split count to this one."""
    from autoflash.serve import decode as serve_decode

    tuned = DECODE.default("sm_90", D64_KEY).replace(num_splits=2)
    serve_only_entry(monkeypatch, tuned)
    stamp = [("sm_90.json", 1, 100)]
    monkeypatch.setattr(serve_decode.dispatch, "recent_files_stamp", lambda arch: tuple(stamp))
    p = DecodeProblem(batch=256, heads_q=32, heads_kv=8, seq_q=1, seq_k=1024, head_dim=64, causal=True)
    assert serve_decode._choose_config(None, "bf16", p, 0).num_splits == 2  # timed on this grid
    moved = {"config": tuned.to_dict(), "problem": {"batch": 8, "heads_kv": 8, "group": 4, "seq_q": 1, "seq_k": 1024}}
    monkeypatch.setattr(serve_decode.store, "entries_for_arch", lambda arch: [moved])
    assert serve_decode._choose_config(None, "bf16", p, 0).num_splits == 2  # same files' state: the cached answer
    stamp[0] = ("sm_90.json", 2, 101)  # the file rewritten
    assert serve_decode._choose_config(None, "bf16", p, 0).num_splits == 0  # another grid's entry: the heuristic
    serve_decode._entry_blocks.cache_clear()


def test_one_split_grids_over_short_caches_get_lighter_buffers(monkeypatch):
    from autoflash.ops import decode_kernels
    from autoflash.ops.decode_kernels import SHORT_CACHE_KEYS, SHORT_CACHE_KNOBS, lighter_buffers

    def cfg(arch="sm_90", head_dim=64, m_tiles=1):
        return DECODE.default(arch, {"dtype": "bf16", "head_dim": head_dim, "m_tiles": m_tiles})

    for head_dim in (64, 128):
        light = lighter_buffers(cfg(head_dim=head_dim), SHORT_CACHE_KEYS, 132, 132)
        assert light == cfg(head_dim=head_dim).replace(**SHORT_CACHE_KNOBS) and not light.problems()
        assert MMA.smem_bytes(light) < MMA.smem_bytes(cfg(head_dim=head_dim))
    assert lighter_buffers(cfg().replace(num_splits=1), 1024, 512, 132).block_n == SHORT_CACHE_KNOBS["block_n"]
    # not measured, under a block an SM, or not one split of a short cache: unchanged
    for c, keys, blocks in ((cfg(), SHORT_CACHE_KEYS + 1, 512), (cfg().replace(num_splits=2), 1024, 512),
                            (cfg(), 1024, 131), (cfg(arch="sm_80"), 1024, 512),
                            (cfg(head_dim=256), 1024, 512), (cfg(head_dim=32), 1024, 512),
                            (cfg(m_tiles=2), 1024, 512)):
        assert lighter_buffers(c, keys, blocks, 132) == c
    monkeypatch.setattr(decode_kernels, "SHORT_CACHE_KEYS", 0)  # the switch off
    assert lighter_buffers(cfg(), 1024, 512, 132) == cfg()


def test_one_split_grids_of_few_waves_over_long_caches_get_fewer_stages(monkeypatch):
    from autoflash.ops import decode_kernels
    from autoflash.ops.decode_kernels import LONG_CACHE_KEYS, LONG_CACHE_RULES, LONG_CACHE_WAVES, lighter_buffers

    def tuned(head_dim, stages):
        return DECODE.default("sm_90", {"dtype": "bf16", "head_dim": head_dim, "m_tiles": 1}).replace(stages=stages)

    d64, d128 = tuned(64, 5), tuned(128, 3)  # the H200 entries' stages
    light64, light128 = (c.replace(**LONG_CACHE_RULES[c.head_dim][1]) for c in (d64, d128))
    for c, light in ((d64, light64), (d128, light128)):
        assert not light.problems() and MMA.smem_bytes(light) < MMA.smem_bytes(c)
    for c, light, keys, blocks in ((d64, light64, LONG_CACHE_KEYS, 512), (d64, light64, 131072, 256),
                                   (d64, light64, 8192, 132), (d64, light64, 32768, LONG_CACHE_WAVES * 132),
                                   (d128, light128, 8192, 512), (d128, light128, 32768, 264)):
        assert lighter_buffers(c, keys, blocks, 132) == light, (c.name, keys, blocks)
    # not measured or not faster: between the short and long ranges, past LONG_CACHE_WAVES blocks an SM (2048 blocks:
    # level or -1 %), under a block an SM (D 128: two; 256 blocks were level), a split cache, other head dims, a
    # config already at the rule's stages or fewer
    d256 = tuned(256, 3)
    for c, keys, blocks in ((d64, LONG_CACHE_KEYS - 1, 512), (d64, 8192, LONG_CACHE_WAVES * 132 + 1),
                            (d64, 8192, 2048), (d64, 8192, 131), (d64.replace(num_splits=2), 8192, 512),
                            (light64, 8192, 512), (d64.replace(stages=2), 8192, 512), (d128, 8192, 256),
                            (d128, 8192, 2048), (light128, 8192, 512), (d256, 8192, 512)):
        assert lighter_buffers(c, keys, blocks, 132) == c, (c.name, keys, blocks)
    monkeypatch.setattr(decode_kernels, "LONG_CACHE_WAVES", 0)  # the switch off
    assert lighter_buffers(d64, 8192, 512, 132) == d64 and lighter_buffers(d128, 8192, 512, 132) == d128


def test_the_short_cache_knobs_leave_a_tuned_entry_on_its_own_grid(monkeypatch):
    from autoflash.ops.decode_kernels import LONG_CACHE_RULES, SHORT_CACHE_KNOBS
    from autoflash.serve import decode as serve_decode

    tuned = DECODE.default("sm_90", D64_KEY).replace(stages=5)
    serve_only_entry(monkeypatch, tuned)

    def chosen(batch, seq_k=1024):
        p = DecodeProblem(batch=batch, heads_q=32, heads_kv=8, seq_q=1, seq_k=seq_k, head_dim=64, causal=True)
        return serve_decode._choose_config(None, "bf16", p, 0)

    assert chosen(256) == tuned                                   # the grid it was timed on
    assert chosen(64) == tuned.replace(**SHORT_CACHE_KNOBS)       # 512 blocks, one split, 1k keys
    assert chosen(64, 8192) == tuned.replace(**LONG_CACHE_RULES[64][1])  # 512 blocks, one split, 8k keys
    assert chosen(128, 8192) == tuned and chosen(1) == tuned      # 1024 blocks: past 4 an SM; a grid that splits
    assert chosen(8) == tuned                                     # 64 blocks, one split: under a block an SM
    serve_decode._entry_blocks.cache_clear()


def test_a_paged_cache_is_served_the_contiguous_config_and_split_count(monkeypatch):
    """The H200 bucket-65536 paged entry (2 warps x 16 keys, 16 splits, timed on batch 4 x 8 KV heads) ran
    batch 1 at 0.67x contiguous with the heuristic's split count: off its grid a paged cache now gets what
    the contiguous cache gets (knobs and split count, paged set); on its grid the paged entry."""
    from autoflash.serve import decode as serve_decode

    key = {"dtype": "bf16", "head_dim": 128, "m_tiles": 1, "paged": False}
    contig = DECODE.default("sm_90", key).replace(num_splits=16)
    paged = DECODE.default("sm_90", {**key, "paged": True}).replace(block_n=16, warps=2, stages=2, num_splits=16,
                                                                     evict_first=True)
    timed = {"batch": 4, "heads_kv": 8, "group": 4, "seq_q": 1, "seq_k": 65536}
    entries = [{"config": contig.to_dict(), "problem": timed, "paged": False},
               {"config": paged.to_dict(), "problem": {**timed, "page_size": 16}, "paged": True}]
    monkeypatch.setattr(serve_decode.dispatch, "select", lambda *a: contig)
    monkeypatch.setattr(serve_decode.store, "entries_for_arch", lambda arch: entries)
    monkeypatch.setattr(serve_decode.store, "lookup", lambda entries, device, op, k, n: (entries[k["paged"]], "tuned"))
    monkeypatch.setattr(serve_decode, "device_arch", lambda device: ("sm_90", "H200"))
    monkeypatch.setattr(serve_decode.decode_launch, "sm_count", lambda device: 132)
    serve_decode._entry_blocks.cache_clear()
    serve_decode._paged_config.cache_clear()

    def served(batch, page):
        p = DecodeProblem(batch=batch, heads_q=32, heads_kv=8, seq_q=1, seq_k=32768, head_dim=128, causal=True,
                          page_size=page, num_pages=batch * 32768 // max(page, 1) if page else 0)
        return serve_decode._choose_config(None, "bf16", p, 0)

    for page in (16, 64):
        assert served(1, page) == served(1, 0).replace(paged=True)  # batch 1: the contiguous config, heuristic splits
        assert served(1, page).num_splits == 0 and served(1, page).block_n == contig.block_n
        assert served(4, page) == paged  # the paged entry's own grid: its config and 16 splits
    assert served(4, 0) == contig      # the contiguous entry's own grid keeps its count
    serve_decode._entry_blocks.cache_clear()
    serve_decode._paged_config.cache_clear()


def test_grids_that_fill_much_of_the_gpu_split_only_long_caches(monkeypatch):
    from autoflash.ops import decode_launch
    from autoflash.ops.decode_kernels import FILLED_MIN_SPLIT_KEYS, MIN_SPLIT_KEYS, min_split_keys

    assert min_split_keys(8, 132) == MIN_SPLIT_KEYS and min_split_keys(64, 132) == FILLED_MIN_SPLIT_KEYS
    monkeypatch.setattr(decode_launch, "sm_count", lambda device_id: 132)
    kernel = type("K", (), {"config": DECODE.default("sm_90", {"dtype": "bf16", "head_dim": 128, "m_tiles": 1}),
                            "device_id": 0})()

    def splits(batch, heads_kv, seq_k):
        p = DecodeProblem(batch=batch, heads_q=4 * heads_kv, heads_kv=heads_kv, seq_q=1, seq_k=seq_k, head_dim=128,
                          causal=True)
        return decode_launch.choose_splits(kernel, p)

    # H200 probe (64 blocks): 1 split faster at 1024 keys, 2 at 4096 and 8192; batch 1 still splits short caches
    assert (splits(8, 8, 1024), splits(8, 8, 4096), splits(8, 8, 8192)) == (1, 2, 2)
    assert splits(1, 8, 1024) == 8 and splits(1, 8, 32768) == 16
