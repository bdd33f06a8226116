"""Issue 15 items 1 and 4 on the GPU, for the dense forward: causal_alignment="bottom_right" vs
"top_left" vs float64 for Nq < Nk, Nq == Nk and Nq > Nk (rows that see no key: output 0, LSE -inf, in
every dtype), odd lengths, GQA, each forward template pinned (simt fp32, mma bf16, wgmma bf16 on
sm_90); and strided (B, N, H, D).transpose(1, 2) views read in place: the same bits as contiguous
copies, no copy (peak memory), also through the torch drop-in under torch.compile.
Tolerances: autoflash/ops/reference.py (fp32 1e-4, fp16 3e-3, bf16 1e-2 relative; LSE 1e-3)."""
import math

import numpy as np
import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

import autoflash  # noqa: E402
import autoflash.torch as aft  # noqa: E402
from autoflash.kernels.device import device_arch  # noqa: E402
from autoflash.kernels.registry import TEMPLATES  # noqa: E402
from autoflash.ops.reference import compare  # noqa: E402
from autoflash.serve import api as serve_api  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ARCH = device_arch(0)[0]
SM90 = ARCH in ("sm_90", "sm_90a")
# (template, arch, dtype, head_dim): one pinned config of each forward template
PINS = [("flash_fwd_simt", "sm_90", "fp32", 64), ("flash_fwd_mma", "sm_90", "bf16", 128),
        ("flash_fwd_wgmma", "sm_90a", "bf16", 128)]
SHAPES = [  # (batch, heads_q, heads_kv, seq_q, seq_k)
    (1, 2, 2, 100, 300),     # Nq < Nk (chunked prefill)
    (2, 4, 2, 257, 257),     # Nq == Nk, odd, GQA
    (1, 3, 1, 17, 1000),     # MQA, one partial query tile far below the diagonal
    (1, 2, 1, 300, 100),     # Nq > Nk: the first 200 rows see no key (bottom-right)
    (1, 2, 2, 1000, 17),     # Nq >> Nk: whole query tiles without a key
    (2, 4, 2, 4097, 1000),   # odd, long, GQA
]


def pinned(template, arch, dtype, d, causal):
    if not SM90:
        pytest.skip(f"pins are sm_90 configs; this GPU is {ARCH}")
    return TEMPLATES[template].default(arch, {"dtype": dtype, "head_dim": d, "causal": causal})


