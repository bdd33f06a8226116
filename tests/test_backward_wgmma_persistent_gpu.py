"""ops/backward_wgmma.PERSISTENT on an sm_90 GPU: the persistent walk of TAIL_SPLIT's blocks (one CTA an SM, the next
block's K, V loaded into the other buffer, the stages' and staging tiles' counts running on across blocks) gives the
gradients of float64 within the backward's tolerance and of the switch off within it, on grids where each CTA walks
many blocks (up to ~18), with a key tail, GQA, one query tile a block, parts without a query tile, and fewer blocks
than SMs; D 64, bf16 and fp16. CPU checks: tests/test_backward_wgmma_persistent.py."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

# (its module-level checks apply here too: torch, CuPy, an sm_90 GPU)
from test_backward_strided_gpu import DTYPES, TOLERANCE, backward_wgmma  # noqa: E402
from test_backward_gpu import float64_forward, grad_errors, reference_grads  # noqa: E402
from test_backward_wgmma_heavy_first_gpu import inputs  # noqa: E402
from switched_backward import forget_switched_kernels, run_switched  # noqa: E402,F401 (an autouse fixture)

from autoflash.serve import autograd  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k (132 SMs: blocks, of them parts; blocks a CTA)
    (2, 32, 32, 1000, 4500),  # 36 x 64 = 2304 K/V tiles: 60 left in 2 parts each, 2364 blocks, ~18 a CTA; key tail
    (3, 16, 4, 777, 3000),  # GQA 4: 24 x 4 x 3 = 288 tiles, 24 left in 5 parts, 384 blocks
    (4, 16, 16, 17, 2000),  # one query tile: 1024 tiles, 100 left (not split), ~8 a CTA
    (1, 17, 17, 40, 1000),  # 136 tiles, 4 left in 33 parts of a one-pair unit: 32 parts with no query tile
    (1, 8, 8, 3000, 300),  # 24 blocks: fewer than SMs, one each
]


def run(monkeypatch, on: bool, *args, **kw):
    return run_switched(monkeypatch, "PERSISTENT", on, *args, **kw)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}".format(*c))
def test_matches_float64_and_the_switch_off(case, dtype, monkeypatch):
    b, hq, hkv, nq, nk = case
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, 64, DTYPES[dtype], False, seed=nq + nk)
    scale = 1 / math.sqrt(64)
    _, _, *refs = reference_grads(q, k, v, dout, False, scale, 0)
    out, lse = float64_forward(q, k, v, False, scale, 0)
    on = run(monkeypatch, True, q, k, v, out, lse, dout, causal=False)
    assert backward_wgmma.TEMPLATE.persistent(autograd._served_config(q.device.index, dict(
        dtype=dtype, head_dim=64, causal=False, deterministic=False, window=False, softcap=False, sinks=False,
        alibi=False), nk))
    off = run(monkeypatch, False, q, k, v, out, lse, dout, causal=False)
    assert all(torch.isfinite(g).all() for g in on)
    for name, err, err_off in zip(("dq", "dk", "dv"), grad_errors(on, refs, dout, nk),
                                  grad_errors(on, [g.double() for g in off], dout, nk)):
        assert err < TOLERANCE[dtype], (name, err)
        assert err_off < TOLERANCE[dtype], (name, "vs off", err_off)
