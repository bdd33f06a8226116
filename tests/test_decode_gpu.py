"""Split-KV decode on a GPU against the float64 reference: odd cache lengths, Nq 1-16, GQA groups
1/4/8/32, per-sequence lengths with 0 and 1, both cache layouts and strided caches, forced split
counts (empty splits), LSE precision at 256k keys, CUDA-graph replay with new cache_seqlens, and
the input checks that must refuse before launch."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

from autoflash.serve.decode import decode_attention  # noqa: E402
from autoflash.ops.decode_launch import check_output, reference_decode  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@pytest.fixture
def merge_in_split_kernel(monkeypatch):
    """fused_combine's merge inside the split kernel: served only without PDL_COMBINE (on sm_90 the combine
    kernel merges); kernels and plans made anew so that the plan is made with the switch off."""
    from autoflash.ops import decode_kernels
    from autoflash.serve import decode as decode_api

    monkeypatch.setattr(decode_kernels, "PDL_COMBINE", False)
    decode_api._kernel_for.cache_clear()
    yield
    decode_api._kernel_for.cache_clear()


def make(batch, seq_q, heads_kv, group, seq_k, head_dim, dtype="bf16", layout="bshd", seed=0):
    """Random q, k, v in `layout` (q and caches alike) and their bshd float64 NumPy views."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    heads_q = heads_kv * group
    shape_q = (batch, seq_q, heads_q, head_dim) if layout == "bshd" else (batch, heads_q, seq_q, head_dim)
    shape_kv = (batch, seq_k, heads_kv, head_dim) if layout == "bshd" else (batch, heads_kv, seq_k, head_dim)
    q, k, v = (torch.randn(s, generator=g, device="cuda", dtype=DTYPES[dtype]) for s in (shape_q, shape_kv, shape_kv))
    return q, k, v


def as_bshd64(x, layout):
    x = x.double()
    return (x if layout == "bshd" else x.transpose(1, 2)).cpu().numpy()


def run_and_check(q, k, v, lengths, *, dtype="bf16", layout="bshd", causal=True, num_splits=None, scale=None,
                  config=None):
    seqlens = None if lengths is None else torch.tensor(lengths, dtype=torch.int32, device="cuda")
    o, lse = decode_attention(q, k, v, seqlens, causal=causal, softmax_scale=scale, return_lse=True,
                              num_splits=num_splits, layout=layout, config=config)
    torch.cuda.synchronize()
    nk = k.shape[1] if layout == "bshd" else k.shape[2]
    lengths = [nk] * q.shape[0] if lengths is None else lengths
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    ref, ref_lse = reference_decode(as_bshd64(q, layout), as_bshd64(k, layout), as_bshd64(v, layout), lengths,
                                    causal=causal, scale=scale)
    check = check_output(as_bshd64(o, layout), ref, lse.double().cpu().numpy(), ref_lse, dtype)
    assert check.passed, check.describe()
    return o, lse


