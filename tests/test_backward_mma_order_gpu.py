"""flash_bwd_mma's heavy-first block order (ops/backward_mma_switches.HEAVY_FIRST: K/V tile j of every (batch, head)
pair of a group before tile j + 1, HEAVY_GROUP_MB) on a GPU, causal keys: gradients against float64 within the
backward's tolerances, and against the switch off: dk, dv bitwise (each block sums its own keys in the same order), dq
within the tolerance (its fp32 adds arrive in another order); deterministic mode bitwise to off (its dQ adds stay in
K/V-tile order). CPU checks (renders, compiles): tests/test_backward_mma_order.py."""
import functools
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

from test_backward_gpu import (DTYPES, assert_switch_keeps_gradients, float64_forward, inputs, pinned,  # noqa: E402
                               run_mma_switched)

from autoflash.ops import backward_mma_switches  # noqa: E402
from autoflash.ops.backward import TOLERANCE  # noqa: E402
from autoflash.serve import autograd, backward_plans  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, alignment
    (1, 2, 2, 1, 1, 64, "top_left"),
    (2, 4, 4, 17, 17, 128, "top_left"),
    (1, 8, 2, 1000, 1000, 64, "top_left"),
    (3, 4, 2, 300, 700, 128, "bottom_right"),
    (1, 2, 2, 4097, 4097, 128, "top_left"),
    (1, 2, 1, 700, 300, 256, "bottom_right"),
]


@pytest.fixture(autouse=True)
def forget_switched_kernels():
    """The kernels loaded here were built with the switches as each test set them: forget them after the test."""
    yield
    autograd._loaded.cache_clear()
    backward_plans.clear()


def run(monkeypatch, on: bool, *args, **kw):
    return run_mma_switched(monkeypatch, "HEAVY_FIRST", (64, 128, 256) if on else (), *args, **kw)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_matches_float64_and_the_switch_off(case, dtype, monkeypatch):
    b, hq, hkv, nq, nk, d, alignment = case
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], seed=nq)
    assert_switch_keeps_gradients(functools.partial(run, monkeypatch), q, k, v, dout, TOLERANCE[dtype],
                                  offset=nk - nq if alignment == "bottom_right" else 0, causal_alignment=alignment,
                                  config=pinned(dtype, d, True, 2 if d < 256 else 4))


@pytest.mark.parametrize("d", [64, 128])
def test_deterministic_equals_the_switch_off_bitwise(d, monkeypatch):
    q, k, v, dout = inputs(2, 4, 2, 1000, 1000, d, torch.bfloat16, seed=d)
    out, lse = float64_forward(q, k, v, True, 1 / math.sqrt(d))
    kw = dict(causal=True, deterministic=True, config=pinned("bf16", d, True, 2, deterministic=True))
    on = run(monkeypatch, True, q, k, v, out, lse, dout, **kw)
    off = run(monkeypatch, False, q, k, v, out, lse, dout, **kw)
    assert all(torch.equal(a, b) for a, b in zip(on, off))


@pytest.mark.parametrize("template", ["mma", "wgmma"])
@pytest.mark.parametrize("group_mb", [1, 3, 64])
@pytest.mark.parametrize("deterministic", [False, True])
def test_heavy_groups_match_float64_and_the_switch_off(group_mb, template, deterministic, monkeypatch):
    """HEAVY_GROUP_MB: both templates' heavy-first order in groups of (batch, head) pairs (here 1, 5 + 1 and all 6 of
    b 3 x hkv 2, 614400 bytes of query rows a pair); dk, dv bitwise to the blockIdx.x order, dq too when
    deterministic."""
    from autoflash.ops import backward_wgmma

    if template == "wgmma" and torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("flash_bwd_wgmma needs an sm_90 GPU")
    b, hq, hkv, nq, nk, d = 3, 4, 2, 300, 700, 128
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, torch.bfloat16, seed=group_mb)
    monkeypatch.setattr(backward_mma_switches, "HEAVY_GROUP_MB", group_mb)

    def run_both(on, *args, **kw):  # (both templates' switches)
        monkeypatch.setattr(backward_wgmma, "HEAVY_FIRST", (64, 128) if on else ())
        return run(monkeypatch, on, *args, **kw)

    assert_switch_keeps_gradients(run_both, q, k, v, dout, TOLERANCE["bf16"], offset=nk - nq, dq_bitwise=deterministic,
                                  causal_alignment="bottom_right", deterministic=deterministic,
                                  config=pinned("bf16", d, True, 2, deterministic) if template == "mma" else None)
