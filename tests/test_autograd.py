"""Autograd wiring without a GPU (PyTorch on the CPU; skipped without it).

The kernels need a GPU, so these tests give the custom ops CPU implementations written here
(float64 attention and its closed-form gradients) and check what autoflash itself wires: the
torch.library autograd formula of autoflash::sdpa_fwd (setup_context saves out and LSE, the
backward calls autoflash::sdpa_bwd in the right argument order), its fake implementations under
torch.compile(fullgraph=True), torch.library.opcheck, the drop-in choosing the differentiable op
when an input requires grad (traced by dynamo on fake CUDA tensors), and the autograd.Function
behind autoflash.attention(). The kernels' gradients are checked in tests/test_autograd_gpu.py."""
import math

import pytest

torch = pytest.importorskip("torch")

import autoflash.serve.autograd as serve_autograd  # noqa: E402
import autoflash.torch as aft  # noqa: E402


def reference(q, k, v, causal, scale):
    """float64 attention (GQA by repeating K/V heads, top-left causal): out and natural-log LSE."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    s = (q @ k.transpose(-1, -2)) * scale
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), -math.inf)
    return torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)


def closed_form_grads(g, q, k, v, causal, scale):
    """dq, dk, dv of reference(): P, dV = P^T dO, dS = P * (dO V^T - rowsum(dO V^T * P)); these CPU
    kernels run below autograd, so they cannot call backward() themselves."""
    group = q.shape[1] // k.shape[1]
    q64, k64, v64, g64 = (x.double() for x in (q, k, v, g))
    kr, vr = k64.repeat_interleave(group, 1), v64.repeat_interleave(group, 1)
    s = (q64 @ kr.transpose(-1, -2)) * scale
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), -math.inf)
    p = torch.softmax(s, -1)
    dp = g64 @ vr.transpose(-1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdim=True))
    b, h, n, d = k.shape
    dk = (ds.transpose(-1, -2) @ q64 * scale).view(b, h, group, n, d).sum(2)
    dv = (p.transpose(-1, -2) @ g64).view(b, h, group, n, d).sum(2)
    return (ds @ kr * scale).to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def cpu_sdpa_fwd(q, k, v, is_causal, scale):
    out, lse = reference(q.double(), k.double(), v.double(), is_causal, scale)
    return out.to(q.dtype), lse.float()


def cpu_sdpa_bwd(grad_out, q, k, v, out, lse, is_causal, scale):
    return closed_form_grads(grad_out, q, k, v, is_causal, scale)


@pytest.fixture(scope="module")
def cpu_kernels():
    lib = torch.library.Library("autoflash", "IMPL")
    lib.impl("sdpa_fwd", cpu_sdpa_fwd, "CPU")
    lib.impl("sdpa_bwd", cpu_sdpa_bwd, "CPU")
    yield
    lib._destroy()


def inputs(b=2, hq=4, hkv=2, nq=5, nk=7, d=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, requires_grad=True) for s in ((b, hq, nq, d), (b, hkv, nk, d), (b, hkv, nk, d))]


def float64_grads(q, k, v, causal, scale, weight):
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    (reference(q64, k64, v64, causal, scale)[0] * weight.double()).sum().backward()
    return q64.grad, k64.grad, v64.grad


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("causal", [False, True])
def test_registered_autograd_formula(cpu_kernels, compiled, causal):
    """Gradients through autoflash::sdpa_fwd (GQA 4/2, Nq != Nk) equal float64 autograd's, eagerly
    and under torch.compile(fullgraph=True) (aot_eager: the fake implementations trace both graphs)."""
    q, k, v = inputs()
    weight = torch.randn(q.shape, generator=torch.Generator().manual_seed(1))

    def loss(q, k, v):
        out, _ = torch.ops.autoflash.sdpa_fwd(q, k, v, causal, 0.3)
        return (out * weight).sum()

    fn = torch.compile(loss, fullgraph=True, backend="aot_eager") if compiled else loss
    fn(q, k, v).backward()
    for x, ref in zip((q, k, v), float64_grads(q, k, v, causal, 0.3, weight)):
        assert x.grad.shape == ref.shape
        assert (x.grad.double() - ref).abs().max().item() < 1e-5


def test_opcheck(cpu_kernels):
    """torch.library's checks of sdpa_fwd (schema, fake vs real, autograd registration)."""
    q, k, v = inputs(seed=2)
    torch.library.opcheck(torch.ops.autoflash.sdpa_fwd.default, (q, k, v, True, 0.125))


