"""O laid out like q under ops/backward_wgmma.STRIDED (serve/out_layout.py) on an sm_90 GPU: for q, k, v viewed from a
fused (B, N, 3, H, D) projection, every forward template writes O as (B, N, H, D) memory with values bitwise equal to
its contiguous O (the switch off, or out_layout.LIKE_Q False); the model's `y.transpose(1, 2).reshape(b, n, h * d)` is
then a view (same data pointer); a training step's gradients equal those with a contiguous O bitwise (deterministic),
also on the training plans' calls; the drop-in's ops give what their fakes promise (torch.library.opcheck), a
misaligned query included. CPU checks: tests/test_forward_o_layout.py."""
import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
pytest.importorskip("cupy")

import autoflash  # noqa: E402
from autoflash.kernels.registry import TEMPLATES  # noqa: E402
from autoflash.ops import backward_wgmma  # noqa: E402
from autoflash.serve import backward_plans, call_plans, out_layout, training_plans  # noqa: E402

if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
    pytest.skip("the strided backward (flash_bwd_wgmma) needs an sm_90 GPU", allow_module_level=True)


def clear():
    for plans in (call_plans, backward_plans, training_plans):
        plans.clear()


@pytest.fixture(autouse=True)
def strided(monkeypatch):
    monkeypatch.setattr(backward_wgmma, "STRIDED", True)
    clear()
    yield
    clear()


def fused(b, n, h, d, dtype, seed=0, grad=False):
    g = torch.Generator(device="cuda").manual_seed(seed)
    qkv = torch.randn(b, n, 3, h, d, device="cuda", dtype=dtype, generator=g)
    return qkv.requires_grad_() if grad else qkv


def views(qkv):
    return tuple(t.transpose(1, 2) for t in qkv.unbind(2))


def contiguous_o(monkeypatch, call):
    """call() with O contiguous (out_layout.LIKE_Q False), plans cleared before and after."""
    clear()
    monkeypatch.setattr(out_layout, "LIKE_Q", False)
    try:
        return call()
    finally:
        monkeypatch.setattr(out_layout, "LIKE_Q", True)
        clear()


def pinned(template, dtype, d, causal):
    """template's default config for this key (flash_fwd_wgmma's on sm_90a)."""
    arch = "sm_90a" if template == "flash_fwd_wgmma" else "sm_90"
    return TEMPLATES[template].default(arch, {"dtype": dtype, "head_dim": d, "causal": causal})


CONFIGS = [  # template (None: the served config), dtype, head_dim, causal, seq; how O leaves the kernel on the H200
    (None, "bf16", 128, True, 77),  # flash_fwd_wgmma, tuned: by TMA through a staging tile (O's map from its strides)
    (None, "bf16", 128, True, 1000),
    (None, "fp16", 64, False, 1000),  # flash_fwd_wgmma, tuned: from registers
    (None, "bf16", 256, True, 77),  # flash_fwd_wgmma: by TMA over Qi (o_via_q)
    ("flash_fwd_wgmma", "bf16", 128, True, 1000),  # the default tile: from registers at D 128
    ("flash_fwd_mma", "bf16", 64, True, 77),
    ("flash_fwd_simt", "fp32", 64, False, 77),
]


@pytest.mark.parametrize("template,dtype,d,causal,n", CONFIGS,
                         ids=["served-bf16-128-causal-77", "served-bf16-128-causal-1000", "served-fp16-64",
                              "served-bf16-256-causal", "wgmma-registers", "mma", "simt-fp32"])
