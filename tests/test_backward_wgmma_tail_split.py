"""ops/backward_wgmma.TAIL_SPLIT without a GPU: off, no config renders the split (no 1-D grid, no tail buffer); on
(the default), the non-causal, non-deterministic configs render it and compile clean; the launch's grid
arithmetic: the K/V tiles past the last whole wave split into SMs // tiles-left parts, none when that is below two.
GPU checks: tests/test_backward_wgmma_tail_split_gpu.py."""
from types import SimpleNamespace

import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_gpu import BackwardLaunch

from test_backward_wgmma import WG, assert_compiles_clean, key

SPLIT = "const bool is_part = (int)blockIdx.x >= full_blocks;"


def test_off_renders_no_split(monkeypatch):
    assert backward_wgmma.TAIL_SPLIT is True  # (served: NOTES "TAIL_SPLIT")
    monkeypatch.setattr(backward_wgmma, "TAIL_SPLIT", False)
    monkeypatch.setattr(backward_wgmma, "CAUSAL_WALK", False)
    for d in (64, 128):
        for causal in (False, True):
            for c in WG.space("sm_90a", key("bf16", d, causal)):
                if not c.problems():
                    source = render(c)
                    assert SPLIT not in source and "tail_words" not in source, c.name


def test_on_where_it_applies(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "TAIL_SPLIT", True)
    monkeypatch.setattr(backward_wgmma, "CAUSAL_WALK", False)  # (its counter also takes tail_words: its own tests)
    for d in (64, 96, 128):
        for causal in (False, True):
            for det in (False, True):
                c = WG.default("sm_90a", key("bf16", d, causal, deterministic=det))
                expected = not det and not causal
                source = render(c)  # (PERSISTENT's walk decodes the same blocks in start_block)
                decodes = SPLIT in source or "is_part = b >= full_blocks;" in source
                assert decodes == expected and ("int tail_words" in source) == expected, c.name


@pytest.mark.parametrize("tiles, heads_kv, batch, sms, full, parts", [
    (32, 32, 4, 132, 4092, 33),    # the table's D 64 rows: 31 whole waves and 4 tiles left, 33 parts each
    (32, 16, 4, 132, 2048, 1),     # D 128: 68 tiles left, one part each: no split
    (8, 17, 1, 132, 132, 33),      # 136 blocks: 4 left
    (33, 2, 3, 132, 132, 2),       # 66 left: 2 parts each
    (33, 4, 1, 132, 132, 1),       # whole waves
    (4, 8, 1, 132, 32, 1),         # under one wave
])
def test_split_tail_grid(tiles, heads_kv, batch, sms, full, parts, monkeypatch):
    monkeypatch.setattr(backward_wgmma, "TAIL_WAVES", False)
    launch = SimpleNamespace(main_grid=(tiles, heads_kv, batch))
    cfg = SimpleNamespace(block_n=128)
    words = BackwardLaunch._split_tail(launch, cfg, 64, sms)
    left = tiles * heads_kv * batch - full
    assert (launch.full_blocks, launch.parts) == (full, parts)
    assert launch.main_grid == (full + left * parts, 1, 1) and launch.main_grid[0] <= full + sms
    assert words == left * (2 * 128 * 64 + 1)


@pytest.mark.parametrize("tiles, heads_kv, batch, full, parts", [
    (32, 16, 4, 1980, 5),     # D 128's rows: 68 of 2048 tiles left: 5 parts each, 340 over 3 waves (0.75 of a tile)
    (32, 32, 4, 4092, 33),    # D 64's: as without TAIL_WAVES (33 parts fit the last wave)
    (33, 4, 1, 132, 1),       # whole waves
    (10, 10, 1, 100, 1),      # under one wave
    (29, 4, 2, 232, 1),       # 100 left: no k beats the whole tiles' one wave (1.1-1.2 of a tile)
])
def test_tail_waves_split_over_more_waves(tiles, heads_kv, batch, full, parts, monkeypatch):
    from autoflash.ops.backward_gpu import tail_parts

    assert backward_wgmma.TAIL_WAVES is True  # (served: NOTES "TAIL_WAVES", s21h)
    launch = SimpleNamespace(main_grid=(tiles, heads_kv, batch))
    words = BackwardLaunch._split_tail(launch, SimpleNamespace(block_n=128), 128, 132)
    left = tiles * heads_kv * batch - full
    assert (launch.full_blocks, launch.parts) == (full, parts)
    assert launch.main_grid == (full + left * parts, 1, 1) and words == left * (2 * 128 * 128 + 1)
    assert tail_parts(68, 132) == 5 and tail_parts(100, 132) == 1


@pytest.mark.parametrize("d, causal", [(64, False), (64, True), (128, False), (96, False)])
def test_on_compiles_clean(d, causal, monkeypatch):
    monkeypatch.setattr(backward_wgmma, "TAIL_SPLIT", True)
    assert_compiles_clean(WG.default("sm_90a", key("bf16", d, causal)))
