"""flash_bwd_wgmma with DQ_READ_LAG on (the producer frees the previous tile's dQ staging buffer after issuing the
next tile's bulk reduction) on an H100/H200: gradients against float64 autograd for every case of
tests/test_backward_wgmma_gpu.py, D 64 (stages 2 and 3) and D 128, bf16 and fp16; and equal, within the rounding of
unordered fp32 adds, to the switch off on a GQA causal problem with a partial last tile."""
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from test_backward_gpu import rel_err  # noqa: E402
from test_backward_wgmma_dq_producer_gpu import producer_config  # noqa: E402
from test_backward_wgmma_gpu import CASES, _check_gradients  # noqa: E402


@pytest.fixture
def lag(monkeypatch):
    from autoflash.ops import backward_wgmma

    monkeypatch.setattr(backward_wgmma, "DQ_READ_LAG", True)


def lag_config(dtype, head_dim, causal, stages=2):
    from autoflash.ops.backward_wgmma import TEMPLATE

    cfg = producer_config(dtype, head_dim, causal, stages=stages, mode=2)
    assert TEMPLATE.template_values(cfg)["dq_read_lag"], cfg.name
    return cfg


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_read_lag_gradients_match_float64_autograd(lag, case, dtype):
    _check_gradients(case, dtype, lag_config(dtype, case[5], case[6] is not None), "dq read lag")


@pytest.mark.parametrize("d, stages", [(64, 2), (64, 3), (128, 2)])
def test_read_lag_matches_the_switch_off(monkeypatch, d, stages):
    from autoflash.ops import backward_wgmma

    case = (2, 8, 2, 2000, 2000, d, "top_left")
    off = _check_gradients(case, "bf16", producer_config("bf16", d, True, stages=stages, mode=2), "dq tile reduce")
    monkeypatch.setattr(backward_wgmma, "DQ_READ_LAG", True)
    on = _check_gradients(case, "bf16", lag_config("bf16", d, True, stages), "dq read lag")
    for a, b in zip(on, off):
        assert rel_err(a, b.double()) <= 1e-3
