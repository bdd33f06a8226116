"""flash_fwd_wgmma's softcap by a MUFU reciprocal (WgmmaTemplate.softcap_rcp = 1, an experiment, off by default;
helper SC after helper SA's SASS census, benchmarks/NOTES.md): softcap_r's 1 / (1 + 2^z) by one rcp.approx.ftz.f32
instead of a bit-trick guess, four FMA-pipe correction terms and a clamp. Checked here without a GPU: off, every
softcap config renders byte-identical to the template before the switch (git), and on, configs without softcap are
unchanged; out-of-range values are refused; a float32 emulation of the new formula (exact 1/d rounded to float32 for
the ~1 ulp rcp, +-1 ulp, and ex2 +-2 ulp) keeps cap tanh(s / cap) within 1e-6 cap of float64 over scores from 0 to
+-inf and NaN in gives NaN out; the served softcap kernels and softcap + ALiBi / window / sinks compile without
spills, with MUFU.RCP in the main loop and fewer instructions there than with the switch off
(benchmarks/sass_census.py's loop finder). GPU: tests/test_wgmma_softcap_rcp_gpu.py."""
import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render

from conftest import fwd_key
from sass import sass as read_sass
from template_history import templates_at
from test_wgmma_schedule_ostore import configs_to_render, shipped

W = TEMPLATES["flash_fwd_wgmma"]
BEFORE = "70b5740"  # HEAD when the switch was added (the template's last change: 93d5688)
MARKER = 'asm("rcp.approx.ftz.f32'  # the instruction (the comment above it names it too)
CENSUS = Path(__file__).resolve().parents[1] / "benchmarks" / "sass_census.py"


def wgmma(head_dim=128, causal=False, block_m=128, block_n=128, stages=3, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


@pytest.fixture
def rcp(monkeypatch):
    monkeypatch.setattr(W, "softcap_rcp", 1)


def space_configs(head_dims, flag_sets) -> list[KernelConfig]:
    """Every valid config of the space for these head dims, both dtypes, causal or not, each set of variant flags."""
    out = []
    for dtype, d, causal, flags in itertools.product(W.dtypes, head_dims, (False, True), flag_sets):
        key = {**fwd_key(dtype, d, causal), **{f: True for f in flags}}
        out += [c for c in W.space("sm_90a", key) if not c.problems()]
    return out


SOFTCAP_SETS = [("softcap",), ("softcap", "window", "sinks", "alibi"), ("softcap", "paged")]


def test_off_renders_the_template_before_the_switch(tmp_path):
    """Off (the default), softcap kernels of the space (D 8, 64, 128, 256) and every other config the ostore tests
    render (the H200's served entries, each variant alone, paged, Dv != D) are the template before the switch."""
    before = templates_at(BEFORE, [W.template_file], tmp_path).get_template(W.template_file)
    assert W.softcap_rcp == 0
    # every fifth softcap config of the space (all of them, 553 896 with the other switches' sets, were compared
    # once when the switch was added: NOTES, helper SC), and everything the ostore tests render
    configs = space_configs((8, 64, 128, 256), SOFTCAP_SETS)[::5] + configs_to_render()
    assert sum(c.softcap for c in configs) > 200 and len(shipped()) > 50
    for cfg in configs:
        assert MARKER not in render(cfg)
        assert render(cfg) == before.render(**W.values(cfg)), cfg.name


def test_on_leaves_kernels_without_softcap_alone(rcp, monkeypatch):
    configs = [c for c in configs_to_render() + space_configs((64,), [("alibi", "window", "sinks")]) if not c.softcap]
    assert len(configs) > 100
    on = [render(c) for c in configs]
    monkeypatch.setattr(W, "softcap_rcp", 0)
    assert on == [render(c) for c in configs]


def test_on_renders_one_reciprocal_and_no_clamp(rcp):
    source = render(wgmma(softcap=True))
    assert source.count(MARKER) == 1
    assert "fminf(z, 64.f)" not in source and "r0 = __int_as_float(0x7EF311C7" not in source


def test_refused_out_of_range(rcp, monkeypatch):
    assert wgmma(softcap=True).problems() == []
    monkeypatch.setattr(W, "softcap_rcp", 2)
    assert any("softcap_rcp=2" in e for e in wgmma(softcap=True).problems())


# ------------------------------------------------------------ the formula, emulated in float32
def ulps(x: np.ndarray, n: int) -> np.ndarray:
    """x moved n float32 ulps (n < 0: down); inf and NaN stay."""
    f = np.float32
    for _ in range(abs(n)):
        x = np.nextafter(x, f(np.inf) if n > 0 else f(-np.inf)).astype(f)
    return x


def softcap_rcp(z: np.ndarray, ex2_ulps: int = 0, rcp_ulps: int = 0) -> np.ndarray:
    """The switch's softcap_r in float32: d = 1 + 2^z (ex2 moved ex2_ulps), r = 1/d rounded to float32 (MUFU.RCP's
    ~1 ulp: moved rcp_ulps; rcp(+inf) = +0, as rcp.approx gives)."""
    f = np.float32
    with np.errstate(over="ignore", invalid="ignore"):
        e = ulps(np.exp2(z.astype(np.float64)).astype(f), ex2_ulps)
        d = (f(1) + e).astype(f)
        r = ulps((1.0 / d.astype(np.float64)).astype(f), rcp_ulps)
    return np.where(np.isinf(d), f(0), r).astype(f)  # rcp(+inf) = +0 exactly: no ulp below it


def scores(cap: float) -> np.ndarray:
    """Scaled scores from 0 to past saturation (both signs), near the cap, huge, and +-inf and NaN."""
    f = np.float32
    dense = np.linspace(-40 * cap, 40 * cap, 400_001)
    tiny = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-7, -1e-7, cap, -cap])
    huge = np.array([1e3, 1e6, 1e20, 3e38, np.finfo(f).max, np.inf]) * cap
    huge = np.clip(huge, -np.finfo(f).max, np.finfo(f).max)
    return np.concatenate([dense, tiny, huge, -huge, [np.inf, -np.inf, np.nan]]).astype(f)


