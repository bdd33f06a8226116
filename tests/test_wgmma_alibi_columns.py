"""flash_fwd_wgmma's ALiBi column form with an immediate (WgmmaTemplate.alibi_columns = 1, an experiment, off by
default; helper SC after helper SA's A1, benchmarks/NOTES.md). On an unmasked tile whose keys are all left (SIDE +1)
or right (SIDE -1) of every diagonal of the warpgroup's rows, ALiBi without softcap and slope >= 2^-10 (base 2):
x' = S (scale_log2 / slope) + SIDE j with j = 8t + e a compile-time column (one FFMA with an immediate, instead of
c_j's FFMA and x's), the row max on x', then max x = slope max x' + col0 and P = exp2(slope x' + col0 - m).
Checked here without a GPU: off, ALiBi configs render byte-identical to the template before the switch (git), and
on, configs without ALiBi are unchanged; out-of-range values are refused; a float32 emulation of the exp's argument
(x' rounding, max, col0, subtrahend) against float64 S scale_log2 - slope |i + off - j| - max stays within
4 * 2^-24 (|S scale_log2| + slope (|d0| + BLOCK_N + 8)) for distances to 2^26 (the integers are exact in float32 up to
2^24: d0 = (float)rel0, where the template converts; past it the distance's own rounding is inside the same bound);
the served ALiBi kernels and combos compile without spills with fewer main-loop instructions than off.
GPU: tests/test_wgmma_alibi_columns_gpu.py."""
import itertools

import numpy as np
import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render

from sass import sass as read_sass
from template_history import templates_at
from test_wgmma_schedule_ostore import configs_to_render, shipped
from test_wgmma_softcap_rcp import load_census, space_configs

W = TEMPLATES["flash_fwd_wgmma"]
BEFORE = "70b5740"  # HEAD when the switches were added
MARKER = "if constexpr (SIDE != 0)"


def wgmma(head_dim=128, causal=True, block_m=128, block_n=128, stages=3, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, alibi=True, **extra)


@pytest.fixture
def columns(monkeypatch):
    monkeypatch.setattr(W, "alibi_columns", 1)


ALIBI_SETS = [("alibi",), ("alibi", "window", "sinks"), ("alibi", "softcap"), ("alibi", "paged")]


def test_off_renders_the_template_before_the_switch(tmp_path):
    before = templates_at(BEFORE, [W.template_file], tmp_path).get_template(W.template_file)
    assert W.alibi_columns == 0
    # every fifth ALiBi config of the space (all of them were compared once when the switch was added: NOTES,
    # helper SC), and everything the ostore tests render
    configs = space_configs((8, 64, 128, 256), ALIBI_SETS)[::5] + configs_to_render()
    assert sum(c.alibi for c in configs) > 200
    for cfg in configs:
        assert render(cfg) == before.render(**W.values(cfg)), cfg.name


def test_on_leaves_kernels_without_alibi_alone(columns, monkeypatch):
    configs = [c for c in configs_to_render() + space_configs((64,), [("softcap", "window", "sinks")]) if not c.alibi]
    assert len(configs) > 100
    on = [render(c) for c in configs]
    monkeypatch.setattr(W, "alibi_columns", 0)
    assert on == [render(c) for c in configs]


def test_on_renders_both_sides_and_keeps_the_old_form(columns, monkeypatch):
    source = render(wgmma(causal=False))
    assert MARKER in source and ", 1>(s_acc" in source and ", -1>(s_acc" in source
    assert "before ? var.slope : -var.slope" in source  # slopes below 2^-10, and softcap + ALiBi: the old form
    monkeypatch.setattr(W, "causal_trim", 1)  # with causal_trim too: SIDE after COLS
    assert "true, BLOCK_N, 1>(s_acc" in render(wgmma())


def test_refused_out_of_range(columns, monkeypatch):
    assert wgmma().problems() == []
    monkeypatch.setattr(W, "alibi_columns", -1)
    assert any("alibi_columns=-1" in e for e in wgmma().problems())


# ------------------------------------------------------------ the arithmetic, emulated in float32
F = np.float32


def fma(a, b, c):
    """fmaf: the float32 product is exact in float64; one rounding to float32 (a double rounding is ~2^-29 off)."""
    return (np.float64(a) * np.float64(b) + np.float64(c)).astype(F)


