"""Variable-length batches (issue 15 item 2) on the GPU: packed q/k/v with cu_seqlens, lengths 1..4097
mixed (and empty sequences), causal in both alignments (per sequence), GQA, seqused_k, variants,
the LSE as (heads_q, total_q), each forward template (a pinned default config per template),
checked sequence by sequence against the float64 reference (ops/forward_launch.run_varlen_checked);
then autoflash.attention_varlen and attention_with_seqused_k through PyTorch.
Tolerances: autoflash/ops/reference.py."""
import numpy as np
import pytest

from autoflash.kernels.registry import TEMPLATES
from autoflash.ops.forward_base import VARIANT_FLAGS
from autoflash.ops.forward_launch import alibi_slopes, cu_seqlens

pytestmark = pytest.mark.gpu

PINS = [("flash_fwd_simt", "sm_90", "fp32", 64), ("flash_fwd_mma", "sm_90", "bf16", 128),
        ("flash_fwd_wgmma", "sm_90a", "bf16", 128)]
# (lens_q, lens_k): chunked prefill (Nk > Nq), rows without a key (Nk < Nq), an empty sequence,
# single tokens, one 4097-token sequence; partial tiles everywhere
BATCHES = [
    ([1, 17, 4097, 300, 64, 0, 129], [1, 40, 4097, 1000, 64, 5, 100]),
    ([5, 1000, 1, 2], [5, 1000, 3000, 1]),
]


def kernel_for(pin, causal, flags=()):
    from autoflash.kernels.device import device_arch
    from autoflash.serve.api import loaded_kernel

    template, arch, dtype, d = pin
    gpu = device_arch(0)[0]
    if gpu not in ("sm_90", "sm_90a"):
        pytest.skip(f"pins are sm_90 configs; this GPU is {gpu}")
    key = {"dtype": dtype, "head_dim": d, "causal": causal, **{f: f in flags for f in VARIANT_FLAGS}}
    if not TEMPLATES[template].supports(arch, key):
        pytest.skip(f"{template} does not take {flags} (its key values: {TEMPLATES[template].key_values})")
    return loaded_kernel(TEMPLATES[template].default(arch, key), 0)


@pytest.mark.parametrize("pin", PINS, ids=lambda p: p[0])
@pytest.mark.parametrize("causal", [False, True], ids=["noncausal", "causal"])
@pytest.mark.parametrize("bottom_right", [False, True], ids=["top_left", "bottom_right"])
def test_varlen_against_per_sequence_reference(pin, causal, bottom_right):
    from autoflash.ops.forward_launch import run_varlen_checked

    kernel = kernel_for(pin, causal)
    for i, (lens_q, lens_k) in enumerate(BATCHES):
        for hq, hkv in ((4, 2), (3, 3)):
            check = run_varlen_checked(kernel, lens_q, lens_k, hq, hkv, bottom_right=bottom_right, seed=i)
            assert check.passed, f"{kernel.config.name} {lens_q}/{lens_k} Hq{hq}/Hkv{hkv}: {check.describe()}"


@pytest.mark.parametrize("pin", PINS, ids=lambda p: p[0])
def test_varlen_with_seqused_k(pin):
    from autoflash.ops.forward_launch import run_varlen_checked

    lens_q, lens_k = BATCHES[0]
    used = [min(k, u) for k, u in zip(lens_k, [1, 0, 2000, 999, 64, 5, 1])]
    for causal in (False, True):
        check = run_varlen_checked(kernel_for(pin, causal), lens_q, lens_k, 4, 2, seqused_k=used, seed=5)
        assert check.passed, f"{pin[0]} causal={causal} seqused_k {used}: {check.describe()}"


@pytest.mark.parametrize("pin", PINS, ids=lambda p: p[0])
@pytest.mark.parametrize("flags", [("window", "sinks"), ("softcap", "alibi"), VARIANT_FLAGS], ids="+".join)
def test_varlen_with_variants(pin, flags):
    from autoflash.ops.forward_launch import run_varlen_checked

    lens_q, lens_k = BATCHES[1]
    rng = np.random.default_rng(1)
    for causal in (False, True):
        kw = {}
        if "window" in flags:
            kw["window"] = (50, 0 if causal else 20)
        if "softcap" in flags:
            kw["softcap"] = 3.0
        if "sinks" in flags:
            kw["sinks"] = rng.standard_normal(4).astype(np.float32)
        if "alibi" in flags:
            kw["alibi_slopes"] = np.outer(1 + np.arange(len(lens_q)), alibi_slopes(4)).astype(np.float32)
        check = run_varlen_checked(kernel_for(pin, causal, flags), lens_q, lens_k, 4, 2, seed=9, **kw)
        assert check.passed, f"{pin[0]} {flags} causal={causal}: {check.describe()}"