@pytest.mark.parametrize("cap", [1.0, 30.0, 50.0])
def test_reciprocal_keeps_cap_tanh_within_1e6_cap(cap):
    s = scores(cap)
    with np.errstate(over="ignore"):
        z = (s * np.float32(2 * math.log2(math.e) / cap)).astype(np.float32)  # S cap_z, as the kernel computes it
    nan = np.isnan(s)
    ref = cap * np.tanh(s[~nan].astype(np.float64) / cap)
    worst = 0.0
    for ex2_ulps, rcp_ulps in itertools.product((-2, 0, 2), (-1, 0, 1)):
        x = cap - 2 * cap * softcap_rcp(z, ex2_ulps, rcp_ulps).astype(np.float64)
        assert np.isnan(x[nan]).all(), "a NaN score must stay NaN"
        err = np.abs(x[~nan] - ref)
        assert np.isfinite(err).all() and err.max() <= 1e-6 * cap, (cap, ex2_ulps, rcp_ulps, err.max())
        worst = max(worst, err.max() / cap)
    assert worst > 0  # the emulation rounds: an error of exactly 0 would mean it compared nothing


def test_saturation_and_edges():
    f = np.float32
    z = np.array([np.inf, -np.inf, 200.0, -200.0, 0.0, np.nan], f)
    r = softcap_rcp(z)
    assert r[0] == 0 and r[1] == 1 and r[2] == 0 and r[3] == 1 and r[4] == 0.5 and np.isnan(r[5])


# ------------------------------------------------------------ compiled: spills and the SASS
SERVED = [wgmma(128, softcap=True), wgmma(64, softcap=True)]  # tuned_configs/sm_90.json's softcap entries (bf16)
COMBOS = [wgmma(128, softcap=True, alibi=True), wgmma(64, True, softcap=True, alibi=True),
          wgmma(128, True, softcap=True, window=True, stages=2), wgmma(64, softcap=True, window=True, sinks=True),
          wgmma(128, True, dtype="fp16", softcap=True, alibi=True, window=True, sinks=True)]


def test_served_softcap_configs_are_the_listed_ones():
    served = {c.replace(dtype="bf16") for c in shipped() if c.softcap}
    assert served and served <= set(SERVED), sorted(c.name for c in served)


def load_census():
    spec = importlib.util.spec_from_file_location("sass_census", CENSUS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cfg", SERVED, ids=lambda c: c.name)
def test_served_loop_issues_fewer_instructions_with_one_rcp(cfg, monkeypatch, tmp_path):
    """The main loop (census: the smallest loop issuing an HGMMA) of the served softcap kernels, off and on:
    on has MUFU.RCP there (one per score, BLOCK_N / 2 a thread) and fewer instructions on both paths."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    census = load_census()
    loops = {}
    for on in (0, 1):
        monkeypatch.setattr(W, "softcap_rcp", on)
        kernel = compile_kernel(cfg, use_cache=False)
        assert kernel.report.spills == 0, kernel.report
        _, _, loops[on] = census.main_loop(census.parse(read_sass(kernel.cubin, tmp_path)))
    for path in ("min", "max"):
        off, on = loops[0][path], loops[1][path]
        assert off["MUFU.RCP"] == 0 and on["MUFU.RCP"] == cfg.block_n // 2, (path, on["MUFU.RCP"])
        assert on.total() <= off.total() - 5 * cfg.block_n // 2, (path, off.total(), on.total())  # >= 5 a score


@pytest.mark.parametrize("cfg", COMBOS, ids=lambda c: c.name)
def test_combos_compile_without_spills(rcp, cfg, tmp_path):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    assert cfg.problems() == [], cfg.problems()
    assert MARKER in render(cfg)
    kernel = compile_kernel(cfg, use_cache=False)
    assert kernel.report.spills == 0 and kernel.report.registers <= 255, kernel.report
    assert "MUFU.RCP" in read_sass(kernel.cubin, tmp_path)
