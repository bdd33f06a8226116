"""ops/backward_wgmma.STAGED_STORE without a GPU (on since s22c): a producer config's dK, dV leave through the K, V
tiles' shared memory (templates/flash_bwd_wgmma_steps.cuh.j2: store_dkv_staged): each thread writes its 4-byte pairs
at chunk c ^ (row % 8) of rows HEAD_DIM x 2 bytes long, and whole 16-byte chunks are copied out. Checked here: which
configs stage, the staging layout's arithmetic (a model of it: every pair lands where the copy reads it, a warp's
stores on 32 distinct banks), and the served tiles compiling clean with it. GPU checks: the float64 gradient tests
(tests/test_backward_wgmma*_gpu.py) run with it on."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, assert_compiles_clean, key
from test_backward_wgmma_persistent import tiles

COPY_OUT = "(is_v ? V_OFF : K_OFF)"  # the copy-out's read, in the render of a staged config only


def test_on_by_default_for_exactly_the_producer_configs():
    assert backward_wgmma.STAGED_STORE is True  # (served: NOTES "STAGED_STORE", s22c / s22d)
    configs = tiles()
    assert any(WG.producer(c) for c in configs) and not all(WG.producer(c) for c in configs)
    for c in configs:
        assert (COPY_OUT in render(c)) == WG.producer(c), c.name


def test_off_stages_nothing(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "STAGED_STORE", False)
    assert not any(COPY_OUT in render(c) for c in tiles())


@pytest.mark.parametrize("block_n, head_dim", [(64, 64), (128, 64), (128, 128)])
def test_the_copy_reads_every_pair_where_it_was_staged_without_bank_conflicts(block_n, head_dim):
    row_bytes, kv_regs = head_dim * 2, head_dim // 2
    staged = {}  # byte offset -> (key row, column) of the pair stored there
    for wg in range(block_n // 64):
        for warp in range(4):
            for h in range(2):
                for j in range(2 * h, kv_regs, 4):
                    banks = set()
                    for lane in range(32):
                        g, t = lane // 4, lane % 4
                        kw = wg * 64 + warp * 16 + g
                        at = (kw + 8 * h) * row_bytes + (((j // 4) ^ g) * 16) + 4 * t  # the template's offset
                        assert (kw + 8 * h) % 8 == g and at not in staged
                        staged[at] = (kw + 8 * h, (j // 4) * 8 + 2 * t)
                        banks.add(at // 4 % 32)
                    assert len(banks) == 32  # one wavefront a warp instruction
    assert len(staged) == block_n * head_dim // 2  # every pair of the tile, once
    for r in range(block_n):
        for c in range(head_dim // 8):  # the copy's chunk c of row r: columns 8c .. 8c + 7
            at = r * row_bytes + ((c ^ (r % 8)) * 16)
            assert [staged[at + 4 * w] for w in range(4)] == [(r, 8 * c + 2 * w) for w in range(4)]


@pytest.mark.parametrize("dtype, head_dim, causal", [("bf16", 128, False), ("bf16", 128, True), ("fp16", 128, False),
                                                     ("bf16", 64, False)])
def test_served_tiles_compile_clean(dtype, head_dim, causal):
    cfg = WG.default("sm_90a", key(dtype, head_dim, causal))
    assert WG.producer(cfg) and COPY_OUT in render(cfg)
    assert_compiles_clean(cfg)


def test_one_consumer_tile_compiles_clean():
    cfg = WG.config("sm_90a", key("bf16", 64, True), block_m=64, block_n=64, warps=8, stages=2, warps_q=1)
    assert WG.one_consumer(cfg) and COPY_OUT in render(cfg)
    assert_compiles_clean(cfg)
