"""ops/backward_wgmma.DQ_STMATRIX on an sm_90 GPU: dQ staged by stmatrix in dq_accum's permuted order and restored by
the _dq kernel gives the gradients of the switch off: dk, dv bitwise (their arithmetic is untouched), dq within the
backward's tolerance of off (the fp32 adds into dq_accum arrive in any order either way) and all three within it of
float64. Both head dims (D 128: each consumer warpgroup stages a 64-column slice at its own chunk offset), GQA, causal
in both alignments, lengths that leave a tile's rows partly past seq_q, one key. CPU checks:
tests/test_backward_wgmma_dq_stmatrix.py."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

# (its module-level checks apply here too: torch, CuPy, an sm_90 GPU)
from test_backward_strided_gpu import DTYPES, TOLERANCE, attention_backward, backward_wgmma  # noqa: E402
from test_backward_gpu import float64_forward, reference_grads, rel_err  # noqa: E402
from test_backward_wgmma_heavy_first_gpu import inputs  # noqa: E402

from autoflash.serve import autograd, backward_plans  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal, alignment
    (1, 2, 2, 1, 1, 64, False, "top_left"),
    (2, 8, 2, 17, 300, 128, False, "top_left"),
    (1, 8, 1, 1000, 1000, 64, True, "top_left"),
    (3, 4, 2, 300, 700, 128, True, "bottom_right"),
    (2, 4, 4, 4097, 4097, 64, False, "top_left"),
    (1, 6, 2, 4097, 4097, 128, True, "top_left"),
]


def run(monkeypatch, on: bool, *args, **kw):
    monkeypatch.setattr(backward_wgmma, "DQ_STMATRIX", on)
    autograd._loaded.cache_clear()
    backward_plans.clear()
    return attention_backward(*args, **kw)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_causal{}_{}".format(*c))
def test_matches_float64_and_the_switch_off(case, dtype, monkeypatch):
    b, hq, hkv, nq, nk, d, causal, alignment = case
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], False, seed=nq)
    scale, offset = 1 / math.sqrt(d), (nk - nq if causal and alignment == "bottom_right" else 0)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, offset)
    out, lse = float64_forward(q, k, v, causal, scale, offset)
    kw = dict(causal=causal, causal_alignment=alignment) if causal else dict(causal=False)
    on = run(monkeypatch, True, q, k, v, out, lse, dout, **kw)
    off = run(monkeypatch, False, q, k, v, out, lse, dout, **kw)
    # one key: softmax is constant, dq = dk = 0 exactly and the kernel gets rounding-level values (relative to dO)
    err = (lambda g, ref: (g.double() - ref).norm().item() / dout.double().norm().item()) if nk == 1 else rel_err
    for name, g, ref in zip(("dq", "dk", "dv"), on, refs):
        assert err(g, ref) < TOLERANCE[dtype], (name, err(g, ref))
    assert torch.equal(on[1], off[1]) and torch.equal(on[2], off[2])
    assert err(on[0], off[0].double()) < TOLERANCE[dtype]
