"""flash_bwd_mma's LINE_COPIES without a GPU (ops/backward_kernels; off until timed): a Q / dO / K / V tile's cp.async
copies walk the padded tile's 16-byte slots, so each quarter-warp writes one aligned 128-byte line (s30g: copied by data
chunk, rows 272 B apart straddled lines). Off, no kernel renders it; on, the slots cover every data chunk once and no
pad slot, the tiles' bases are 128-byte aligned, and the served D 64 tiles and the D 128 non-causal one compile with 0 B
spilled (the D 128 causal tile spills 20-52 B with it, with or without HEAVY_BY_BATCH / DQ_INTERLEAVE). GPU checks:
tests/test_backward_line_copies_gpu.py."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_kernels
from autoflash.ops.backward import TEMPLATE

ON = "PER_ROW = (DIM + 8) / 8"


def cfg(d, causal=False, dtype="bf16"):
    key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=False)
    return TEMPLATE.config("sm_90", key, block_m=128 if d == 64 else 64, block_n=128 if d < 256 else 64, warps=8,
                           stages=2, warps_q=2 if d < 256 else 4)


def test_off_renders_it_nowhere():
    assert backward_kernels.LINE_COPIES == ()
    assert not any(ON in render(cfg(d)) for d in (64, 128, 256))


@pytest.mark.parametrize("tile, head_dim", [(64, 64), (128, 128), (256, 256), (128, 96), (64, 40)])
def test_the_slots_cover_each_data_chunk_once_in_aligned_lines(tile, head_dim):
    """The template's arithmetic (slot e -> row e / PER_ROW, chunk e % PER_ROW, skipped past the data), replayed."""
    rows, per_row, dchunks = 128, (tile + 8) // 8, head_dim // 8
    taken = [(e // per_row, e % per_row) for e in range(rows * per_row) if e % per_row < dchunks]
    assert sorted(taken) == [(r, c) for r in range(rows) for c in range(dchunks)]
    for e in range(0, rows * per_row, 8):  # a quarter-warp: slots e .. e + 7, bytes 16 e .. 16 e + 127
        byte = (e // per_row * (tile + 8) + e % per_row * 8) * 2
        assert byte == 16 * e and byte % 128 == 0


def test_the_tile_bases_are_128_byte_aligned():
    """sK, sV, sdS, sP, sQ and sdO of the 2-D layouts start at multiples of 128 bytes (so a quarter-warp's 8 slots are
    one line), and so do the Q / dO stages."""
    for d, bm, bn in ((64, 128, 128), (128, 64, 128), (256, 64, 64)):
        stride, s_stride = d + 8, bm + 8
        sizes = [bn * stride, bn * stride, bn * s_stride, bn * s_stride, bm * stride, bm * stride, bm * stride]
        offset = 0
        for size in sizes:
            assert offset * 2 % 128 == 0, (d, offset)
            offset += size


def test_on_the_d64_and_d128_non_causal_tiles_compile_clean(monkeypatch):
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_kernels, "LINE_COPIES", (64, 128, 256))
    for c in (cfg(64), cfg(64, True), cfg(128)):
        assert ON in render(c)
        report = compile_kernel(c).report
        assert report.spill_stores == report.spill_loads == 0, (c.name, report)
