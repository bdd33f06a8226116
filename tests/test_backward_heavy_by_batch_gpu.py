"""flash_bwd_mma's HEAVY_BY_BATCH (ops/backward_mma_switches; served at D 128): heavy-first causal blocks on a (K/V
head, K/V tile, batch) grid. On a GPU: gradients against float64 within the backward's tolerances; dK and dV bitwise
equal to the grouped heavy-first order's (a block's arithmetic does not depend on the order blocks run in), and with
deterministic=True dQ too; with DQ_INTERLEAVE at every tile dim as well (served together at D 128 causal, s31a). Batches
> 1, both alignments, GQA, tails, D 64 / 128 / 256. CPU checks: tests/test_backward_heavy_by_batch.py."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

from test_backward_gpu import (DTYPES, float64_forward, grad_errors, inputs, pinned, reference_grads,  # noqa: E402
                               run_mma_switched)

from autoflash.ops.backward import TOLERANCE  # noqa: E402
from autoflash.serve import autograd, backward_plans  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, alignment
    (3, 4, 2, 300, 700, 64, "top_left"),
    (2, 4, 1, 333, 1000, 64, "bottom_right"),
    (2, 2, 2, 1000, 333, 128, "bottom_right"),  # rows that see no key
    (3, 4, 2, 257, 257, 128, "top_left"),
    (2, 2, 1, 300, 301, 256, "top_left"),
]


@pytest.fixture(autouse=True)
def forget_switched_kernels():
    yield
    autograd._loaded.cache_clear()
    backward_plans.clear()


ALL = (64, 128, 256)


def run(monkeypatch, heavy_by_batch, interleave: bool, *args, **kw):
    from autoflash.ops import backward_mma_switches

    if interleave:
        monkeypatch.setattr(backward_mma_switches, "DQ_INTERLEAVE", ALL)
    return run_mma_switched(monkeypatch, "HEAVY_BY_BATCH", heavy_by_batch, *args, **kw)


@pytest.mark.parametrize("interleave", [False, True], ids=["alone", "with_dq_interleave"])
@pytest.mark.parametrize("deterministic", [False, True], ids=["plain", "deterministic"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_matches_float64_and_the_served_order(case, deterministic, interleave, monkeypatch):
    b, hq, hkv, nq, nk, d, alignment = case
    dtype = "bf16"
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], seed=nq + d)
    scale = 1 / math.sqrt(d)
    offset = nk - nq if alignment == "bottom_right" else 0
    _, _, *refs = reference_grads(q, k, v, dout, True, scale, offset)
    out, lse = float64_forward(q, k, v, True, scale, offset)
    kw = dict(causal=True, causal_alignment=alignment, deterministic=deterministic,
              config=pinned(dtype, d, True, 2, deterministic))  # (the 2-D layout: DQ_INTERLEAVE's)
    on = run(monkeypatch, ALL, interleave, q, k, v, out, lse, dout, **kw)
    off = run(monkeypatch, (), interleave, q, k, v, out, lse, dout, **kw)
    for name, err in zip(("dq", "dk", "dv"), grad_errors(on, refs, dout, nk)):
        assert err < TOLERANCE[dtype], (name, err)
    assert torch.equal(on[1], off[1]) and torch.equal(on[2], off[2])
    if deterministic:
        assert torch.equal(on[0], off[0])
