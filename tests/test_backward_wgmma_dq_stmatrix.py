"""ops/backward_wgmma.DQ_STMATRIX without a GPU: off, no config stages dQ by stmatrix or reads dq_accum permuted; on,
exactly the configs that stage dQ unpadded for one bulk op a tile (dq_via_producer 2) do both, in their main kernel
and their _dq kernel alike, and compile clean (0 spills, no stack, no serialised wgmma) with more STSM in the SASS than off; and the
layout itself: the stores' chunk order, read back by the _dq kernel's rule, is dQ's row. GPU checks:
tests/test_backward_wgmma_dq_stmatrix_gpu.py."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, cfg, kernel_sass, key

STAGED = "stmatrix_x4(row + 64 * k"
PERMUTED = "row[(2 * c) ^ (r % 8)]"
SERVED = [cfg(dt, d, causal, bm=64, bn=128, warps=12, stages=2)
          for dt in ("bf16", "fp16") for d in (64, 128) for causal in (False, True)]


def _configs():
    return [c for d in (64, 128) for causal in (False, True) for c in WG.space("sm_90a", key("bf16", d, causal))
            if not c.problems()]


def test_off_by_default_nothing_permuted():
    assert backward_wgmma.DQ_STMATRIX is False
    for c in _configs():
        source = render(c)
        assert STAGED not in source and PERMUTED not in source, c.name


def test_on_the_tile_reduce_configs_and_only_they(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "DQ_STMATRIX", True)
    on = 0
    for c in _configs():
        source, mode2 = render(c), WG.producer(c) and WG.dq_mode(c) == 2
        assert (STAGED in source) == mode2 and (PERMUTED in source) == mode2, c.name
        on += mode2
    assert on >= 4


def _stored_chunks(d: int) -> dict:
    """Where the staging puts each (row, column) of a 64-row slice: the stmatrix fragment (lane 4g + t holds the fp32
    of row g + 8h, column 8b + 2t + e as matrix (b, e)'s b16 pair t) and the template's per-lane address rule."""
    place = {}
    for h in range(2):
        for k in range(d // 16):
            for mi in range(4):  # matrix mi of the x4: (2k + mi // 2, mi % 2)
                b, e = 2 * k + mi // 2, mi % 2
                for mr in range(8):  # the lane that gives this matrix row's address
                    flip = (mr // 4) * 64
                    offset = mr * d * 4 + (mi ^ (mr % 4)) * 16 + 64 * k + (-flip if k % 2 else flip)
                    for t in range(4):
                        place[(8 * h + mr, 8 * b + 2 * t + e)] = 8 * h * d * 4 + offset + 4 * t
    return place


@pytest.mark.parametrize("d", [64, 128])
def test_the_dq_kernel_reads_back_what_the_staging_stored(d):
    place = _stored_chunks(d)
    assert sorted(place.values()) == list(range(0, 16 * d * 4, 4))  # a permutation of the 16 rows' floats
    for (row, col), byte in place.items():
        c, e = divmod(col, 8)  # the _dq kernel's thread c: chunk (2c + e) ^ (r % 8), float (col % 8) // 2
        assert byte == row * d * 4 + (((2 * c + e % 2) ^ (row % 8)) * 4 + e // 2) * 4, (row, col)
    for h in range(2):  # a matrix's 8 rows fall on 8 distinct 16-byte bank groups (one wavefront)
        for k in range(d // 16):
            for mi in range(4):
                b, e = 2 * k + mi // 2, mi % 2
                groups = {(place[(8 * h + mr, 8 * b + e)] % 128) // 16 for mr in range(8)}
                assert len(groups) == 8


@pytest.mark.parametrize("c", SERVED, ids=lambda c: c.name)
def test_served_tiles_compile_clean(c, monkeypatch, tmp_path):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    stores = {}
    for on in (False, True):
        monkeypatch.setattr(backward_wgmma, "DQ_STMATRIX", on)
        kernel = compile_kernel(c)
        report = kernel.report
        assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
        (tmp_path / str(on)).mkdir()
        stores[on] = kernel_sass(kernel, c.name, tmp_path / str(on)).count("STSM")
    # dS^T's stmatrix stores are there either way; dQ's add DQ_N / 8 a staged tile (twice: both loop bodies at most)
    assert stores[True] > stores[False], stores
