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


# stages 3 keeps room for the dQ staging tiles at D 64 only
RUNS = [(case, setting) for setting, (stages, _) in SETTINGS.items() for case in CASES if stages == 2 or case[5] == 64]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case, setting", RUNS, ids=lambda x: x if isinstance(x, str) else
                         "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*x))
def test_gradients_match_float64_autograd(monkeypatch, case, dtype, setting):
    from autoflash.ops import backward_wgmma
    from autoflash.ops.backward_wgmma import TEMPLATE

    stages, switches = SETTINGS[setting]
    for name, value in switches.items():
        monkeypatch.setattr(backward_wgmma, name, value)
    cfg = producer_config(dtype, case[5], case[6] is not None, stages=stages, mode=2)
    values = TEMPLATE.template_values(cfg)
    assert values["early_release"] == switches.get("EARLY_RELEASE", False) and values["dq_read_lag"], cfg.name
    _check_gradients(case, dtype, cfg, setting)
