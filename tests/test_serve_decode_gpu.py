"""Decode as served (issue 14 item 8): autoflash.attention() on decode shapes, attention_with_kvcache
and the torch drop-in (torch.compile, CUDA-graph capture and replay), each against attention in
float64 from the same (upcast) inputs. Tolerances: autoflash/ops/reference.py (relative error of the
whole output: fp16 3e-3, bf16 1e-2; LSE 1e-3 absolute). A spy on serve/api.launch_decode checks
which kernel served each attention() call, so a test cannot pass on the forward kernel by accident."""
import math

import numpy as np
import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

import autoflash  # noqa: E402
import autoflash.torch as aft  # noqa: E402
from autoflash.ops.decode_launch import check_output, reference_decode, shuffled_pages  # noqa: E402
from autoflash.ops.reference import compare  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def randn(shape, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(shape, device="cuda", generator=g).to(DTYPES[dtype])


def reference(q, k, v, causal, scale):
    """float64 attention on (B, H, N, D) tensors: GQA by repeating K/V heads, causal top-left.
    Returns NumPy (out, natural-log LSE)."""
    group = q.shape[1] // k.shape[1]
    q, k, v = q.double(), k.double().repeat_interleave(group, 1), v.double().repeat_interleave(group, 1)
    s = (q @ k.transpose(-1, -2)) * scale
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu(1), -math.inf)
    return (torch.softmax(s, -1) @ v).cpu().numpy(), torch.logsumexp(s, -1).cpu().numpy()


def check(out, lse, q, k, v, causal, scale, dtype):
    ref, ref_lse = reference(q, k, v, causal, scale)
    result = compare(out.double().cpu().numpy(), ref, dtype, lse.double().cpu().numpy(), ref_lse)
    assert result.passed, result.describe()


# ------------------------------------------------------------------ attention()
@pytest.mark.parametrize("dtype, b, hq, hkv, nq, nk, d, causal", [
    ("bf16", 2, 32, 8, 1, 4097, 128, False),   # one token, GQA 32/8, odd cache length
    ("fp16", 3, 8, 1, 4, 1000, 64, False),     # MQA, 4 query tokens
    ("bf16", 1, 4, 4, 16, 333, 256, False),    # MHA, the query limit, D 256
    ("fp16", 2, 8, 2, 9, 9, 128, True),        # causal with seq_q == seq_k: top-left = bottom-right
    ("bf16", 2, 4, 2, 1, 1, 64, True),
])
def test_attention_serves_decode_shapes_with_the_decode_kernel(decode_calls, dtype, b, hq, hkv, nq, nk, d, causal):
    q, k, v = randn((b, hq, nq, d), dtype, 1), randn((b, hkv, nk, d), dtype, 2), randn((b, hkv, nk, d), dtype, 3)
    out, lse = autoflash.attention(q, k, v, causal=causal, return_lse=True)
    assert len(decode_calls) == 1 and decode_calls[0]["layout"] == "bhsd"
    assert out.shape == q.shape and out.dtype == q.dtype and out.is_contiguous()
    assert lse.shape == (b, hq, nq) and lse.dtype == torch.float32  # the forward's LSE layout
    check(out, lse, q, k, v, causal, 1 / math.sqrt(d), dtype)


@pytest.mark.parametrize("dtype, nq, nk, causal", [
    ("bf16", 4, 100, True),      # causal, seq_q != seq_k: top-left differs from decode's mask
    ("fp16", 17, 300, False),    # past the decode query limit
])
def test_attention_keeps_the_forward_where_decode_does_not_fit(decode_calls, dtype, nq, nk, causal):
    q, k, v = randn((2, 8, nq, 64), dtype, 4), randn((2, 2, nk, 64), dtype, 5), randn((2, 2, nk, 64), dtype, 6)
    out, lse = autoflash.attention(q, k, v, causal=causal, return_lse=True, scale=0.2)
    assert decode_calls == []
    check(out, lse, q, k, v, causal, 0.2, dtype)


