"""The backward at head dims not in ops/backward_kernels.TILE_DIMS on a GPU (flash_bwd_mma on the next tile, padded
in shared memory): gradients against the float64 reference (the backward's tolerances), dense with GQA, causal in
both alignments, odd lengths and the variants; deterministic bitwise twice; varlen batches; and autoflash.attention's
autograd end to end. CPU checks: tests/test_backward_head_dims.py."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

# (their module-level checks apply here too: torch, CuPy, a GPU)
from test_backward_variants_gpu import check, run_case  # noqa: E402
from test_varlen_backward_gpu import packed_inputs, per_sequence_reference, run_backward  # noqa: E402
from test_backward_gpu import reference_grads, rel_err  # noqa: E402

from autoflash.ops.backward_kernels import TOLERANCE  # noqa: E402

CASES = [  # batch, heads_q, heads_kv, seq_q, seq_k, head_dim, causal, alignment, variants
    (1, 2, 2, 64, 64, 8, False, "top_left", {}),
    (2, 4, 2, 1000, 1000, 40, True, "top_left", {}),
    (1, 4, 1, 17, 300, 80, True, "bottom_right", {}),
    (2, 8, 2, 513, 513, 96, True, "top_left", {}),
    (1, 2, 2, 300, 200, 96, False, "top_left", {}),
    (1, 4, 2, 257, 257, 120, True, "bottom_right", {}),
    (1, 4, 2, 300, 300, 160, True, "top_left", {}),
    (1, 2, 1, 200, 333, 200, False, "bottom_right", dict(window=(40, 70), softcap=5.0)),
    (1, 4, 2, 150, 150, 248, True, "top_left", dict(sinks=[0.5, -1.0, 2.0, 0.0], alibi="head")),
]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_h{}x{}_q{}_k{}_d{}_causal{}_{}".format(*c[:8]))
def test_padded_head_dims_match_float64(case, dtype):
    b, hq, hkv, nq, nk, d, causal, alignment, variants = case
    grads, refs, args, lse64, delta = run_case(b, hq, hkv, nq, nk, d, dtype, causal, alignment, variants, seed=d)
    assert [g.shape[-1] for g in grads[:3]] == [d, d, d]
    check(grads, refs, dtype, f"d{d} {dtype}", sinks=args["sinks"], lse=lse64, delta=delta)


def test_padded_deterministic_is_bitwise_repeatable():
    first = run_case(2, 4, 2, 700, 700, 96, "bf16", True, "top_left", {}, deterministic=True, seed=1)
    second = run_case(2, 4, 2, 700, 700, 96, "bf16", True, "top_left", {}, deterministic=True, seed=1)
    check(first[0], first[1], "bf16", "d96 deterministic")
    assert all(torch.equal(x, y) for x, y in zip(first[0], second[0]))


@pytest.mark.parametrize("d, dtype, causal", [(80, "bf16", True), (96, "fp16", False), (160, "bf16", True)])
def test_padded_varlen_gradients(d, dtype, causal):
    lens_q, lens_k = [1, 17, 300, 0, 65], [5, 17, 257, 30, 90]
    q, k, v, dout, cu_q, cu_k = packed_inputs(lens_q, lens_k, 4, 2, d, dtype, seed=d)
    grads = run_backward(q, k, v, dout, cu_q, cu_k, lens_q, lens_k, causal=causal, causal_alignment="bottom_right")
    refs, _ = per_sequence_reference(q, k, v, dout, lens_q, lens_k, causal=causal, alignment="bottom_right",
                                     scale=d ** -0.5)
    from autoflash.ops.backward_gpu import compare_gradients

    result = compare_gradients([g.double().cpu().numpy() for g in grads], refs, dtype)
    assert result.passed, result.rel_error


def test_attention_autograd_at_head_dim_96():
    import autoflash

    g = torch.Generator(device="cuda").manual_seed(96)
    q, k, v = (torch.randn(2, 8, 333, 96, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
               for _ in range(3))
    dout = torch.randn(2, 8, 333, 96, device="cuda", dtype=torch.bfloat16, generator=g)
    autoflash.attention(q, k, v, causal=True).backward(dout)
    *_, dq, dk, dv = reference_grads(q, k, v, dout, True, 1 / math.sqrt(96))
    for name, grad, ref in (("dq", q.grad, dq), ("dk", k.grad, dk), ("dv", v.grad, dv)):
        assert rel_err(grad, ref) < TOLERANCE["bf16"], (name, rel_err(grad, ref))
