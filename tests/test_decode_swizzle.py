"""flash_decode_mma's swizzle knob without a GPU: its rules, name and shared memory; off renders the
template with the knob's blocks cut out (byte-identical to the template before the knob); on, the K/V
copies and ldmatrix reads address chunk c of row r at c ^ (r % 8) (checked here as a permutation that
keeps every ldmatrix phase conflict-free); configs with it compile for sm_80 / sm_90 with 0 spills."""
import re

import pytest

from autoflash.ops.decode import DECODE, DecodeConfig
from autoflash.ops.decode_kernels import MMA
from decode_sections import kernel_sections, module_kernels

# each {% if swizzle ... %} .. [{% else %} ..] {% endif %} with its whitespace control ({%- strips what precedes)
SWIZZLE_IF = re.compile(r"(\s*)\{%(-?) if swizzle (==|!=) \"true\" %\}(.*?)(?:(\s*)\{%(-?) else %\}(.*?))?"
                        r"(\s*)\{%(-?) endif %\}", re.S)

def cfg(**changes):
    base = dict(template="flash_decode_mma", arch="sm_90", dtype="bf16", head_dim=128, m_tiles=1, block_n=32,
                warps=4, stages=3, num_splits=0, l2_prefetch=128)
    return DecodeConfig(**{**base, **changes})


def test_rules_name_and_shared_memory():
    assert cfg(swizzle=True).name == "flash_decode_mma_sm_90_bf16_d128_mt1_bn32_w4_s3_pf128_swizzle"
    assert cfg().name == "flash_decode_mma_sm_90_bf16_d128_mt1_bn32_w4_s3_pf128"  # off: the old name
    assert cfg(swizzle=True).problems() == [] and cfg(swizzle=True, paged=True).problems() == []
    assert any("not with bulk_copy" in p for p in cfg(swizzle=True, bulk_copy=True, l2_prefetch=0).problems())
    assert any("head_dim < 64" in p for p in cfg(swizzle=True, head_dim=32, block_n=64).problems())
    assert MMA.knobs["swizzle"] == (False, True)  # in the tuner's space
    # unpadded K/V rows (+128 B to align them), Q still padded
    assert MMA.smem_bytes(cfg(swizzle=True)) == 96 + (16 * 136 + 4 * 3 * 2 * 32 * 128) * 2 + 128
    assert MMA.smem_bytes(cfg(swizzle=True)) < MMA.smem_bytes(cfg())


def _cut_source(source: str) -> str:
    """The template as it was before the knob: each swizzle conditional replaced by what Jinja renders
    for it with the knob off (its branch, minus the whitespace its tags strip)."""
    def off(m):
        lead, if_dash, op, body1, ws_else, else_dash, body2, ws_end, end_dash = m.groups()
        has_else = else_dash is not None
        if op == "==":
            kept = (body2 + ("" if end_dash else ws_end)) if has_else else ""
        else:
            kept = body1 + (("" if else_dash else ws_else) if has_else else ("" if end_dash else ws_end))
        return ("" if if_dash else lead) + kept
    return SWIZZLE_IF.sub(off, source)


@pytest.mark.parametrize("changes", [dict(), dict(head_dim=64, stages=4), dict(head_dim=256, block_n=16),
                                     dict(m_tiles=2, dtype="fp16"), dict(arch="sm_80", stages=2),
                                     dict(bulk_copy=True, l2_prefetch=0), dict(paged=True),
                                     dict(evict_first=True, fused_combine=True),
                                     dict(window=True, softcap=True, sinks=True, alibi=True),
                                     dict(paged=True, window=True, alibi=True), dict(head_dim=16, block_n=64)],
                         ids=lambda c: "-".join(c) or "plain")
def test_off_renders_the_template_without_the_knob(tmp_path, changes):
    from autoflash.kernels.render import environment, render, templates_dir

    source = (templates_dir() / MMA.template_file).read_text()
    cut = _cut_source(source)
    assert "swizzle" not in cut, [line for line in cut.splitlines() if "swizzle" in line]
    (tmp_path / MMA.template_file).write_text(cut)
    c = cfg(**changes)
    assert c.problems() == [], c.problems()
    assert render(c) == environment(str(tmp_path)).get_template(MMA.template_file).render(**MMA.values(c))


def test_on_renders_swizzled_copies_and_reads():
    from autoflash.kernels.render import render

    for paged in (False, True):
        src = render(cfg(swizzle=True, paged=paged))
        assert "constexpr int TILE = BLOCK_N * HEAD_DIM;" in src
        assert "(r * HEAD_DIM + ((c ^ (r & 7)) * 8)) * sizeof(elem_t)" in src
        assert src.count("cp_async_kv(d + kv_swizzled(") == 1 + paged
        assert src.count("ldmatrix_x4((k_addr + 2 * (p * 16 * HEAD_DIM + kk * 16)) ^ kv_sw,") == 2  # masked, not
        assert src.count("ldmatrix_x4_trans((v_addr + 2 * (kk * 16 * HEAD_DIM + p * 16)) ^ kv_sw,") == 2
        assert "% 128) / sizeof(elem_t);" in src  # K/V buffers from a 128-byte boundary


