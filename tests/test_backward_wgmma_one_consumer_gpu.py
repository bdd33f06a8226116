"""ops/backward_wgmma.ONE_CONSUMER on an sm_90 GPU (written in the nineteenth session, which had no device time left
to run it: the next session's first call runs it): the producer + one-consumer tile (bm64 bn64 w8, two CTAs an SM),
pinned, gives the gradients of float64 within the backward's tolerance and of the served tile within it, on odd
lengths, GQA, Nq != Nk, causal in both alignments, a TAIL_SPLIT grid (its waves are two CTAs an SM), D 64, bf16 and
fp16 (first run in s20a; the one-key case's check fixed after). CPU checks:
tests/test_backward_wgmma_one_consumer.py."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

# (its module-level checks apply here too: torch, CuPy, an sm_90 GPU)
from test_backward_strided_gpu import DTYPES, TOLERANCE, attention_backward, backward_wgmma  # noqa: E402
from test_backward_gpu import float64_forward, grad_errors, reference_grads  # noqa: E402
from test_backward_wgmma_heavy_first_gpu import inputs  # noqa: E402
from switched_backward import forget_kernels, forget_switched_kernels  # noqa: E402,F401 (an autouse fixture)

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, causal, alignment
    (1, 4, 4, 1, 1, False, "top_left"),
    (2, 4, 2, 1000, 1000, False, "top_left"),  # GQA, a partial tile
    (1, 17, 17, 1000, 1000, False, "top_left"),  # 16 x 17 = 272 tiles on 264 CTA slots: 8 split
    (1, 4, 1, 300, 777, True, "bottom_right"),
    (2, 2, 2, 777, 300, True, "top_left"),  # rows that see no key
    (1, 8, 8, 4097, 4097, True, "top_left"),
]


@pytest.fixture(autouse=True)
def one_consumer(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "ONE_CONSUMER", True)
    forget_kernels()


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_causal{}_{}".format(*c))
def test_matches_float64_and_the_served_tile(case, dtype):
    b, hq, hkv, nq, nk, causal, alignment = case
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, 64, DTYPES[dtype], False, seed=nq + nk)
    scale, offset = 1 / math.sqrt(64), (nk - nq if causal and alignment == "bottom_right" else 0)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, offset)
    out, lse = float64_forward(q, k, v, causal, scale, offset)
    kw = dict(causal=causal, causal_alignment=alignment) if causal else dict(causal=False)
    key = dict(dtype=dtype, head_dim=64, causal=causal, deterministic=False, window=False, softcap=False,
               sinks=False, alibi=False)
    cfg = backward_wgmma.TEMPLATE.config("sm_90a", key, block_m=64, block_n=64, warps=8, stages=2,
                                         warps_q=1)
    assert cfg.problems() == []
    one = attention_backward(q, k, v, out, lse, dout, config=cfg, **kw)
    served = attention_backward(q, k, v, out, lse, dout, **kw)
    assert all(torch.isfinite(g).all() for g in one)
    for name, err, err_served in zip(("dq", "dk", "dv"), grad_errors(one, refs, dout, nk),
                                     grad_errors(one, [g.double() for g in served], dout, nk)):
        assert err < TOLERANCE[dtype], (name, err)
        assert err_served < TOLERANCE[dtype], (name, "vs served", err_served)
