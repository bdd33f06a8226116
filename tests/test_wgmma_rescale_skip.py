"""flash_fwd_wgmma's rescale skip (WgmmaTemplate.rescale_skip = 1, an experiment, off by default; helper SA's idea in
the SASS census, built by helper RS): rescale_o returns at once when no row of the warp changed its running max
(`__any_sync` over alpha0 != 1 || alpha1 != 1, one answer for all 32 lanes). Bitwise equal: alpha = ex2(m_old - m_new)
is exactly 1 when the max stayed (x - x = +0, ex2(+0) = 1) and o * 1.f = o. Checked here without a GPU: off, the space
and the ostore tests' configs render byte-identical to the template before the switch (git); out-of-range values are
refused; on, the served plain kernels (D 64, 128, 256, causal or not, both dtypes) compile without spills or wgmma
serialisation, their main loop's steady path (benchmarks/sass_census.py) issues fewer instructions, and the switch
with causal_trim, softcap_rcp and alibi_columns on compiles without spills.
GPU: tests/test_wgmma_rescale_skip_gpu.py."""
import itertools

import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render

from sass import sass as read_sass
from template_history import templates_at
from test_wgmma_schedule_ostore import configs_to_render, shipped
from test_wgmma_softcap_rcp import load_census, space_configs, wgmma

W = TEMPLATES["flash_fwd_wgmma"]
BEFORE = "f111ef9"  # HEAD when the switch was added (the template's last change: 943a0a8)
MARKER = "if (!__any_sync(0xffffffffu, alpha0 != 1.f || alpha1 != 1.f)) return;"
VARIANTS = ("softcap", "alibi", "window", "sinks", "paged")


@pytest.fixture
def skip(monkeypatch):
    monkeypatch.setattr(W, "rescale_skip", 1)


def test_off_renders_the_template_before_the_switch(tmp_path):
    """Off (the default), every fifth config of the space (D 8, 64, 128, 256; plain, softcap, the other variants
    together, paged) and everything the ostore tests render (the H200's served entries, each variant alone, paged,
    Dv != D) are the template before the switch."""
    before = templates_at(BEFORE, [W.template_file], tmp_path).get_template(W.template_file)
    assert W.rescale_skip == 0
    sets = [(), ("softcap",), ("window", "sinks", "alibi"), ("paged",)]
    configs = space_configs((8, 64, 128, 256), sets)[::5] + configs_to_render()
    assert len(configs) > 1000 and len(shipped()) > 50
    for cfg in configs:
        source = render(cfg)
        assert "__any_sync" not in source
        assert source == before.render(**W.values(cfg)), cfg.name


def test_on_renders_one_skip_in_rescale_o(skip):
    source = render(wgmma())
    assert source.count(MARKER) == 1 and source.count("__any_sync(") == 1
    body = source[source.index("void rescale_o("):]
    assert body.index(MARKER) < body.index("o[4 * t + 0] *= alpha0;")  # the skip guards the multiplies
    code = [line for line in body[:body.index("\n}\n")].splitlines() if not line.strip().startswith("//")]
    assert not any("wgmma" in line or "asm" in line for line in code)  # no wgmma or fence inside the branch


def test_refused_out_of_range(skip, monkeypatch):
    assert wgmma().problems() == []
    monkeypatch.setattr(W, "rescale_skip", 2)
    assert any("rescale_skip=2" in e for e in wgmma().problems())


# ------------------------------------------------------------ compiled: spills and the census
def served_plain() -> list[KernelConfig]:
    """tuned_configs/sm_90.json's plain flash_fwd_wgmma entries at D 64, 128 and 256 (both dtypes)."""
    return sorted({c for c in shipped() if c.head_dim in (64, 128, 256) and not c.head_dim_v
                   and not any(getattr(c, f) for f in VARIANTS)}, key=lambda c: c.name)


def compiled_clean(cfg):
    from autoflash.kernels.compile import compile_kernel

    kernel = compile_kernel(cfg, use_cache=False)
    assert kernel.report.spills == 0 and kernel.report.stack_frame == 0, (cfg.name, kernel.report)
    assert "serialized" not in kernel.log, kernel.log  # wgmma serialisation warnings
    return kernel


def test_served_plain_configs_compile_without_spills(skip):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    configs = served_plain()
    assert len(configs) >= 20 and {(c.head_dim, c.causal) for c in configs} == set(
        itertools.product((64, 128, 256), (False, True)))
    for cfg in configs:
        assert MARKER in render(cfg)
        compiled_clean(cfg)


CENSUS_CONFIGS = [wgmma(128, block_n=192, stages=2), wgmma(128, True), wgmma(64, block_m=192, stages=2),
                  wgmma(256, True, block_n=80, stages=2)]


def test_census_configs_are_served():
    assert set(CENSUS_CONFIGS) <= set(served_plain())


@pytest.mark.parametrize("cfg", CENSUS_CONFIGS, ids=lambda c: c.name)
def test_skip_path_issues_fewer_instructions(cfg, monkeypatch, tmp_path):
    """The main loop's fewest-instruction path (census: the smallest loop issuing an HGMMA) skips the rescale: at
    least half of O's HEAD_DIM / 2 FMULs a thread fewer than off; the rescale path costs at most 8 more (the vote)."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    census = load_census()
    loops = {}
    for on in (0, 1):
        monkeypatch.setattr(W, "rescale_skip", on)
        _, _, loops[on] = census.main_loop(census.parse(read_sass(compiled_clean(cfg).cubin, tmp_path)))
    off, on = loops[0], loops[1]
    assert on["min"].total() <= off["min"].total() - cfg.head_dim // 4, (off["min"].total(), on["min"].total())
    assert on["max"].total() <= off["max"].total() + 8, (off["max"].total(), on["max"].total())


COMBOS = [wgmma(128, True, block_n=160, stages=2, alibi=True), wgmma(128, softcap=True, alibi=True),
          wgmma(64, True, softcap=True, window=True, sinks=True), wgmma(128, True, paged=True)]


@pytest.mark.parametrize("cfg", COMBOS, ids=lambda c: c.name)
def test_with_the_other_switches_compiles_without_spills(skip, cfg, monkeypatch):
    """The served causal D 128 ALiBi tile, softcap + ALiBi, softcap + window + sinks, paged: with rescale_skip alone,
    no spill and no wgmma serialisation; with causal_trim, softcap_rcp and alibi_columns on too, no spill, and a
    serialisation warning only where those three alone give it (ptxas gives one with them on causal combos: C7511)."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    assert cfg.problems() == [], cfg.problems()
    assert MARKER in render(cfg)
    compiled_clean(cfg)
    logs = {}
    for on in (0, 1):
        for switch, value in (("causal_trim", 1), ("softcap_rcp", 1), ("alibi_columns", 1), ("rescale_skip", on)):
            monkeypatch.setattr(W, switch, value)
        kernel = compile_kernel(cfg, use_cache=False)
        assert kernel.report.spills == 0 and kernel.report.stack_frame == 0, (cfg.name, on, kernel.report)
        logs[on] = "serialized" in kernel.log
    assert logs[1] == logs[0], logs
