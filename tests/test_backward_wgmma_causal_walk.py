"""ops/backward_wgmma.CAUSAL_WALK without a GPU: off, no causal tile walks blocks; on, exactly the two-consumer D 64
causal tiles PERSISTENT walks (not deterministic, stages 2, the producer's tile reduction) render the walk of the
heavy-first grid (blocks from a counter), compiling clean at setmaxnreg 224 / 56; the launch takes one CTA an SM and
the heavy-first grid's block count, and the preprocess zeroes the counter (one word of dq_sem's workspace). GPU
checks: tests/test_backward_wgmma_causal_walk_gpu.py."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, assert_compiles_clean, cfg
from test_backward_wgmma_persistent import stand_kernel, tiles

MARK = "atomicAdd(queue_counter, 1) + (int)gridDim.x"  # (the producer takes the next block from the counter)


def causal_tiles():
    return [c for c in tiles() if c.causal]


def test_on_walks_exactly_the_two_consumer_d64_causal_tiles(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "CAUSAL_WALK", False)
    off = {c.name: render(c) for c in tiles()}
    assert not any(MARK in s or "n_blocks" in s for n, s in off.items() if "causal" in n)
    monkeypatch.setattr(backward_wgmma, "CAUSAL_WALK", True)
    walked = {c.name for c in causal_tiles() if MARK in render(c)}
    assert walked == {c.name for c in causal_tiles() if WG.persistent(c)} == {
        "flash_bwd_wgmma_sm_90a_bf16_d64_bm64_bn128_w12_s2_wq1_causal"}
    assert [c.name for c in tiles() if not c.causal and render(c) != off[c.name]] == []  # (non-causal: unchanged)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_on_compiles_clean(dtype, monkeypatch):
    monkeypatch.setattr(backward_wgmma, "CAUSAL_WALK", True)
    walked = cfg(dtype, 64, True, warps=12)
    assert WG.persistent(walked) and "PRODUCER_REGS = 56, CONSUMER_REGS = 224;" in render(walked)
    assert_compiles_clean(walked)


def test_launch_takes_one_cta_an_sm_and_the_heavy_first_block_count(monkeypatch):
    from autoflash.ops import backward_gpu
    from autoflash.ops.backward_kernels import BackwardProblem

    monkeypatch.setattr(backward_wgmma, "CAUSAL_WALK", True)
    monkeypatch.setattr(backward_gpu, "sm_count", lambda device: 132)
    walked = cfg("bf16", 64, True, warps=12)
    for seq, blocks, grid in ((4096, 32 * 16 * 2, 132), (256, 2 * 16 * 2, 64)):
        launch = backward_gpu.BackwardLaunch(stand_kernel(walked), BackwardProblem(2, 16, 16, seq, seq, 64, True), 0.125)
        assert launch.main_grid == (grid, 1, 1) and int(launch.main_stride_tail[-1]) == blocks
        assert int(launch.pre_tail[-1]) == 1 and launch.offsets[3] + 4 <= launch.workspace_bytes
        pointers = [backward_gpu.np.uint64(8 * (i + 1)) for i in range(18)]
        pre_args = launch.launches(pointers)[0][4]
        assert pre_args[6] == pointers[12] != 0  # (dq_sem: the counter the preprocess zeroes)
