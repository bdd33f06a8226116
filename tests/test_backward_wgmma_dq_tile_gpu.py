"""flash_bwd_wgmma with DQ_TILE_REDUCE on (ops/backward_wgmma.py: dq_via_producer's staging tile unpadded, each query
tile's dQ reduced by one bulk op of its rows before seq_q) on an H100/H200: gradients against float64 autograd for
every case of tests/test_backward_wgmma_gpu.py (odd lengths: partial last tiles, Nq != Nk, GQA/MQA, causal in both
alignments, rows that see no key), D 64 (dq_via_producer=1) and D 128 (its rule), bf16 and fp16; many tiles per block
and many blocks per query tile: within the rounding of unordered fp32 adds of the per-row reductions."""
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from test_backward_gpu import rel_err  # noqa: E402
from test_backward_wgmma_dq_producer_gpu import producer_config  # noqa: E402
from test_backward_wgmma_gpu import CASES, _check_gradients  # noqa: E402


@pytest.fixture(autouse=True)
def dq_tile_reduce(monkeypatch):
    """The switch on; the served kernels are reloaded (their cache keys on the config alone, and the shared memory
    a launch asks for is read when a kernel is loaded)."""
    from autoflash.ops import backward_wgmma
    from autoflash.serve import autograd

    monkeypatch.setattr(backward_wgmma, "DQ_TILE_REDUCE", True)
    autograd._loaded.cache_clear()
    yield
    autograd._loaded.cache_clear()


@pytest.fixture
def padded_producer_config(monkeypatch):
    """producer_config checks the padded tile's buffer counts: evaluate it with the switch off."""
    from autoflash.ops import backward_wgmma

    def make(dtype, head_dim, causal):
        monkeypatch.setattr(backward_wgmma, "DQ_TILE_REDUCE", False)
        cfg = producer_config(dtype, head_dim, causal)
        monkeypatch.setattr(backward_wgmma, "DQ_TILE_REDUCE", True)
        assert backward_wgmma.TEMPLATE.template_values(cfg)["dq_tile_reduce"], cfg.name
        return cfg
    return make


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_tile_reduce_gradients_match_float64_autograd(case, dtype, padded_producer_config):
    _check_gradients(case, dtype, padded_producer_config(dtype, case[5], case[6] is not None), "dq tile reduce")


@pytest.mark.parametrize("d", [64, 128])
def test_tile_reduce_matches_the_row_reductions(d, padded_producer_config, monkeypatch):
    """GQA 4:1, N 2000 (a partial last tile), causal: within 1e-3 of dq_via_producer's per-row reductions."""
    from autoflash.ops import backward_wgmma
    from autoflash.serve import autograd

    case = (2, 8, 2, 2000, 2000, d, "top_left")
    cfg = padded_producer_config("bf16", d, True)
    tile = _check_gradients(case, "bf16", cfg, "dq tile reduce")
    monkeypatch.setattr(backward_wgmma, "DQ_TILE_REDUCE", False)
    autograd._loaded.cache_clear()
    rows = _check_gradients(case, "bf16", cfg, "dq row reductions")
    for a, b in zip(tile, rows):
        assert rel_err(a, b.double()) <= 1e-3
