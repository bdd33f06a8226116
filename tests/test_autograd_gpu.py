"""Gradients as served (issue 16 item 3): autoflash.attention() on inputs that require grad (both
routes: the decode kernel's and the forward kernel's O and LSE feed the backward) and the torch
drop-in eagerly and under torch.compile(fullgraph=True), against the gradients of attention in
float64 from the same (upcast) inputs; a gradcheck-style directional derivative; the refusals.

Tolerances: relative Frobenius error of each gradient, ops/backward.TOLERANCE (bf16 1e-2, fp16
2e-3; the reason is written there: P and dS rounded to the dtype before their products, the
gradients rounded on the way out). The forward's O here comes from autoflash's own kernels, whose
error is of the same order as rounding O to the dtype (what test_backward_gpu.py feeds the
backward), so the same bounds apply. Outputs: ops/reference.TOLERANCE."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

import autoflash  # noqa: E402
import autoflash.torch as aft  # noqa: E402
from autoflash.ops.backward import TOLERANCE as GRAD_TOLERANCE  # noqa: E402
from autoflash.ops.reference import TOLERANCE as OUT_TOLERANCE  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def leaves(shapes, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(s, device="cuda", generator=g).to(DTYPES[dtype]).requires_grad_() for s in shapes]


def float64_attention(q, k, v, causal, scale):
    """Attention in float64 on (..., H, N, D): GQA by repeating K/V heads, causal top-left."""
    group = q.shape[-3] // k.shape[-3]
    k, v = k.repeat_interleave(group, -3), v.repeat_interleave(group, -3)
    s = (q @ k.transpose(-1, -2)) * scale
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu(1), -math.inf)
    return torch.softmax(s, -1) @ v


def reference_grads(q, k, v, weight, causal, scale):
    """Output and gradients of sum(weight * attention) in float64."""
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    out = float64_attention(q64, k64, v64, causal, scale)
    (out * weight.double()).sum().backward()
    return out.detach(), (q64.grad, k64.grad, v64.grad)


def rel_err(x, ref) -> float:
    return (x.double() - ref).norm().item() / max(ref.norm().item(), 1e-30)


def assert_close(out, grads, ref_out, ref_grads, dtype):
    assert rel_err(out.detach(), ref_out) <= OUT_TOLERANCE[dtype]
    errs = [rel_err(x, r) for x, r in zip(grads, ref_grads)]
    for x in grads:
        assert torch.isfinite(x).all()
    assert max(errs) <= GRAD_TOLERANCE[dtype], errs


CASES = [  # (dtype, b, hq, hkv, nq, nk, d, causal, served by decode?)
    ("bf16", 2, 8, 2, 1, 1000, 128, False, True),   # one decode token, GQA
    ("fp16", 2, 4, 4, 16, 300, 64, False, True),    # the decode query limit, MHA
    ("bf16", 1, 4, 1, 12, 12, 64, True, True),      # causal, seq_q == seq_k, MQA
    ("bf16", 1, 4, 2, 333, 517, 128, True, False),  # forward route: causal, Nq != Nk
    ("fp16", 2, 2, 2, 200, 200, 64, False, False),
    ("bf16", 1, 4, 2, 200, 300, 256, True, False),  # D 256 (not yet run on a GPU through attention())
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "{}_b{}_h{}x{}_q{}_k{}_d{}{}".format(*c[:7], "_causal" * c[7]))
def test_attention_gradients_match_float64(decode_calls, case):
    dtype, b, hq, hkv, nq, nk, d, causal, by_decode = case
    q, k, v = leaves(((b, hq, nq, d), (b, hkv, nk, d), (b, hkv, nk, d)), dtype, seed=nq + nk)
    weight = torch.randn(q.shape, device="cuda", dtype=q.dtype)
    out = autoflash.attention(q, k, v, causal=causal)
    assert out.requires_grad and bool(decode_calls) == by_decode
    (out * weight).sum().backward()
    ref_out, ref_grads = reference_grads(q, k, v, weight, causal, 1 / math.sqrt(d))
    assert_close(out, (q.grad, k.grad, v.grad), ref_out, ref_grads, dtype)


def test_attention_deterministic_gradients_are_bitwise_repeatable():
    q, k, v = leaves(((2, 4, 300, 128), (2, 2, 300, 128), (2, 2, 300, 128)), "bf16", seed=1)
    weight = torch.randn(q.shape, device="cuda", dtype=q.dtype)
    runs = []
    for _ in range(2):
        for x in (q, k, v):
            x.grad = None
        (autoflash.attention(q, k, v, causal=True, scale=0.3, deterministic=True) * weight).sum().backward()
        runs.append([x.grad.clone() for x in (q, k, v)])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    _, ref_grads = reference_grads(q, k, v, weight, True, 0.3)
    assert max(rel_err(x, r) for x, r in zip(runs[0], ref_grads)) <= GRAD_TOLERANCE["bf16"]


def test_attention_lse_is_returned_and_not_differentiable():
    q, k, v = leaves(((1, 2, 64, 64), (1, 2, 64, 64), (1, 2, 64, 64)), "fp16", seed=2)
    out, lse = autoflash.attention(q, k, v, return_lse=True)
    assert out.requires_grad and not lse.requires_grad and lse.shape == (1, 2, 64)
    out.sum().backward()
    assert q.grad is not None and k.grad is not None and v.grad is not None


# (every head dim the forward takes, 8..256 step 8, has a backward: only the dtype is left to refuse here; the message
# for head dims: tests/test_autograd.py, tests/test_serve_decode.py)
@pytest.mark.parametrize("dtype, d, fragment", [(torch.float32, 64, "dtype fp32")])
def test_attention_refuses_what_the_backward_lacks(dtype, d, fragment):
    q = torch.randn(1, 2, 32, d, device="cuda", dtype=dtype, requires_grad=True)
    with pytest.raises(ValueError, match=f"no backward for {fragment}.*fp16 or bf16 with head_dim 8..256 step 8"):
        autoflash.attention(q, q, q)
    with torch.no_grad():  # inference still runs, without a gradient
        assert not autoflash.attention(q, q, q).requires_grad


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("case", [
    ("bf16", (2, 16, 1, 128), (2, 4, 2048, 128), False),       # decode shape, GQA
    ("fp16", (2, 3, 4, 200, 64), (2, 3, 2, 260, 64), True),   # 5-D leading dims, GQA, causal L < S
], ids=["decode_shape", "prefill_5d"])
def test_drop_in_gradients(case, compiled):
    """Through autoflash.torch.scaled_dot_product_attention (register_autograd), eager and under
    torch.compile(fullgraph=True)."""
    dtype, shape_q, shape_kv, causal = case
    q, k, v = leaves((shape_q, shape_kv, shape_kv), dtype, seed=3)
    weight = torch.randn(q.shape, device="cuda", dtype=q.dtype)

    def loss(q, k, v):
        out = aft.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
        return (out * weight).sum(), out

    fn = torch.compile(loss, fullgraph=True) if compiled else loss
    total, out = fn(q, k, v)
    total.backward()
    ref_out, ref_grads = reference_grads(q, k, v, weight, causal, 1 / math.sqrt(shape_q[-1]))
    assert_close(out, (q.grad, k.grad, v.grad), ref_out, ref_grads, dtype)


@pytest.mark.parametrize("nq, nk, causal", [(3, 500, False), (47, 47, True)], ids=["decode_route", "forward_route"])
def test_directional_derivative_of_the_float64_function(nq, nk, causal):
    """gradcheck-style: <grad, u> from autoflash.attention() against a central difference of the
    float64 loss along a random direction u, for each of q, k, v."""
    q, k, v = leaves(((1, 4, nq, 64), (1, 2, nk, 64), (1, 2, nk, 64)), "fp16", seed=4)
    weight = torch.randn(q.shape, device="cuda", dtype=torch.float64)
    scale = 1 / math.sqrt(64)
    (autoflash.attention(q, k, v, causal=causal) * weight).sum().backward()

    def loss(q64, k64, v64):
        return (float64_attention(q64, k64, v64, causal, scale) * weight).sum().item()

    base = [x.detach().double() for x in (q, k, v)]
    g = torch.Generator(device="cuda").manual_seed(5)
    for i, x in enumerate((q, k, v)):
        u = torch.randn(x.shape, device="cuda", dtype=torch.float64, generator=g)
        eps = 1e-4
        plus, minus = list(base), list(base)
        plus[i], minus[i] = base[i] + eps * u, base[i] - eps * u
        numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
        analytic = (x.grad.double() * u).sum().item()
        # <error, u> for a standard-normal u has standard deviation |error| <= tol |grad|: 4 sigma
        assert abs(analytic - numeric) <= 4 * GRAD_TOLERANCE["fp16"] * x.grad.double().norm().item(), ("qkv"[i], analytic,
                                                                                                     numeric)


@pytest.mark.parametrize("nq, nk", [(100, 300), (300, 100)], ids=["q_lt_k", "q_gt_k"])
def test_bottom_right_through_the_autograd_function(nq, nk):
    """causal_alignment="bottom_right" through the autograd.Function (serve/autograd.py) with
    autoflash's own forward: the alignment reaches both kernels. (autoflash.attention() itself
    refuses a bottom-right backward until serve/api.py passes the alignment through.) Rows that
    see no key (Nq > Nk: the first Nq - Nk) have output 0 and get dq = 0."""
    from autoflash.serve.api import attention_forward
    from autoflash.serve.autograd import differentiable_attention

    q, k, v = leaves(((2, 4, nq, 128), (2, 2, nk, 128), (2, 2, nk, 128)), "bf16", seed=nq)
    weight = torch.randn(q.shape, device="cuda", dtype=q.dtype)
    out = differentiable_attention(attention_forward, q, k, v, causal=True, scale=None, deterministic=False,
                                   config=None, return_lse=False, causal_alignment="bottom_right")
    (out * weight).sum().backward()
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    kr, vr = k64.repeat_interleave(2, 1), v64.repeat_interleave(2, 1)
    s = (q64 @ kr.transpose(-1, -2)) / math.sqrt(128)
    s = s.masked_fill(torch.ones(nq, nk, dtype=torch.bool, device="cuda").triu(1 + nk - nq), -math.inf)
    empty = (torch.arange(nq, device="cuda") + nk - nq < 0)[:, None]
    ref_out = (torch.softmax(s.masked_fill(empty, 0.0), -1) @ vr).masked_fill(empty, 0.0)
    (ref_out * weight.double()).sum().backward()
    assert_close(out, (q.grad, k.grad, v.grad), ref_out.detach(), (q64.grad, k64.grad, v64.grad), "bf16")
    if nq > nk:
        assert (out[:, :, :nq - nk] == 0).all() and (q.grad[:, :, :nq - nk] == 0).all()
