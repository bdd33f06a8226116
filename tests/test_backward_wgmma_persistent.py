"""ops/backward_wgmma.PERSISTENT without a GPU (on since s21d): off, no config walks blocks; on, exactly the
two-consumer D 64 tiles on TAIL_SPLIT's grid (not causal, not deterministic, stages 2, the producer's tile reduction)
walk the blocks persistently, with the second K/V buffer inside the shared memory the host gives (a static_assert in
the render), compiling clean at setmaxnreg 224 / 56; the launch takes one CTA an SM and the block count. GPU checks:
tests/test_backward_wgmma_persistent_gpu.py."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, assert_compiles_clean, key


def tiles():
    """Every valid bf16 config at D 64 and 128 (both causal values, deterministic or not)."""
    out = []
    for d in (64, 128):
        for causal in (False, True):
            for det in (False, True):
                for bm in (64, 128):
                    for bn in (64, 128):
                        for w in (4, 8, 12):
                            for st in (2, 3):
                                cfg = WG.config("sm_90a", key("bf16", d, causal, deterministic=det), block_m=bm,
                                                block_n=bn, warps=w, stages=st, warps_q=1)
                                if not cfg.problems():
                                    out.append(cfg)
    return out


def stand_kernel(cfg):
    """A loaded kernel's face for a launch plan: its config and render values, no functions."""
    class Stand:
        config, smem, device_id = cfg, WG.smem_bytes(cfg), 0
        values = WG.template_values(cfg)
        function = None

        def function_named(self, suffix):
            return None
    return Stand()


def walk_sources(monkeypatch, switch: str, mark: str) -> list[str]:
    """The sources of the walk's tiles with ops/backward_wgmma's `switch` on, after checking that off no tile renders
    `mark` and on exactly the walk's do."""
    monkeypatch.setattr(backward_wgmma, switch, False)
    assert not any(mark in render(c) for c in tiles())
    monkeypatch.setattr(backward_wgmma, switch, True)
    sources = {c.name: render(c) for c in tiles()}
    assert {n for n, s in sources.items() if mark in s} == {c.name for c in tiles() if WG.persistent(c)} != set()
    return [sources[c.name] for c in tiles() if WG.persistent(c)]


def test_on_changes_only_the_d64_two_consumer_tail_split_tiles(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "CAUSAL_WALK", False)  # (its walk: tests/test_backward_wgmma_causal_walk.py)
    cfgs = tiles()
    monkeypatch.setattr(backward_wgmma, "PERSISTENT", False)
    off = [render(c) for c in cfgs]
    monkeypatch.setattr(backward_wgmma, "PERSISTENT", True)
    changed = [c.name for c, before in zip(cfgs, off) if render(c) != before]
    assert changed == ["flash_bwd_wgmma_sm_90a_bf16_d64_bm64_bn128_w12_s2_wq1"], changed
    served = WG.default("sm_90a", key("bf16", 64, False))
    assert WG.persistent(served)
    source = render(served)
    assert "int n_blocks)" in source and "PRODUCER_REGS = 56, CONSUMER_REGS = 224;" in source
    assert WG.smem_bytes(served) <= 232448
    assert not WG.persistent(WG.default("sm_90a", key("bf16", 64, True)))  # causal: no TAIL_SPLIT grid


def test_on_by_default_and_off_walks_nothing(monkeypatch):
    assert backward_wgmma.PERSISTENT is True  # (served: NOTES "PERSISTENT", s21d)
    monkeypatch.setattr(backward_wgmma, "PERSISTENT", False)
    assert not any(WG.persistent(c) or "n_blocks" in render(c) for c in tiles())


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_on_compiles_clean(dtype, monkeypatch):
    monkeypatch.setattr(backward_wgmma, "PERSISTENT", True)
    assert_compiles_clean(WG.default("sm_90a", key(dtype, 64, False)))


def test_launch_takes_one_cta_an_sm_and_the_block_count(monkeypatch):
    from autoflash.ops import backward_gpu
    from autoflash.ops.backward_kernels import BackwardProblem

    monkeypatch.setattr(backward_wgmma, "PERSISTENT", True)
    monkeypatch.setattr(backward_gpu, "sm_count", lambda device: 132)
    cfg = WG.default("sm_90a", key("bf16", 64, False))
    launch = backward_gpu.BackwardLaunch(stand_kernel(cfg), BackwardProblem(4, 32, 32, 4096, 4096, 64, False), 0.125)
    # 32 K/V tiles x 32 heads x 4 = 4096 blocks: 4092 whole, 4 left in 33 parts each -> 4224 blocks on 132 CTAs
    assert launch.main_grid == (132, 1, 1)
    assert [int(x) for x in launch.main_stride_tail[-3:]] == [4092, 33, 4224]



def test_the_walk_takes_its_blocks_from_a_counter_past_the_tail_buffer(monkeypatch):
    """The non-causal walk's producer takes each next block from the counter, the word after TAIL_SPLIT's tail buffer
    (its sums and counts), which the preprocess zeroes with it."""
    from autoflash.ops import backward_gpu
    from autoflash.ops.backward_kernels import BackwardProblem

    monkeypatch.setattr(backward_wgmma, "PERSISTENT", True)
    monkeypatch.setattr(backward_gpu, "sm_count", lambda device: 132)
    cfg = WG.default("sm_90a", key("bf16", 64, False))
    source = render(cfg)
    assert "atomicAdd(queue_counter, 1) + (int)gridDim.x" in source and "b += gridDim.x" not in source
    assert "queue_counter = dq_sem + (size_t)(n_blocks - full_blocks) / parts * (2 * BLOCK_N * HEAD_DIM + 1);" in source
    launch = backward_gpu.BackwardLaunch(stand_kernel(cfg), BackwardProblem(4, 32, 32, 4096, 4096, 64, False), 0.125)
    # 4 K/V tiles left: their dK, dV sums (2 x 128 keys x 64) and counts, then the counter
    assert int(launch.tail_words) == 4 * (2 * 128 * 64 + 1) + 1 == int(launch.pre_tail[-1])
    assert launch.offsets[3] + 4 * int(launch.tail_words) <= launch.workspace_bytes
