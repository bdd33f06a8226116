"""The backward at every multiple-of-8 head dim, without a GPU: a head dim not in a template's TILE_DIMS runs on the
next tile (HEAD_DIM) with the problem's rows in global memory (HBM_DIM): flash_bwd_mma to 256, flash_bwd_wgmma to
128. The rules are the tile's plus the padded tiles' own (mma: not the tiles at the register cap; wgmma: no producer
warpgroup), every padded key has a default, the render pads what it must, the unpadded kernels keep their code, and
the defaults compile clean. The GPU checks: tests/test_backward_head_dims_gpu.py."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops.backward_kernels import TEMPLATE, TILE_DIMS, BackwardProblem, TensorSpec, check_inputs, tile_dim
from autoflash.ops import backward_wgmma
from autoflash.serve.routing import BACKWARD_HEAD_DIMS

PADDED = [d for d in range(8, 257, 8) if d not in TILE_DIMS]


def key(d, causal=False, dtype="bf16", **flags):
    return {"dtype": dtype, "head_dim": d, "causal": causal, "deterministic": False, "window": False,
            "softcap": False, "sinks": False, "alibi": False, **flags}


def test_every_multiple_of_8_has_a_backward():
    assert tuple(BACKWARD_HEAD_DIMS) == tuple(range(8, 257, 8))
    assert [tile_dim(d) for d in (8, 56, 64, 72, 96, 128, 136, 192, 256)] == [64, 64, 64, 128, 128, 128, 256, 256, 256]
    assert tile_dim(192, 128) == 192 and tile_dim(128, 64) == 128  # the Dv != Dqk pairs keep their own tiles


@pytest.mark.parametrize("flags", [{}, {"deterministic": True}, {"varlen": True}, {"window": True, "alibi": True},
                                   {"softcap": True, "sinks": True}], ids=lambda f: "_".join(f) or "plain")
def test_every_padded_key_has_a_default_off_the_register_cap(flags):
    for d in PADDED:
        for causal in (False, True):
            c = TEMPLATE.default("sm_90", key(d, causal, **flags))
            assert c.head_dim == d and not c.problems(), c.name
            assert (tile_dim(d), c.block_n if tile_dim(d) == 128 else c.block_m) not in ((128, 128), (256, 64)), c.name


def test_padded_tiles_at_the_cap_refused_with_the_reason():
    c = TEMPLATE.config("sm_90", key(96), block_m=64, block_n=128, warps=8, stages=2, warps_q=2)
    assert any("head_dim 96 (padded to 128) spills registers with block_n=128" in p for p in c.problems())
    c = TEMPLATE.config("sm_90", key(160), block_m=64, block_n=64, warps=8, stages=2, warps_q=2)
    assert any("(padded to 256) spills registers with block_m=64" in p for p in c.problems())
    # the tile's own rules apply, named as such
    c = TEMPLATE.config("sm_90", key(200), block_m=32, block_n=128, warps=8, stages=2, warps_q=1)
    assert any(p.startswith("(head_dim 200 on 256-column tiles) head_dim 256 needs warps_q=2") for p in c.problems())


def test_the_render_pads_only_padded_head_dims():
    padded = render(TEMPLATE.default("sm_90", key(96, True)))
    assert "constexpr int HEAD_DIM = 128;" in padded and "constexpr int HBM_DIM = 96;" in padded
    assert "the columns HBM_DIM.. of the K, V, Q and dO tiles" in padded
    assert "const size_t j = i / 12 * CHUNKS + i % 12;" in padded  # the dQ conversion: 12 chunks a dq row
    assert "if (ch < O_DIM / 8)" in padded  # the preprocess's lanes past the O row read nothing
    for d in TILE_DIMS:
        plain = render(TEMPLATE.default("sm_90", key(d, True)))
        assert f"constexpr int HBM_DIM = {d};" in plain and "the columns HBM_DIM.." not in plain
        assert "const size_t j =" not in plain and "if (ch < O_DIM / 8)" not in plain


def test_problem_takes_every_multiple_of_8_and_names_the_range():
    def inputs(d):
        ts = [TensorSpec(n, (1, 2, 16, d), "bf16", "cuda:0") for n in ("q", "k", "v", "out")]
        return ts + [TensorSpec("lse", (1, 2, 16), "fp32", "cuda:0"), TensorSpec("grad_out", (1, 2, 16, d), "bf16",
                                                                              "cuda:0")]
    p = check_inputs(*inputs(72), causal=True)
    assert isinstance(p, BackwardProblem) and p.head_dim == 72
    with pytest.raises(ValueError, match=r"head_dim 100 is not supported by the backward \(supports 8..256 step 8\)"):
        check_inputs(*inputs(100), causal=True)


@pytest.mark.parametrize("d", [8, 40, 96, 120, 160, 248])
@pytest.mark.parametrize("causal", [False, True])
def test_padded_defaults_compile_clean(d, causal):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    report = compile_kernel(TEMPLATE.default("sm_90", key(d, causal))).report
    assert report.spills == 0 and report.stack_frame == 0, report


WGMMA_PADDED = [d for d in range(8, 129, 8) if d not in backward_wgmma.TILE_DIMS]


def test_wgmma_serves_padded_head_dims_to_128_without_a_producer():
    wg = backward_wgmma.TEMPLATE
    assert wg.key_values["head_dim"] == tuple(range(8, 129, 8))
    for d in WGMMA_PADDED:
        for det in (False, True):
            c = backward_wgmma.serving_config("sm_90", key(d, True, deterministic=det))
            assert c is not None and c.template == wg.name and c.head_dim == d and not wg.producer(c), c
            assert not c.problems()
    assert backward_wgmma.serving_config("sm_90", key(136)) is None  # (past 128: flash_bwd_mma)
    producer = wg.config("sm_90a", key(96), block_m=64, block_n=128, warps=12, stages=2, warps_q=1)
    assert any("head_dim 96 (padded) has no producer warpgroup: warps=8" in p for p in producer.problems())
    source = render(wg.default("sm_90a", key(96, True)))
    assert "constexpr int HEAD_DIM = 128;" in source and "constexpr int HBM_DIM = 96;" in source
    assert "if (r >= seq_q || c >= 12) return;" in source  # the dQ conversion skips the padding columns


@pytest.mark.parametrize("d", [8, 56, 96, 120])
def test_wgmma_padded_defaults_compile_clean(d):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    report = compile_kernel(backward_wgmma.TEMPLATE.default("sm_90a", key(d, True))).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
