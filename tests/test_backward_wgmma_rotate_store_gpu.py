"""ops/backward_wgmma.Q_ROTATE and DQ_FIRST_STORE on an sm_90 GPU: with each and both on, the gradients match float64's
within the backward's tolerance and the switches off within it (dQ's fp32 adds, and dK, dV's over the rotated query
tiles, run in another order), on TAIL_SPLIT's non-causal grids: a split tail, GQA, Nq != Nk (more query tiles than
K/V tiles, one K/V tile only: every query tile's one adder stores), a partial last query tile, D 128 and padded 96
(no producer: Q_ROTATE only); a second call on the same inputs (the flags zeroed again) agrees with the first; causal
and deterministic grids are left as they were. CPU checks: tests/test_backward_wgmma_rotate_store.py."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

# (its module-level checks apply here too: torch, CuPy, an sm_90 GPU)
from test_backward_strided_gpu import DTYPES, TOLERANCE, attention_backward, backward_wgmma  # noqa: E402
from test_backward_gpu import float64_forward, reference_grads, rel_err  # noqa: E402
from test_backward_wgmma_heavy_first_gpu import inputs  # noqa: E402

from autoflash.serve import autograd, backward_plans  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal
    (1, 17, 17, 1000, 1000, 64, False),  # 136 K/V tiles on 132 SMs: 4 split
    (3, 8, 2, 4097, 4097, 64, False),  # GQA, a one-row last query tile
    (1, 4, 4, 3000, 200, 64, False),  # 47 query tiles, 2 K/V tiles
    (2, 4, 4, 700, 3, 64, False),  # one K/V tile of three keys (one key: dq is exactly 0, no relative error)
    (1, 40, 20, 300, 777, 128, False),
    (1, 20, 20, 777, 777, 96, False),  # padded, no producer: Q_ROTATE only
    (1, 9, 9, 2000, 2000, 64, True),  # causal: neither applies
]
SWITCHES = {"rotate": (True, False), "store": (False, True), "both": (True, True)}


def run(monkeypatch, switches, *args, **kw):
    rotate, store = switches
    monkeypatch.setattr(backward_wgmma, "Q_ROTATE", rotate)
    monkeypatch.setattr(backward_wgmma, "DQ_FIRST_STORE", store)
    autograd._loaded.cache_clear()
    backward_plans.clear()
    return attention_backward(*args, **kw)


@pytest.fixture(autouse=True)
def forget_switched_kernels():
    yield
    autograd._loaded.cache_clear()
    backward_plans.clear()


@pytest.mark.parametrize("switches", list(SWITCHES), ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_causal{}".format(*c))
def test_matches_float64_and_the_switches_off(case, switches, monkeypatch):
    b, hq, hkv, nq, nk, d, causal = case
    dtype = "bf16"
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], False, seed=nq + d)
    scale = 1 / math.sqrt(d)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, 0)
    out, lse = float64_forward(q, k, v, causal, scale, 0)
    on = run(monkeypatch, SWITCHES[switches], q, k, v, out, lse, dout, causal=causal)
    again = attention_backward(q, k, v, out, lse, dout, causal=causal)  # (the same plan: its flags zeroed again)
    off = run(monkeypatch, (False, False), q, k, v, out, lse, dout, causal=causal)
    for name, g, ref, g_again, g_off in zip(("dq", "dk", "dv"), on, refs, again, off):
        assert rel_err(g, ref) < TOLERANCE[dtype], (name, rel_err(g, ref))
        assert rel_err(g, g_off.double()) < TOLERANCE[dtype], (name, "vs off")
        assert rel_err(g_again, g.double()) < TOLERANCE[dtype], (name, "second call")