# ------------------------------------------------------------------ the API, through PyTorch
@pytest.mark.parametrize("alignment", ["bottom_right", "top_left"])
def test_attention_varlen_api(torch_cuda, alignment):
    import autoflash
    from autoflash.ops.reference import compare, reference_attention

    torch = torch_cuda
    lens_q, lens_k = BATCHES[0]
    cq, ck = cu_seqlens(lens_q), cu_seqlens(lens_k)
    g = torch.Generator(device="cuda").manual_seed(0)
    # q as a (total, H, D) view of a (total, 2H, D) buffer: strided heads read in place
    q = torch.randn(int(cq[-1]), 16, 128, device="cuda", generator=g).to(torch.bfloat16)[:, :8]
    k, v = (torch.randn(int(ck[-1]), 2, 128, device="cuda", generator=g).to(torch.bfloat16) for _ in range(2))
    sinks = torch.randn(8, device="cuda", generator=g)
    out, lse = autoflash.attention_varlen(
        q, k, v, torch.tensor(cq, device="cuda"), torch.tensor(ck, device="cuda"), max(lens_q), max(lens_k),
        causal=True, causal_alignment=alignment, window_size=(100, 0), sinks=sinks, return_lse=True)
    assert out.shape == q.shape and lse.shape == (8, int(cq[-1])) and out.is_contiguous()
    q64, k64, v64 = (t.double().cpu().numpy() for t in (q, k, v))
    ref, ref_lse = np.zeros(q64.shape), np.zeros((8, q64.shape[0]))
    for b in range(len(lens_q)):
        qs, ks = slice(cq[b], cq[b + 1]), slice(ck[b], ck[b + 1])
        o, l = reference_attention(q64[qs].transpose(1, 0, 2)[None], k64[ks].transpose(1, 0, 2)[None],
                                   v64[ks].transpose(1, 0, 2)[None], causal=True, window=(100, 0),
                                   causal_offset=lens_k[b] - lens_q[b] if alignment == "bottom_right" else 0,
                                   sinks=sinks.double().cpu().numpy())
        ref[qs], ref_lse[:, qs] = o[0].transpose(1, 0, 2), l[0]
    check = compare(out.double().cpu().numpy(), ref, "bf16", lse.double().cpu().numpy(), ref_lse)
    assert check.passed, check.describe()


def test_attention_varlen_refuses_bad_cu_seqlens(torch_cuda):
    import autoflash
    from autoflash.serve.errors import InputError

    torch = torch_cuda
    q = torch.randn(10, 4, 64, device="cuda", dtype=torch.bfloat16)
    good = torch.tensor([0, 4, 10], device="cuda", dtype=torch.int32)
    cases = [(torch.tensor([0, 4, 9], device="cuda", dtype=torch.int32), "must equal the packed token count 10"),
             (torch.tensor([0, 6, 4], device="cuda", dtype=torch.int32), "must not decrease"),
             (torch.tensor([0, 4, 10], device="cuda", dtype=torch.int64), "must be int32"),
             (torch.tensor([0, 4, 10], dtype=torch.int32), "is on cpu")]
    for bad, fragment in cases:
        with pytest.raises(InputError, match=fragment):
            autoflash.attention_varlen(q, q, q, bad, good, 6, 6)
    with pytest.raises(InputError, match="more than max_seqlen_k = 5"):
        autoflash.attention_varlen(q, q, q, good, good, 6, 5)
    with pytest.raises(InputError, match=r"seqused_k\[1\] = 7 is outside 0..6"):
        autoflash.attention_varlen(q, q, q, good, good, 6, 6,
                                   seqused_k=torch.tensor([4, 7], device="cuda", dtype=torch.int32))


