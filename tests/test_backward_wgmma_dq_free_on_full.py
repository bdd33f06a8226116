"""ops/backward_wgmma.DQ_FREE_ON_FULL (served since s24) without a GPU: the persistent walk's
producer reduces tile g - 2's dQ and waits for that bulk op's read before it arrives on full[g], so the consumer
staging tile g's dQ (into the same buffer) needs no dq_empty wait. Checked here: only the walk renders it, its
consumers then never wait on dq_empty and its producer never arrives there; on, the walk compiles clean. GPU: the
walk's and TAIL_SPLIT's float64 tests (on, as served; s24a ran them with it on before it was).
DQ_FREE_ON_FULL_BLOCKS (s24, being measured): the same order in the block-a-CTA grids' producer loop."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, assert_compiles_clean, key
from test_backward_wgmma_persistent import tiles

MARK = "(DQ_FREE_ON_FULL) tile g - STAGES's staging buffer"
BLOCKS_MARK = "(DQ_FREE_ON_FULL) tile it - STAGES's staging buffer"


def test_only_the_walk_renders_it(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "DQ_FREE_ON_FULL", False)
    assert not any(MARK in render(c) for c in tiles())
    monkeypatch.setattr(backward_wgmma, "DQ_FREE_ON_FULL", True)
    assert any(WG.persistent(c) for c in tiles())
    for c in tiles():
        source = render(c)
        assert (MARK in source) == WG.persistent(c), c.name
        if WG.persistent(c):  # (the pipelined branch's stage_dq is compiled but never runs at stages 2)
            assert "mbar_arrive(dq_empty_bar" not in source and source.count("mbar_wait(dq_empty_bar") == 1


def test_on_the_walk_compiles_clean(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "DQ_FREE_ON_FULL", True)
    assert_compiles_clean(WG.default("sm_90a", key("bf16", 64, False)))


def test_the_blocks_switch_renders_it_where_the_lag_was(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "DQ_FREE_ON_FULL_BLOCKS", False)
    lagged = {c.name for c in tiles() if WG.reads_dq_with_lag(c)}
    assert lagged and not any(BLOCKS_MARK in render(c) for c in tiles())
    monkeypatch.setattr(backward_wgmma, "DQ_FREE_ON_FULL_BLOCKS", True)
    for c in tiles():
        source = render(c)
        assert (BLOCKS_MARK in source) == (c.name in lagged) == (WG.frees_dq_on_full(c) and not WG.persistent(c))
        if c.name in lagged:  # the producer hands nothing back; the consumers' one wait is the pipelined branch's
            assert not WG.reads_dq_with_lag(c) and "wait_group.read 1" not in source
            assert "mbar_arrive(dq_empty_bar" not in source and source.count("mbar_wait(dq_empty_bar") == 1


@pytest.mark.parametrize("d", [64, 128])
def test_the_blocks_switch_compiles_clean(monkeypatch, d):
    monkeypatch.setattr(backward_wgmma, "DQ_FREE_ON_FULL_BLOCKS", True)
    c = WG.config("sm_90a", key("bf16", d, True), block_m=64, block_n=128, warps=12, stages=2, warps_q=1)
    assert WG.frees_dq_on_full(c) and not WG.persistent(c)
    assert_compiles_clean(c)
