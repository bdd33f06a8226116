"""attention_varlen's gradients on the GPU (issue 16 item 2; flash_bwd_mma's varlen mode): packed
dq, dk, dv against the float64 reference's gradients sequence by sequence (ops/backward_gpu.
reference_gradients on each sequence's dense (1, H, N, D) view), with the backward's tolerances
(ops/backward_kernels.TOLERANCE: the same rounding as the dense backward, nothing varlen adds).
Lengths 0..1000 mixed (1 and 17 included, Nq != Nk, rows that see no key), causal in both
alignments, GQA and MQA, D 64/128/256, fp16/bf16, deterministic (bitwise twice), the variants, and
the refusals of what has no backward."""
import numpy as np
import pytest

from autoflash.ops.backward_gpu import compare_gradients, reference_gradients

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (PyTorch)")]

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def packed_inputs(lens_q, lens_k, hq, hkv, d, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, device="cuda").to(DTYPES[dtype]).requires_grad_()

    tq, tk = sum(lens_q), sum(lens_k)
    q, k, v = rnd(tq, hq, d), rnd(tk, hkv, d), rnd(tk, hkv, d)
    dout = torch.randn(tq, hq, d, generator=g, device="cuda").to(DTYPES[dtype])
    cu = [torch.tensor(np.concatenate([[0], np.cumsum(n)]), dtype=torch.int32, device="cuda")
          for n in (lens_q, lens_k)]
    return q, k, v, dout, cu[0], cu[1]


def per_sequence_reference(q, k, v, dout, lens_q, lens_k, *, causal, alignment, scale, window=(-1, -1),
                           softcap=0.0, sinks=None, alibi_slopes=None):
    """Packed float64 gradients (dq, dk, dv) and (dsinks summed over the sequences, the per-head sums
    of |e^(sink - LSE) delta| that scale its rounding) or None, sequence by sequence."""
    q64, k64, v64, do64 = (x.detach().double().cpu().numpy() for x in (q, k, v, dout))
    grads = [np.zeros_like(q64), np.zeros_like(k64), np.zeros_like(v64)]
    dsinks = None if sinks is None else np.zeros(q.shape[1])
    terms = np.zeros(q.shape[1])
    cq, ck = np.concatenate([[0], np.cumsum(lens_q)]), np.concatenate([[0], np.cumsum(lens_k)])
    for b, (nq, nk) in enumerate(zip(lens_q, lens_k)):
        if nq == 0 or nk == 0:
            continue  # no pair: every gradient of the sequence is 0
        qs, ks = slice(cq[b], cq[b + 1]), slice(ck[b], ck[b + 1])
        dense = [x[None].transpose(0, 2, 1, 3) for x in (q64[qs], k64[ks], v64[ks], do64[qs])]
        ref = reference_gradients(*dense, causal=causal, scale=scale,
                                  causal_offset=nk - nq if alignment == "bottom_right" else 0, window=window,
                                  softcap=softcap, sinks=None if sinks is None else sinks.detach().cpu().numpy(),
                                  alibi_slopes=None if alibi_slopes is None else alibi_slopes.cpu().numpy())
        for i, rows in enumerate((qs, ks, ks)):
            grads[i][rows] = ref[2 + i][0].transpose(1, 0, 2)
        if sinks is not None:
            dsinks += ref[5]
            lse, delta = ref[1][0], (dense[3][0] * ref[0][0]).sum(axis=-1)  # (H, nq)
            sink = sinks.detach().double().cpu().numpy()[:, None]
            w = np.where(np.isneginf(lse), 0.0, np.exp(sink - np.where(np.isneginf(lse), 0.0, lse)))
            terms += np.abs(w * delta).sum(axis=1)
    return grads, None if sinks is None else (dsinks, np.linalg.norm(terms))


def run_backward(q, k, v, dout, cu_q, cu_k, lens_q, lens_k, **kwargs):
    import autoflash

    for x in (q, k, v):
        x.grad = None
    out = autoflash.attention_varlen(q, k, v, cu_q, cu_k, max(max(lens_q), 1), max(max(lens_k), 1), **kwargs)
    assert out.shape == q.shape and out.requires_grad
    out.backward(dout)
    return q.grad, k.grad, v.grad


CASES = [  # lens_q, lens_k, hq, hkv, d, dtype, causal, alignment
    ([1, 17, 1000, 0, 300, 64], [1, 17, 1000, 0, 300, 64], 4, 2, 128, "bf16", False, "bottom_right"),
    ([1, 17, 513, 0, 40, 200], [5, 17, 1000, 30, 10, 0], 4, 2, 128, "bf16", True, "bottom_right"),
    ([1, 17, 513, 0, 40, 200], [5, 17, 1000, 30, 10, 0], 4, 2, 128, "fp16", True, "top_left"),
    ([17, 1, 777, 129], [33, 1, 650, 129], 4, 1, 64, "fp16", True, "bottom_right"),
    ([17, 1, 777, 129], [33, 1, 650, 129], 2, 2, 64, "bf16", False, "top_left"),
    ([1, 17, 300, 65], [20, 17, 257, 90], 2, 1, 256, "bf16", True, "bottom_right"),
]


