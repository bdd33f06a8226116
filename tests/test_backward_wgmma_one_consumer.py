"""ops/backward_wgmma.ONE_CONSUMER without a GPU: off, the producer + one-consumer tile is refused with the reason and
no default changes (on is the default: the tuner picks it per key); on, bm64 bn64 w8 s2 at D 64 is valid (not
deterministic; stages 3 exceed half an SM's shared memory), renders setmaxnreg 232 and __launch_bounds__(256, 2), and
compiles clean. GPU checks: tests/test_backward_wgmma_one_consumer_gpu.py."""
import pytest

from autoflash.kernels.render import render
from autoflash.ops import backward_wgmma

from test_backward_wgmma import WG, assert_compiles_clean, key


def one(d=64, causal=False, stages=2, **kw):
    return WG.config("sm_90a", key("bf16", d, causal, **kw), block_m=64, block_n=64, warps=8, stages=stages,
                     warps_q=1)


def test_off_refused_with_the_reason(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "ONE_CONSUMER", False)
    assert any("one consumer" in p for p in one().problems())
    for d in (64, 128):
        for causal in (False, True):
            assert not WG.one_consumer(WG.default("sm_90a", key("bf16", d, causal)))


@pytest.mark.parametrize("causal", [False, True])
def test_on_renders_two_ctas_an_sm(causal, monkeypatch):
    monkeypatch.setattr(backward_wgmma, "ONE_CONSUMER", True)
    cfg = one(causal=causal)
    assert cfg.problems() == [] and WG.smem_bytes(cfg) <= 232448 // 2 - 1024
    source = render(cfg)
    assert "__launch_bounds__(THREADS, 2)" in source and "CONSUMER_REGS = 232;" in source
    assert any("one consumer" in p for p in one(causal=causal, deterministic=True).problems())
    assert any("shared memory" in p for p in one(causal=causal, stages=3).problems())
    served = WG.default("sm_90a", key("bf16", 64, causal))  # (the two-consumer tiles: 240, 224 persistent; one CTA)
    assert "__launch_bounds__(THREADS, 1)" in render(served) and "CONSUMER_REGS = 232;" not in render(served)


@pytest.mark.parametrize("causal", [False, True])
def test_on_compiles_clean(causal, monkeypatch):
    monkeypatch.setattr(backward_wgmma, "ONE_CONSUMER", True)
    assert_compiles_clean(one(causal=causal))