def test_attention_with_seqused_k_is_chunked_prefill(torch_cuda):
    """New 64-token chunks against caches filled to different lengths: bottom-right per sequence."""
    from autoflash.ops.reference import compare, reference_attention
    from autoflash.serve.varlen import attention_with_seqused_k

    torch = torch_cuda
    g = torch.Generator(device="cuda").manual_seed(4)
    q = torch.randn(3, 64, 8, 128, device="cuda", generator=g).to(torch.bfloat16).transpose(1, 2)  # (B, H, N, D) view
    cache_k, cache_v = (torch.randn(3, 1024, 2, 128, device="cuda", generator=g).to(torch.bfloat16) for _ in range(2))
    used = [64, 700, 1024]
    out, lse = attention_with_seqused_k(q, cache_k.transpose(1, 2), cache_v.transpose(1, 2),
                                        torch.tensor(used, device="cuda", dtype=torch.int32), causal=True,
                                        return_lse=True)
    for b, n in enumerate(used):
        as64 = lambda t: t[b:b + 1].double().cpu().numpy()  # noqa: E731
        ref, ref_lse = reference_attention(as64(q), as64(cache_k.transpose(1, 2))[:, :, :n],
                                           as64(cache_v.transpose(1, 2))[:, :, :n], causal=True, causal_offset=n - 64)
        check = compare(out[b:b + 1].double().cpu().numpy(), ref, "bf16", lse[b:b + 1].double().cpu().numpy(), ref_lse)
        assert check.passed, f"sequence {b} ({n} cached keys): {check.describe()}"


def _capture(torch, fn):
    """fn captured once in a CUDA graph (after a warm-up outside it); returns (graph, its output)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


def test_attention_with_seqused_k_under_graph_capture(torch_cuda):
    """Captured once, replayed with new lengths: the kernel reads seqused_k at replay, and values the
    host never saw (negative, past the cache) are clamped to [0, seq_k] on the device."""
    from autoflash.ops.reference import compare, reference_attention
    from autoflash.serve.varlen import attention_with_seqused_k

    torch = torch_cuda
    g = torch.Generator(device="cuda").manual_seed(5)
    q = torch.randn(3, 8, 64, 128, device="cuda", generator=g).to(torch.bfloat16)
    k, v = (torch.randn(3, 2, 1024, 128, device="cuda", generator=g).to(torch.bfloat16) for _ in range(2))
    used = torch.tensor([64, 64, 64], device="cuda", dtype=torch.int32)
    graph, (out, lse) = _capture(torch, lambda: attention_with_seqused_k(q, k, v, used, causal=True, return_lse=True))
    for values, clamped in (([64, 700, 1024], [64, 700, 1024]), ([-5, 10**6, 300], [0, 1024, 300])):
        used.copy_(torch.tensor(values, dtype=torch.int32))
        graph.replay()
        torch.cuda.synchronize()
        for b, n in enumerate(clamped):
            if n == 0:  # no key for any row: O = 0, LSE = -inf
                assert bool((out[b] == 0).all()) and bool(torch.isneginf(lse[b]).all()), f"sequence {b}"
                continue
            as64 = lambda t: t[b:b + 1].double().cpu().numpy()  # noqa: E731
            ref, ref_lse = reference_attention(as64(q), as64(k)[:, :, :n], as64(v)[:, :, :n], causal=True,
                                               causal_offset=n - 64)
            check = compare(out[b:b + 1].double().cpu().numpy(), ref, "bf16", lse[b:b + 1].double().cpu().numpy(),
                            ref_lse)
            assert check.passed, f"seqused_k {values}, sequence {b}: {check.describe()}"


def test_prepare_varlen_replays_in_a_graph(torch_cuda):
    """prepare_varlen's launch captured in a CUDA graph gives attention_varlen's output bit for bit."""
    import autoflash
    from autoflash.serve.varlen import prepare_varlen

    torch = torch_cuda
    lens = [700, 1, 129, 2048]
    cu = torch.tensor(cu_seqlens(lens), device="cuda")
    g = torch.Generator(device="cuda").manual_seed(6)
    q, k, v = (torch.randn(sum(lens), 8, 128, device="cuda", generator=g).to(torch.bfloat16) for _ in range(3))
    launch = prepare_varlen(q, k, v, cu, cu, 2048, 2048, causal=True)
    graph, out = _capture(torch, launch)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, autoflash.attention_varlen(q, k, v, cu, cu, 2048, 2048, causal=True))
