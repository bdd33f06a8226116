"""Attention variants in split-KV decode (issue 17 on issue 14's operation) without a GPU: the
float64 decode reference against ops/reference.py's reference_attention (bottom-right offset) for
every flag combination, config names and key flags, the operation's variant problems, the plan's
argument tail against the rendered signature, what the template renders, and NVRTC/ptxas: every
flag combination compiles for sm_80 and sm_90 with no spills. The GPU side:
tests/test_decode_variants_gpu.py."""
import itertools
import re

import numpy as np
import pytest

from autoflash.kernels.config import OpConfig
from autoflash.key_flags import with_new_flags
from autoflash.ops.decode import CHECK_WINDOW, DECODE, VARIANT_VALUES, DecodeProblem
from autoflash.ops.decode_kernels import VARIANT_FLAGS, DecodeConfig
from autoflash.ops.decode_launch import DecodePlan, reference_decode
from autoflash.ops.reference import reference_attention
from fake_decode_kernel import FakeKernel, launch_args_by_name
from decode_sections import kernel_sections, module_kernels

KEY = {"dtype": "bf16", "head_dim": 128, "m_tiles": 1}
COMBOS = [dict(zip(VARIANT_FLAGS, bits)) for bits in itertools.product((False, True), repeat=4)]


def combo_id(flags: dict) -> str:
    return "+".join(f for f, on in flags.items() if on) or "plain"


# ------------------------------------------------------------------ reference
def _variant_values(flags, rng, batch, hq, causal, left):
    window = (left, 0 if causal else 2) if flags["window"] else (-1, -1)
    softcap = 5.0 if flags["softcap"] else 0.0
    sinks = None
    if flags["sinks"]:
        sinks = rng.uniform(-2, 2, hq)
        sinks[0], sinks[-1] = -np.inf, 30.0  # no sink; a sink above every logit
    slopes = rng.uniform(0.01, 0.5, (batch, hq)) if flags["alibi"] else None
    return window, softcap, sinks, slopes


