"""flash_bwd_wgmma with DQ_STAGE_ROTATE on (ops/backward_wgmma.py: with dq_via_producer=2 lane g stores dQ column
block b ^ (g % 2 ** R) at step b, so the unpadded staging stores are (R = 2) conflict-free; the tile stays row-major)
on an H100/H200: R = 2, gradients against float64 autograd for every case of tests/test_backward_wgmma_gpu.py (one
key, odd lengths: partial last tiles, Nq != Nk, GQA/MQA, causal in both alignments, rows that see no key), D 64 and
D 128, bf16 and fp16; the pipelined stages 3 at D 64; R = 1 and 2 with many tiles per block and many blocks a query
tile: within the rounding of unordered fp32 adds of the switch-off kernel (a misplaced column block would be off by
O(1))."""
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from test_backward_gpu import rel_err  # noqa: E402
from test_backward_wgmma_dq_producer_gpu import producer_config  # noqa: E402
from test_backward_wgmma_gpu import CASES, _check_gradients  # noqa: E402


@pytest.fixture(autouse=True)
def rotated(monkeypatch):
    """The switch on; the served kernels are reloaded (their cache keys on the config alone)."""
    from autoflash.ops import backward_wgmma
    from autoflash.serve import autograd

    monkeypatch.setattr(backward_wgmma, "DQ_STAGE_ROTATE", 2)
    autograd._loaded.cache_clear()
    yield
    autograd._loaded.cache_clear()


def rotated_config(dtype, head_dim, causal, stages=2):
    from autoflash.kernels.render import render
    from autoflash.ops.backward_wgmma import TEMPLATE

    cfg = producer_config(dtype, head_dim, causal, stages=stages, mode=2)
    assert cfg.problems() == [] and TEMPLATE.rotates_dq_stores(cfg) and "(DQ_STAGE_ROTATE)" in render(cfg), cfg.name
    return cfg


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_rotated_staging_gradients_match_float64_autograd(case, dtype):
    _check_gradients(case, dtype, rotated_config(dtype, case[5], case[6] is not None), "dq rotated staging")


@pytest.mark.parametrize("case", [c for c in CASES if c[5] == 64], ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_rotated_staging_pipelined_gradients_match_float64_autograd(case):
    """stages 3 (tile it - 1's dQ staged in iteration it), D 64."""
    _check_gradients(case, "bf16", rotated_config("bf16", 64, case[6] is not None, stages=3),
                     "dq rotated staging pipelined")


@pytest.mark.parametrize("rounds", [1, 2])
@pytest.mark.parametrize("d", [64, 128])
def test_rotated_matches_the_plain_stores(d, rounds, monkeypatch):
    """GQA 4:1, N 2000 (a partial last tile), causal: within 1e-3 of the switch-off kernel (same config)."""
    from autoflash.ops import backward_wgmma
    from autoflash.serve import autograd

    monkeypatch.setattr(backward_wgmma, "DQ_STAGE_ROTATE", rounds)
    case = (2, 8, 2, 2000, 2000, d, "top_left")
    cfg = rotated_config("bf16", d, True)
    rotated = _check_gradients(case, "bf16", cfg, "dq rotated staging")
    monkeypatch.setattr(backward_wgmma, "DQ_STAGE_ROTATE", 0)
    autograd._loaded.cache_clear()
    plain = _check_gradients(case, "bf16", cfg, "dq plain staging")
    for a, b in zip(rotated, plain):
        assert rel_err(a, b.double()) <= 1e-3
