"""flash_fwd_wgmma's WG_TILES switch (forward_wgmma, off; issue 18), without a GPU: off renders the template with the
switch's blocks cut out and its tile count spelled n_tiles (the source before it); on changes only the causal
three-consumer kernels (IDLE_ROWS_SKIP's, not O over Qi), where each consumer warpgroup runs the OVERLAP loop over its
own key tiles (n_own: those holding a key <= its last row's diagonal) and then only the barrier steps of the others'
later tiles; that protocol, put into tests/test_wgmma_protocol.py's model (every interleaving of the producer and two
consumer warpgroups, no ping-pong as with three consumers) with warpgroup 1 stopping early on some items, is safe, and
the model catches a trailing empty arrive made before its full wait; the switch's kernels compile for sm_90a without
spills, local memory or serialised wgmma, with as many wgmmas as the served kernel. The GPU comparison against
float64: tests/test_wgmma_wg_tiles_gpu.py."""
import re

import pytest

import test_wgmma_protocol as protocol
from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import environment, render, templates_dir
from autoflash.ops import forward_wgmma
from test_wgmma_idle_rows import CONFIGS, explore

W = TEMPLATES["flash_fwd_wgmma"]
BLOCK = re.compile(r"\{%- if wg_tiles %\}.*?\{%- endif %\}\n", re.S)  # the switch's blocks (no nested ifs)


