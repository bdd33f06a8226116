"""flash_bwd_mma's query-tile orders (ops/backward_kernels.Q_ORDER 1: descending, 2: rotated by the K/V tile) on a GPU:
the H200's served flash_bwd_mma tiles (tuned entry or default, bf16/fp16, D 64/128, and D 256's default) against the
float64 reference's gradients for tests/test_backward_gpu.py's cases (odd lengths, partial tiles, Nq != Nk, GQA/MQA,
causal), bottom-right causal, and D 256; and against today's order (0) on the same inputs: only the fp32 summation
order of dK/dV (and, unordered already, of dQ) differs, so a tile skipped or visited twice (~1 / tiles of a
gradient) would show. The orders' CPU checks: tests/test_backward_mma_q_order.py."""
import math

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from autoflash.ops import backward_kernels  # noqa: E402
from autoflash.ops.backward import TOLERANCE  # noqa: E402
from test_backward_gpu import CASES, DTYPES, float64_forward, inputs, reference_grads, rel_err  # noqa: E402

# batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal alignment (None: not causal)
ORDER_CASES = [c[:6] + ("top_left" if c[6] else None,) for c in CASES] + [
    (1, 2, 1, 333, 1000, 128, "bottom_right"),  # MQA, the diagonal at an offset not a multiple of a tile
    (1, 2, 2, 4097, 4000, 64, "bottom_right"),
    (1, 2, 1, 1000, 1000, 256, "top_left"),     # D 256's default tile
]


def served_mma(dtype: str, d: int, causal: bool):
    """flash_bwd_mma's config for the key on this GPU (tuned entry at N 4096, else the default)."""
    from autoflash.kernels.device import device_arch
    from autoflash.serve import dispatch

    arch, name = device_arch(0)
    key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=False, window=False, softcap=False,
               sinks=False, alibi=False)
    return dispatch.explain(arch, name, "backward", key, 4096, template="flash_bwd_mma")[0]


def grads_with_order(order, q, k, v, out, lse, dout, alignment, cfg):
    """attention_backward with Q_ORDER = order (its loaded kernels and call plans dropped before and after: they are
    kept per config name, which the order does not change)."""
    from autoflash.serve import autograd, backward_plans
    from autoflash.serve.autograd import attention_backward

    saved = backward_kernels.Q_ORDER
    backward_kernels.Q_ORDER = order
    autograd._loaded.cache_clear()
    backward_plans._plans.clear()
    try:
        assert backward_kernels.TEMPLATE.template_values(cfg)["q_order"] == order
        return attention_backward(q, k, v, out, lse, dout, causal=alignment is not None,
                                  causal_alignment=alignment or "top_left", config=cfg)
    finally:
        backward_kernels.Q_ORDER = saved
        autograd._loaded.cache_clear()
        backward_plans._plans.clear()


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", ORDER_CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_{}".format(*c))
def test_order_gradients_match_float64_and_todays_order(case, dtype, order):
    b, hq, hkv, nq, nk, d, alignment = case
    causal = alignment is not None
    offset = nk - nq if alignment == "bottom_right" else 0
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype], seed=nq + nk)
    scale = 1 / math.sqrt(d)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, offset)
    out, lse = float64_forward(q, k, v, causal, scale, offset)
    cfg = served_mma(dtype, d, causal)
    today = grads_with_order(0, q, k, v, out, lse, dout, alignment, cfg)
    grads = grads_with_order(order, q, k, v, out, lse, dout, alignment, cfg)
    assert all(torch.isfinite(x).all() for x in grads)
    if offset < 0:
        assert (grads[0][:, :, :-offset] == 0).all()  # rows that see no key
    if nk == 1:  # one key: dq = dk = 0 up to rounding (test_backward_gpu's measure: |error| / |dO|)
        def error(x, r):
            return (x.double() - r.double()).norm().item() / dout.double().norm().item()
    else:
        error = rel_err
    errs = [error(x, r) for x, r in zip(grads, refs)]
    assert max(errs) <= TOLERANCE[dtype], (cfg.name, errs)
    same = [error(x, t.double()) for x, t in zip(grads, today)]
    assert max(same) <= TOLERANCE[dtype] / 4, (cfg.name, same)
