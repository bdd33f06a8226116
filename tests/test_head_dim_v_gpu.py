"""Dqk != Dv in the forward on a GPU (issue 17 item 2): autoflash.attention with v of its own head
dim (192/128, 128/64, 64/128, a padded 40/72) against float64, bf16/fp16 (flash_fwd_mma) and fp32
(flash_fwd_simt), causal in both alignments, GQA, LSE, strided (B, N, H, D) views, short query
chunks (kept off decode), a variant combination; attention_varlen and attention_with_kvcache with cache lengths
(forward only); the calls that do not serve it refuse it."""
import itertools
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

import autoflash  # noqa: E402
from autoflash.ops.decode_launch import check_output, reference_decode  # noqa: E402
from autoflash.ops.reference import compare, reference_attention  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def inputs(b, hq, hkv, nq, nk, d, dv, dtype, seed=0, bnhd=False):
    g = torch.Generator(device="cuda").manual_seed(seed)
    t = DTYPES[dtype]
    if bnhd:  # (B, N, H, D) storage seen as (B, H, N, D) views, as transformers hands them
        return (torch.randn(b, nq, hq, d, generator=g, device="cuda", dtype=t).transpose(1, 2),
                torch.randn(b, nk, hkv, d, generator=g, device="cuda", dtype=t).transpose(1, 2),
                torch.randn(b, nk, hkv, dv, generator=g, device="cuda", dtype=t).transpose(1, 2))
    return (torch.randn(b, hq, nq, d, generator=g, device="cuda", dtype=t),
            torch.randn(b, hkv, nk, d, generator=g, device="cuda", dtype=t),
            torch.randn(b, hkv, nk, dv, generator=g, device="cuda", dtype=t))


def f64(x):
    return x.double().cpu().numpy()


def check(q, k, v, dtype, causal, alignment="top_left", **variants):
    o, lse = autoflash.attention(q, k, v, causal=causal, causal_alignment=alignment, return_lse=True, **variants)
    assert o.shape == (*q.shape[:3], v.shape[3])
    nq, nk = q.shape[2], k.shape[2]
    offset = nk - nq if alignment == "bottom_right" else 0
    ref_variants = {"window": variants["window_size"], "softcap": variants["softcap"]} if variants else {}
    ref, ref_lse = reference_attention(f64(q), f64(k), f64(v), causal=causal, scale=1 / math.sqrt(q.shape[3]),
                                       causal_offset=offset, **ref_variants)
    result = compare(f64(o), ref, dtype, f64(lse), ref_lse)
    assert result.passed, result.describe()


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("d, dv", [(192, 128), (128, 64), (64, 128), (40, 72)])
@pytest.mark.parametrize("causal, alignment, nq, nk", [(False, "top_left", 300, 300), (True, "top_left", 257, 257),
                                                       (True, "bottom_right", 100, 531)])
def test_mma_forward_matches_float64(dtype, d, dv, causal, alignment, nq, nk):
    q, k, v = inputs(2, 4, 2, nq, nk, d, dv, dtype, seed=d + dv + nq)
    check(q, k, v, dtype, causal, alignment)


@pytest.mark.parametrize("d, dv", [(128, 64), (64, 128)])
def test_simt_fp32_forward_matches_float64(d, dv):
    q, k, v = inputs(1, 2, 1, 130, 200, d, dv, "fp32", seed=d)
    check(q, k, v, "fp32", True, "bottom_right")


def test_strided_views_short_chunks_and_variants():
    q, k, v = inputs(2, 8, 2, 70, 333, 192, 128, "bf16", seed=3, bnhd=True)
    check(q, k, v, "bf16", True, "bottom_right")
    q, k, v = inputs(2, 4, 4, 5, 90, 128, 64, "bf16", seed=4)  # seq_q <= 16: decode's range, kept on the forward
    check(q, k, v, "bf16", True, "bottom_right")
    q, k, v = inputs(1, 4, 2, 200, 200, 192, 128, "bf16", seed=5)
    check(q, k, v, "bf16", True, window_size=(48, 0), softcap=30.0)


