"""flash_bwd_wgmma on strided inputs and outputs (ops/backward_wgmma.STRIDED on) on an sm_90 GPU: q, k, v as
(B, H, N, D) views of one fused projection (unbind of (B, N, 3, H, D); GQA: slices of (B, N, Hq + 2 Hkv, D)), O and
grad_out as transposed (B, N, H, D) tensors. The gradients match float64 attention, are laid out like the inputs
(torch.empty_like's strides), and equal the same call on contiguous copies: dk, dv bitwise (each block sums its own
keys), dq bitwise when deterministic; a flash_bwd_mma-served key (D 256) gets the same layout through copies; a
training step through autoflash.attention on a fused qkv leaf matches SDPA's gradients. CPU checks:
tests/test_backward_strided.py."""
import math

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
pytest.importorskip("cupy")

from autoflash.ops import backward_wgmma  # noqa: E402
from autoflash.ops.backward import TOLERANCE  # noqa: E402
from autoflash.serve import backward_plans, training_plans  # noqa: E402
from autoflash.serve.autograd import attention_backward  # noqa: E402

from test_backward_gpu import float64_forward, reference_grads, rel_err  # noqa: E402

if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
    pytest.skip("flash_bwd_wgmma needs an sm_90 GPU", allow_module_level=True)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal, alignment
    (1, 2, 2, 1, 1, 64, False, "top_left"),
    (2, 4, 4, 77, 77, 128, True, "top_left"),
    (1, 4, 4, 1000, 1000, 64, True, "top_left"),
    (1, 8, 2, 1000, 1000, 128, False, "top_left"),   # GQA from one fused buffer
    (1, 4, 2, 300, 700, 128, True, "bottom_right"),  # q and k/v of different lengths: two fused buffers
    (1, 2, 2, 4097, 4097, 128, True, "top_left"),
]


@pytest.fixture(autouse=True)
def strided(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "STRIDED", True)
    backward_plans.clear()
    training_plans.clear()
    yield
    backward_plans.clear()
    training_plans.clear()