def wgmma(head_dim=64, causal=True, block_m=192, block_n=128, stages=2, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


SWITCHED = [wgmma(), wgmma(stages=3), wgmma(dtype="fp16"), wgmma(stages=3, dtype="fp16"), wgmma(block_n=64),
            wgmma(block_n=96), wgmma(block_n=112), wgmma(stages=3, window=True), wgmma(stages=3, window=True,
                                                                                     sinks=True), wgmma(8), wgmma(32),
            wgmma(128, block_n=64)]  # D 128 at 192 rows: bc 64-80 fit 160 registers (bc 96 spills, switch on or off)
COMPILED = [c for c in SWITCHED if c.head_dim not in (8, 32)]


def switch(on: bool):
    forward_wgmma.WG_TILES = on


@pytest.fixture(autouse=True)
def restore(monkeypatch):
    monkeypatch.setattr(forward_wgmma, "WG_TILES", forward_wgmma.WG_TILES)


def test_off_renders_the_template_without_the_blocks(tmp_path):
    assert forward_wgmma.WG_TILES is False  # off until the H200 A/B (benchmarks/wgmma_wg_tiles_ab.py)
    source = (templates_dir() / W.template_file).read_text()
    assert len(BLOCK.findall(source)) == 2
    cut = BLOCK.sub("", source)
    cut = re.sub(r"\{%- set nt = .*?\n", "", cut)
    cut = cut.replace('release_q_after(nt ~ " == 1"', 'release_q_after("n_tiles == 1"').replace(
        'release_q_after("j == " ~ nt ~ " - 1"', 'release_q_after("j == n_tiles - 1"').replace("{{ nt }}", "n_tiles")
    assert "wg_tiles" not in cut and "nt ~" not in cut and "n_own" not in cut
    (tmp_path / W.template_file).write_text(cut)
    template = environment(str(tmp_path)).get_template(W.template_file)
    for cfg in CONFIGS + SWITCHED:
        assert cfg.problems() == [], (cfg.name, cfg.problems())
        values = W.values(cfg)
        assert values["wg_tiles"] == 0
        assert render(cfg) == template.render(**values), cfg.name


def test_on_changes_only_causal_three_consumer_kernels():
    changed = 0
    for cfg in CONFIGS + SWITCHED + [wgmma(causal=False), wgmma(128, block_m=128, stages=3)]:
        switch(False)
        off = render(cfg)
        switch(True)
        on = render(cfg)
        expected = W.consumers(cfg) == 3 and cfg.causal and not W.o_via_q(cfg)
        assert W.values(cfg)["wg_tiles"] == int(expected), cfg.name
        assert W.values(cfg)["idle_rows_skip"] == int(W.consumers(cfg) == 3 and not expected), cfg.name
        if not expected:
            assert on == off, cfg.name
            continue
        assert "IDLE_ROWS_SKIP: all 64 rows" in off and "IDLE_ROWS_SKIP: all 64 rows" not in on, cfg.name
        assert on.count("n_own") > 10 and on.count("wgmma_wait") == off.count("wgmma_wait"), cfg.name
        # the trailing tiles: per tile a full wait, then that slot's empty arrive, K before V; no read
        tail = on[on.index("for (int j = n_own; j < n_tiles; ++j) {"):]
        tail = tail[:tail.index("continue;")]  # then the idle rows' way out (no store)
        steps = re.findall(r"mbar_wait\((full_[kv])|release\((empty_[kv])", tail)
        assert [a or b for a, b in steps] == ["full_k", "empty_k", "full_v", "empty_v"], cfg.name
        assert "issue_" not in tail and "IDLE_ROWS_SKIP: no rows to store" in tail, cfg.name
        changed += 1
    assert changed >= len(SWITCHED)


def own_tiles(n_tiles, k_first, first_row, seq_q, off, block_n=128):
    """The template's n_own, in Python (for the count below)."""
    last_key = first_row + 63 + off
    if first_row >= seq_q or last_key < k_first:
        return 0
    return min(n_tiles, (last_key - k_first) // block_n + 1)


@pytest.mark.parametrize("seq, before, after", [(1024, 80, 72), (4096, 1088, 1056)])
def test_warpgroup_tiles_counted(seq, before, after):
    """Causal 192 x 128 tiles, N = seq: warpgroup-tiles computed with IDLE_ROWS_SKIP alone and with WG_TILES (the
    issue's count at N 1024: 80 -> 72, as many as 128 x 128 tiles run)."""
    tiles = -(-seq // 192)
    idle_only = own = 0
    for t in range(tiles):
        n = -(-min(seq, (t + 1) * 192) // 128)
        for wg in range(3):
            idle_only += n if t * 192 + 64 * wg < seq else 0
            own += own_tiles(n, 0, t * 192 + 64 * wg, seq, 0)
    assert (idle_only, own) == (before, after)
    assert after == sum(2 * -(-min(seq, (t + 1) * 128) // 128) for t in range(-(-seq // 128)))


# ------------------------------------------------------------ the protocol with a warpgroup stopping early
def stopping(wg, items, stages, own, o_via_q=False, trailing_v_wait=True):
    """Warpgroup `wg` running the ON template: on item i, the OVERLAP loop over its own own[i] tiles (all n if i is
    not in `own`; 0: Qi released at once), then per later tile full_k wait, empty_k arrive, full_v wait, empty_v
    arrive (no reads). No ping-pong (three consumers never take turns)."""
    assert not o_via_q
    tile, wait_full, release = protocol.ring_ops(stages)
    ops, g, q = [], 0, ("q", 0)
    for i, n in enumerate(items):
        m = own.get(i, n)
        ops.append(("wait", ("full_q", 0), i))
        release_q = [("done", q, i), ("arrive", ("empty_q", 0))]
        ops += [] if m else [("arrive", ("empty_q", 0))]
        for j in range(m + 1 if m else 0):
            t = g + j
            ops += ([wait_full("k", t)] if j < m else []) + ([wait_full("v", t - 1)] if j else [])
            ops += [("read", q, i), ("read", tile("k", t), t)] if j < m else []
            ops += [("read", tile("v", t - 1), t - 1)] if j else []
            ops += (release("k", t) + (release_q if j == m - 1 else [])) if j < m else []
            ops += release("v", t - 1) if j else []
        for t in range(g + m, g + n):
            ops += [wait_full("k", t), ("arrive", ("empty_k", t % stages))]
            ops += ([wait_full("v", t)] if trailing_v_wait else []) + [("arrive", ("empty_v", t % stages))]
        g += n
    return ops


@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("items", protocol.ITEMS, ids=str)
def test_transcription_matches_the_protocol_model(items, stages):
    served = [op for op in protocol.consumer(1, list(items), stages) if not op[0].startswith("bar_")]
    assert stopping(1, list(items), stages, {}) == served


@pytest.mark.parametrize("items, own", [((2,), {0: 1}), ((3,), {0: 1}), ((3,), {0: 2}), ((3,), {0: 0}),
                                        ((2, 3), {0: 1, 1: 2}), ((3, 1, 3), {0: 1, 2: 0}), ((1, 3, 2), {1: 1}),
                                        ((2, 1, 1, 2), {0: 0, 3: 1}), ((3, 3), {0: 2, 1: 1})], ids=str)
@pytest.mark.parametrize("stages", [2, 3])
def test_every_interleaving_is_safe_with_a_warpgroup_stopping_early(items, own, stages):
    assert explore(list(items), stages, own, pingpong=False, wg1=stopping) > len(items)


def test_the_model_catches_a_trailing_arrive_before_its_full_wait():
    """A stopped warpgroup that arrives on empty_v without waiting full_v counts in a round still open: the producer
    reloads the slot while warpgroup 0 still reads it (or a wait passes a phase early)."""
    def early(wg, items, stages, own, o_via_q=False):
        return stopping(wg, items, stages, own, trailing_v_wait=False)

    explore([3, 3], 2, {0: 1, 1: 1}, pingpong=False, wg1=stopping)  # the template's order: safe
    with pytest.raises(AssertionError, match="deadlock|read|reloaded|overwritten|passed"):
        explore([3, 3], 2, {0: 1, 1: 1}, pingpong=False, wg1=early)


# ------------------------------------------------------------ compiled (NVRTC + ptxas, no GPU)
@pytest.mark.parametrize("cfg", COMPILED, ids=lambda c: c.name)
def test_switched_kernels_compile_clean(cfg):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    switch(True)
    assert cfg.problems() == [] and W.values(cfg)["wg_tiles"] == 1
    report = afc.compile_kernel(cfg, use_cache=False).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report


@pytest.mark.parametrize("cfg", [SWITCHED[0], SWITCHED[1]], ids=lambda c: c.name)
def test_switched_sass_keeps_the_working_path(tmp_path, cfg):
    """The same wgmmas (HGMMA) and exponentials (MUFU.EX2) as the served kernel (one loop, a run-time trip count),
    no local memory (LDL/STL)."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc
    from sass import sass

    counts = {}
    for on in (False, True):
        switch(on)
        code = sass(afc.compile_kernel(cfg, use_cache=False).cubin, tmp_path)
        counts[on] = {op: len(re.findall(op, code)) for op in ("HGMMA", "MUFU.EX2", "LDL", "STL")}
    off, on = counts[False], counts[True]
    assert on["HGMMA"] == off["HGMMA"] > 0 and on["MUFU.EX2"] == off["MUFU.EX2"] > 0, counts
    assert on["LDL"] == on["STL"] == 0, counts