@pytest.mark.parametrize("flags", COMBOS, ids=combo_id)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seq_q, hq, hkv", [(1, 8, 2), (4, 4, 1), (3, 2, 2)])
def test_reference_decode_matches_reference_attention_bottom_right(flags, causal, seq_q, hq, hkv):
    """Each sequence b (its first L keys; lengths 0, 1, short, full) against the forward's float64
    reference with causal_offset = L - Nq: the same diagonal for causal, window and ALiBi."""
    rng = np.random.default_rng(hash((combo_id(flags), causal, seq_q)) % 2**32)
    batch, nk, d, left = 4, 40, 16, 5
    q = rng.standard_normal((batch, seq_q, hq, d)) * 2
    k, v = rng.standard_normal((2, batch, nk, hkv, d))
    lengths = [0, 1, 17, nk]
    window, softcap, sinks, slopes = _variant_values(flags, rng, batch, hq, causal, left)
    # slopes per batch and head; per-head slopes are the (Hq,) case of the same rule
    out, lse = reference_decode(q, k, v, lengths, causal=causal, scale=0.3, window=window, softcap=softcap,
                                sinks=sinks, alibi_slopes=slopes)
    for b, n in enumerate(lengths):
        ref, ref_lse = reference_attention(
            q[b:b + 1].transpose(0, 2, 1, 3), k[b:b + 1, :n].transpose(0, 2, 1, 3),
            v[b:b + 1, :n].transpose(0, 2, 1, 3), causal=causal, scale=0.3, causal_offset=n - seq_q, window=window,
            softcap=softcap, sinks=sinks, alibi_slopes=None if slopes is None else slopes[b])
        np.testing.assert_allclose(out[b], ref[0].transpose(1, 0, 2), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(np.isneginf(lse[b]), np.isneginf(ref_lse[0]))
        finite = np.isfinite(ref_lse[0])
        np.testing.assert_allclose(lse[b][finite], ref_lse[0][finite], rtol=1e-12, atol=1e-12)


def test_reference_decode_rows_without_a_key_take_the_sink():
    q = np.ones((2, 2, 2, 4))
    k = v = np.ones((2, 8, 1, 4))
    sinks = np.array([-np.inf, 1.5])
    out, lse = reference_decode(q, k, v, [0, 8], causal=True, scale=1.0, sinks=sinks, window=(0, 0))
    assert np.all(out[0] == 0) and np.isneginf(lse[0, 0]).all() and np.all(lse[0, 1] == 1.5)
    # window (0, 0): each query sees its own diagonal key only; with a sink the weight is e^s / (e^s + e^sink)
    s = 4.0
    assert np.allclose(out[1, :, 1], 1 / (1 + np.exp(1.5 - s)))
    assert np.allclose(lse[1, 1], np.log(np.exp(s) + np.exp(1.5))) and np.allclose(out[1, :, 0], 1.0)


# ------------------------------------------------------------------ configs and keys
def test_flags_are_key_fields_and_name_parts_plain_names_unchanged():
    assert DECODE.key_fields[-4:] == VARIANT_FLAGS
    assert all(DECODE.key_defaults[f] == (False,) for f in VARIANT_FLAGS)
    plain = DECODE.default("sm_90", KEY)
    assert plain.name == "flash_decode_mma_sm_90_bf16_d128_mt1_bn32_w4_s3_pf128_swizzle"
    names = {DECODE.default("sm_90", {**KEY, **flags}).name for flags in COMBOS}
    assert len(names) == 16
    every = DECODE.default("sm_90", {**KEY, **dict.fromkeys(VARIANT_FLAGS, True)})
    assert every.name == plain.name + "_window_softcap_sinks_alibi"
    assert all(DECODE.key_of(every)[f] is True for f in VARIANT_FLAGS)
    assert "window softcap sinks alibi" in DECODE.describe_key(DECODE.key_of(every))
    assert DECODE.describe_key(KEY) == "bf16 d128 rows<=16"


def test_entries_written_before_the_variants_read_as_plain():
    old = {k: v for k, v in DECODE.default("sm_90", KEY).to_dict().items() if k not in VARIANT_FLAGS}
    c = OpConfig.from_dict(old)
    assert isinstance(c, DecodeConfig) and not any(getattr(c, f) for f in VARIANT_FLAGS)
    entry = with_new_flags({"op": "decode", "dtype": "bf16", "head_dim": 128, "m_tiles": 1, "paged": False})
    assert all(entry[f] is False for f in VARIANT_FLAGS)


def test_variant_keys_get_problems_with_their_values():
    key = {**KEY, **dict.fromkeys(VARIANT_FLAGS, True)}
    bench = DecodeProblem(**DECODE.bench_problem(key, 65536, DECODE.default_tokens))
    assert (bench.window_left, bench.window_right, bench.softcap) == (4096, 0, 30.0) and bench.sinks and bench.alibi
    assert bench.key_span == 4096 + 1 + 15  # a 4096-key window over a 64k cache: the bytes it reads
    assert bench.bytes_moved("bf16") < DecodeProblem(**DECODE.bench_problem(KEY, 65536, DECODE.default_tokens)
                                                     ).bytes_moved("bf16") / 8
    for x in DECODE.check_problems(key):
        p = DecodeProblem(**x)
        assert p.window_left == CHECK_WINDOW["window_left"] and p.variant_flags() == {f: True for f in VARIANT_FLAGS}
    assert any(DecodeProblem(**x).seq_k > 2 * CHECK_WINDOW["window_left"] for x in DECODE.check_problems(key))
    assert all(DecodeProblem(**x).variant_flags() == dict.fromkeys(VARIANT_FLAGS, False)
               for x in DECODE.check_problems(KEY) + DECODE.verify_problems(KEY, 1024))
    assert set(VARIANT_VALUES) == set(VARIANT_FLAGS)


def test_key_span_bounds_the_keys_a_window_reads():
    p = DecodeProblem(1, 8, 1, 4, 131072, 128, True, window_left=4096, window_right=0)
    assert p.key_span == 4096 + 4 + 15 and p.variant_flags()["window"]
    assert DecodeProblem(1, 8, 1, 4, 1000, 128, True, window_left=4096).key_span == 1000
    assert DecodeProblem(1, 8, 1, 4, 1000, 128, True).key_span == 1000


# ------------------------------------------------------------------ plan and render
@pytest.mark.parametrize("flags", [COMBOS[0], COMBOS[-1]], ids=combo_id)
def test_plan_passes_the_variant_tail_in_the_kernels_order(flags, monkeypatch):
    from autoflash.kernels.render import render
    from autoflash.ops import decode_kernels

    monkeypatch.setattr(decode_kernels, "PDL_COMBINE", False)  # both launches through CuPy (the programmatic
    # launch's packing: tests/test_decode_combine.py); _combine_lanes has _combine's parameters

    c = DECODE.default("sm_90", {**KEY, **flags})
    src = render(c)
    p = DecodeProblem(2, 8, 2, 1, 64, 128, True, window_left=7 if flags["window"] else -1,
                      window_right=0 if flags["window"] else -1, softcap=30.0 if flags["softcap"] else 0.0,
                      sinks=flags["sinks"], alibi=flags["alibi"], alibi_per_batch=flags["alibi"])
    kernel = FakeKernel(c)
    plan = DecodePlan(kernel, p, tuple(range(1, 13)), 2, 0.1)
    plan(1, 2, 3, 4, 5, 6, 7, 8, None, 0, 111, 222)
    for fn, name in ((kernel.function, c.name), (kernel.combine, c.name + "_combine")):
        assert int(launch_args_by_name(src, name, fn.calls[0])["sinks"]) == 111
    named = launch_args_by_name(src, c.name, kernel.function.calls[0])
    assert int(named["alibi_slopes"]) == 222
    assert (int(named["window_left"]), int(named["window_right"])) == ((7, 0) if flags["window"] else (-1, -1))
    assert float(named["softcap"]) == (30.0 if flags["softcap"] else 0.0)
    assert int(named["alibi_batch_stride"]) == (8 if flags["alibi"] else 0)


def test_plan_refuses_a_kernel_without_the_problems_flags():
    p = DecodeProblem(2, 8, 2, 1, 64, 128, True, softcap=30.0)
    with pytest.raises(ValueError, match="variant flags"):
        DecodePlan(FakeKernel(DECODE.default("sm_90", KEY)), p, tuple(range(12)), 1, 0.1)
    with pytest.raises(ValueError, match="variant flags"):  # and not a softcap kernel for a plain problem
        DecodePlan(FakeKernel(DECODE.default("sm_90", {**KEY, "softcap": True})),
                   DecodeProblem(2, 8, 2, 1, 64, 128, True), tuple(range(12)), 1, 0.1)


def test_render_declares_the_flags_and_plain_kernels_keep_no_variant_code_path():
    from autoflash.kernels.render import render

    plain = render(DECODE.default("sm_90", KEY))
    assert all(f"constexpr bool {f.upper()} = false;" in plain for f in VARIANT_FLAGS)
    every = render(DECODE.default("sm_90", {**KEY, **dict.fromkeys(VARIANT_FLAGS, True)}))
    assert all(f"constexpr bool {f.upper()} = true;" in every for f in VARIANT_FLAGS)
    assert "key_lo = (seq_k - seq_q - window_left) & ~15" in every  # the splits cover the window's keys
    assert "finish_with_sink(m, l, s_sink2[r], row_lse)" in every and "exp2f(s * cap_in)" in every


# ------------------------------------------------------------------ NVRTC / ptxas
def _compile_clean(c):
    from autoflash.kernels.compile import compile_kernel

    sections = kernel_sections(compile_kernel(c, use_cache=False).log)
    assert set(sections) == module_kernels(c)
    for name, text in sections.items():
        assert re.search(r"0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads", text), (name, text)


@pytest.mark.parametrize("arch, m_tiles", [("sm_80", 1), ("sm_90", 2)])  # sm_90 mt2 D128: 254 registers plain
@pytest.mark.parametrize("flags", COMBOS[1:], ids=combo_id)
def test_every_flag_combination_compiles_without_spills(arch, m_tiles, flags):
    pytest.importorskip("cupy")
    _compile_clean(DECODE.default(arch, {**KEY, "m_tiles": m_tiles, **flags}))


ALL = dict.fromkeys(VARIANT_FLAGS, True)


@pytest.mark.parametrize("arch, key, knobs", [
    ("sm_80", dict(head_dim=64), {}), ("sm_80", dict(head_dim=128, m_tiles=2), {}),
    ("sm_90", dict(head_dim=256), {}), ("sm_90", dict(dtype="fp16", head_dim=128, m_tiles=2), {}),
    ("sm_80", dict(head_dim=128, paged=True), {}), ("sm_90", dict(head_dim=64, paged=True), {}),
    ("sm_90", dict(head_dim=128), dict(bulk_copy=True, l2_prefetch=0, swizzle=False)),
    ("sm_90", dict(head_dim=64), dict(fused_combine=True, evict_first=True)),
    ("sm_80", dict(head_dim=128), dict(fused_combine=True))])
def test_all_four_flags_compile_without_spills_across_the_templates_shapes(arch, key, knobs):
    pytest.importorskip("cupy")
    _compile_clean(DECODE.default(arch, {**KEY, **key, **ALL}).replace(**knobs))