def test_attention_with_a_pinned_decode_config(decode_calls):
    from autoflash.kernels.device import device_arch
    from autoflash.ops.decode import DECODE

    cfg = DECODE.default(device_arch(0)[0], {"dtype": "bf16", "head_dim": 128, "m_tiles": 1}).replace(num_splits=4)
    q, k, v = randn((2, 8, 1, 128), "bf16", 7), randn((2, 2, 777, 128), "bf16", 8), randn((2, 2, 777, 128), "bf16", 9)
    out, lse = autoflash.attention(q, k, v, return_lse=True, config=cfg)
    assert decode_calls and decode_calls[0]["config"] == cfg
    check(out, lse, q, k, v, False, 1 / math.sqrt(128), "bf16")
    with pytest.raises(ValueError, match="decode cannot serve this call.*top-left"):
        autoflash.attention(q, k, v, causal=True, config=cfg)


# ------------------------------------------------------- attention_with_kvcache()
def kv_reference_check(q, k_cache, v_cache, lengths, out, lse, causal, dtype, scale=None):
    """reference_decode (float64, bshd, bottom-right causal, empty rows 0 / -inf) vs the result."""
    d = q.shape[-1]
    scale = 1 / math.sqrt(d) if scale is None else scale
    as64 = (lambda x: x.double().cpu().numpy())
    ref, ref_lse = reference_decode(as64(q), as64(k_cache), as64(v_cache), lengths, causal=causal, scale=scale)
    result = check_output(as64(out), ref, as64(lse), ref_lse, dtype)
    assert result.passed, result.describe()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seq_q, num_splits", [(1, None), (5, 0), (16, 7)])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_kvcache_with_cache_seqlens(dtype, seq_q, num_splits, causal):
    """Lengths 0 (output 0, LSE -inf), 1, a middle one and the full cache; bottom-right causal."""
    b, hq, hkv, nk, d = 4, 16, 4, 2000, 128
    q = randn((b, seq_q, hq, d), dtype, 10)
    k, v = randn((b, nk, hkv, d), dtype, 11), randn((b, nk, hkv, d), dtype, 12)
    lengths = [0, 1, 1500, nk]
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    out, lse = autoflash.attention_with_kvcache(q, k, v, seqlens, causal=causal, return_lse=True,
                                                num_splits=num_splits)
    assert out.shape == q.shape and lse.shape == (b, hq, seq_q)
    kv_reference_check(q, k, v, lengths, out, lse, causal, dtype)


