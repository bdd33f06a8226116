"""GPU tests of an ops/backward_wgmma switch: the backward run with the switch set, the served kernels and launch plans
forgotten first (so the switch's render is what runs) and after each test (so no later test is served them). Imported
only by GPU test files, after their torch check."""
import math

import pytest

from test_backward_gpu import float64_forward, reference_grads
from test_backward_strided_gpu import DTYPES, attention_backward, backward_wgmma
from test_backward_wgmma_heavy_first_gpu import inputs

from autoflash.serve import autograd, backward_plans


def forget_kernels() -> None:
    autograd._loaded.cache_clear()
    backward_plans.clear()


@pytest.fixture(autouse=True)
def forget_switched_kernels():
    """(autouse in every module that imports it)"""
    yield
    forget_kernels()


def float64_case(case: tuple, dtype: str) -> tuple:
    """A case (batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal, alignment)'s inputs (seeded by seq_q +
    head_dim), its float64 gradients, the float64 forward's O and LSE, and attention_backward's mask keywords:
    ((q, k, v, out, lse, dout), refs, kw)."""
    b, hq, hkv, nq, nk, d, causal, alignment = case
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], False, seed=nq + d)
    scale, offset = 1 / math.sqrt(d), (nk - nq if causal and alignment == "bottom_right" else 0)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, offset)
    out, lse = float64_forward(q, k, v, causal, scale, offset)
    kw = dict(causal=causal, causal_alignment=alignment) if causal else dict(causal=False)
    return (q, k, v, out, lse, dout), refs, kw


def run_switched(monkeypatch, switch: str, on: bool, *args, **kw):
    """attention_backward(*args, **kw) with backward_wgmma.<switch> = on."""
    monkeypatch.setattr(backward_wgmma, switch, on)
    forget_kernels()
    return attention_backward(*args, **kw)