@pytest.mark.parametrize("seq_k", [1, 17, 1000, 65537])
@pytest.mark.parametrize("group, seq_q", [(1, 1), (4, 1), (8, 3), (32, 1), (4, 16)])
def test_cache_lengths_and_groups(seq_k, group, seq_q):
    q, k, v = make(2, seq_q, 2, group, seq_k, 128, seed=seq_k + group)
    run_and_check(q, k, v, [seq_k, max(0, seq_k // 2 - 1)])


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("layout", ["bshd", "bhsd"])
def test_dtypes_head_dims_layouts_with_lengths_0_and_1(dtype, head_dim, layout):
    q, k, v = make(5, 2, 2, 4, 3001, head_dim, dtype, layout, seed=head_dim)
    run_and_check(q, k, v, [0, 1, 2, 3001, 1500], dtype=dtype, layout=layout)


@pytest.mark.parametrize("seq_q", [1, 2, 5, 16])
@pytest.mark.parametrize("causal", [True, False])
def test_query_tokens_bottom_right(seq_q, causal):
    # lengths shorter than Nq: the first queries see no key under causal (output 0, LSE -inf)
    q, k, v = make(4, seq_q, 1, 8, 700, 128, seed=seq_q)
    run_and_check(q, k, v, [3, 700, 1, 64], causal=causal)


@pytest.mark.parametrize("num_splits", [1, 3, 64, 256])
def test_forced_split_counts_including_empty_splits(num_splits):
    q, k, v = make(3, 1, 4, 4, 5000, 128, seed=num_splits)
    run_and_check(q, k, v, [5000, 10, 0], num_splits=num_splits)


@pytest.mark.parametrize("bulk", [False, True])
@pytest.mark.parametrize("block_n, warps, stages", [(16, 4, 2), (32, 2, 4), (64, 8, 2)])
@pytest.mark.parametrize("layout, seq_q, group", [("bshd", 1, 4), ("bhsd", 3, 8)])
def test_configs_and_copy_paths(bulk, block_n, warps, stages, layout, seq_q, group):
    from autoflash.kernels.device import device_arch
    from autoflash.ops.decode import DECODE
    from autoflash.ops.decode_kernels import m_tiles_for

    arch = device_arch(torch.cuda.current_device())[0]
    if bulk and arch != "sm_90":
        pytest.skip(f"bulk_copy needs sm_90, this GPU is {arch}")
    key = {"dtype": "bf16", "head_dim": 128, "m_tiles": m_tiles_for(group * seq_q, 128)}
    cfg = DECODE.default(arch, key).replace(block_n=block_n, warps=warps, stages=stages, bulk_copy=bulk,
                                            swizzle=not bulk and DECODE.default(arch, key).swizzle,
                                            l2_prefetch=0 if bulk else DECODE.default(arch, key).l2_prefetch)
    if cfg.problems():
        pytest.skip("; ".join(cfg.problems()))
    q, k, v = make(4, seq_q, 2, group, 2500, 128, layout=layout, seed=block_n + warps)
    for splits in (None, 7):
        run_and_check(q, k, v, [2500, 0, 1, 1001], layout=layout, num_splits=splits, config=cfg)


def replay_and_check(graph, q, k, v, o, lse, seqlens, length_sets, poison=False):
    """Replay a captured decode (bshd, D 128, causal, bf16) with each set of cache lengths written
    into its seqlens tensor, and check O and LSE against float64 (O NaN-poisoned first if asked)."""
    for lengths in length_sets:
        seqlens.copy_(torch.tensor(lengths, dtype=torch.int32))
        if poison:
            o.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        ref, ref_lse = reference_decode(as_bshd64(q, "bshd"), as_bshd64(k, "bshd"), as_bshd64(v, "bshd"), lengths,
                                        causal=True, scale=1 / math.sqrt(128))
        check = check_output(as_bshd64(o, "bshd"), ref, lse.double().cpu().numpy(), ref_lse, "bf16")
        assert check.passed, (lengths, check.describe())


@pytest.mark.parametrize("knobs", [dict(evict_first=True), dict(l2_prefetch=0), dict(l2_prefetch=256, evict_first=True),
                                   dict(fused_combine=True),
                                   dict(fused_combine=True, bulk_copy=True, l2_prefetch=0, evict_first=True, swizzle=False)])
@pytest.mark.parametrize("layout, seq_q, group", [("bshd", 1, 4), ("bhsd", 3, 8), ("bshd", 3, 32)])
def test_cache_hints_and_fused_combine(knobs, layout, seq_q, group, merge_in_split_kernel):
    """Every split count: 1 (no merge), 7 and 32 (fused: the last block merges, twice in a row so
    the ticket counters must have been reset), 33 (beyond the fused limit: the combine kernel)."""
    from autoflash.kernels.device import device_arch
    from autoflash.ops.decode import DECODE
    from autoflash.ops.decode_kernels import m_tiles_for

    arch = device_arch(torch.cuda.current_device())[0]
    if knobs.get("bulk_copy") and arch != "sm_90":
        pytest.skip(f"bulk_copy needs sm_90, this GPU is {arch}")
    key = {"dtype": "bf16", "head_dim": 128, "m_tiles": m_tiles_for(group * seq_q, 128)}
    cfg = DECODE.default(arch, key).replace(**knobs)
    q, k, v = make(4, seq_q, 2, group, 2500, 128, layout=layout, seed=group + seq_q)
    for splits in (None, 1, 7, 7, 32, 33):
        run_and_check(q, k, v, [2500, 0, 1, 1001], layout=layout, num_splits=splits, config=cfg)


@pytest.mark.parametrize("head_dim", [16, 32])
def test_small_head_dims_merge_many_splits(head_dim):
    # _combine_lanes' block is sized by the head dim and the split count: 40 splits here
    q, k, v = make(2, 1, 1, 8, 3000, head_dim, seed=head_dim)
    run_and_check(q, k, v, [3000, 5], num_splits=40)


def test_fused_combine_under_graph_replay_with_new_lengths(merge_in_split_kernel):
    from autoflash.kernels.device import device_arch
    from autoflash.ops.decode import DECODE

    arch = device_arch(torch.cuda.current_device())[0]
    cfg = DECODE.default(arch, {"dtype": "bf16", "head_dim": 128, "m_tiles": 1}).replace(fused_combine=True)
    q, k, v = make(4, 1, 2, 4, 4096, 128, seed=12)
    seqlens = torch.tensor([4096, 100, 1, 0], dtype=torch.int32, device="cuda")
    decode_attention(q, k, v, seqlens, config=cfg, num_splits=8)  # compile, load and plan outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        o, lse = decode_attention(q, k, v, seqlens, return_lse=True, config=cfg, num_splits=8)
    replay_and_check(graph, q, k, v, o, lse, seqlens,
                     ([4096, 100, 1, 0], [17, 4000, 0, 2048], [1, 1, 4096, 4095], [4096, 100, 1, 0]), poison=True)


def test_strided_caches_without_copies():
    # caches that are views into larger buffers: extra heads and a longer capacity
    g = torch.Generator(device="cuda").manual_seed(3)
    big_k = torch.randn(2, 900, 6, 128, generator=g, device="cuda", dtype=torch.bfloat16)
    big_v = torch.randn(2, 900, 6, 128, generator=g, device="cuda", dtype=torch.bfloat16)
    k, v = big_k[:, :800, 1:3], big_v[:, 100:, 2:4]
    q_big = torch.randn(2, 1, 16, 136, generator=g, device="cuda", dtype=torch.bfloat16)
    q = q_big[..., 8:]  # D-contiguous, row stride 136 elements
    assert not k.is_contiguous() and not q.is_contiguous()
    run_and_check(q, k, v, [800, 433])


def test_negative_softmax_scale_and_mqa():
    q, k, v = make(2, 1, 1, 32, 2000, 64, seed=9)
    run_and_check(q, k, v, [2000, 1234], scale=-0.3)


def test_empty_cache_gives_zero_and_minus_inf():
    q, k, v = make(2, 2, 2, 4, 64, 128)
    o, lse = decode_attention(q, k, v, torch.zeros(2, dtype=torch.int32, device="cuda"), return_lse=True)
    assert torch.all(o == 0) and torch.all(torch.isneginf(lse))


def test_lse_merge_precision_at_256k():
    seq_k = 262144
    q, k, v = make(1, 1, 1, 4, seq_k, 128, seed=5)
    for splits in (None, 256):
        _, lse = run_and_check(q, k, v, None, num_splits=splits)
        assert torch.isfinite(lse).all()


def test_cuda_graph_replay_with_new_lengths():
    q, k, v = make(4, 1, 2, 4, 4096, 128, seed=11)
    seqlens = torch.tensor([4096, 100, 1, 0], dtype=torch.int32, device="cuda")
    decode_attention(q, k, v, seqlens)  # compile and load outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        o, lse = decode_attention(q, k, v, seqlens, return_lse=True)
    replay_and_check(graph, q, k, v, o, lse, seqlens, ([4096, 100, 1, 0], [17, 4000, 0, 2048], [1, 1, 4096, 4095]))


@pytest.mark.parametrize("lengths, match", [([-1, 5], "outside"), ([5, 65], "outside")])
def test_bad_cache_seqlens_are_refused_before_launch(lengths, match):
    q, k, v = make(2, 1, 1, 4, 64, 128)
    with pytest.raises(ValueError, match=match):
        decode_attention(q, k, v, torch.tensor(lengths, dtype=torch.int32, device="cuda"))


def test_bad_inputs_are_refused():
    q, k, v = make(2, 1, 2, 4, 64, 128)
    with pytest.raises(ValueError, match="int32"):
        decode_attention(q, k, v, torch.tensor([1, 2], device="cuda"))
    with pytest.raises(ValueError, match="shape"):
        decode_attention(q, k, v, torch.tensor([1, 2, 3], dtype=torch.int32, device="cuda"))
    with pytest.raises(ValueError, match="dtype"):
        decode_attention(q.float(), k.float(), v.float())
    with pytest.raises(ValueError, match="multiple"):
        decode_attention(q[:, :, :7], k, v)
    with pytest.raises(ValueError, match="head dim"):
        decode_attention(q[..., :100], k[..., :100], v[..., :100])  # every multiple of 8 runs (padded tiles)
    with pytest.raises(ValueError, match="contiguous in D"):
        decode_attention(q, k.transpose(2, 3).contiguous().transpose(2, 3), v)
    shifted = torch.empty(k.numel() + 4, dtype=k.dtype, device="cuda")[4:].view(k.shape)  # 8 bytes off
    with pytest.raises(ValueError, match="16-byte"):
        decode_attention(q, shifted, shifted)
    with pytest.raises(ValueError, match="CUDA"):
        decode_attention(q.cpu(), k.cpu(), v.cpu())
    with pytest.raises(ValueError, match="num_splits"):
        decode_attention(q, k, v, num_splits=0)
    with pytest.raises(ValueError, match="softmax_scale"):
        decode_attention(q, k, v, softmax_scale=float("nan"))
    with pytest.raises(ValueError, match="layout"):
        decode_attention(q, k, v, layout="sbhd")
