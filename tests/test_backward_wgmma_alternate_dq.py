"""ops/backward_wgmma.ALTERNATE_DQ (served since s24) without a GPU: the walk's query tile g has its dQ computed
and staged by consumer g % 2 (the stage's index) instead of always consumer 0. Checked here: off, nothing renders it;
on, only the walk does, where the dS^T hand-over waits on the tile's owner and both consumers take the whole dQ tile
(slice 0, 0); it compiles clean. GPU: the walk's float64 tests (s24e ran them with it on before it was served)."""
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, assert_compiles_clean, key
from test_backward_wgmma_persistent import walk_sources

MARK = "const bool does_dq = stage == wg;"


def test_only_the_walk_renders_it(monkeypatch):
    for source in walk_sources(monkeypatch, "ALTERNATE_DQ", MARK):
        assert "if (does_dq) named_barrier(bar_id" in source and "const int dq_r = 0, dq_c = 0;" in source


def test_on_the_walk_compiles_clean(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "ALTERNATE_DQ", True)
    assert_compiles_clean(WG.default("sm_90a", key("bf16", 64, False)))
