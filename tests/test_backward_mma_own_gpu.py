"""flash_bwd_mma's OWN_DV / OWN_DK (ops/backward_mma_switches: the 2-D layouts' dV and dK over a warp's own queries from
its registers) on a GPU, both on and OWN_DK alone: gradients against float64 within the backward's tolerances and
against both off within them too (the order of the fp32 adds over the queries differs); D 64 / 128 (warps_q 2) and
256 (warps_q 4), causal in
both alignments, key and query tails, GQA, Nq != Nk, a padded head dim. CPU checks:
tests/test_backward_mma_own.py."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

from test_backward_gpu import (DTYPES, float64_forward, grad_errors, inputs, reference_grads,  # noqa: E402
                               run_mma_switched)

from autoflash.ops.backward import TOLERANCE  # noqa: E402
from autoflash.serve import autograd, backward_plans  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal, alignment
    (1, 2, 2, 1, 1, 64, False, "top_left"),
    (2, 4, 2, 1000, 1000, 64, True, "top_left"),
    (1, 4, 1, 333, 1000, 64, True, "bottom_right"),  # bottom-right
    (1, 2, 2, 1000, 333, 64, True, "bottom_right"),  # bottom-right, rows that see no key
    (3, 4, 2, 300, 700, 128, True, "top_left"),
    (1, 2, 2, 4097, 4097, 128, True, "top_left"),
    (1, 2, 2, 1000, 17, 128, False, "top_left"),  # (D 128 non-causal serves the S form: unchanged, checked all the same)
    (1, 8, 2, 200, 130, 96, True, "top_left"),  # a head dim padded to the D 128 tile (bn64: bn128 spills there)
    (2, 2, 1, 300, 301, 256, True, "bottom_right"),
    (1, 2, 2, 129, 1000, 256, False, "top_left"),
]


@pytest.fixture(autouse=True)
def forget_switched_kernels():
    yield
    autograd._loaded.cache_clear()
    backward_plans.clear()


def mma_config(dtype: str, d: int, causal: bool):
    """The served 2-D tiles: bm128 bn128 wq2 at 64, bm64 bn128 wq2 at 128 (bn64 at 96), bm64 bn64 wq4 at 256."""
    from autoflash.kernels.device import device_arch
    from autoflash.ops.backward import TEMPLATE

    key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=False)
    bm, bn, wq = {64: (128, 128, 2), 96: (64, 64, 2), 128: (64, 128, 2), 256: (64, 64, 4)}[d]
    return TEMPLATE.config(device_arch(0)[0], key, block_m=bm, block_n=bn, warps=8, stages=2, warps_q=wq)


def run(monkeypatch, switches: tuple, *args, **kw):
    """attention_backward with OWN_DV, OWN_DK on at every tile dim where named in switches, else off."""
    from autoflash.ops import backward_mma_switches

    monkeypatch.setattr(backward_mma_switches, "OWN_DK", (64, 128, 256) if "OWN_DK" in switches else ())
    return run_mma_switched(monkeypatch, "OWN_DV", (64, 128, 256) if "OWN_DV" in switches else (), *args, **kw)


@pytest.mark.parametrize("switches", [("OWN_DV", "OWN_DK"), ("OWN_DK",)], ids="+".join)
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}_{}".format(*c))
def test_matches_float64_and_the_switches_off(case, dtype, switches, monkeypatch):
    b, hq, hkv, nq, nk, d, causal, alignment = case
    offset = nk - nq if alignment == "bottom_right" else 0
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], seed=nq + d)
    scale = 1 / math.sqrt(d)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, offset)
    out, lse = float64_forward(q, k, v, causal, scale, offset)
    kw = dict(causal=causal, causal_alignment=alignment, config=mma_config(dtype, d, causal))
    on, off = (run(monkeypatch, x, q, k, v, out, lse, dout, **kw) for x in (switches, ()))
    assert all(torch.isfinite(g).all() for g in on)
    for name, err, err_off in zip(("dq", "dk", "dv"), grad_errors(on, refs, dout, nk),
                                  grad_errors(on, [g.double() for g in off], dout, nk)):
        assert err < TOLERANCE[dtype], (name, err)
        assert err_off < TOLERANCE[dtype], (name, "vs off", err_off)
