"""flash_bwd_mma's warps_q=4 (ops/backward_kernels.WARPS_Q4: FlashAttention-2's D 64 S/dP warp layout) on a GPU: every
warps_q=4 tile the rules keep on this GPU (bf16/fp16, D 64) against the float64 reference's gradients, not causal and
causal in both alignments, odd lengths (1, 17, 1000, 4097), Nq != Nk, GQA/MQA; and against the served warps_q 2
config on the same inputs (only the fp32 summation order differs: a key, query or column block dropped or counted
twice would be ~1 / tiles of a gradient). Its CPU checks: tests/test_backward_mma_warps_q4.py."""
import math

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from autoflash.ops import backward_kernels  # noqa: E402
from autoflash.ops.backward import TOLERANCE  # noqa: E402
from test_backward_gpu import DTYPES, float64_forward, inputs, reference_grads, rel_err  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k (D 64)
    (1, 2, 2, 1, 1),
    (2, 2, 2, 17, 17),
    (1, 4, 2, 1000, 1000),  # GQA
    (1, 4, 1, 333, 1000),   # MQA, Nq < Nk
    (1, 2, 2, 1000, 17),    # Nq > Nk (bottom-right: 983 rows see no key)
    (1, 2, 1, 4097, 4097),  # GQA, a partial last tile of queries and of keys
]
ALIGNMENTS = [None, "top_left", "bottom_right"]  # None: not causal


def tiles(dtype: str, causal: bool):
    """(this GPU's warps_q=4 configs for the key, the served flash_bwd_mma config at N 4096)."""
    from autoflash.kernels.device import device_arch
    from autoflash.serve import dispatch

    arch, name = device_arch(0)
    key = dict(dtype=dtype, head_dim=64, causal=causal, deterministic=False, window=False, softcap=False,
               sinks=False, alibi=False)
    served = dispatch.explain(arch, name, "backward", key, 4096, template="flash_bwd_mma")[0]
    t = backward_kernels.TEMPLATE
    new = [c for c in t.space(served.arch, key) if c.warps_q == 4 and not c.problems()]
    return new, served


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("alignment", ALIGNMENTS, ids=lambda a: a or "dense")
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}".format(*c))
def test_warps_q4_gradients_match_float64_and_the_served_config(case, alignment, dtype, monkeypatch):
    from autoflash.serve.autograd import attention_backward

    monkeypatch.setattr(backward_kernels, "WARPS_Q4", True)
    b, hq, hkv, nq, nk = case
    causal = alignment is not None
    offset = nk - nq if alignment == "bottom_right" else 0
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, 64, DTYPES[dtype], seed=nq + nk)
    scale = 1 / math.sqrt(64)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, offset)
    out, lse = float64_forward(q, k, v, causal, scale, offset)
    new, served = tiles(dtype, causal)
    assert len(new) >= 1 and served.warps_q != 4

    def run(cfg):
        return attention_backward(q, k, v, out, lse, dout, causal=causal, causal_alignment=alignment or "top_left",
                                  config=cfg)

    if nk == 1:  # one key: dq = dk = 0 up to rounding (test_backward_gpu's measure: |error| / |dO|)
        def error(x, r):
            return (x.double() - r.double()).norm().item() / dout.double().norm().item()
    else:
        error = rel_err
    today = run(served)
    for cfg in new:
        grads = run(cfg)
        assert all(torch.isfinite(x).all() for x in grads), cfg.name
        if offset < 0:
            assert (grads[0][:, :, :-offset] == 0).all(), cfg.name  # rows that see no key
        errs = [error(x, r) for x, r in zip(grads, refs)]
        assert max(errs) <= TOLERANCE[dtype], (cfg.name, errs)
        same = [error(x, t.double()) for x, t in zip(grads, today)]
        assert max(same) <= TOLERANCE[dtype] / 4, (cfg.name, served.name, same)
