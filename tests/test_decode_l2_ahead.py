"""flash_decode_mma's l2_ahead knob without a GPU: its rules and name, off renders the template with the
knob's blocks cut out (byte-identical to the template before the knob), on renders the L2 prefetches, and
configs with it compile for sm_80 / sm_90 with 0 spills."""
import re

import pytest

from autoflash.ops.decode import DECODE, DecodeConfig
from autoflash.ops.decode_kernels import MMA

BLOCK = re.compile(r"\{%- if l2_ahead %\}.*?\{% endif %\}\n", re.S)


def cfg(**changes):
    base = dict(template="flash_decode_mma", arch="sm_90", dtype="bf16", head_dim=128, m_tiles=1, block_n=32,
                warps=4, stages=3, num_splits=0, l2_prefetch=128)
    return DecodeConfig(**{**base, **changes})


def test_rules_and_name():
    assert cfg(l2_ahead=4).name == "flash_decode_mma_sm_90_bf16_d128_mt1_bn32_w4_s3_pf128_la4"
    assert cfg().name == "flash_decode_mma_sm_90_bf16_d128_mt1_bn32_w4_s3_pf128"  # off: the old name
    assert cfg(l2_ahead=4).problems() == []
    assert any("l2_ahead=3" in p for p in cfg(l2_ahead=3).problems())
    assert any("not with paged" in p for p in cfg(l2_ahead=2, paged=True).problems())
    assert any("not with paged or bulk_copy" in p for p in cfg(l2_ahead=2, bulk_copy=True, l2_prefetch=0).problems())
    assert MMA.knobs["l2_ahead"] == (0, 2, 4, 8)  # in the tuner's space
    assert MMA.smem_bytes(cfg(l2_ahead=8)) == MMA.smem_bytes(cfg())  # no shared memory: L2 only


def _cut_template(tmp_path):
    """The template with the knob's blocks cut out (the source before the knob), beside templates/'s includes."""
    from autoflash.kernels.render import environment, templates_dir

    source = (templates_dir() / MMA.template_file).read_text()
    assert len(BLOCK.findall(source)) == 3
    cut = BLOCK.sub("", source)
    assert "l2_ahead" not in cut and "L2_AHEAD" not in cut
    (tmp_path / MMA.template_file).write_text(cut)
    return environment(str(tmp_path)).get_template(MMA.template_file)


OFF_CONFIGS = [dict(), dict(head_dim=64, stages=4), dict(head_dim=256, block_n=16), dict(m_tiles=2, dtype="fp16"),
               dict(arch="sm_80", stages=2), dict(bulk_copy=True, l2_prefetch=0), dict(paged=True),
               dict(evict_first=True, fused_combine=True), dict(window=True, softcap=True, sinks=True, alibi=True),
               dict(paged=True, window=True, alibi=True)]


@pytest.mark.parametrize("changes", OFF_CONFIGS, ids=lambda c: "-".join(c) or "plain")
def test_off_renders_the_template_without_the_knob(tmp_path, changes):
    from autoflash.kernels.render import render

    c = cfg(**changes)
    assert c.problems() == [], c.problems()
    assert render(c) == _cut_template(tmp_path).render(**MMA.values(c))


def test_on_renders_the_prefetches():
    from autoflash.kernels.render import render

    src = render(cfg(l2_ahead=4))
    assert "constexpr int L2_AHEAD = 4;" in src and src.count("prefetch.global.L2 [%0];") == 1
    assert src.count("prefetch_kv_l2(") == 5  # the helper, prologue K/V, loop K/V
    assert "constexpr int ROW_LINES = HEAD_DIM * 2 >= 128 ? HEAD_DIM * 2 / 128 : 1;" in src


def _sections(log: str) -> dict:
    parts = re.split(r"Compiling entry function '([^']+)'", log)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("changes", [dict(l2_ahead=2), dict(l2_ahead=8, evict_first=True),
                                     dict(head_dim=64, stages=4, l2_ahead=4),
                                     dict(head_dim=256, block_n=16, l2_ahead=4),
                                     dict(block_n=16, l2_ahead=4, m_tiles=2, dtype="fp16"),
                                     dict(block_n=64, warps=2, stages=2, l2_ahead=2),
                                     dict(l2_ahead=4, window=True, softcap=True, sinks=True, alibi=True,
                                          fused_combine=True)],
                         ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_compiles_without_spills(arch, changes):
    pytest.importorskip("cupy")
    from autoflash.kernels.compile import compile_kernel

    c = cfg(arch=arch, **changes)
    if arch == "sm_80" and c.problems():  # less shared memory: one stage fewer
        c = c.replace(stages=c.stages - 1)
    assert c.problems() == [], c.problems()
    compiled = compile_kernel(c, use_cache=False)
    sections = _sections(compiled.log)
    assert set(sections) == {c.name, c.name + "_combine"}, compiled.log
    for name, text in sections.items():
        assert re.search(r"0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads", text), (name, text)
    if arch == "sm_90":  # the GPU's NVRTC 13.0 may differ: no more registers than the knob off (+ a few)
        off = _sections(compile_kernel(c.replace(l2_ahead=0), use_cache=False).log)[c.replace(l2_ahead=0).name]
        regs = [int(re.search(r"Used (\d+) registers", t).group(1)) for t in (sections[c.name], off)]
        assert regs[0] <= regs[1] + 4, regs


def test_default_keys_still_render_and_the_knob_is_off_by_default():
    c = DECODE.default("sm_90", {"dtype": "bf16", "head_dim": 128, "m_tiles": 1})
    assert c.l2_ahead == 0
