"""ops/backward_wgmma.EARLY_QUERY without a GPU: off, the producer tiles render the block-wide wait for K, V before the
producer's first query tile; on, that wait moves to the consumers (their own copies, then a named barrier), only in
producer configs, and the served tiles (two consumers at D 64 / 128, one consumer at D 64) compile clean. GPU checks:
the wgmma GPU test files with AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.EARLY_QUERY=True"."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, key

WAIT_FIRST = "cp_async_wait_all();  // K, V in place"


def tiles():
    """The producer tiles the tuner serves: two consumers at D 64 and 128, one consumer at D 64; and one without."""
    two = [WG.default("sm_90a", key("bf16", d, causal)) for d in (64, 128) for causal in (False, True)]
    one = WG.config("sm_90a", key("fp16", 64, True), block_m=64, block_n=64, warps=8, stages=2, warps_q=1)
    plain = WG.config("sm_90a", key("bf16", 64, False), block_m=128, block_n=128, warps=8, stages=2, warps_q=1)
    return two + [one], plain


def test_off_waits_for_k_v_before_the_first_query_tile(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "EARLY_QUERY", False)
    producers, _ = tiles()
    for cfg in producers:
        assert WG.producer(cfg) and WAIT_FIRST in render(cfg) and "(EARLY_QUERY)" not in render(cfg)


def test_on_moves_the_wait_to_the_consumers(monkeypatch):
    producers, plain = tiles()
    monkeypatch.setattr(backward_wgmma, "EARLY_QUERY", False)
    before = [render(cfg) for cfg in producers + [plain]]
    monkeypatch.setattr(backward_wgmma, "EARLY_QUERY", True)
    for cfg, old in zip(producers, before):
        src = render(cfg)
        assert WAIT_FIRST not in src and "(EARLY_QUERY)" in src
        head, _, tail = src.partition("regs_inc<CONSUMER_REGS>();")
        assert "consumers_sync();" in tail.split("} else {")[0]  # the consumers' barrier, before their loop
        assert src.count("\n") == old.count("\n") + 4  # the one block-wide wait out, the consumers' five lines in
    assert render(plain) == before[-1]  # no producer: every thread loads, unchanged


@pytest.mark.parametrize("index", range(5))
def test_on_compiles_clean(index, monkeypatch):
    pytest.importorskip("cupy", reason="CuPy (cupy-cuda13x) is not installed")
    from autoflash.kernels.compile import compile_kernel

    monkeypatch.setattr(backward_wgmma, "EARLY_QUERY", True)
    report = compile_kernel(tiles()[0][index]).report
    assert report.spills == 0 and report.stack_frame == 0 and not report.wgmma_serialized, report