def test_o_like_q_equals_contiguous_o_bitwise(monkeypatch, template, dtype, d, causal, n):
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    b, h = 2, 4
    q, k, v = views(fused(b, n, h, d, torch_dtype, seed=n + d))
    config = None if template is None else pinned(template, dtype, d, causal)
    call = lambda: autoflash.attention(q, k, v, causal=causal, config=config, return_lse=True)  # noqa: E731
    (out, lse), (again, _) = call(), call()  # the full path, then the plan
    ref, ref_lse = contiguous_o(monkeypatch, call)
    assert ref.is_contiguous() and not out.is_contiguous()
    for o in (out, again):
        assert o.stride() == (n * h * d, d, h * d, 1) and torch.equal(o, ref)
    assert torch.equal(lse, ref_lse) and lse.is_contiguous()
    y = out.transpose(1, 2).reshape(b, n, h * d)
    assert y.data_ptr() == out.data_ptr() and y.stride() == (n * h * d, h * d, 1)  # a view: no copy


def test_contiguous_q_keeps_a_contiguous_o():
    q, k, v = (t.transpose(1, 2).contiguous() for t in fused(1, 300, 2, 128, torch.bfloat16).unbind(2))
    assert autoflash.attention(q, k, v, causal=True).is_contiguous()


def test_training_step_equals_contiguous_o_bitwise(monkeypatch):
    """The decoder step's attention: O a transposed view read by the backward in place; gradients bitwise those of a
    contiguous O (deterministic dq), on the full path and on the training plans' calls."""
    b, n, h, d = 2, 512, 4, 128
    qkv = fused(b, n, h, d, torch.bfloat16, seed=5, grad=True)
    grad_y = torch.randn(b, n, h * d, device="cuda", dtype=torch.bfloat16)

    def step():
        grads, seen = [], []
        for _ in range(3):  # the full path, then the training plans
            qkv.grad = None
            out = autoflash.attention(*views(qkv), causal=True, deterministic=True)
            y = out.transpose(1, 2).reshape(b, n, h * d)
            seen.append((y.data_ptr() == out.data_ptr(), len(training_plans._plans)))
            y.backward(grad_y)
            grads.append(qkv.grad.clone())
        return grads, seen

    grads, seen = step()
    ref, ref_seen = contiguous_o(monkeypatch, step)
    assert seen == [(True, 1)] * 3 and ref_seen == [(False, 1)] * 3  # (a view, planned), (a copy, planned)
    for g, r in zip(grads, ref):
        assert torch.equal(g, r)


def test_drop_in_ops_match_their_fakes():
    import autoflash.torch  # noqa: F401  (registers the ops)

    b, n, h, d = 2, 128, 8, 64
    like_q = (n * h * d, d, h * d, 1)  # (B, N, H, D) memory
    q, k, v = views(fused(b, n, h, d, torch.bfloat16, seed=1))
    torch.library.opcheck(torch.ops.autoflash.sdpa.default, (q, k, v, True, 0.125))
    assert torch.ops.autoflash.sdpa(q, k, v, True, 0.125).stride() == like_q
    misaligned = torch.randn(b * n * h * d + 1, device="cuda", dtype=torch.bfloat16)[1:].view(b, n, h, d)
    qm = misaligned.transpose(1, 2)  # copied before the launch: O copied into the promised layout
    assert torch.ops.autoflash.sdpa(qm, k, v, True, 0.125).stride() == like_q
    torch.library.opcheck(torch.ops.autoflash.sdpa.default, (qm, k, v, True, 0.125))
    torch.library.opcheck(torch.ops.autoflash.sdpa_fwd.default, (q, k, v, True, 0.125),
                          test_utils=("test_schema", "test_faketensor"))
    assert torch.ops.autoflash.sdpa_fwd(q, k, v, True, 0.125)[0].stride() == like_q


def test_drop_in_model_reshape_is_a_view():
    import autoflash.torch as aft

    b, n, h, d = 2, 256, 4, 128
    q, k, v = views(fused(b, n, h, d, torch.bfloat16, seed=2))
    for _ in range(2):  # the checked call, then the plan
        y = aft.scaled_dot_product_attention(q, k, v, is_causal=True)
        assert y.transpose(1, 2).reshape(b, n, h * d).data_ptr() == y.data_ptr()