def test_drop_in_traces_to_the_differentiable_op_when_grad_is_needed():
    """Dynamo (strict export: fullgraph) traces the drop-in to autoflash::sdpa_fwd when a weight
    requires grad, and to autoflash::sdpa under no_grad."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.empty(64, 64, device="cuda", dtype=torch.float16))

        def forward(self, q, k, v):
            return aft.scaled_dot_product_attention(q @ self.w, k, v, is_causal=True, enable_gqa=True) * 2

    def traced_ops(grad: bool):
        with FakeTensorMode(allow_non_fake_inputs=True), torch.set_grad_enabled(grad):
            q = torch.empty(2, 4, 100, 64, device="cuda", dtype=torch.float16)
            k = torch.empty(2, 1, 77, 64, device="cuda", dtype=torch.float16)
            ep = torch.export.export(Block(), (q, k, k), strict=True)
        return [str(n.target) for n in ep.graph.nodes if n.op == "call_function" and "autoflash" in str(n.target)]

    assert traced_ops(True) == ["autoflash.sdpa_fwd.default"]
    assert traced_ops(False) == ["autoflash.sdpa.default"]


@pytest.mark.parametrize("dtype, d, fragment", [(torch.float32, 64, "dtype fp32"), (torch.bfloat16, 100, "head_dim 100"),
                                                (torch.float16, 264, "head_dim 264")])
def test_drop_in_refuses_what_the_backward_lacks(dtype, d, fragment):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q = torch.empty(1, 2, 8, d, device="cuda", dtype=dtype, requires_grad=True)
        supported = "fp16 or bf16 with head_dim 8..256 step 8"
        with pytest.raises(aft.UnsupportedError, match=f"no backward for {fragment}.*{supported}"):
            aft.scaled_dot_product_attention(q, q, q)
        with torch.no_grad():  # inference is not affected
            assert aft.scaled_dot_product_attention(q, q, q).shape == q.shape


def test_drop_in_empty_query_still_carries_gradients():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q = torch.empty(1, 2, 0, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.empty(1, 2, 5, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        out = aft.scaled_dot_product_attention(q, k, k)
        assert out.shape == q.shape and out.grad_fn is not None


def test_attention_function_saves_out_and_lse_and_passes_its_flags(monkeypatch):
    """The autograd.Function behind autoflash.attention(): forward through the injected forward with
    return_lse=True, backward through attention_backward with causal, its alignment, scale and
    deterministic, the LSE output non-differentiable."""
    calls = {}

    def forward(q, k, v, *, causal, causal_alignment, scale, return_lse, config, **variants):
        assert variants == dict(window_size=(-1, -1), softcap=None, sinks=None, alibi_slopes=None)
        calls["forward"] = dict(causal=causal, causal_alignment=causal_alignment, scale=scale, return_lse=return_lse,
                                config=config)
        out, lse = reference(q.double(), k.double(), v.double(), causal, scale)
        return out.to(q.dtype), lse.float()

    def backward(q, k, v, out, lse, grad_out, *, causal, causal_alignment, scale, deterministic, **variants):
        assert variants == dict(window_size=(-1, -1), softcap=None, sinks=None, alibi_slopes=None)
        calls["backward"] = dict(causal=causal, causal_alignment=causal_alignment, scale=scale,
                                 deterministic=deterministic, lse=lse, out=out)
        return closed_form_grads(grad_out, q, k, v, causal, scale)

    monkeypatch.setattr(serve_autograd, "attention_backward", backward)
    q, k, v = inputs(nq=6, nk=6, seed=3)
    weight = torch.randn(q.shape, generator=torch.Generator().manual_seed(4))
    out, lse = serve_autograd.differentiable_attention(forward, q, k, v, causal=True, scale=0.2, deterministic=True,
                                                       config=None, return_lse=True, causal_alignment="bottom_right")
    assert not lse.requires_grad and out.requires_grad
    (out * weight).sum().backward()
    assert calls["forward"] == dict(causal=True, causal_alignment="bottom_right", scale=0.2, return_lse=True,
                                    config=None)
    assert {n: calls["backward"][n] for n in ("causal", "causal_alignment", "scale", "deterministic")} == dict(
        causal=True, causal_alignment="bottom_right", scale=0.2, deterministic=True)
    assert torch.equal(calls["backward"]["lse"], lse) and torch.equal(calls["backward"]["out"], out.detach())
    for x, ref in zip((q, k, v), float64_grads(q, k, v, True, 0.2, weight)):
        assert (x.grad.double() - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("sinks_grad", [True, False])
def test_attention_function_passes_the_variants_and_returns_the_sinks_gradient(monkeypatch, sinks_grad):
    """Variant calls through the autograd.Function: window_size, softcap, sinks and alibi_slopes reach
    the forward and the backward unchanged; the backward's dsinks becomes sinks.grad (only when sinks
    require grad); alibi_slopes never get a gradient. The float64 reference (ops/backward_gpu) plays
    both kernels, so the gradients are the reference's."""
    import numpy as np

    from autoflash.ops.backward_gpu import reference_gradients

    variants = dict(window_size=(3, 1), softcap=2.0)
    seen = []

    def forward(q, k, v, *, causal, causal_alignment, scale, return_lse, config, window_size, softcap, sinks,
                alibi_slopes):
        seen.append(("forward", window_size, softcap, sinks is not None, alibi_slopes is not None))
        out, lse, *_ = reference_gradients(*(x.detach().double().numpy() for x in (q, k, v, q)), causal=causal,
                                           scale=scale, causal_offset=k.shape[2] - q.shape[2], window=window_size,
                                           softcap=softcap, sinks=sinks.detach().numpy(),
                                           alibi_slopes=alibi_slopes.numpy())
        return torch.from_numpy(out).to(q.dtype), torch.from_numpy(lse).float()

    def backward(q, k, v, out, lse, grad_out, *, causal, causal_alignment, scale, deterministic, window_size, softcap,
                 sinks, alibi_slopes):
        seen.append(("backward", window_size, softcap, sinks is not None, alibi_slopes is not None))
        grads = reference_gradients(*(x.detach().double().numpy() for x in (q, k, v, grad_out)), causal=causal,
                                    scale=scale, causal_offset=k.shape[2] - q.shape[2], window=window_size,
                                    softcap=softcap, sinks=sinks.detach().numpy(),
                                    alibi_slopes=alibi_slopes.detach().numpy())[2:]
        return tuple(torch.from_numpy(g).to(t.dtype) for g, t in zip(grads, (q, k, v, sinks)))

    monkeypatch.setattr(serve_autograd, "attention_backward", backward)
    q, k, v = inputs(nq=5, nk=7, seed=5)
    sinks = torch.tensor([0.5, -1.0, 2.0, 0.0][:q.shape[1]], dtype=torch.float32, requires_grad=sinks_grad)
    slopes = torch.linspace(0.1, 0.4, q.shape[1], dtype=torch.float32)
    weight = torch.randn(q.shape, generator=torch.Generator().manual_seed(6))
    out = serve_autograd.differentiable_attention(forward, q, k, v, causal=True, scale=0.3, deterministic=False,
                                                  config=None, return_lse=False, causal_alignment="bottom_right",
                                                  sinks=sinks, alibi_slopes=slopes, **variants)
    (out * weight).sum().backward()
    assert seen == [(step, (3, 1), 2.0, True, True) for step in ("forward", "backward")]
    refs = reference_gradients(*(x.detach().double().numpy() for x in (q, k, v)), weight.double().numpy(),
                               causal=True, scale=0.3, causal_offset=2, window=(3, 1), softcap=2.0,
                               sinks=sinks.detach().numpy(), alibi_slopes=slopes.numpy())[2:]
    for x, ref in zip((q, k, v), refs[:3]):
        np.testing.assert_allclose(x.grad.double().numpy(), ref, rtol=1e-5, atol=1e-5)
    assert slopes.grad is None
    if sinks_grad:
        np.testing.assert_allclose(sinks.grad.double().numpy(), refs[3], rtol=1e-5, atol=1e-6)
    else:
        assert sinks.grad is None