def randn(shape, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(shape, device="cuda", generator=g).to(DTYPES[dtype])


def reference(q, k, v, offset, scale):
    """float64 attention, causal with key j visible to query i iff j <= i + offset (None: no mask).
    Rows without a visible key: output 0, LSE -inf. NumPy (out, lse)."""
    group = q.shape[1] // k.shape[1]
    q, k, v = q.double(), k.double().repeat_interleave(group, 1), v.double().repeat_interleave(group, 1)
    s = (q @ k.transpose(-1, -2)) * scale
    if offset is not None:
        i = torch.arange(q.shape[2], device=s.device)[:, None]
        j = torch.arange(k.shape[2], device=s.device)[None, :]
        s = s.masked_fill(j > i + offset, -math.inf)
    lse = torch.logsumexp(s, -1)
    p = torch.where(torch.isinf(lse)[..., None], torch.zeros_like(s), torch.exp(s - lse[..., None]))
    return (p @ v).cpu().numpy(), lse.cpu().numpy()


def check(out, lse, q, k, v, offset, scale, dtype):
    ref, ref_lse = reference(q, k, v, offset, scale)
    out, lse = out.double().cpu().numpy(), lse.double().cpu().numpy()
    empty = np.isneginf(ref_lse)  # rows that see no key: exactly 0 and -inf
    assert np.all(out[empty] == 0.0) and np.all(np.isneginf(lse[empty])), "rows without a key must be 0 / -inf"
    assert not np.isnan(out).any() and not np.isnan(lse).any()
    out[empty], ref[empty], lse[empty], ref_lse[empty] = 0.0, 0.0, 0.0, 0.0
    result = compare(out, ref, dtype, lse, ref_lse)
    assert result.passed, result.describe()


@pytest.mark.parametrize("pin", PINS, ids=lambda p: p[0])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "b{}h{}kv{}q{}k{}".format(*s))
def test_causal_alignments_against_float64(pin, shape):
    template, arch, dtype, d = pin
    cfg = pinned(template, arch, dtype, d, True)
    b, hq, hkv, nq, nk = shape
    q, k, v = randn((b, hq, nq, d), dtype, 1), randn((b, hkv, nk, d), dtype, 2), randn((b, hkv, nk, d), dtype, 3)
    scale = 1 / math.sqrt(d)
    out_tl, lse_tl = autoflash.attention(q, k, v, causal=True, return_lse=True, config=cfg)
    out_br, lse_br = autoflash.attention(q, k, v, causal=True, causal_alignment="bottom_right", return_lse=True,
                                         config=cfg)
    check(out_tl, lse_tl, q, k, v, 0, scale, dtype)
    check(out_br, lse_br, q, k, v, nk - nq, scale, dtype)
    if nq == nk:  # the same mask: the same kernel arguments, the same bits
        assert torch.equal(out_tl, out_br) and torch.equal(lse_tl, lse_br)


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_rows_without_a_key_are_zero_and_minus_infinity_in_every_dtype(dtype):
    """Served as attention() picks (no pin): Nq > Nk bottom-right, the first Nq - Nk rows see nothing."""
    b, hq, hkv, nq, nk, d = 2, 4, 2, 130, 50, 64
    q, k, v = randn((b, hq, nq, d), dtype, 4), randn((b, hkv, nk, d), dtype, 5), randn((b, hkv, nk, d), dtype, 6)
    out, lse = autoflash.attention(q, k, v, causal=True, causal_alignment="bottom_right", return_lse=True)
    assert torch.all(out[:, :, : nq - nk] == 0) and torch.all(torch.isneginf(lse[:, :, : nq - nk]))
    check(out, lse, q, k, v, nk - nq, 1 / math.sqrt(d), dtype)


def test_bottom_right_decode_shapes_go_to_the_decode_kernel(decode_calls):
    calls = decode_calls
    b, hq, hkv, nq, nk, d = 2, 8, 2, 4, 1000, 128
    q, k, v = randn((b, hq, nq, d), "bf16", 7), randn((b, hkv, nk, d), "bf16", 8), randn((b, hkv, nk, d), "bf16", 9)
    out, lse = autoflash.attention(q, k, v, causal=True, causal_alignment="bottom_right", return_lse=True)
    assert len(calls) == 1 and calls[0]["causal"] is True
    check(out, lse, q, k, v, nk - nq, 1 / math.sqrt(d), "bf16")
    # Nq > Nk has rows without a key: the forward serves it, not decode
    out, lse = autoflash.attention(q, k[:, :, :3], v[:, :, :3], causal=True, causal_alignment="bottom_right",
                                   return_lse=True)
    assert len(calls) == 1
    check(out, lse, q, k[:, :, :3], v[:, :, :3], 3 - nq, 1 / math.sqrt(d), "bf16")


def requested_bytes(fn) -> int:
    """Bytes requested from torch's caching allocator while fn runs (a copy of an input shows up
    here whatever block the allocator hands out)."""
    key = "requested_bytes.all.allocated"  # what callers asked for, before rounding and block reuse
    torch.cuda.synchronize()
    before = torch.cuda.memory_stats()[key]
    fn()
    torch.cuda.synchronize()
    return torch.cuda.memory_stats()[key] - before


def bnhd(b, n, h, d, dtype, seed):
    """A (B, N, H, D) tensor (as a Hugging Face projection gives it) seen as (B, H, N, D)."""
    return randn((b, n, h, d), dtype, seed).transpose(1, 2)


