"""The backward on a GPU: gradients against those of a float64 torch reference (autograd),
odd lengths, Nq != Nk, GQA/MQA, causal, D 64/128; NaN-free; a directional-derivative
(gradcheck-style) test; deterministic mode bitwise repeatable. Tolerances: ops.backward.TOLERANCE
(relative Frobenius error per gradient; the reason is written there).

Set AUTOFLASH_BWD_LOG to a file to record each case's errors (benchmarks/NOTES.md quotes them)."""
import math
import os

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")

from autoflash.ops.backward import TOLERANCE  # noqa: E402


def _log(line: str) -> None:
    path = os.environ.get("AUTOFLASH_BWD_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def reference_grads(q, k, v, dout, causal, scale):
    """Gradients of float64 attention by torch autograd (GQA by repeating K/V heads, top-left
    causal); also returns the float64 output and natural-log LSE."""
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    group = q.shape[1] // k.shape[1]
    kr, vr = k64.repeat_interleave(group, dim=1), v64.repeat_interleave(group, dim=1)
    s = (q64 @ kr.transpose(-1, -2)) * scale
    if causal:
        nq, nk = s.shape[-2:]
        s = s.masked_fill(torch.ones(nq, nk, dtype=torch.bool, device=s.device).triu(1), -math.inf)
    lse = torch.logsumexp(s, dim=-1)
    out = torch.softmax(s, dim=-1) @ vr
    out.backward(dout.double())
    return out.detach(), lse.detach(), q64.grad, k64.grad, v64.grad


def float64_forward(q, k, v, causal, scale):
    """O (rounded to the inputs' dtype) and float32 LSE of the float64 forward: what a forward
    kernel hands the backward, without depending on one."""
    out, lse, *_ = reference_grads(q, k, v, torch.zeros_like(q), causal, scale)
    return out.to(q.dtype), lse.float()


def rel_err(x, ref):
    return (x.double() - ref).norm().item() / max(ref.norm().item(), 1e-30)


def inputs(b, hq, hkv, nq, nk, d, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(b, hq, nq, d, device="cuda", dtype=dtype, generator=g)
    k = torch.randn(b, hkv, nk, d, device="cuda", dtype=dtype, generator=g)
    v = torch.randn(b, hkv, nk, d, device="cuda", dtype=dtype, generator=g)
    dout = torch.randn(b, hq, nq, d, device="cuda", dtype=dtype, generator=g)
    return q, k, v, dout


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal
    (1, 2, 2, 1, 1, 64, False),
    (2, 2, 2, 17, 17, 64, True),
    (1, 4, 2, 1000, 1000, 128, True),    # GQA
    (1, 4, 1, 333, 1000, 64, False),     # MQA, Nq < Nk
    (1, 2, 2, 1000, 17, 128, True),      # Nq > Nk: causal rows past Nk see every key
    (1, 4, 4, 17, 4097, 128, True),      # one query tile, many K/V tiles; most keys unseen (zero dK, dV)
    (1, 2, 1, 4097, 4097, 64, True),
    (1, 2, 2, 4097, 1000, 128, False),
]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}{}".format(*c[:6], "_causal" * c[6]))
def test_gradients_match_float64_autograd(case, dtype):
    from autoflash.ops.backward_torch import attention_backward

    b, hq, hkv, nq, nk, d, causal = case
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, DTYPES[dtype])
    scale = 1 / math.sqrt(d)
    _, lse64, *refs = reference_grads(q, k, v, dout, causal, scale)
    out, lse = float64_forward(q, k, v, causal, scale)
    grads = attention_backward(q, k, v, out, lse, dout, causal=causal)
    errs = [rel_err(x, r) for x, r in zip(grads, refs)]
    _log(f"{dtype} {case}: dq {errs[0]:.2e} dk {errs[1]:.2e} dv {errs[2]:.2e}")
    for x in grads:
        assert torch.isfinite(x).all()
    assert max(errs) <= TOLERANCE[dtype], errs


@pytest.mark.parametrize("case", [(1, 4, 2, 1000, 1000, 128, True), (2, 2, 1, 77, 300, 64, False)])
def test_autograd_function_over_the_autoflash_forward(case):
    """AttentionFunction: autoflash.attention(return_lse=True) forward, this backward."""
    from autoflash.ops.backward_torch import attention

    b, hq, hkv, nq, nk, d, causal = case
    q, k, v, dout = inputs(b, hq, hkv, nq, nk, d, torch.bfloat16, seed=6)
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    out = attention(q, k, v, causal=causal)
    out.backward(dout)
    ref_out, _, *refs = reference_grads(q, k, v, dout, causal, 1 / math.sqrt(d))
    errs = [rel_err(x.grad, r) for x, r in zip((q, k, v), refs)]
    _log(f"autograd bf16 {case}: dq {errs[0]:.2e} dk {errs[1]:.2e} dv {errs[2]:.2e} (out {rel_err(out, ref_out):.2e})")
    assert max(errs) <= TOLERANCE["bf16"], errs