@pytest.mark.parametrize("d", [64, 128])
def test_kvcache_one_split_grid_over_a_short_cache(d):
    """A grid that fills the GPU (one split) over a 1000-key cache: served the short-cache knobs on sm_90
    (decode_kernels.SHORT_CACHE_KEYS), correct with per-sequence lengths."""
    from autoflash.ops import decode_launch, decode_kernels
    from autoflash.serve import decode as serve_decode

    hq, hkv, nk = 16, 4, 1000
    b = -(-decode_launch.sm_count(0) // hkv)  # a block per SM at least: one split
    q = randn((b, 1, hq, d), "bf16", 13)
    k, v = randn((b, nk, hkv, d), "bf16", 14), randn((b, nk, hkv, d), "bf16", 15)
    lengths = [(0, 1, 999, nk)[i % 4] if i < 8 else (37 * i) % (nk + 1) for i in range(b)]
    p = decode_launch.DecodeProblem(b, hq, hkv, 1, nk, d, True)
    served = serve_decode._choose_config(None, "bf16", p, 0)
    if serve_decode.device_arch(0)[0] == "sm_90" and decode_kernels.SHORT_CACHE_KEYS >= nk:
        assert (served.block_n, served.stages) == tuple(decode_kernels.SHORT_CACHE_KNOBS.values())
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    out, lse = autoflash.attention_with_kvcache(q, k, v, seqlens, return_lse=True)
    kv_reference_check(q, k, v, lengths, out, lse, True, "bf16")


def test_kvcache_d64_one_split_grid_over_a_long_cache():
    """D 64, a grid of 1-4 blocks an SM (one split) over a 9000-key cache: served LONG_CACHE_RULES' stages on sm_90
    when the config it starts from holds more (decode_kernels.lighter_buffers), correct with per-sequence lengths."""
    from autoflash.ops import decode_launch, decode_kernels
    from autoflash.serve import decode as serve_decode

    hq, hkv, nk, d = 16, 4, 9000, 64
    b = -(-2 * decode_launch.sm_count(0) // hkv)  # two blocks an SM
    q = randn((b, 1, hq, d), "bf16", 16)
    k, v = randn((b, nk, hkv, d), "bf16", 17), randn((b, nk, hkv, d), "bf16", 18)
    lengths = [(0, 1, 8191, nk)[i % 4] if i < 8 else (997 * i) % (nk + 1) for i in range(b)]
    p = decode_launch.DecodeProblem(b, hq, hkv, 1, nk, d, True)
    served = serve_decode._choose_config(None, "bf16", p, 0)
    if serve_decode.device_arch(0)[0] == "sm_90" and decode_kernels.LONG_CACHE_WAVES:
        assert served.stages <= decode_kernels.LONG_CACHE_RULES[d][1]["stages"], served.name
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    out, lse = autoflash.attention_with_kvcache(q, k, v, seqlens, return_lse=True)
    kv_reference_check(q, k, v, lengths, out, lse, True, "bf16")


def test_kvcache_reads_strided_views_in_place():
    """q as the transpose of (B, Hq, Nq, D), caches as transposed (B, Hkv, capacity, D) stores cut to
    2500 positions: the right result, and no copy (with one split, peak memory grows by far less
    than one cache)."""
    b, hq, hkv, cap, nk, nq, d = 3, 8, 2, 3000, 2500, 2, 64
    q_store = randn((b, hq, nq, d), "bf16", 13)
    k_store, v_store = randn((b, hkv, cap, d), "bf16", 14), randn((b, hkv, cap, d), "bf16", 15)
    q = q_store.transpose(1, 2)
    k_cache, v_cache = k_store.transpose(1, 2)[:, :nk], v_store.transpose(1, 2)[:, :nk]
    assert not (q.is_contiguous() or k_cache.is_contiguous())
    lengths = [nk, 1234, 0]
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    out, lse = autoflash.attention_with_kvcache(q, k_cache, v_cache, seqlens, causal=True, return_lse=True,
                                                softmax_scale=0.1)  # the heuristic's split count
    kv_reference_check(q.contiguous(), k_cache.contiguous(), v_cache.contiguous(), lengths, out, lse, True,
                       "bf16", scale=0.1)
    # One split needs no workspace: what the call allocates is O and LSE (~6 KB), never a copy.
    autoflash.attention_with_kvcache(q, k_cache, v_cache, seqlens, num_splits=1)  # compile and load first
    torch.cuda.synchronize()
    torch.cuda.empty_cache()  # else O may reuse a larger cached block whole (a freed K copy) and count as more
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    out, lse = autoflash.attention_with_kvcache(q, k_cache, v_cache, seqlens, causal=True, return_lse=True,
                                                softmax_scale=0.1, num_splits=1)
    torch.cuda.synchronize()
    cache_bytes = k_cache.numel() * k_cache.element_size()
    assert torch.cuda.max_memory_allocated() - before < cache_bytes / 4
    kv_reference_check(q.contiguous(), k_cache.contiguous(), v_cache.contiguous(), lengths, out, lse, True,
                       "bf16", scale=0.1)


def test_kvcache_refuses_bad_input_before_launch():
    q, kv = randn((2, 1, 8, 128), "bf16", 16), randn((2, 64, 2, 128), "bf16", 17)
    with pytest.raises(ValueError, match="outside \\[0, 64\\]"):
        autoflash.attention_with_kvcache(q, kv, kv, torch.tensor([3, 65], dtype=torch.int32, device="cuda"))
    table = torch.zeros((2, 4), dtype=torch.int32, device="cuda")
    table[1, 2] = 2  # kv as a paged cache holds pages 0 and 1
    with pytest.raises(ValueError, match="block_table\\[1, 2\\] = 2 is not a page of the cache"):  # chunked prefill, paged
        autoflash.attention_with_kvcache(randn((2, 32, 8, 128), "bf16", 18), kv, kv, causal=True, block_table=table)
    with pytest.raises(ValueError, match="float16 and bfloat16"):
        autoflash.attention_with_kvcache(q.float(), kv.float(), kv.float())


# --------------------------------------------------------------- the torch drop-in
def test_drop_in_decode_shape_under_torch_compile(decode_calls):
    q, k, v = randn((4, 16, 1, 128), "bf16", 19), randn((4, 4, 3000, 128), "bf16", 20), randn((4, 4, 3000, 128), "bf16", 21)

    def step(q, k, v):
        return aft.scaled_dot_product_attention(q * 0.5, k, v, enable_gqa=True) * 2  # exact in bf16, unlike + 1

    with torch.no_grad():
        out = torch.compile(step, fullgraph=True)(q, k, v)
    assert decode_calls
    ref, _ = reference(q * 0.5, k, v, False, 1 / math.sqrt(128))
    result = compare((out / 2).double().cpu().numpy(), ref, "bf16")
    assert result.passed, result.describe()


@pytest.mark.parametrize("causal, nq, nk", [(False, 1, 3000), (True, 4, 4)])
def test_drop_in_decode_shape_captured_in_a_cuda_graph(decode_calls, causal, nq, nk):
    """Warm up, capture once, then replay with new values in the captured inputs: each replay
    matches the float64 reference of those values (nothing host-synchronises during capture: a
    host sync would fail the capture)."""
    shapes = ((2, 16, nq, 128), (2, 4, nk, 128), (2, 4, nk, 128))
    q, k, v = (randn(s, "bf16", 22 + i) for i, s in enumerate(shapes))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(2):
            aft.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        out = aft.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    assert len(decode_calls) == 3 and all(c["layout"] == "bhsd" for c in decode_calls)
    for seed in (30, 40):
        for i, x in enumerate((q, k, v)):
            x.copy_(randn(x.shape, "bf16", seed + i))
        graph.replay()
        torch.cuda.synchronize()
        ref, _ = reference(q, k, v, causal, 1 / math.sqrt(128))
        result = compare(out.double().cpu().numpy(), ref, "bf16")
        assert result.passed, (seed, result.describe())
    assert np.isfinite(out.float().cpu().numpy()).all()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("with_lengths", [True, False])
def test_kvcache_chunked_prefill_bottom_right(with_lengths, causal):
    """seqlen_q > 16 (chunked prefill) on a contiguous cache: the forward over views, each sequence its
    first cache_seqlens[b] keys, bottom-right (sequence 2 is shorter than the chunk: its first rows
    see no key under causal, output 0 and LSE -inf)."""
    b, nq, hq, hkv, nk, d = 3, 64, 8, 2, 300, 128
    q = randn((b, nq, hq, d), "bf16", 20)
    k, v = randn((b, nk, hkv, d), "bf16", 21), randn((b, nk, hkv, d), "bf16", 22)
    lengths = [nk, 100, 40] if with_lengths else [nk] * b
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda") if with_lengths else None
    out, lse = autoflash.attention_with_kvcache(q, k, v, seqlens, causal=causal, return_lse=True)
    assert out.shape == q.shape and lse.shape == (b, hq, nq)
    kv_reference_check(q, k, v, lengths, out, lse, causal, "bf16")


@pytest.mark.parametrize("paged", [False, True])
@pytest.mark.parametrize("d, seq_q, causal", [(40, 1, True), (80, 5, False), (96, 16, True), (192, 3, True)])
def test_kvcache_head_dims_decode_lacks_run_the_forward(d, seq_q, causal, paged):
    """Head dims the decode template has not (routing.kvcache_route) are served by the forward as a chunked prefill
    is: per-sequence lengths (0: output 0, LSE -inf; shorter than the chunk; the whole cache), GQA, bottom-right."""
    b, hq, hkv, page = 3, 8, 2, 16
    nk = 10 * page
    q = randn((b, seq_q, hq, d), "bf16", 30)
    k, v = randn((b, nk, hkv, d), "bf16", 31), randn((b, nk, hkv, d), "bf16", 32)
    lengths = [0, 2, nk]
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    if paged:
        num_pages = b * nk // page + 4
        table = torch.from_numpy(shuffled_pages(b, nk // page, num_pages, 33)).cuda()
        kp, vp = (torch.zeros((num_pages, page, hkv, d), dtype=x.dtype, device="cuda") for x in (k, v))
        kp[table.long().reshape(-1)], vp[table.long().reshape(-1)] = (x.reshape(-1, page, hkv, d) for x in (k, v))
        out, lse = autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=causal,
                                                    return_lse=True)
    else:
        out, lse = autoflash.attention_with_kvcache(q, k, v, seqlens, causal=causal, return_lse=True)
    assert out.shape == q.shape and lse.shape == (b, hq, seq_q)
    kv_reference_check(q, k, v, lengths, out, lse, causal, "bf16")
