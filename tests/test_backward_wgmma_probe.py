"""ops/backward_wgmma.PROBE_CLOCKS without a GPU: the clock probe (benchmarks/bwd_block_clocks.py: per-block marks,
per-phase laps of each warpgroup, the consumers' wait for a tile's copies) is never in a served render, and the tiles it
is used on compile with it at 0 spills, wgmma not serialised (a probe that spilled would time another kernel)."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, assert_compiles_clean, key
from test_backward_wgmma_persistent import tiles

PROBE_SYMBOLS = ("block_clocks", "phase_clocks", "probe_issued")


def test_off_by_default_and_in_no_render():
    assert backward_wgmma.PROBE_CLOCKS is False
    assert not any(s in render(c) for c in tiles() for s in PROBE_SYMBOLS)


@pytest.mark.parametrize("head_dim, causal", [(64, False), (128, False), (64, True)])
def test_served_tiles_compile_clean_with_it(head_dim, causal, monkeypatch):
    monkeypatch.setattr(backward_wgmma, "PROBE_CLOCKS", True)
    cfg = WG.default("sm_90a", key("bf16", head_dim, causal))
    source = render(cfg)
    assert all(s in source for s in PROBE_SYMBOLS[:2])
    assert ("probe_issued[stage] = clock()" in source) == WG.persistent(cfg)  # (the walk's producer stamps)
    assert_compiles_clean(cfg)
