"""The backward with V's own head dim on a GPU (issue 16 item 2; pairs 192/128, 128/64,
flash_bwd_mma's head_dim_v default tiles): gradients against the float64 reference's
(ops/backward_gpu.verify: random inputs, the float64 forward's O and LSE, NaN-poisoned outputs)
with the backward's tolerances, odd lengths, Nq != Nk, GQA, causal in both alignments, the variants,
deterministic bitwise twice, and autoflash.attention's autograd path."""
import math

import numpy as np
import pytest

from autoflash.ops.backward_gpu import launcher, make_inputs, reference_gradients, verify
from autoflash.ops.backward_kernels import BackwardProblem
from autoflash.ops.forward import variant_arrays

torch = pytest.importorskip("torch")
cupy = pytest.importorskip("cupy")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (PyTorch)")]


def kernel_for(p: BackwardProblem, dtype: str, **flags):
    from autoflash.kernels.device import device_arch
    from autoflash.serve.autograd import _loaded, _pair_default

    key = dict(dtype=dtype, head_dim=p.head_dim, causal=p.causal, deterministic=False, window=False, softcap=False,
               sinks=False, alibi=False)
    key.update(flags)
    cfg = _pair_default(device_arch(0)[0], tuple(sorted(key.items())), p.head_dim_v)
    return _loaded(cfg, 0)


CASES = [  # batch, hq, hkv, nq, nk, d, dv, dtype, causal, offset
    (1, 2, 2, 17, 17, 192, 128, "bf16", False, 0),
    (2, 4, 2, 129, 77, 192, 128, "fp16", False, 0),
    (1, 4, 1, 300, 1000, 192, 128, "bf16", True, 700),
    (1, 2, 1, 129, 65, 192, 128, "bf16", True, -64),
    (2, 4, 2, 1, 65, 128, 64, "bf16", False, 0),
    (1, 4, 2, 1000, 1000, 128, 64, "fp16", True, 0),
    (1, 2, 2, 77, 200, 128, 64, "bf16", True, 123),
]


@pytest.mark.parametrize("b,hq,hkv,nq,nk,d,dv,dtype,causal,offset", CASES)
def test_pair_gradients_match_float64(b, hq, hkv, nq, nk, d, dv, dtype, causal, offset):
    p = BackwardProblem(b, hq, hkv, nq, nk, d, causal, offset)
    p.head_dim_v = dv
    check = verify(kernel_for(p, dtype), p, seed=nq + dv)
    print(f"backward d{d}/dv{dv} {dtype} causal={causal} offset={offset}: rel error {check.rel_error:.2e}")
    assert check.passed, check.rel_error


@pytest.mark.parametrize("d,dv", [(192, 128), (128, 64)])
def test_pair_variants_gradients(d, dv):
    problem = dict(batch=2, heads_q=4, heads_kv=2, seq_q=300, seq_k=500, head_dim=d, causal=True,
                   causal_offset=200, window_left=64, window_right=0, softcap=20.0, with_sinks=True,
                   with_alibi=True)
    p = BackwardProblem.from_dict(problem)  # window bounds, softcap and the offset from the dict
    p.head_dim_v = dv
    kernel = kernel_for(p, "bf16", window=True, softcap=True, sinks=True, alibi=True)
    check = verify(kernel, p, seed=5, **variant_arrays(problem, 5))
    assert check.passed, check.rel_error


def test_pair_deterministic_is_bitwise_repeatable():
    p = BackwardProblem(1, 4, 2, 500, 700, 192, True, 200)
    p.head_dim_v = 128
    kernel = kernel_for(p, "bf16", deterministic=True)
    inputs = make_inputs(p, "bf16", seed=3)
    run = launcher(kernel, p, inputs)
    run()
    first = [x.copy() for x in inputs[6:9]]
    run()
    cupy.cuda.get_current_stream().synchronize()
    assert all(bool((a.view(cupy.uint16) == b.view(cupy.uint16)).all()) for a, b in zip(first, inputs[6:9]))


@pytest.mark.parametrize("d,dv,causal", [(192, 128, True), (128, 64, False)])
def test_autoflash_attention_is_differentiable_with_v_head_dim(d, dv, causal):
    import autoflash

    g = torch.Generator(device="cuda").manual_seed(d + dv)
    q = torch.randn(2, 4, 100, d, generator=g, device="cuda").to(torch.bfloat16).requires_grad_()
    k = torch.randn(2, 2, 150, d, generator=g, device="cuda").to(torch.bfloat16).requires_grad_()
    v = torch.randn(2, 2, 150, dv, generator=g, device="cuda").to(torch.bfloat16).requires_grad_()
    dout = torch.randn(2, 4, 100, dv, generator=g, device="cuda").to(torch.bfloat16)
    out = autoflash.attention(q, k, v, causal=causal, causal_alignment="bottom_right")
    out.backward(dout)
    refs = reference_gradients(*(x.detach().double().cpu().numpy() for x in (q, k, v, dout)), causal=causal,
                               scale=1 / math.sqrt(d), causal_offset=50)[2:]
    for x, ref in zip((q, k, v), refs):
        err = np.linalg.norm(x.grad.double().cpu().numpy() - ref) / np.linalg.norm(ref)
        assert x.grad.shape == x.shape and err < 1e-2, err
