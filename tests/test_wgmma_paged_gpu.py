"""flash_fwd_wgmma with paged K/V on an sm_90 GPU (issue 15's chunked prefill): attention_with_kvcache
with a block_table run on the wgmma paged kernel (kvcache.paged_config pinned to it here, whatever it
prefers) against float64 and against the contiguous cache: shuffled pages of 16/48/64 keys, mixed
cache_seqlens (0, partial pages, shorter than the chunk), GQA/MQA, bottom-right causal, LSE, other head
dims and fp16, every variant, and cache slots past each sequence's length (and spare pages) holding NaN,
which must not reach the output (rows past the keys are zero-filled, never read)."""
import math

import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

import autoflash  # noqa: E402
from autoflash.kernels.registry import TEMPLATES  # noqa: E402
from autoflash.ops.decode_launch import check_output, reference_decode  # noqa: E402

from test_paged_gpu import f64, paged_inputs  # noqa: E402  (the same paged test inputs)

WG = TEMPLATES["flash_fwd_wgmma"]


@pytest.fixture(autouse=True)
def wgmma_paged(monkeypatch):
    """kvcache.paged_config -> flash_fwd_wgmma's first paged default for the key."""
    from autoflash.kernels.device import device_arch
    from autoflash.serve import kvcache

    if device_arch(0)[0] not in ("sm_90", "sm_90a"):
        pytest.skip("flash_fwd_wgmma needs an sm_90 GPU")
    used = []

    def config(arch, dev, dtype, head_dim, causal, flags, seq_k):
        key = dict(dtype=dtype, head_dim=head_dim, causal=causal, **dict(flags))
        cfg = next(c for c in (WG.config("sm_90a", key, **kn).replace(paged=True) for kn in WG.default_tiles(key))
                   if not c.problems())
        used.append(cfg)
        return cfg

    monkeypatch.setattr(kvcache, "paged_config", config)
    yield used
    assert used and all(c.template == "flash_fwd_wgmma" and c.paged for c in used)


def check(o, lse, q, k, v, lengths, causal, dtype="bf16", **variants):
    scale = 1 / math.sqrt(q.shape[-1])
    ref, ref_lse = reference_decode(f64(q), f64(k), f64(v), lengths, causal=causal, scale=scale, **variants)
    result = check_output(f64(o), ref, f64(lse), ref_lse, dtype)
    assert result.passed, result.describe()


@pytest.mark.parametrize("page_size", [16, 48, 64])
@pytest.mark.parametrize("seq_q, group, heads_kv, causal", [(17, 1, 2, True), (100, 4, 2, True), (300, 2, 1, False),
                                                            (64, 8, 1, True), (33, 2, 2, False)])
def test_wgmma_paged_matches_float64_and_the_contiguous_cache(page_size, seq_q, group, heads_kv, causal):
    max_pages = max(2, 700 // page_size)
    nk = max_pages * page_size
    q, k, v, kp, vp, table = paged_inputs(5, seq_q, heads_kv, group, max_pages, page_size, 128, seed=page_size + seq_q)
    lengths = [nk, 0, seq_q // 2, page_size + 1, nk - 5]  # full, empty, shorter than the chunk, partial pages
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    o_p, lse_p = autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=causal,
                                                  return_lse=True)
    o_c = autoflash.attention_with_kvcache(q, k, v, seqlens, causal=causal)
    torch.cuda.synchronize()
    check(o_p, lse_p, q, k, v, lengths, causal)
    assert (o_p.float() - o_c.float()).abs().max().item() < 0.05  # two kernels, one answer (bf16 noise)


@pytest.mark.parametrize("dtype, head_dim", [("fp16", 64), ("bf16", 80), ("fp16", 256), ("bf16", 40)])
def test_wgmma_paged_other_dtypes_and_head_dims_without_lengths(dtype, head_dim):
    q, k, v, kp, vp, table = paged_inputs(2, 40, 2, 2, 6, 32, head_dim, dtype=dtype, seed=head_dim)
    o, lse = autoflash.attention_with_kvcache(q, kp, vp, block_table=table, causal=True, return_lse=True)
    check(o, lse, q, k, v, [k.shape[1]] * 2, True, dtype)


def test_wgmma_paged_with_every_variant():
    q, k, v, kp, vp, table = paged_inputs(3, 120, 2, 4, 10, 48, 128, seed=7)
    lengths = [480, 200, 90]
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    sinks = torch.randn(8, device="cuda", dtype=torch.float32)
    slopes = torch.tensor([2.0 ** (-i) for i in range(1, 9)], device="cuda", dtype=torch.float32)
    o, lse = autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=True, return_lse=True,
                                              window_size=(64, -1), softcap=30.0, sinks=sinks, alibi_slopes=slopes)
    check(o, lse, q, k, v, lengths, True, window=(64, 0), softcap=30.0, sinks=f64(sinks), alibi_slopes=f64(slopes))


@pytest.mark.parametrize("page_size", [16, 64])
def test_slots_past_each_length_are_never_read(page_size):
    max_pages = 512 // page_size
    q, k, v, kp, vp, table = paged_inputs(3, 70, 2, 2, max_pages, page_size, 128, spare=2, seed=page_size)
    lengths = [500, 131, 7]
    unused = torch.ones(kp.shape[:2], dtype=torch.bool)  # (page, row) slots no sequence's keys occupy
    pages = table.cpu()
    for b, n in enumerate(lengths):
        keys = torch.arange(n)
        unused[pages[b, keys // page_size].long(), keys % page_size] = False
    unused = unused.cuda()
    kp[unused] = float("nan")
    vp[unused] = float("nan")
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    o, lse = autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=True, return_lse=True)
    assert torch.isfinite(o).all()
    check(o, lse, q, k, v, lengths, True)
