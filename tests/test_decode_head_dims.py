"""Decode at every head dim that is a multiple of 8 (seventeenth session): a problem's head dim runs in tiles of the
next of TILE_DIMS (a warp's copy pass covers whole rows or chunks), the padding zero-filled in shared memory and never
read or written in HBM (HBM_DIM). GPU side: tests/test_decode_head_dims_gpu.py."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops.decode_kernels import HEAD_DIMS, MMA, tile_dim


def key(d, **extra):
    return {"dtype": "bf16", "head_dim": d, "m_tiles": 1, "paged": False, **extra}


def test_tile_dims():
    assert HEAD_DIMS == tuple(range(8, 257, 8))
    dims = (8, 16, 24, 40, 64, 72, 96, 128, 136, 192, 256)
    assert [tile_dim(d) for d in dims] == [16, 16, 32, 64, 64, 128, 128, 128, 256, 256, 256]


def test_padded_configs_render_both_dims_and_refuse_whole_row_copies():
    c = MMA.default("sm_90", key(96))
    assert not c.problems() and not c.swizzle
    src = render(c)
    assert "constexpr int HEAD_DIM = 128;" in src and "constexpr int HBM_DIM = 96;" in src
    for knob in ("swizzle", "bulk_copy"):
        assert any("zero-filled" in p for p in c.replace(**{knob: True}).problems()), knob
    assert MMA.smem_bytes(c) == MMA.smem_bytes(c.replace(head_dim=128))  # the tile's buffers
    assert "constexpr int HBM_DIM = 128;" in render(MMA.default("sm_90", key(128)))


def test_every_head_dim_has_a_valid_default():
    for arch in MMA.archs:
        for d in HEAD_DIMS:
            for m_tiles in (1, 2) if tile_dim(d) <= 128 else (1,):
                assert not MMA.default(arch, key(d, m_tiles=m_tiles)).problems(), (arch, d, m_tiles)


ALL_VARIANTS = dict(paged=True, window=True, softcap=True, sinks=True, alibi=True)


@pytest.mark.parametrize("arch, d, extra", [("sm_90", 8, {}), ("sm_90", 96, ALL_VARIANTS),
                                            ("sm_80", 40, dict(m_tiles=2)), ("sm_90", 192, {})])
def test_padded_defaults_compile_without_spills(arch, d, extra):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    report = compile_kernel(MMA.default(arch, key(d, **extra))).report
    assert report.spills == 0 and report.stack_frame == 0, report