def exp_arguments(s, rel0, side, slope, scale_log2, block_n, immediate):
    """The exponent of P for a thread's two rows (g: s[0], g + 8: s[1]; each over its columns j = 0..block_n - 8 + 1
    as 8t + e) on a column-form tile, as the template computes it: the switch's form (immediate) or today's."""
    j = np.array([8 * t + e for t in range(block_n // 8) for e in range(2)], dtype=np.float64)
    col_slope = F(side * slope)
    col0 = fma(-col_slope, F(rel0), 0.0)  # d0 = (float)rel0
    rho1 = F(-8.0 * col_slope)
    if immediate:
        inv = F(np.float64(scale_log2) / np.float64(slope))
        xp = [fma(row, inv, side * j) for row in s]  # x' (immediate SIDE j)
        mx = [fma(slope, xp[0].max(), col0), F(fma(slope, xp[1].max(), col0) + rho1)]
        b = col0
        b0, b1 = F(b - mx[0]), F(F(b + rho1) - mx[1])
        return fma(xp[0], slope, b0), fma(xp[1], slope, b1)
    c = fma(col_slope, j, col0)
    x = [fma(row, scale_log2, c) for row in s]
    mx = [x[0].max(), F(x[1].max() + rho1)]
    return fma(x[0], 1.0, F(-mx[0])), fma(x[1], 1.0, F(rho1 - mx[1]))


def literal(s, rel0, slope, scale_log2, block_n):
    """float64: S scale_log2 - slope |diag_i - key| - the row's max, the distances as exact integers."""
    j = np.array([8 * t + e for t in range(block_n // 8) for e in range(2)], dtype=np.float64)
    out = []
    for row, dist in ((s[0], rel0 - j), (s[1], rel0 + 8 - j)):
        x = row.astype(np.float64) * np.float64(scale_log2) - np.float64(slope) * np.abs(dist)
        out.append(x - x.max())
    return out


SLOPES = [2.0 ** -10, 2.0 ** -8 * 1.4426950, 0.5 * 1.4426950, 1.0, 1.4426950, 8.0]


@pytest.mark.parametrize("block_n", [64, 128, 160])
def test_exp_argument_matches_the_literal_bias(block_n):
    rng = np.random.default_rng(block_n)
    worst = {True: 0.0, False: 0.0}
    checked = 0
    for slope, side in itertools.product(SLOPES, (1, -1)):
        for magnitude in (0, 1, 100, 4096, 2 ** 20, 2 ** 24 - 2 * block_n, 2 ** 26 + 3):
            # BEFORE (side +1): every key left of or on both rows' diagonals; AFTER: right of both
            rel0 = magnitude + block_n if side == 1 else -(magnitude + 8)
            for scale_log2 in (0.125 * 1.4426950, 1.4426950, -0.2):
                s = (rng.standard_normal((2, block_n // 4)) * 8).astype(F)
                want = literal(s, rel0, F(slope), F(scale_log2), block_n)
                bound = 4 * 2.0 ** -24 * (np.abs(s).max() * abs(scale_log2) + slope * (abs(rel0) + block_n + 8))
                for immediate in (True, False):
                    got = exp_arguments(s, rel0, side, F(slope), F(scale_log2), block_n, immediate)
                    err = max(np.abs(g.astype(np.float64) - w).max() for g, w in zip(got, want))
                    assert err <= bound, (slope, side, rel0, scale_log2, immediate, err, bound)
                    worst[immediate] = max(worst[immediate], err / bound)
                checked += 1
    assert checked == len(SLOPES) * 2 * 7 * 3 and worst[True] > 0  # an exact 0 would mean nothing was rounded


def test_integer_distances_are_exact_to_2_24():
    """Where the bias is exact: (float)rel0 and the column offsets are integers of float32 up to 2^24."""
    assert all(int(F(n)) == n for n in (2 ** 24 - 1, 2 ** 24, -(2 ** 24)))
    assert int(F(2 ** 24 + 1)) != 2 ** 24 + 1


# ------------------------------------------------------------ compiled: spills and the census
SERVED = [wgmma(128, block_n=160, stages=2), wgmma(64)]  # tuned_configs/sm_90.json's causal ALiBi entries (bf16)
def test_served_alibi_configs_are_the_listed_ones():
    served = {c.replace(dtype="bf16") for c in shipped() if c.alibi}
    assert served and served <= set(SERVED), sorted(c.name for c in served)


COMBOS = [wgmma(128, False), wgmma(64, False, window=True, sinks=True), wgmma(128, softcap=True),
          wgmma(256, block_n=80, stages=2, dtype="fp16"), wgmma(64, paged=True)]


@pytest.mark.parametrize("cfg", SERVED + [wgmma(128, False)], ids=lambda c: c.name)
def test_loop_issues_fewer_instructions(cfg, monkeypatch, tmp_path):
    """The main loop's fewest-instruction path (an unmasked column-form tile) loses c_j's FFMA: one per column
    (BLOCK_N / 4 a thread) less two for the max's conversion, and no spill."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    census = load_census()
    loops = {}
    for on in (0, 1):
        monkeypatch.setattr(W, "alibi_columns", on)
        kernel = compile_kernel(cfg, use_cache=False)
        assert kernel.report.spills == 0, kernel.report
        _, _, loops[on] = census.main_loop(census.parse(read_sass(kernel.cubin, tmp_path)))
    off, on = loops[0]["min"], loops[1]["min"]
    assert on.total() <= off.total() - cfg.block_n // 8, (off.total(), on.total())


@pytest.mark.parametrize("cfg", COMBOS, ids=lambda c: c.name)
def test_combos_compile_without_spills(columns, cfg):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    assert cfg.problems() == [], cfg.problems()
    assert MARKER in render(cfg)
    kernel = compile_kernel(cfg, use_cache=False)
    assert kernel.report.spills == 0 and kernel.report.registers <= 255, kernel.report


def test_all_switches_together_compile_without_spills(columns, monkeypatch):
    """alibi_columns with causal_trim (SIDE after COLS) and softcap_rcp on: the served D 128 ALiBi tile and
    softcap + ALiBi."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(W, "causal_trim", 1)
    monkeypatch.setattr(W, "softcap_rcp", 1)
    for cfg in (SERVED[0], wgmma(128, softcap=True)):
        source = render(cfg)
        assert "true, BLOCK_N, 1>(s_acc" in source and "n_own" in source
        kernel = compile_kernel(cfg, use_cache=False)
        assert kernel.report.spills == 0, (cfg.name, kernel.report)
