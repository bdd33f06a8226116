"""flash_bwd_mma's LINE_COPIES (ops/backward_kernels; off until timed) on a GPU: the tiles' copies walk 16-byte slots
instead of data chunks, so the same bytes land in shared memory and every gradient is bitwise equal to the copies by
chunk (dQ with deterministic=True; its fp32 adds' order otherwise varies run to run): D 64 / 128 / 256, a padded D 96,
key and query tails, causal, GQA. CPU checks: tests/test_backward_line_copies.py."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

from test_backward_gpu import (DTYPES, float64_forward, grad_errors, inputs, pinned, reference_grads,  # noqa: E402
                               run_mma_switched)

from autoflash.ops.backward import TOLERANCE  # noqa: E402
from autoflash.serve import autograd, backward_plans  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal
    (2, 4, 2, 300, 700, 64, True),
    (1, 2, 2, 1000, 17, 64, False),
    (2, 4, 1, 257, 333, 128, True),
    (1, 2, 2, 129, 1000, 128, False),
    (1, 8, 2, 200, 130, 96, True),
    (2, 2, 1, 300, 301, 256, True),
]


@pytest.fixture(autouse=True)
def forget_switched_kernels():
    yield
    autograd._loaded.cache_clear()
    backward_plans.clear()


def config(dtype, d, causal):
    """The deterministic 2-D layout's default tile; a padded head dim's: bm64 bn64 (16 keys a warp) on the D 128 tile."""
    if d in (64, 128, 256):
        return pinned(dtype, d, causal, 2, True)
    from autoflash.kernels.device import device_arch
    from autoflash.ops.backward import TEMPLATE

    key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=True)
    return TEMPLATE.config(device_arch(0)[0], key, block_m=64, block_n=64, warps=8, stages=2, warps_q=2)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_c{}".format(*c))
def test_bitwise_equal_to_copies_by_chunk(case, monkeypatch):
    b, hq, hkv, nq, nk, d, causal = case
    dtype = "bf16"
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], seed=nq + d)
    scale = 1 / math.sqrt(d)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, 0)
    out, lse = float64_forward(q, k, v, causal, scale, 0)
    kw = dict(causal=causal, deterministic=True, config=config(dtype, d, causal))
    on, off = (run_mma_switched(monkeypatch, "LINE_COPIES", tiles, q, k, v, out, lse, dout, **kw)
               for tiles in ((64, 128, 256), ()))
    for name, err in zip(("dq", "dk", "dv"), grad_errors(on, refs, dout, nk)):
        assert err < TOLERANCE[dtype], (name, err)
    assert all(torch.equal(x, y) for x, y in zip(on, off))
