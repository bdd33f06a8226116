"""flash_bwd_mma's S_ROWS (ops/backward_mma_switches: S and dP with the queries as rows, FlashAttention-2's form) on a
GPU: gradients against float64 within the backward's tolerances and against the switch off within them too (the
products' order of fp32 adds may differ); the 2-D layout's non-causal tiles at D 64 (not served) and 128, key and query
tails, GQA, Nq != Nk, a padded head dim. CPU checks: tests/test_backward_mma_rows.py."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

from test_backward_gpu import (DTYPES, float64_forward, grad_errors, inputs, reference_grads,  # noqa: E402
                               run_mma_switched)

from autoflash.ops.backward import TOLERANCE  # noqa: E402
from autoflash.serve import autograd, backward_plans  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim (not causal: causal keys keep the S^T form)
    (1, 2, 2, 1, 1, 64),
    (2, 4, 2, 1000, 1000, 64),
    (1, 4, 1, 333, 1000, 64),
    (3, 4, 2, 300, 700, 128),
    (1, 2, 2, 1000, 17, 128),
    (1, 2, 2, 4097, 4097, 128),
    (1, 8, 2, 200, 130, 96),  # a head dim padded to the D 128 tile
]


@pytest.fixture(autouse=True)
def forget_switched_kernels():
    yield
    autograd._loaded.cache_clear()
    backward_plans.clear()


def mma_config(dtype: str, d: int):
    """The 2-D layout's tile for head dim d: bm128 bn128 at 64, bm64 bn128 at 128, bm64 bn64 for a padded one."""
    from autoflash.kernels.device import device_arch
    from autoflash.ops.backward import TEMPLATE

    key = dict(dtype=dtype, head_dim=d, causal=False, deterministic=False)
    return TEMPLATE.config(device_arch(0)[0], key, block_m=128 if d == 64 else 64,
                           block_n=128 if d in (64, 128) else 64, warps=8, stages=2,
                           warps_q=2)


def run(monkeypatch, on: bool, *args, **kw):
    return run_mma_switched(monkeypatch, "S_ROWS", (64, 128, 256) if on else (), *args, **kw)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}".format(*c))
def test_matches_float64_and_the_switch_off(case, dtype, monkeypatch):
    b, hq, hkv, nq, nk, d = case
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], seed=nq + d)
    scale = 1 / math.sqrt(d)
    _, _, *refs = reference_grads(q, k, v, dout, False, scale, 0)
    out, lse = float64_forward(q, k, v, False, scale, 0)
    kw = dict(causal=False, config=mma_config(dtype, d))
    on, off = (run(monkeypatch, x, q, k, v, out, lse, dout, **kw) for x in (True, False))
    assert all(torch.isfinite(g).all() for g in on)
    for name, err, err_off in zip(("dq", "dk", "dv"), grad_errors(on, refs, dout, nk),
                                  grad_errors(on, [g.double() for g in off], dout, nk)):
        assert err < TOLERANCE[dtype], (name, err)
        assert err_off < TOLERANCE[dtype], (name, "vs off", err_off)