@pytest.mark.parametrize("pin", PINS, ids=lambda p: p[0])
@pytest.mark.parametrize("causal", [False, True])
def test_transposed_views_match_contiguous_copies_without_a_copy(pin, causal):
    template, arch, dtype, d = pin
    cfg = pinned(template, arch, dtype, d, causal)
    b, hq, hkv, nq, nk = 2, 8, 2, 300, 2000
    q, k, v = bnhd(b, nq, hq, d, dtype, 10), bnhd(b, nk, hkv, d, dtype, 11), bnhd(b, nk, hkv, d, dtype, 12)
    assert not (q.is_contiguous() or k.is_contiguous() or v.is_contiguous())
    kw = dict(causal=causal, causal_alignment="bottom_right", return_lse=True, config=cfg)
    out, lse = autoflash.attention(q, k, v, **kw)
    ref_out, ref_lse = autoflash.attention(q.contiguous(), k.contiguous(), v.contiguous(), **kw)
    assert out.transpose(1, 2).is_contiguous() and out.shape == (b, hq, nq, d)  # O in q's order, as SDPA lays it out
    assert torch.equal(out, ref_out) and torch.equal(lse, ref_lse)
    check(out, lse, q, k, v, (nk - nq) if causal else None, 1 / math.sqrt(d), dtype)
    # K/V cut from a longer (B, Hkv, capacity, D) store: head stride != Nk * D
    k_store, v_store = randn((b, hkv, nk + 77, d), dtype, 13), randn((b, hkv, nk + 77, d), dtype, 14)
    ks, vs = k_store[:, :, :nk], v_store[:, :, :nk]
    out2, lse2 = autoflash.attention(q, ks, vs, **kw)
    ref2, ref_lse2 = autoflash.attention(q.contiguous(), ks.contiguous(), vs.contiguous(), **kw)
    assert torch.equal(out2, ref2) and torch.equal(lse2, ref_lse2)
    # No copy: what the call allocates is O and LSE (q alone is as large as O; K/V are 6.7x larger).
    # Counted as bytes requested from the caching allocator: its peak figure counts a cached block
    # reused whole (O landing in a freed 2 MB K copy's block read as 2 MB on the H200).
    requested = requested_bytes(lambda: autoflash.attention(q, k, v, **kw))
    o_bytes, lse_bytes = out.numel() * out.element_size(), lse.numel() * 4
    assert requested < o_bytes + lse_bytes + o_bytes // 2


def test_misaligned_views_are_refused_before_launch():
    x = randn((1, 2, 64, 72), "bf16", 15)[..., :64]  # rows 144 B apart: fine (16-byte multiple)
    autoflash.attention(x, x, x)
    y = randn((1, 2, 64, 68), "bf16", 16)[..., :64]  # rows 136 B apart
    with pytest.raises(ValueError, match="16-byte aligned"):
        autoflash.attention(y, y, y)
    z = randn((1, 2, 64, 64), "bf16", 17).transpose(2, 3)  # head dim not contiguous
    with pytest.raises(ValueError, match="head dim is not contiguous"):
        autoflash.attention(z, z, z)


@pytest.mark.parametrize("causal", [False, True])
def test_drop_in_under_torch_compile_reads_transposed_views(causal):
    b, hq, hkv, n, d = 2, 8, 2, 500, 128
    q, k, v = bnhd(b, n, hq, d, "bf16", 18), bnhd(b, n, hkv, d, "bf16", 19), bnhd(b, n, hkv, d, "bf16", 20)

    def f(q, k, v):
        return aft.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)

    compiled = torch.compile(f, fullgraph=True)
    with torch.no_grad():
        out = compiled(q, k, v)
        eager = f(q.contiguous(), k.contiguous(), v.contiguous())
        direct = serve_api.attention_forward(q, k, v, causal=causal)
    assert out.transpose(1, 2).is_contiguous() and out.stride() == direct.stride()  # q's order, as SDPA
    assert torch.equal(out, eager) and torch.equal(out, direct)
    ref, _ = reference(q, k, v, 0 if causal else None, 1 / math.sqrt(d))
    result = compare(out.double().cpu().numpy(), ref, "bf16", None, None)
    assert result.passed, result.describe()
    # eager, no copy: the op reads the views in place
    with torch.no_grad():
        f(q, k, v)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # else O may reuse a larger cached block whole (a freed K copy) and count as more
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        f(q, k, v)
        torch.cuda.synchronize()
    o_bytes = out.numel() * out.element_size()
    assert torch.cuda.max_memory_allocated() - before < o_bytes + o_bytes // 2
