"""Chunked prefill on a paged KV cache on a GPU (issue 15 item 3): attention_with_kvcache with
seqlen_q 17..300 and a block_table (flash_fwd_mma compiled with paged) against float64 and against
the same call on the contiguous cache; pages shuffled, page sizes 16/48/64, mixed cache_seqlens
(0, partial pages, shorter than the chunk), GQA/MQA, bottom-right causal, LSE, the variants; bad
tables refused before launch; the kernel's own guard against bad device-resident tables and
lengths; CUDA-graph replay with a new table."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

import autoflash  # noqa: E402
from autoflash.ops.decode_launch import check_output, reference_decode  # noqa: E402

from test_paged_gpu import f64, paged_inputs  # noqa: E402  (the same paged test inputs)


def check(o, lse, q, k, v, lengths, causal, dtype="bf16", **variants):
    scale = 1 / math.sqrt(q.shape[-1])
    ref, ref_lse = reference_decode(f64(q), f64(k), f64(v), lengths, causal=causal, scale=scale, **variants)
    result = check_output(f64(o), ref, f64(lse), ref_lse, dtype)
    assert result.passed, result.describe()


@pytest.mark.parametrize("page_size", [16, 48, 64])
@pytest.mark.parametrize("seq_q, group, heads_kv, causal", [(17, 1, 2, True), (100, 4, 2, True), (300, 2, 1, False),
                                                            (64, 8, 1, True), (33, 2, 2, False)])
def test_paged_prefill_matches_float64_and_the_contiguous_cache(page_size, seq_q, group, heads_kv, causal):
    max_pages = max(2, 700 // page_size)
    nk = max_pages * page_size
    q, k, v, kp, vp, table = paged_inputs(5, seq_q, heads_kv, group, max_pages, page_size, 128,
                                          seed=page_size + seq_q)
    lengths = [nk, 0, seq_q // 2, page_size + 1, nk - 5]  # full, empty, shorter than the chunk, partial pages
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    o_p, lse_p = autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=causal,
                                                  return_lse=True)
    o_c, lse_c = autoflash.attention_with_kvcache(q, k, v, seqlens, causal=causal, return_lse=True)
    torch.cuda.synchronize()
    assert o_p.shape == q.shape and lse_p.shape == (5, q.shape[2], seq_q)
    check(o_p, lse_p, q, k, v, lengths, causal)
    check(o_c, lse_c, q, k, v, lengths, causal)
    assert (o_p.float() - o_c.float()).abs().max().item() < 0.05  # two kernels, one answer (bf16 noise)


@pytest.mark.parametrize("dtype, head_dim", [("fp16", 64), ("bf16", 80), ("fp16", 256), ("bf16", 40)])
def test_paged_prefill_other_dtypes_and_head_dims_without_lengths(dtype, head_dim):
    q, k, v, kp, vp, table = paged_inputs(2, 40, 2, 2, 6, 32, head_dim, dtype=dtype, seed=head_dim)
    o, lse = autoflash.attention_with_kvcache(q, kp, vp, block_table=table, causal=True, return_lse=True)
    check(o, lse, q, k, v, [k.shape[1]] * 2, True, dtype)


def test_paged_prefill_with_every_variant():
    q, k, v, kp, vp, table = paged_inputs(3, 120, 2, 4, 10, 48, 128, seed=7)
    lengths = [480, 200, 90]
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    sinks = torch.randn(8, device="cuda", dtype=torch.float32)
    slopes = torch.tensor([2.0 ** (-i) for i in range(1, 9)], device="cuda", dtype=torch.float32)
    o, lse = autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=True, return_lse=True,
                                              window_size=(64, -1), softcap=30.0, sinks=sinks, alibi_slopes=slopes)
    check(o, lse, q, k, v, lengths, True, window=(64, 0), softcap=30.0, sinks=f64(sinks), alibi_slopes=f64(slopes))


def test_bad_tables_and_lengths_are_refused():
    q, k, v, kp, vp, table = paged_inputs(2, 40, 2, 2, 4, 16, 64)
    seqlens = torch.tensor([64, 20], dtype=torch.int32, device="cuda")
    bad = table.clone()
    bad[1, 1] = kp.shape[0]  # used by sequence 1 (20 keys: entries 0 and 1)
    with pytest.raises(ValueError, match=r"block_table\[1, 1\]"):
        autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=bad, causal=True)
    bad[1, 1], bad[1, 3] = table[1, 1], -1  # entry 3 is past sequence 1's pages: never read, accepted
    autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=bad, causal=True)
    with pytest.raises(ValueError, match="outside"):
        autoflash.attention_with_kvcache(q, kp, vp, torch.tensor([65, 1], dtype=torch.int32, device="cuda"),
                                         block_table=table)
    with pytest.raises(ValueError, match="page_size 24"):
        pages = torch.zeros(9, 24, 2, 64, device="cuda", dtype=torch.bfloat16)
        autoflash.attention_with_kvcache(q, pages, pages, block_table=table)
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        autoflash.attention_with_kvcache(q.float(), kp.float(), vp.float(), block_table=table)


def test_the_kernel_never_reads_outside_the_cache_with_a_bad_device_table(monkeypatch):
    """The host checks skipped (as under CUDA graph capture): entries out of range and lengths past
    the capacity read page 0 / are clamped, so the launch completes with finite values."""
    from autoflash.serve import kvcache

    q, k, v, kp, vp, table = paged_inputs(2, 40, 2, 2, 4, 16, 64)
    monkeypatch.setattr(kvcache, "_check_table_entries", lambda *a: None)
    monkeypatch.setattr(kvcache, "_check_seqlens", lambda s, *a: (s, None))
    bad = table.clone()
    bad[0, 0], bad[1, 2] = 1 << 30, -(1 << 30)
    lengths = torch.tensor([1 << 20, -7], dtype=torch.int32, device="cuda")
    o = autoflash.attention_with_kvcache(q, kp, vp, lengths, block_table=bad, causal=True)
    torch.cuda.synchronize()
    assert bool(torch.isfinite(o.float()).all())
    assert bool((o[1] == 0).all())  # length clamped to 0: no key, output 0


def test_cuda_graph_replay_with_a_new_table():
    q, k, v, kp, vp, table = paged_inputs(2, 48, 2, 2, 5, 16, 128, seed=3)
    seqlens = torch.tensor([80, 50], dtype=torch.int32, device="cuda")
    autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=True)  # compile outside
    graph = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        with torch.cuda.graph(graph):
            out = autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=True)
    # the same keys in other pages: swap each sequence's page list and the pages' contents
    perm = torch.tensor([1, 0], device="cuda")
    new_table = table[perm].contiguous()
    kp2, vp2 = kp.clone(), vp.clone()
    kp2[new_table.reshape(-1).long()] = kp[table.reshape(-1).long()]
    vp2[new_table.reshape(-1).long()] = vp[table.reshape(-1).long()]
    kp.copy_(kp2), vp.copy_(vp2), table.copy_(new_table)
    graph.replay()
    torch.cuda.synchronize()
    ref, _ = reference_decode(f64(q), f64(k), f64(v), [80, 50], causal=True, scale=1 / math.sqrt(128))
    assert abs(f64(out) - ref).max() < 0.05, abs(f64(out) - ref).max()
