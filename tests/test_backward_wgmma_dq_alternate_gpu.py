"""flash_bwd_wgmma with DQ_ALTERNATE on (ops/backward_wgmma.py: at D 64's producer tile, query tile it's dQ goes to
consumer warpgroup it % 2 instead of always the first) on an H100/H200: gradients against float64 autograd for the
D 64 cases of tests/test_backward_wgmma_gpu.py (one key, odd lengths, MQA with Nq < Nk, causal in both alignments,
GQA), bf16 and fp16, with the consumers' own dQ adds and with dq_via_producer=1; deterministic=True still bitwise
repeatable; many tiles per block (both parities, both warpgroups' dQ): within the rounding of unordered fp32 adds of
the switch-off kernel."""
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from test_backward_gpu import rel_err  # noqa: E402
from test_backward_wgmma_gpu import CASES, _check_gradients, wgmma_config  # noqa: E402

D64_CASES = [c for c in CASES if c[5] == 64]


@pytest.fixture(autouse=True)
def dq_alternate(monkeypatch):
    """The switch on; the served kernels are reloaded (their cache keys on the config alone)."""
    from autoflash.ops import backward_wgmma
    from autoflash.serve import autograd

    monkeypatch.setattr(backward_wgmma, "DQ_ALTERNATE", True)
    autograd._loaded.cache_clear()
    yield
    autograd._loaded.cache_clear()


def alternating_config(dtype, causal, dq_via_producer=-1, deterministic=False):
    from autoflash.ops.backward_wgmma import TEMPLATE

    cfg = wgmma_config(dtype, 64, causal, producer=True, deterministic=deterministic)
    cfg = cfg.replace(dq_via_producer=dq_via_producer)
    assert cfg.problems() == [] and TEMPLATE.alternates_dq(cfg), cfg.name
    return cfg


@pytest.mark.parametrize("dqp", [-1, 1], ids=["consumer_adds", "dq_via_producer"])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", D64_CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_alternating_dq_gradients_match_float64_autograd(case, dtype, dqp):
    _check_gradients(case, dtype, alternating_config(dtype, case[6] is not None, dqp), f"dq alternate dqp={dqp}")


@pytest.mark.parametrize("case", [D64_CASES[2], D64_CASES[4]], ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_alternating_deterministic_is_bitwise_repeatable(case):
    cfg = alternating_config("bf16", case[6] is not None, deterministic=True)
    first = _check_gradients(case, "bf16", cfg, "dq alternate deterministic")
    second = _check_gradients(case, "bf16", cfg, "dq alternate deterministic")
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("dqp", [-1, 1])
def test_alternating_matches_the_first_warpgroups_dq(dqp, monkeypatch):
    """GQA 4:1, N 2048, causal: 32 query tiles a head, so both warpgroups compute dQ of many tiles; the switch-off
    kernel's gradients agree up to the order of the fp32 additions."""
    from autoflash.ops import backward_wgmma
    from autoflash.serve import autograd

    case = (2, 8, 2, 2048, 2048, 64, "top_left")
    cfg = alternating_config("bf16", True, dqp)
    alternate = _check_gradients(case, "bf16", cfg, "dq alternate")
    monkeypatch.setattr(backward_wgmma, "DQ_ALTERNATE", False)
    autograd._loaded.cache_clear()
    plain = _check_gradients(case, "bf16", cfg, "dq on the first warpgroup")
    for a, b in zip(alternate, plain):
        assert rel_err(a, b.double()) <= 1e-3
