"""ops/backward_wgmma.DQ_FREE_ON_FULL (served since s24) without a GPU: the persistent walk's
producer reduces tile g - 2's dQ and waits for that bulk op's read before it arrives on full[g], so the consumer
staging tile g's dQ (into the same buffer) needs no dq_empty wait. Checked here: only the walk renders it, its
consumers then never wait on dq_empty and its producer never arrives there; on, the walk compiles clean. GPU: the
walk's and TAIL_SPLIT's float64 tests (on, as served; s24a ran them with it on before it was)."""
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, assert_compiles_clean, key
from test_backward_wgmma_persistent import walk_sources

MARK = "(DQ_FREE_ON_FULL) tile g - STAGES's staging buffer"


def test_only_the_walk_renders_it(monkeypatch):
    for source in walk_sources(monkeypatch, "DQ_FREE_ON_FULL", MARK):
        # (the pipelined branch's stage_dq is compiled but never runs at stages 2)
        assert "mbar_arrive(dq_empty_bar" not in source and source.count("mbar_wait(dq_empty_bar") == 1


def test_on_the_walk_compiles_clean(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "DQ_FREE_ON_FULL", True)
    assert_compiles_clean(WG.default("sm_90a", key("bf16", 64, False)))
