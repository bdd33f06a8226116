"""flash_fwd_wgmma's causal trim (WgmmaTemplate.causal_trim = 1, an experiment, off by default; helper FD, issue 18
item 2) without a GPU. Each consumer warpgroup of a causal kernel runs the GEMMs and softmax of its own key tiles only:
tiles past its last row's diagonal are waited for and handed back with an empty ping-pong turn, and its last own tile
runs S = Qi Kj^T on BLOCK_N - 64 keys and P.V on those keys' k-steps when the tile's last 64 keys are past every
diagonal of its rows. Checked here: off, every config renders byte-identical to the template before the switch (git);
on, non-causal kernels are unchanged; out-of-range values are refused; the tile arithmetic (an emulation of the
template's three lines) never drops a visible key; the kernels compile for sm_90a without spills, including every
served causal config; the trimmed QK wgmma is in the SASS. GPU: tests/test_wgmma_fd_gpu.py."""
import re

import pytest

from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import render

from sass import sass as read_sass
from template_history import templates_at
from test_wgmma_schedule_ostore import configs_to_render, register_store, shipped

W = TEMPLATES["flash_fwd_wgmma"]
BEFORE = "e56e978"  # the template's last commit before causal_trim


def wgmma(head_dim=64, causal=True, block_m=128, block_n=128, stages=2, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


@pytest.fixture
def trim(monkeypatch):
    monkeypatch.setattr(W, "causal_trim", 1)


def all_configs() -> list[KernelConfig]:
    return configs_to_render() + [register_store(c) for c in configs_to_render()]


def test_off_renders_the_template_before_the_switch(tmp_path):
    before = templates_at(BEFORE, [W.template_file], tmp_path).get_template(W.template_file)
    assert W.causal_trim == 0
    configs = all_configs()
    assert len(configs) > 50 and sum(c.causal for c in configs) > 20
    removed = {"q_buffers": 1, "cross_item": 0}  # that template's switches since removed, off
    for cfg in configs:
        assert render(cfg) == before.render(**W.values(cfg), **removed), cfg.name


def test_on_leaves_non_causal_kernels_alone(trim, monkeypatch):
    configs = [c for c in all_configs() if not c.causal]
    on = [render(c) for c in configs]
    monkeypatch.setattr(W, "causal_trim", 0)
    assert on == [render(c) for c in configs]


def test_on_renders_the_trimmed_paths(trim):
    source = render(wgmma(64, block_n=128))
    assert "issue_qk_trim(s_acc, desc_q" in source and "issue_pv_part<KSTEPS_PV - 4>" in source
    assert "void wgmma_qk_trim(float (&d)[32]" in source  # S on the tile's first 64 keys: m64n64k16
    assert "online_softmax<true, !SCORE_MOD, false, BLOCK_N - 64>" in source
    narrow = render(wgmma(64, block_n=64))  # no trimmed width left: only the skipped tiles
    assert "issue_qk_trim" not in narrow and "issue_pv_part<" not in narrow and "n_own" in narrow


def test_refused_out_of_range(trim, monkeypatch):
    assert wgmma().problems() == [] and wgmma(causal=False).problems() == []
    monkeypatch.setattr(W, "causal_trim", 2)
    assert any("causal_trim=2" in e for e in wgmma().problems())


def own_tiles(k_first, n_tiles, wg_first_row, off, block_n):
    """The template's arithmetic (CAUSAL_TRIM, three lines), in Python with C's truncating division."""
    own_end = min(k_first + n_tiles * block_n, wg_first_row + 64 + off)
    num = own_end - k_first + block_n - 1
    n_own = min(n_tiles, max(1, int(num / block_n)))  # C: truncation toward zero
    trim = block_n > 64 and k_first + n_own * block_n - own_end >= 64
    return n_own, trim


@pytest.mark.parametrize("block_m, block_n", [(128, 128), (128, 80), (192, 128), (128, 64), (64, 176), (128, 208)])
def test_own_tiles_never_drop_a_visible_key(block_m, block_n):
    """For every query tile, warpgroup, causal offset (top-left, bottom-right with Nq < Nk and Nq > Nk) and window:
    keys a row of the warpgroup sees are in its own tiles and, on a trimmed tile, in the first BLOCK_N - 64 keys;
    trimmed-away and skipped keys are seen by none of its rows."""
    checked = trimmed = skipped = 0
    for seq_q, seq_k in ((1000, 1000), (333, 1100), (1100, 333), (2048, 2048)):
        off = seq_k - seq_q
        for left in (None, 300):
            for q_start in range(0, seq_q, block_m):
                # the item's tiles as decode makes them (window: from the first row's window)
                k_end = min(seq_k, q_start + block_m + off)
                k_begin = max(0, q_start + off - left) if left is not None else 0
                kt0 = k_begin // block_n
                n_tiles = max(1, (k_end + block_n - 1) // block_n - kt0)
                k_first = kt0 * block_n
                for wg in range(block_m // 64):
                    first = q_start + 64 * wg
                    n_own, trim = own_tiles(k_first, n_tiles, first, off, block_n)
                    assert 1 <= n_own <= n_tiles
                    kept_end = k_first + n_own * block_n - (64 if trim else 0)
                    for row in range(first, min(first + 64, seq_q)):
                        visible = [j for j in range(k_first, min(seq_k, k_first + n_tiles * block_n))
                                   if j <= row + off and (left is None or j >= row + off - left)]
                        assert all(j < kept_end for j in visible), (seq_q, seq_k, q_start, wg, row)
                    checked += 1
                    trimmed += trim
                    skipped += n_tiles - n_own
    assert checked > 100
    # the served geometries: 128 x 128 trims warpgroup 0's diagonal tile to 64 keys (it skips whole tiles only at
    # offsets that are not multiples of 128); 80-key and 192-row tiles skip tiles starting past warpgroup 0's diagonal
    expected = {(128, 128): (True, None), (128, 80): (None, True), (192, 128): (True, True)}
    want_trim, want_skip = expected.get((block_m, block_n), (None, None))
    assert want_trim is None or (trimmed > 0) == want_trim
    assert want_skip is None or (skipped > 0) == want_skip


def served_causal() -> list[KernelConfig]:
    return sorted({c for c in shipped() if c.causal}, key=lambda c: c.name)


TARGETS = [wgmma(64, stages=4), wgmma(64, stages=4, dtype="fp16", pingpong=0), wgmma(64, block_m=192),
           wgmma(64, block_m=192, stages=3), wgmma(256, block_n=80), wgmma(256, block_n=64),
           wgmma(256, block_n=80, dtype="fp16"), wgmma(128, block_n=160), wgmma(128, window=True),
           wgmma(128, paged=True), wgmma(128, softcap=True, alibi=True, sinks=True, window=True),
           wgmma(64, block_m=192, sinks=True, window=True), wgmma(192, head_dim_v=128)]


@pytest.mark.parametrize("cfg", TARGETS, ids=lambda c: c.name)
def test_compiles_without_spills(trim, cfg):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    assert cfg.problems() == [], cfg.problems()
    assert "n_own" in render(cfg)
    kernel = afc.compile_kernel(cfg, use_cache=False)
    assert kernel.report.spills == 0 and kernel.report.registers <= 255, kernel.report


def test_every_served_causal_config_compiles_without_spills(trim):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    configs = served_causal()
    assert len(configs) >= 10
    # one dtype of each served shape (bf16 and fp16 use the same registers), TARGETS' own compiles apart
    shapes = {c.replace(dtype="bf16").name: c for c in reversed(configs)}
    for cfg in (c for c in shapes.values() if c not in TARGETS):
        assert cfg.problems() == [], (cfg.name, cfg.problems())
        report = afc.compile_kernel(cfg, use_cache=False).report
        assert report.spills == 0, (cfg.name, report)


@pytest.mark.parametrize("cfg, narrow", [(wgmma(256, block_n=80), "64x16x16"), (wgmma(128, block_n=160), "64x96x16")],
                         ids=["d256_bc80", "d128_bc160"])
def test_sass_has_the_trimmed_gemm(trim, cfg, narrow, tmp_path):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    sass = read_sass(afc.compile_kernel(cfg, use_cache=False).cubin, tmp_path)
    gemms = set(re.findall(r"HGMMA\.(\d+x\d+x\d+)", sass))
    assert narrow in gemms and f"64x{cfg.block_n}x16" in gemms, gemms
