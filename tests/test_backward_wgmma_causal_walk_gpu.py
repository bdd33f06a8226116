"""ops/backward_wgmma.CAUSAL_WALK on an sm_90 GPU: the persistent walk of the heavy-first causal grid (each CTA's next
block from a counter the preprocess zeroes) on the two-consumer D 64 tile gives the gradients of float64 within the
backward's tolerance and of the switch off: dk, dv bitwise (a block sums its own keys in the same order either way),
dq within the tolerance. Grids of many rounds and of two heavy-first groups, an odd length, GQA, bottom-right
alignment, K/V tiles no query meets (top-left, seq_k > seq_q: blocks without a query tile), fewer blocks than SMs.
CPU checks: tests/test_backward_wgmma_causal_walk.py."""
import functools

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

# (its module-level checks apply here too: torch, CuPy, an sm_90 GPU)
from test_backward_strided_gpu import DTYPES, TOLERANCE, backward_wgmma  # noqa: E402
from test_backward_gpu import assert_switch_keeps_gradients  # noqa: E402
from test_backward_wgmma import cfg as tile  # noqa: E402
from test_backward_wgmma_heavy_first_gpu import inputs  # noqa: E402
from switched_backward import forget_switched_kernels, run_switched  # noqa: E402,F401 (an autouse fixture)

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, alignment (132 SMs; BLOCK_N 128)
    (1, 32, 32, 4097, 4097, "top_left"),  # 33 tiles x 32 pairs = 1056 blocks, ~8 a CTA; groups of 31 pairs and 1
    (2, 16, 16, 2048, 2048, "top_left"),  # 512 blocks, ~4 a CTA
    (1, 8, 2, 1000, 4500, "top_left"),  # GQA 4; K/V tiles 8.. meet no query: blocks without a query tile
    (3, 4, 2, 777, 3000, "bottom_right"),  # GQA 2, key tail
    (1, 2, 2, 300, 100, "bottom_right"),  # one block a pair: fewer blocks than SMs
]


def run(monkeypatch, on: bool, *args, **kw):
    return run_switched(monkeypatch, "CAUSAL_WALK", on, *args, **kw)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_{}".format(*c))
def test_matches_float64_and_the_switch_off(case, dtype, monkeypatch):
    b, hq, hkv, nq, nk, alignment = case
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, 64, DTYPES[dtype], False, seed=nq + nk)
    cfg = tile(dtype, 64, True, warps=12)  # (the walk's two-consumer D 64 tile)
    monkeypatch.setattr(backward_wgmma, "CAUSAL_WALK", True)
    assert backward_wgmma.TEMPLATE.persistent(cfg)
    assert_switch_keeps_gradients(functools.partial(run, monkeypatch), q, k, v, dout, TOLERANCE[dtype],
                                  offset=nk - nq if alignment == "bottom_right" else 0, causal_alignment=alignment,
                                  config=cfg)
