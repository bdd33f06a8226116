"""flash_bwd_wgmma with PERSISTENT (ops/backward_wgmma.py: one CTA per SM walking the work units) on an H100/H200:
gradients against float64 autograd for every D 64 case of tests/test_backward_wgmma_gpu.py (the switch applies to the
served D 64 producer tile only; D 128 ignores it) and two with more items than SMs, bf16 and fp16, on the device's SM
count and on a grid of 3 CTAs (so that every case walks many units a CTA: the stages', staging tiles' and K/V
barriers' phases across units, causal pairs, units that meet no query tile)."""
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from test_backward_wgmma_gpu import CASES, _check_gradients, wgmma_config  # noqa: E402

EXTRA = [
    (3, 8, 8, 2000, 2000, 64, "bottom_right"),  # 8 pairs x 24 heads = 192 causal items: more than 132 SMs
    (2, 8, 4, 1500, 1500, 64, None),            # 12 K/V tiles x 8 heads = 96 items; GQA
    (1, 2, 2, 100, 700, 64, "top_left"),        # K/V tiles 1.. meet no query tile (n_iter 0 units)
]
D64_CASES = [c for c in CASES if c[5] == 64] + EXTRA


@pytest.fixture(autouse=True)
def fresh_kernels():
    """attention_backward loads a config's kernel once per process (autograd._loaded): a switched kernel must
    neither come from nor stay in that cache."""
    from autoflash.serve import autograd

    autograd._loaded.cache_clear()
    yield
    autograd._loaded.cache_clear()


@pytest.mark.parametrize("ctas", ["sms", 3])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", D64_CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_persistent_gradients_match_float64_autograd(monkeypatch, case, dtype, ctas):
    from autoflash.ops import backward_gpu, backward_wgmma
    from autoflash.ops.backward_wgmma import TEMPLATE

    monkeypatch.setattr(backward_wgmma, "PERSISTENT", True)
    if ctas != "sms":
        monkeypatch.setattr(backward_gpu, "_sm_count", lambda: ctas)
    cfg = wgmma_config(dtype, case[5], case[6] is not None)  # the served tile
    assert TEMPLATE.persistent_schedule(cfg), cfg.name
    _check_gradients(case, dtype, cfg, f"persistent ctas={ctas}")