def views(b, hq, hkv, nq, nk, d, dtype, seed=0):
    """q, k, v as (B, H, N, D) views of fused (B, N, heads, D) buffers (one when nq == nk), grad_out transposed."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    if nq == nk:
        fused = torch.randn(b, nq, hq + 2 * hkv, d, device="cuda", dtype=dtype, generator=g)
        q, k, v = fused.split([hq, hkv, hkv], dim=2) if hq != hkv else fused.view(b, nq, 3, hq, d).unbind(2)
    else:
        q = torch.randn(b, nq, hq, d, device="cuda", dtype=dtype, generator=g)
        k, v = torch.randn(b, nk, 2, hkv, d, device="cuda", dtype=dtype, generator=g).unbind(2)
    dout = torch.randn(b, nq, hq, d, device="cuda", dtype=dtype, generator=g)
    return tuple(t.transpose(1, 2) for t in (q, k, v, dout))


def like_forward(out):
    """O as a forward writing (B, N, H, D) memory would give it: a transposed view."""
    return out.transpose(1, 2).contiguous().transpose(1, 2)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}{}_{}".format(*c[:6], "_causal" * c[6],
                                                                                             c[7]))
def test_views_match_float64_and_keep_the_inputs_layout(case, dtype):
    b, hq, hkv, nq, nk, d, causal, alignment = case
    q, k, v, dout = views(b, hq, hkv, nq, nk, d, DTYPES[dtype], seed=nq)
    assert nq == 1 or not (q.is_contiguous() or k.is_contiguous() or dout.is_contiguous())
    scale, offset = 1 / math.sqrt(d), (nk - nq if alignment == "bottom_right" else 0)
    _, _, *refs = reference_grads(q, k, v, dout, causal, scale, offset)
    out, lse = float64_forward(q, k, v, causal, scale, offset)
    grads = attention_backward(q, k, v, like_forward(out), lse, dout, causal=causal, causal_alignment=alignment)
    for g, t in zip(grads, (q, k, v)):
        assert g.stride() == torch.empty_like(t).stride() and torch.isfinite(g).all()
    if nk > 1:
        errs = [rel_err(x, r) for x, r in zip(grads, refs)]
        assert max(errs) <= TOLERANCE[dtype], errs
    copies = attention_backward(q.contiguous(), k.contiguous(), v.contiguous(), out.contiguous(), lse,
                                dout.contiguous(), causal=causal, causal_alignment=alignment)
    assert torch.equal(grads[1], copies[1]) and torch.equal(grads[2], copies[2])
    bound = 2.0 ** -7 * copies[0].abs().max().item()  # dq: fp32 adds in any order, one bf16 unit at its largest
    assert (grads[0].float() - copies[0].float()).abs().max().item() <= bound


@pytest.mark.parametrize("d,causal", [(64, True), (128, False), (128, True)])
def test_deterministic_views_equal_contiguous_copies_bitwise(d, causal):
    q, k, v, dout = views(1, 8, 2, 1000, 1000, d, torch.bfloat16, seed=d)
    out, lse = float64_forward(q, k, v, causal, 1 / math.sqrt(d))
    grads = attention_backward(q, k, v, like_forward(out), lse, dout, causal=causal, deterministic=True)
    again = attention_backward(q, k, v, like_forward(out), lse, dout, causal=causal, deterministic=True)
    copies = attention_backward(q.contiguous(), k.contiguous(), v.contiguous(), out, lse, dout.contiguous(),
                                causal=causal, deterministic=True)
    for g, a, c in zip(grads, again, copies):
        assert torch.equal(g, a) and torch.equal(g, c)


def test_a_plan_hit_on_new_views_matches_the_full_path():
    q, k, v, dout = views(2, 4, 4, 300, 300, 64, torch.bfloat16, seed=3)
    out, lse = float64_forward(q, k, v, True, 0.125)
    first = attention_backward(q, k, v, like_forward(out), lse, dout, causal=True, deterministic=True)
    assert len(backward_plans._plans) == 1
    q2, k2, v2, dout2 = views(2, 4, 4, 300, 300, 64, torch.bfloat16, seed=3)  # same values and strides, new memory
    hit = attention_backward(q2, k2, v2, like_forward(out), lse, dout2, causal=True, deterministic=True)
    assert len(backward_plans._plans) == 1
    for a, b in zip(first, hit):
        assert torch.equal(a, b) and a.stride() == b.stride()


def test_mma_served_key_gets_the_same_layout():
    """D 256 is flash_bwd_mma's: it reads contiguous copies; its gradients land in empty_like(q, k, v)."""
    q, k, v, dout = views(1, 2, 2, 200, 200, 256, torch.bfloat16, seed=7)
    out, lse = float64_forward(q, k, v, True, 1 / 16)
    _, _, *refs = reference_grads(q, k, v, dout, True, 1 / 16)
    grads = attention_backward(q, k, v, like_forward(out), lse, dout, causal=True)
    for g, t in zip(grads, (q, k, v)):
        assert g.stride() == torch.empty_like(t).stride()
    assert max(rel_err(x, r) for x, r in zip(grads, refs)) <= TOLERANCE["bf16"]


def test_training_step_on_a_fused_projection_matches_sdpa():
    import torch.nn.functional as F

    import autoflash

    b, n, h, d = 2, 512, 4, 128
    g = torch.Generator(device="cuda").manual_seed(11)
    qkv = torch.randn(b, n, 3 * h * d, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
    grad_y = torch.randn(b, n, h * d, device="cuda", dtype=torch.bfloat16, generator=g)
    grads = {}
    for name, attn in (("ours", lambda q, k, v: autoflash.attention(q, k, v, causal=True)),
                       ("sdpa", lambda q, k, v: F.scaled_dot_product_attention(q.float(), k.float(), v.float(),
                                                                               is_causal=True))):
        for _ in range(2):  # the second call: the training plans
            qkv.grad = None
            q, k, v = qkv.view(b, n, 3, h, d).unbind(2)
            y = attn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            y.transpose(1, 2).reshape(b, n, h * d).float().backward(grad_y.float())
            grads[name] = qkv.grad.clone()
    assert rel_err(grads["ours"], grads["sdpa"].double()) <= TOLERANCE["bf16"]
