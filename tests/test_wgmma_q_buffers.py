"""flash_fwd_wgmma's two Qi slots (WgmmaTemplate.q_buffers = 2, an experiment, off by default) without a GPU:
off, the source is the template's with the switch's code cut out (so every kernel is unchanged); on, the second
Qi tile follows the first, slot 1's barriers follow the K/V ring's inside the block's barrier area, tiles without
room are refused, and the kernels compile for sm_90a without spills. GPU: tests/test_wgmma_q_buffers_gpu.py."""
import re

import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import environment, render, templates_dir

from template_history import templates_at
from test_wgmma_schedule_ostore import configs_to_render, register_store

W = TEMPLATES["flash_fwd_wgmma"]
# the switch's code: {%- if q_buffers == 2 %}on{%- else %}off{%- endif %} keeps off; without an else, nothing
# ({%- strips the whitespace before it, as Jinja does)
WITH_ELSE = re.compile(r"\s*\{%- if q_buffers == 2 %\}(?:(?!\{%- endif %\}).)*?\{%- else %\}(.*?)\s*\{%- endif %\}", re.S)
WITHOUT_ELSE = re.compile(r"\s*\{%- if q_buffers == 2 %\}(?:(?!\{%- else %\}).)*?\{%- endif %\}", re.S)
NAME = '{{ "desc_q0" if q_buffers == 2 else "desc_q" }}'


def wgmma(head_dim=128, causal=True, block_m=128, block_n=128, stages=2, **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", "bf16", head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


@pytest.fixture
def two_slots(monkeypatch):
    monkeypatch.setattr(W, "q_buffers", 2)


def test_off_by_default_and_adds_no_code(tmp_path):
    assert W.q_buffers == 1
    source = (templates_dir() / W.template_file).read_text()
    cut_source = WITHOUT_ELSE.sub("", WITH_ELSE.sub(lambda m: m.group(1), source)).replace(NAME, "desc_q")
    assert "q_buffers" not in cut_source and "Q1_BAR" not in cut_source
    (tmp_path / W.template_file).write_text(cut_source)
    cut = environment(str(tmp_path)).get_template(W.template_file)
    configs = [c for c in configs_to_render()] + [register_store(c) for c in configs_to_render()]
    for cfg in configs:
        assert render(cfg) == cut.render(**W.values(cfg)), cfg.name


def test_layout_with_two_slots(two_slots, monkeypatch):
    cfg = wgmma()
    on, source = W.smem_layout(cfg), render(cfg)
    monkeypatch.setattr(W, "q_buffers", 1)
    off = W.smem_layout(cfg)
    assert on["k_off"] == 2 * on["q_bytes"] == off["k_off"] + off["q_bytes"]
    assert on["bar_off"] == off["bar_off"] + on["q_bytes"]
    # slot 1's two barriers (Q1_BAR = BAR_OFF + 8 (2 + 4 STAGES)) end inside the block's barrier area
    assert on["bar_off"] + 8 * (2 + 4 * cfg.stages) + 16 == on["total"]
    assert "constexpr u32 Q1_BAR = BAR_OFF + 8u * (2 + 4 * STAGES);" in source and "desc_q0" in source


def test_tiles_without_room_are_refused(two_slots):
    errors = wgmma(stages=3).problems()
    assert len(errors) == 1 and "shared memory" in errors[0], errors


@pytest.mark.parametrize("cfg", [wgmma(), wgmma(window=True), wgmma(causal=False), wgmma(o_store=0),
                                 wgmma(64, block_m=192), wgmma(128, paged=True), wgmma(40, softcap=True)],
                         ids=lambda c: c.name)
def test_two_slots_compile_without_spills(two_slots, cfg):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    assert cfg.problems() == []
    kernel = afc.compile_kernel(cfg, use_cache=False)
    assert kernel.report.spills == 0 and kernel.report.registers <= 255, kernel.report


# ------------------------------------------------------------ CROSS_ITEM (WgmmaTemplate.cross_item = 1)
BEFORE_SWITCHES = "58131ca"  # the template before q_buffers and cross_item (the O store already a config field)


def test_switches_off_render_the_template_they_were_added_to(tmp_path):
    """Both experiments off: every config renders byte-identical to the template before them (the epilogue became
    a macro for cross_item: its off expansion must be the text it replaced)."""
    from autoflash.kernels.registry import TEMPLATES as REGISTRY

    before = templates_at(BEFORE_SWITCHES, [W.template_file], tmp_path).get_template(W.template_file)
    assert REGISTRY["flash_fwd_wgmma"].cross_item == 0
    configs = configs_to_render() + [register_store(c) for c in configs_to_render()]
    for cfg in configs:
        assert render(cfg) == before.render(**W.values(cfg)), cfg.name


@pytest.fixture
def cross_item(monkeypatch):
    monkeypatch.setattr(W, "q_buffers", 2)
    monkeypatch.setattr(W, "cross_item", 1)


def test_cross_item_renders_the_deferred_epilogue(cross_item):
    source = render(wgmma(window=True))
    assert "auto finish = [&](const Item& w, const Softmax& st)" in source and "finish(pw, pst);" in source
    assert source.count("finish(pw, pst);") == 2  # the next item's tile 0, and the drain
    assert "++it;\n                continue;" not in source  # the deferred TMA epilogue returns from finish


def test_cross_item_refused_with_three_consumer_warpgroups(cross_item):
    assert any("cross_item" in e for e in wgmma(64, block_m=192).problems())


@pytest.mark.parametrize("cfg", [wgmma(), wgmma(window=True), wgmma(causal=False), wgmma(o_store=0),
                                 wgmma(128, paged=True), wgmma(128, window=True, softcap=True, sinks=True, alibi=True),
                                 wgmma(64)], ids=lambda c: c.name)
def test_cross_item_compiles_without_spills(cross_item, cfg):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    assert cfg.problems() == []
    kernel = afc.compile_kernel(cfg, use_cache=False)
    assert kernel.report.spills == 0 and kernel.report.registers <= 255, kernel.report
