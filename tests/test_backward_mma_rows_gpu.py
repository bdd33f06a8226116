"""flash_bwd_mma's S_ROWS (ops/backward_kernels: S and dP with the queries as rows, FlashAttention-2's form) on a GPU:
gradients against float64 within the backward's tolerances and against the switch off within them too (the
products' order of fp32 adds may differ); the 2-D layout's tiles at D 64 and 128, causal in both alignments, key and
query tails, GQA, Nq != Nk. CPU checks: tests/test_backward_mma_rows.py."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

from test_backward_gpu import DTYPES, float64_forward, grad_errors, inputs, pinned, reference_grads  # noqa: E402

from autoflash.ops import backward_kernels  # noqa: E402
from autoflash.ops.backward import TOLERANCE  # noqa: E402
from autoflash.serve import autograd, backward_plans  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal alignment (None: not causal)
    (1, 2, 2, 1, 1, 64, None),
    (2, 4, 2, 1000, 1000, 64, "top_left"),
    (1, 4, 1, 333, 1000, 64, None),
    (3, 4, 2, 300, 700, 128, "bottom_right"),
    (1, 2, 2, 1000, 17, 128, "top_left"),
    (1, 2, 2, 4097, 4097, 128, None),
    (1, 2, 2, 200, 130, 64, "bottom_right"),
]


@pytest.fixture(autouse=True)
def forget_switched_kernels():
    yield
    autograd._loaded.cache_clear()
    backward_plans.clear()


def run(monkeypatch, on: bool, *args, **kw):
    monkeypatch.setattr(backward_kernels, "S_ROWS", (64, 128, 256) if on else ())
    autograd._loaded.cache_clear()
    backward_plans.clear()
    return autograd.attention_backward(*args, **kw)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_matches_float64_and_the_switch_off(case, dtype, monkeypatch):
    b, hq, hkv, nq, nk, d, alignment = case
    causal = alignment is not None
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], seed=nq + d)
    scale, offset = 1 / math.sqrt(d), (nk - nq if alignment == "bottom_right" else 0)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, offset)
    out, lse = float64_forward(q, k, v, causal, scale, offset)
    kw = dict(causal=causal, config=pinned(dtype, d, causal, 2))
    if causal:
        kw["causal_alignment"] = alignment
    on, off = (run(monkeypatch, x, q, k, v, out, lse, dout, **kw) for x in (True, False))
    assert all(torch.isfinite(g).all() for g in on)
    for name, err, err_off in zip(("dq", "dk", "dv"), grad_errors(on, refs, dout, nk),
                                  grad_errors(on, [g.double() for g in off], dout, nk)):
        assert err < TOLERANCE[dtype], (name, err)
        assert err_off < TOLERANCE[dtype], (name, "vs off", err_off)
