"""flash_fwd_wgmma's IDLE_ROWS_SKIP switch (forward_wgmma, on; issue 18 item 2), without a GPU: off renders the
template with the switch's block cut out (the source before it); on adds only that block, and only where a warpgroup can
be idle (two or three consumers); the idle path's barrier steps, put into tests/test_wgmma_protocol.py's model (every
interleaving of the producer and two consumer warpgroups, ping-pong on and off) with warpgroup 1 idle on some items,
are safe, and the model catches an idle empty arrive made before its full wait; the switch's kernels compile for
sm_90a without spills, local memory or serialised wgmma; `grid` spreads the idle tiles (one SM fewer) only where a grid
of every SM would give them all to the same CTAs. The GPU comparison against float64:
tests/test_wgmma_idle_rows_gpu.py."""
import re

import pytest

import test_wgmma_protocol as protocol
from autoflash import KernelConfig
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import environment, render, templates_dir
from autoflash.ops import forward_wgmma
from model_check import reachable
from test_wgmma_schedule_ostore import configs_to_render

W = TEMPLATES["flash_fwd_wgmma"]
BLOCK = re.compile(r"\{%- if idle_rows_skip %\}.*?\{%- endif %\}\n", re.S)  # the block (no nested ifs)


def wgmma(head_dim=128, causal=False, block_m=128, block_n=128, stages=2, dtype="bf16", **extra):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, head_dim, causal, block_m, block_n,
                        4 * (block_m // 64 + 1), stages, **extra)


@pytest.fixture
def switched(monkeypatch):
    monkeypatch.setattr(forward_wgmma, "IDLE_ROWS_SKIP", True)


# every schedule the template has: 1/2/3 consumers, ping-pong on and off, causal, o_store both ways, O over Qi, paged
CONFIGS = configs_to_render() + [wgmma(64, block_m=64, block_n=128), wgmma(128, pingpong=1), wgmma(128, o_store=0),
                                 wgmma(64, True, block_m=192, stages=3), wgmma(256, block_n=80),
                                 wgmma(128, True, paged=True, o_store=0)]


def test_off_renders_the_template_without_the_block(tmp_path, monkeypatch):
    assert forward_wgmma.IDLE_ROWS_SKIP is True  # served on (measured: benchmarks/NOTES.md, eleventh session)
    monkeypatch.setattr(forward_wgmma, "IDLE_ROWS_SKIP", False)
    source = (templates_dir() / W.template_file).read_text()
    assert len(BLOCK.findall(source)) == 1
    cut = BLOCK.sub("", source)
    assert "idle_rows_skip" not in cut
    (tmp_path / W.template_file).write_text(cut)
    template = environment(str(tmp_path)).get_template(W.template_file)
    for cfg in CONFIGS:
        assert cfg.problems() == [], (cfg.name, cfg.problems())
        values = W.values(cfg)
        assert values["idle_rows_skip"] == 0
        assert render(cfg) == template.render(**values), cfg.name


@pytest.mark.usefixtures("switched")
def test_on_adds_only_the_idle_path():
    checked = 0
    for cfg in CONFIGS:
        on = render(cfg)
        forward_wgmma.IDLE_ROWS_SKIP = False
        off = render(cfg)
        forward_wgmma.IDLE_ROWS_SKIP = True
        if W.consumers(cfg) != 3:  # rendered for 192-row tiles only (forward_wgmma.IDLE_ROWS_SKIP)
            assert on == off, cfg.name
            continue
        anchor = "            mbar_wait(bar_q, it & 1);  // Qi in shared memory\n"
        head, tail = off.split(anchor)
        assert on.startswith(head + anchor) and on.endswith(tail), cfg.name
        block = on[len(head + anchor):len(on) - len(tail)]
        assert block.startswith("            if (wg_first_row >= w.seq.seq_q) {") and "wgmma" not in block.replace(
            "working warpgroups", ""), cfg.name
        # the working path's barrier steps, in its order; Qi released once per item, as the working warpgroups
        steps = re.findall(r"mbar_wait\((full_[kv])|turn_(begin|end)\(\)|release\((empty_[kqv])", block)
        assert [next(s for s in m if s) for m in steps] == [
            "full_k", "full_v", "begin", "end", "empty_k", "empty_q", "empty_v"], cfg.name
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("seq_q, block_m, causal, varlen, spread", [
    (1024, 192, False, False, True),    # 6 tiles, the last of 64 rows: 132 % 6 == 0
    (4096, 192, False, False, True),    # 22 tiles, the last of 64 rows
    (1000, 192, False, False, True),    # 6 tiles, the last of 40 rows: warpgroups 1 and 2 idle
    (1100, 192, False, False, False),   # 6 tiles, the last of 140 rows: none idle
    (4096, 128, False, False, False),   # no idle rows
    (1024, 192, True, False, False),    # causal pairs: not spread
    (1024, 192, False, True, False),    # varlen: its own numbering
])
def test_grid_spreads_idle_tiles_only_where_they_would_share_ctas(monkeypatch, seq_q, block_m, causal, varlen, spread):
    from autoflash.ops.forward_base import Problem

    monkeypatch.setattr(forward_wgmma, "_sm_count", lambda: 132)
    cfg = wgmma(64, causal, block_m=block_m, stages=2)
    packed = dict(cu_seqlens_q=1, cu_seqlens_k=1, total_q=64 * seq_q, total_k=64 * seq_q) if varlen else {}
    p = Problem(64, 16, 16, seq_q, seq_q, 64, causal, **packed)  # (cu_seqlens: a device pointer, never read here)
    assert W.grid(cfg, p)[0] == 132 - spread
    monkeypatch.setattr(forward_wgmma, "IDLE_ROWS_SKIP", False)
    assert W.grid(cfg, p)[0] == 132


# ------------------------------------------------------------ the protocol with an idle warpgroup
def consumer(wg, items, stages, idle=(), o_via_q=False):
    """test_wgmma_protocol.consumer's program, except on the items in `idle` (warpgroup 1 only: warpgroup 0 holds the
    item's first row): the template's idle path, the same full waits, turns and empty arrives, no reads."""
    ops = [("bar_arrive", 1)] if wg == protocol.CONSUMERS - 1 else []
    turn = [("bar_arrive", 1 + wg), ("bar_wait", 1 + wg), ("bar_arrive", 1 + (wg + 1) % protocol.CONSUMERS)]
    tile, wait_full, release = protocol.ring_ops(stages)
    g = 0
    for i, n in enumerate(items):
        q = ("q", 0)
        ops.append(("wait", ("full_q", 0), i))
        if i in idle:
            for j in range(n + 1):
                ops += ([wait_full("k", g + j)] if j < n else []) + ([wait_full("v", g + j - 1)] if j else []) + turn
                ops += [("arrive", ("empty_k", (g + j) % stages))] if j < n else []
                ops += [("arrive", ("empty_q", 0))] if j == n - 1 else []
                ops += [("arrive", ("empty_v", (g + j - 1) % stages))] if j else []
            g += n
            continue
        release_q = [("done", q, i), ("arrive", ("empty_q", 0))]
        epilogue = [("read", q, i)] + release_q if o_via_q else []
        release_q = [] if o_via_q else release_q
        for j in range(n + 1):
            t = g + j
            ops += ([wait_full("k", t)] if j < n else []) + ([wait_full("v", t - 1)] if j else []) + turn[:2]
            ops += ([("read", q, i), ("read", tile("k", t), t)] if j < n else [])
            ops += ([("read", tile("v", t - 1), t - 1)] if j else []) + turn[2:]
            ops += (release("k", t) + (release_q if j == n - 1 else [])) if j < n else []
            ops += release("v", t - 1) if j else []
        ops += epilogue
        g += n
    if wg == 0:
        ops += [("bar_arrive", 1), ("bar_wait", 1)]
    return ops


def explore(items, stages, idle, o_via_q=False, pingpong=True, wg1=consumer) -> int:
    """Every interleaving; without ping-pong (the template's non-causal default) the consumers take no turns."""
    def turns(ops):
        return ops if pingpong else [op for op in ops if not op[0].startswith("bar_")]

    programs = [protocol.producer(items, stages, o_via_q), turns(protocol.consumer(0, items, stages, o_via_q)),
                turns(wg1(1, items, stages, idle, o_via_q))]
    start = (tuple(0 for _ in programs), (), (), (), (), ())

    def successors(state):
        return ([protocol.land(copy, state) for copy in state[5]]
                + [protocol.step(a, p[state[0][a]], state) for a, p in enumerate(programs) if state[0][a] < len(p)])

    return reachable(start, successors, lambda s: all(pc == len(p) for pc, p in zip(s[0], programs)),
                     lambda s: s[0])


@pytest.mark.parametrize("items", protocol.ITEMS, ids=str)
@pytest.mark.parametrize("o_via_q", [False, True])
def test_transcription_matches_the_protocol_model(items, o_via_q):
    for stages in (2, 3):
        assert consumer(1, list(items), stages, (), o_via_q) == protocol.consumer(1, list(items), stages, o_via_q)


@pytest.mark.parametrize("items, idle", [((1,), {0}), ((3,), {0}), ((2, 1), {0}), ((2, 1), {1}), ((1, 2, 2), {1}),
                                         ((3, 1, 3), {0, 2}), ((2, 1, 1, 2), {0, 3}), ((2, 3, 1), {0, 1, 2})],
                         ids=str)
@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("o_via_q, pingpong", [(False, True), (True, True), (False, False), (True, False)])
def test_every_interleaving_is_safe_with_an_idle_warpgroup(items, idle, stages, o_via_q, pingpong):
    assert explore(list(items), stages, idle, o_via_q, pingpong) > len(items)


def test_the_model_catches_an_arrive_before_the_full_wait():
    """An idle warpgroup that arrives on empty_k without waiting full_k (no ping-pong turns to hold it) counts in a
    round still open: the producer reloads a slot before warpgroup 0 has read it, which then waits forever or reads
    the wrong tile."""
    def early(wg, items, stages, idle, o_via_q):
        ops = consumer(wg, items, stages, idle, o_via_q)
        return [op for op in ops if not (op[0] == "wait" and op[1][0] == "full_k")]
    explore([3, 3], 2, {0, 1}, pingpong=True, wg1=early)  # ping-pong's turns keep it in step: safe
    with pytest.raises(AssertionError, match="deadlock|read|reloaded|overwritten|passed"):
        explore([3, 3], 2, {0, 1}, pingpong=False, wg1=early)


# ------------------------------------------------------------ compiled (NVRTC + ptxas, no GPU)
COMPILED = [wgmma(64, block_m=192, block_n=128, stages=2), wgmma(64, block_m=192, block_n=128, stages=2, dtype="fp16"),
            wgmma(64, True, block_m=192, stages=3), wgmma(128, stages=3), wgmma(128, stages=3, pingpong=1),
            wgmma(128, True, stages=3), wgmma(128), wgmma(256, block_n=80), wgmma(256, True, block_n=80),
            wgmma(64, True, block_m=192, stages=3, window=True), wgmma(128, True, paged=True),
            wgmma(64, block_m=192, sinks=True)]


@pytest.mark.parametrize("value", [True])
@pytest.mark.parametrize("cfg", COMPILED, ids=lambda c: c.name)
def test_switched_kernels_compile_clean(monkeypatch, cfg, value):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc

    monkeypatch.setattr(forward_wgmma, "IDLE_ROWS_SKIP", value)
    assert cfg.problems() == [] and W.values(cfg)["idle_rows_skip"] == (value and W.consumers(cfg) == 3)
    report = afc.compile_kernel(cfg, use_cache=False).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report


@pytest.mark.parametrize("cfg", [COMPILED[0], COMPILED[2]], ids=lambda c: c.name)
def test_switched_sass_keeps_the_working_path(monkeypatch, tmp_path, cfg):
    """The idle path adds barrier operations only: as many wgmmas (HGMMA) and exponentials (MUFU.EX2) as the served
    kernel, more mbarrier operations (SYNCS), no local memory (LDL/STL)."""
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels import compile as afc
    from sass import sass

    counts = {}
    for on in (False, True):
        monkeypatch.setattr(forward_wgmma, "IDLE_ROWS_SKIP", on)
        code = sass(afc.compile_kernel(cfg, use_cache=False).cubin, tmp_path)
        counts[on] = {op: len(re.findall(op, code)) for op in ("HGMMA", "MUFU.EX2", "SYNCS", "LDL", "STL")}
    off, on = counts[False], counts[True]
    assert on["HGMMA"] == off["HGMMA"] > 0 and on["MUFU.EX2"] == off["MUFU.EX2"] > 0, counts
    assert on["SYNCS"] > off["SYNCS"] and on["LDL"] == on["STL"] == 0, counts
