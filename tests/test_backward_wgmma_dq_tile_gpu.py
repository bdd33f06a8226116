"""flash_bwd_wgmma with dq_via_producer=2, the rule's: the served path at D 64 and D 128 (ops/backward_wgmma.py: the
staging tile unpadded, its stores rotated per lane, each query tile's dQ reduced by one bulk op of its rows before
seq_q) on an H100/H200: gradients against float64 autograd for every case of tests/test_backward_wgmma_gpu.py (odd
lengths: partial last tiles, Nq != Nk, GQA/MQA, causal in both alignments, rows that see no key), D 64 and D 128,
bf16 and fp16 (the pipelined stages 3 at D 64: test_backward_wgmma_gpu.py's pipelined test, whose D 64 configs
the rule gives 2); many tiles per block and many blocks per query tile: within the rounding of unordered fp32
adds of dq_via_producer=1's per-row reductions (a misplaced column block would be off by O(1))."""
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from test_backward_gpu import rel_err  # noqa: E402
from test_backward_wgmma_dq_producer_gpu import producer_config  # noqa: E402
from test_backward_wgmma_gpu import CASES, _check_gradients  # noqa: E402


def tile_config(dtype, head_dim, causal):
    from autoflash.ops.backward_wgmma import TEMPLATE

    cfg = producer_config(dtype, head_dim, causal, mode=2)  # (the rule's: -1)
    assert cfg.problems() == [] and cfg.dq_via_producer == -1, cfg.name
    assert TEMPLATE.template_values(cfg)["dq_tile_reduce"], cfg.name
    return cfg


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_tile_reduce_gradients_match_float64_autograd(case, dtype):
    _check_gradients(case, dtype, tile_config(dtype, case[5], case[6] is not None), "dq tile reduce")


@pytest.mark.parametrize("d", [64, 128])
def test_tile_reduce_matches_the_row_reductions(d):
    """GQA 4:1, N 2000 (a partial last tile), causal: within 1e-3 of dq_via_producer's per-row reductions."""
    case = (2, 8, 2, 2000, 2000, d, "top_left")
    tile = _check_gradients(case, "bf16", tile_config("bf16", d, True), "dq tile reduce")
    rows = _check_gradients(case, "bf16", producer_config("bf16", d, True), "dq row reductions")
    for a, b in zip(tile, rows):
        assert rel_err(a, b.double()) <= 1e-3