def test_varlen_serves_it():
    """attention_varlen with v of its own head dim (seventeenth session): a packed batch with an empty query span and
    a chunk shorter than its keys, bottom-right causal, GQA; each sequence against float64 on its own."""
    d, dv, hq, hkv, lens_q, lens_k = 192, 128, 4, 2, [5, 0, 40], [70, 33, 40]
    g = torch.Generator(device="cuda").manual_seed(7)
    q, k, v = (torch.randn(sum(n), h, w, generator=g, device="cuda", dtype=torch.bfloat16)
               for n, h, w in ((lens_q, hq, d), (lens_k, hkv, d), (lens_k, hkv, dv)))
    cu_q, cu_k = (torch.tensor([0, *itertools.accumulate(n)], dtype=torch.int32, device="cuda")
                  for n in (lens_q, lens_k))
    out, lse = autoflash.attention_varlen(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=True, return_lse=True)
    assert out.shape == (sum(lens_q), hq, dv) and lse.shape == (hq, sum(lens_q))
    for b, (nq, nk) in enumerate(zip(lens_q, lens_k)):
        sq, sk = slice(int(cu_q[b]), int(cu_q[b + 1])), slice(int(cu_k[b]), int(cu_k[b + 1]))
        if nq == 0:
            continue
        ref, ref_lse = reference_attention(*(f64(x[s].transpose(0, 1))[None] for x, s in ((q, sq), (k, sk), (v, sk))),
                                           causal=True, scale=1 / math.sqrt(d), causal_offset=nk - nq)
        result = compare(f64(out[sq].transpose(0, 1))[None], ref, "bf16", f64(lse[:, sq])[None], ref_lse)
        assert result.passed, (b, result.describe())


@pytest.mark.parametrize("seq_q", [3, 20])
def test_kvcache_with_lengths_serves_it(seq_q):
    """attention_with_kvcache on a contiguous cache with cache_seqlens (0, shorter than the chunk, full), a
    decode-sized chunk and a longer one: the forward, bottom-right, against float64."""
    b, hq, hkv, nk, d, dv = 3, 8, 2, 96, 128, 64
    g = torch.Generator(device="cuda").manual_seed(seq_q)
    q = torch.randn(b, seq_q, hq, d, generator=g, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, nk, hkv, d, generator=g, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(b, nk, hkv, dv, generator=g, device="cuda", dtype=torch.bfloat16)
    lengths = [0, 2, nk]
    out, lse = autoflash.attention_with_kvcache(q, k, v, torch.tensor(lengths, dtype=torch.int32, device="cuda"),
                                                causal=True, return_lse=True)
    assert out.shape == (b, seq_q, hq, dv)
    ref, ref_lse = reference_decode(f64(q), f64(k), f64(v), lengths, causal=True, scale=1 / math.sqrt(d))
    result = check_output(f64(out), ref, f64(lse), ref_lse, "bf16")
    assert result.passed, result.describe()


def test_calls_that_do_not_serve_it_refuse_it():
    q, k, v = inputs(1, 2, 2, 64, 64, 64, 128, "bf16")  # 192/128 and 128/64 have a backward now
    with pytest.raises(ValueError, match="no gradients"):
        autoflash.attention(q.requires_grad_(), k, v)
    q, k, v = inputs(1, 2, 2, 64, 64, 192, 128, "bf16")
    cu = torch.tensor([0, 64], dtype=torch.int32, device="cuda")
    with pytest.raises(ValueError, match="head dim"):  # the forward serves it, the varlen backward does not
        autoflash.attention_varlen(*(x[0].transpose(0, 1).requires_grad_() for x in (q, k, v)), cu, cu, 64, 64)
    pages = [x.transpose(1, 2).reshape(4, 16, 2, x.shape[3]) for x in (k, v)]
    table = torch.arange(4, dtype=torch.int32, device="cuda")[None]
    with pytest.raises(ValueError, match="differ in shape"):  # paged caches keep one head dim
        autoflash.attention_with_kvcache(q.transpose(1, 2)[:, :1], *pages, block_table=table)