def test_scale_and_deterministic_mode_bitwise_repeatable():
    from autoflash.ops.backward_torch import attention_backward

    q, k, v, dout = inputs(2, 4, 2, 1000, 777, 128, torch.bfloat16, seed=1)
    scale = -0.3  # any finite scale, negative too
    out, lse = float64_forward(q, k, v, True, scale)
    runs = [attention_backward(q, k, v, out, lse, dout, causal=True, scale=scale, deterministic=True)
            for _ in range(2)]
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    fast = attention_backward(q, k, v, out, lse, dout, causal=True, scale=scale)
    _, _, *refs = reference_grads(q, k, v, dout, True, scale)
    errs = [rel_err(x, r) for x, r in zip(runs[0], refs)] + [rel_err(x, r) for x, r in zip(fast, refs)]
    _log(f"deterministic scale={scale}: det dq/dk/dv {errs[0]:.2e}/{errs[1]:.2e}/{errs[2]:.2e}, "
         f"atomic {errs[3]:.2e}/{errs[4]:.2e}/{errs[5]:.2e}")
    assert max(errs) <= TOLERANCE["bf16"], errs


def test_directional_derivative_of_the_float64_function():
    """gradcheck-style: <grad, u> against a central difference of the float64 loss along u."""
    from autoflash.ops.backward_torch import attention_backward

    q, k, v, dout = inputs(1, 2, 1, 33, 47, 64, torch.float16, seed=2)
    scale = 1 / math.sqrt(64)
    out, lse = float64_forward(q, k, v, True, scale)
    grads = attention_backward(q, k, v, out, lse, dout, causal=True)

    def loss(q64, k64, v64):
        kr, vr = k64.repeat_interleave(2, dim=1), v64.repeat_interleave(2, dim=1)
        s = (q64 @ kr.transpose(-1, -2) * scale).masked_fill(
            torch.ones(33, 47, dtype=torch.bool, device="cuda").triu(1), -math.inf)
        return (torch.softmax(s, -1) @ vr * dout.double()).sum().item()

    base = [x.detach().double() for x in (q, k, v)]
    g = torch.Generator(device="cuda").manual_seed(3)
    for i, (x, grad) in enumerate(zip((q, k, v), grads)):
        u = torch.randn(x.shape, device="cuda", dtype=torch.float64, generator=g)
        eps = 1e-4
        plus, minus = list(base), list(base)
        plus[i], minus[i] = base[i] + eps * u, base[i] - eps * u
        numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
        analytic = (grad.double() * u).sum().item()
        _log(f"directional {'qkv'[i]}: kernel {analytic:.6e} numeric {numeric:.6e}")
        assert abs(analytic - numeric) <= TOLERANCE["fp16"] * (grad.double().norm() * u.norm()).item()


def test_rows_that_saw_no_key_get_zero_gradient():
    """LSE = -inf (a row with no visible key, as bottom-right causal gives): dq row 0, no NaN."""
    from autoflash.ops.backward_torch import attention_backward

    q, k, v, dout = inputs(1, 2, 2, 40, 40, 64, torch.bfloat16, seed=4)
    out, lse = float64_forward(q, k, v, False, 0.125)
    lse[:, :, :5] = -math.inf
    out[:, :, :5] = 0
    dq, dk, dv = attention_backward(q, k, v, out, lse, dout)
    assert (dq[:, :, :5] == 0).all()
    assert all(torch.isfinite(x).all() for x in (dq, dk, dv))


def test_nan_input_propagates():
    from autoflash.ops.backward_torch import attention_backward

    q, k, v, dout = inputs(1, 2, 2, 40, 40, 64, torch.bfloat16, seed=5)
    q[0, 0, 3, 7] = float("nan")
    out, lse = float64_forward(q, k, v, False, 0.125)
    dq, dk, dv = attention_backward(q, k, v, out, lse, dout)
    assert torch.isnan(dq[0, 0, 3]).any() and torch.isnan(dk[0, 0]).any()
    assert torch.isfinite(dq[0, 1]).all()  # the other head is untouched


def test_input_errors_before_launch():
    from autoflash.ops.backward_torch import attention_backward

    q, k, v, dout = inputs(1, 2, 2, 16, 16, 64, torch.bfloat16)
    lse = torch.zeros(1, 2, 16, device="cuda")
    with pytest.raises(ValueError, match="on cpu"):
        attention_backward(q.cpu(), k, v, q, lse, dout)
    with pytest.raises(ValueError, match="not contiguous"):
        attention_backward(q, k, v, q, lse, dout.transpose(2, 3).contiguous().transpose(2, 3))
    with pytest.raises(ValueError, match="scale"):
        attention_backward(q, k, v, q, lse, dout, scale=float("inf"))