def swizzled(r: int, c: int, head_dim: int) -> int:
    """The template's kv_swizzled, in bytes (2-byte elements)."""
    return (r * head_dim + ((c ^ (r & 7)) * 8)) * 2


@pytest.mark.parametrize("head_dim", [64, 128, 256])
def test_the_swizzle_is_a_permutation_with_conflict_free_phases(head_dim):
    chunks = head_dim // 8
    rows = 64
    offsets = {swizzled(r, c, head_dim) for r in range(rows) for c in range(chunks)}
    assert offsets == {16 * i for i in range(rows * chunks)}  # every chunk of the buffer, once
    # ldmatrix: each 8-lane phase reads one 16-byte chunk of 8 consecutive rows (from a multiple of 8):
    # the 8 addresses must cover all 32 banks (8 x 16 B in distinct 16-byte bank groups)
    for r0 in range(0, rows, 8):
        for c in range(chunks):
            groups = {(swizzled(r0 + i, c, head_dim) % 128) // 16 for i in range(8)}
            assert len(groups) == 8
    # cp.async: 8 consecutive lanes write 8 consecutive chunks of one row: one whole 128-byte bank row
    for r in range(rows):
        for c0 in range(0, chunks, 8):
            addrs = sorted(swizzled(r, c0 + i, head_dim) for i in range(8))
            assert addrs[0] % 128 == 0 and addrs == list(range(addrs[0], addrs[0] + 128, 16))


@pytest.mark.parametrize("head_dim, block_n", [(64, 32), (128, 32), (128, 64), (256, 16)])
def test_the_ldmatrix_xor_form_is_kv_swizzled(head_dim, block_n):
    """The template's ldmatrix addresses, (unswizzled address) ^ ((lane % 8) << 4), equal kv_swizzled of the
    row and chunk each lane addresses (buffer base on a 128-byte boundary), for K (Q K^T) and V (P V)."""
    base = 3 * 128 * 64  # any multiple of 128
    for lane in range(32):
        sw = (lane % 8) << 4
        k_off = ((lane % 8) + (lane // 16) * 8) * head_dim + ((lane // 8) % 2) * 8
        v_off = ((lane % 8) + ((lane // 8) % 2) * 8) * head_dim + (lane // 16) * 8
        for kk in range(head_dim // 16):
            for p in range(block_n // 16):  # K: 16-key pairs of n-tiles
                row, chunk = (lane % 8) + (lane // 16) * 8 + p * 16, 2 * kk + (lane // 8) % 2
                got = (base + 2 * k_off + 2 * (p * 16 * head_dim + kk * 16)) ^ sw
                assert got == base + swizzled(row, chunk, head_dim)
        for kk in range(block_n // 16):
            for p in range(head_dim // 16):  # V: transposed, 16 keys x 16 columns
                row, chunk = (lane % 8) + ((lane // 8) % 2) * 8 + kk * 16, 2 * p + lane // 16
                got = (base + 2 * v_off + 2 * (kk * 16 * head_dim + p * 16)) ^ sw
                assert got == base + swizzled(row, chunk, head_dim)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("changes", [dict(), dict(block_n=16), dict(evict_first=True, fused_combine=True),
                                     dict(head_dim=64, stages=4), dict(head_dim=64, block_n=16, warps=8, stages=4),
                                     dict(head_dim=256, block_n=16),
                                     dict(block_n=16, m_tiles=2, dtype="fp16"),
                                     dict(block_n=64, warps=2, stages=2), dict(paged=True),
                                     dict(window=True, softcap=True, sinks=True, alibi=True, paged=True)],
                         ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()) or "plain")
def test_compiles_without_spills(arch, changes):
    pytest.importorskip("cupy")
    from autoflash.kernels.compile import compile_kernel

    c = cfg(arch=arch, swizzle=True, **changes)
    if arch == "sm_80" and c.problems():  # less shared memory: one stage fewer
        c = c.replace(stages=c.stages - 1)
    assert c.problems() == [], c.problems()
    compiled = compile_kernel(c, use_cache=False)
    sections = kernel_sections(compiled.log)
    assert set(sections) == module_kernels(c), compiled.log
    for name, text in sections.items():
        assert re.search(r"0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads", text), (name, text)
    if arch == "sm_90":  # the GPU's NVRTC 13.0 may differ: 8 registers of headroom, or (configs already at the
        # limit without the knob, bn64 w2 s2 D 128: 254) at most 2 more than the knob off
        off = c.replace(swizzle=False)
        regs = [int(re.search(r"Used (\d+) registers", t).group(1))
                for t in (sections[c.name], kernel_sections(compile_kernel(off, use_cache=False).log)[off.name])]
        assert regs[0] <= max(247, regs[1] + 2), regs


def test_the_default_swizzles_on_sm_90_only_and_not_d128_with_two_m_tiles():
    for head_dim in (64, 128, 256):
        for paged in (False, True):
            key = {"dtype": "bf16", "head_dim": head_dim, "m_tiles": 1, "paged": paged}
            assert DECODE.default("sm_90", key).swizzle and not DECODE.default("sm_80", key).swizzle
    assert DECODE.default("sm_90", {"dtype": "bf16", "head_dim": 64, "m_tiles": 2}).swizzle
    assert not DECODE.default("sm_90", {"dtype": "bf16", "head_dim": 128, "m_tiles": 2}).swizzle
