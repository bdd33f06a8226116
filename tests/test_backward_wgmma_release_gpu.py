"""flash_bwd_wgmma with PLAIN_STAGES (stages 3 on the plain consumer loop) and EARLY_RELEASE (a stage freed once dV
and dK are done) on an H100/H200: gradients against float64 autograd for every case of tests/test_backward_wgmma_gpu.py
(D 64 and D 128 at stages 2 with the early release; D 64 at stages 3 plain, with and without it), bf16 and fp16."""
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from test_backward_wgmma_dq_producer_gpu import producer_config  # noqa: E402
from test_backward_wgmma_gpu import CASES, _check_gradients  # noqa: E402

@pytest.fixture(autouse=True)
def fresh_kernels():
    """attention_backward loads a config's kernel once per process (autograd._loaded): a switched kernel must
    neither come from nor stay in that cache."""
    from autoflash.serve import autograd

    autograd._loaded.cache_clear()
    yield
    autograd._loaded.cache_clear()


SETTINGS = {"s2_early": (2, {"EARLY_RELEASE": True}), "s3_plain": (3, {"PLAIN_STAGES": True}),
            "s3_plain_early": (3, {"PLAIN_STAGES": True, "EARLY_RELEASE": True})}


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_gradients_match_float64_autograd(monkeypatch, case, dtype, setting):
    from autoflash.ops import backward_wgmma
    from autoflash.ops.backward_wgmma import TEMPLATE

    stages, switches = SETTINGS[setting]
    if stages == 3 and case[5] != 64:
        pytest.skip("stages 3 with the dQ staging tiles: D 64 only")
    for name, value in switches.items():
        monkeypatch.setattr(backward_wgmma, name, value)
    cfg = producer_config(dtype, case[5], case[6] is not None, stages=stages, mode=2)
    values = TEMPLATE.template_values(cfg)
    assert values["early_release"] == switches.get("EARLY_RELEASE", False) and values["dq_read_lag"], cfg.name
    _check_gradients(case, dtype, cfg, setting)