@pytest.mark.parametrize("lens_q,lens_k,hq,hkv,d,dtype,causal,alignment", CASES)
def test_varlen_gradients_match_the_float64_reference_per_sequence(lens_q, lens_k, hq, hkv, d, dtype, causal,
                                                                     alignment):
    q, k, v, dout, cu_q, cu_k = packed_inputs(lens_q, lens_k, hq, hkv, d, dtype, seed=sum(lens_q) + d)
    grads = run_backward(q, k, v, dout, cu_q, cu_k, lens_q, lens_k, causal=causal, causal_alignment=alignment)
    assert [g.shape for g in grads] == [q.shape, k.shape, v.shape]
    refs, _ = per_sequence_reference(q, k, v, dout, lens_q, lens_k, causal=causal, alignment=alignment,
                                     scale=d ** -0.5)
    check = compare_gradients([g.double().cpu().numpy() for g in grads], refs, dtype)
    print(f"varlen backward {dtype} d{d} causal={causal} {alignment}: rel error {check.rel_error:.2e}")
    assert check.passed, check.rel_error
    # zero-length sequences: the keys of a sequence without queries, the queries of one without keys
    cq, ck = np.concatenate([[0], np.cumsum(lens_q)]), np.concatenate([[0], np.cumsum(lens_k)])
    for b, (nq, nk) in enumerate(zip(lens_q, lens_k)):
        if nq == 0:
            assert not grads[1][ck[b]:ck[b + 1]].any() and not grads[2][ck[b]:ck[b + 1]].any()
        if nk == 0:
            assert not grads[0][cq[b]:cq[b + 1]].any()


def test_varlen_deterministic_is_bitwise_repeatable_and_right():
    lens_q, lens_k = [300, 17, 1000], [700, 17, 1000]
    q, k, v, dout, cu_q, cu_k = packed_inputs(lens_q, lens_k, 4, 2, 128, "bf16", seed=11)
    first = [g.clone() for g in run_backward(q, k, v, dout, cu_q, cu_k, lens_q, lens_k, causal=True,
                                             deterministic=True)]
    second = run_backward(q, k, v, dout, cu_q, cu_k, lens_q, lens_k, causal=True, deterministic=True)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    refs, _ = per_sequence_reference(q, k, v, dout, lens_q, lens_k, causal=True, alignment="bottom_right",
                                     scale=128 ** -0.5)
    assert compare_gradients([g.double().cpu().numpy() for g in first], refs, "bf16").passed


@pytest.mark.parametrize("causal", [False, True])
def test_varlen_variants_gradients(causal):
    """window, softcap, ALiBi (per-head slopes) and sinks (their gradient summed over sequences)."""
    import autoflash

    lens_q, lens_k = [1, 17, 400, 0, 90], [9, 17, 600, 12, 90]
    hq, d = 4, 64
    q, k, v, dout, cu_q, cu_k = packed_inputs(lens_q, lens_k, hq, 2, d, "bf16", seed=21 + causal)
    sinks = torch.tensor([0.5, -1.0, 2.0, 0.0], device="cuda", requires_grad=True)
    slopes = torch.linspace(0.05, 0.2, hq, device="cuda")
    window = (64, 0 if causal else 32)
    out = autoflash.attention_varlen(q, k, v, cu_q, cu_k, 400, 600, causal=causal, window_size=window, softcap=20.0,
                                     sinks=sinks, alibi_slopes=slopes)
    out.backward(dout)
    refs, (dsinks, terms_norm) = per_sequence_reference(q, k, v, dout, lens_q, lens_k, causal=causal, alignment="bottom_right",
                                          scale=d ** -0.5, window=window, softcap=20.0, sinks=sinks,
                                          alibi_slopes=slopes)
    check = compare_gradients([x.grad.double().cpu().numpy() for x in (q, k, v)], refs, "bf16")
    assert check.passed, check.rel_error
    # as ops/backward_gpu.compare_sink_gradient: relative to the terms' scale (cancellation is no error)
    err = np.linalg.norm(sinks.grad.double().cpu().numpy() - dsinks) / max(terms_norm, np.linalg.norm(dsinks))
    assert err < 1e-2, err


def test_varlen_is_served_by_flash_bwd_mma():
    from autoflash.serve import varlen_grad

    key = dict(dtype="bf16", head_dim=128, causal=True, deterministic=False, window=False, softcap=False,
               sinks=False, alibi=False)
    cfg = varlen_grad._served_config(torch.cuda.current_device(), key, 1000)
    assert cfg.template == "flash_bwd_mma" and cfg.varlen and not cfg.problems()


@pytest.mark.parametrize("change,fragment", [
    (dict(dtype=torch.float32), "no backward for dtype fp32"),
    (dict(seqused_k=True), "no backward with seqused_k"),
    (dict(dv=64), "v's head dim"),
    (dict(cu_q=[1, 5, 20]), r"cu_seqlens_q\[0\] must be 0"),
])
def test_varlen_refusals_with_grad(change, fragment):
    import autoflash
    from autoflash.serve.errors import InputError

    d = change.get("d", 128)
    dt = change.get("dtype", torch.bfloat16)
    q = torch.randn(20, 2, d, device="cuda", dtype=dt, requires_grad=True)
    k = torch.randn(20, 2, d, device="cuda", dtype=dt, requires_grad=True)
    v = torch.randn(20, 2, change.get("dv", d), device="cuda", dtype=dt, requires_grad=True)
    cu_q = torch.tensor(change.get("cu_q", [0, 5, 20]), dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0, 5, 20], dtype=torch.int32, device="cuda")
    used = torch.tensor([5, 10], dtype=torch.int32, device="cuda") if change.get("seqused_k") else None
    with pytest.raises(InputError, match=fragment):
        autoflash.attention_varlen(q, k, v, cu_q, cu_k, 15, 15, seqused_k=used)
