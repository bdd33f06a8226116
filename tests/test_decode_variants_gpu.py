"""Attention variants in split-KV decode on a GPU (issue 17 on decode): autoflash.attention_with_kvcache
with window_size / softcap / sinks / alibi_slopes against the float64 decode reference (checked on
the CPU against ops/reference.py's reference_attention, tests/test_decode_variants.py): each variant,
combinations, contiguous and paged caches, Nq 1 and 4, GQA 32/8 and MQA 8/1, lengths 0, 1, partial
and full, one split, several (the sink joins the merged denominator once) and the fused merge; a
4096-key-capacity cache with a 100-key window whose keys before the window hold NaN (a kernel that
read them would return NaN); refusals of bad variant arguments before launch."""
import math

import numpy as np
import pytest

pytestmark = pytest.mark.gpu
torch = pytest.importorskip("torch")

import autoflash  # noqa: E402
from autoflash.ops.decode_launch import check_output, reference_decode, shuffled_pages  # noqa: E402
from autoflash.serve.decode import decode_attention  # noqa: E402

CAPACITY, PAGE = 2048, 16
VARIANTS = {
    "window": dict(window_size=(100, -1)),
    "softcap": dict(softcap=5.0),
    "sinks": dict(sinks=True),
    "alibi": dict(alibi_slopes="head"),
    "window+sinks": dict(window_size=(100, -1), sinks=True),
    "all": dict(window_size=(100, -1), softcap=5.0, sinks=True, alibi_slopes="batch"),
}


def f64(x):
    return x.double().cpu().numpy()


def make(batch, seq_q, heads_q, heads_kv, d=128, seed=0, q_scale=1.0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(batch, seq_q, heads_q, d, generator=g, device="cuda", dtype=torch.bfloat16) * q_scale
    k = torch.randn(batch, CAPACITY, heads_kv, d, generator=g, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(batch, CAPACITY, heads_kv, d, generator=g, device="cuda", dtype=torch.bfloat16)
    return q, k, v


def variant_args(spec: dict, batch: int, heads_q: int, seed: int = 0) -> dict:
    """The call's keyword arguments: sinks spread over [-3, 3] with head 0 -inf and the last +8;
    ALiBi slopes geometric per head ("head") or scaled per batch entry ("batch")."""
    rng = np.random.default_rng(seed)
    out = {k: v for k, v in spec.items() if k in ("window_size", "softcap")}
    if spec.get("sinks"):
        s = rng.uniform(-3, 3, heads_q)
        s[0], s[-1] = -np.inf, 8.0
        out["sinks"] = torch.tensor(s, dtype=torch.float32, device="cuda")
    if spec.get("alibi_slopes"):
        slopes = 2.0 ** (-8.0 * (np.arange(heads_q) + 1) / heads_q)
        if spec["alibi_slopes"] == "batch":
            slopes = slopes[None, :] * rng.uniform(0.5, 1.5, (batch, 1))
        out["alibi_slopes"] = torch.tensor(slopes, dtype=torch.float32, device="cuda")
    return out


def reference(q, k, v, lengths, causal, args):
    window = args.get("window_size", (-1, -1))
    if causal and window[0] >= 0:
        window = (window[0], 0)  # flash-attn's rule: causal forces the right bound to 0
    sinks, slopes = args.get("sinks"), args.get("alibi_slopes")
    return reference_decode(f64(q), f64(k), f64(v), lengths, causal=causal, scale=1 / math.sqrt(q.shape[-1]),
                            window=window, softcap=args.get("softcap", 0.0),
                            sinks=None if sinks is None else sinks.cpu().numpy(),
                            alibi_slopes=None if slopes is None else slopes.cpu().numpy())


def paged(k, v, seed=0):
    batch, max_pages = k.shape[0], CAPACITY // PAGE
    num_pages = batch * max_pages + 2
    table = torch.from_numpy(shuffled_pages(batch, max_pages, num_pages, seed)).cuda()
    pages = []
    for x in (k, v):
        p = torch.zeros(num_pages, PAGE, *x.shape[2:], device="cuda", dtype=x.dtype)
        p[table.reshape(-1).long()] = x.reshape(batch * max_pages, PAGE, *x.shape[2:])
        pages.append(p)
    return pages[0], pages[1], table


def run_and_check(q, k, v, lengths, causal, args, is_paged, **kw):
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    if is_paged:
        kp, vp, table = paged(k, v)
        o, lse = autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=causal,
                                                  return_lse=True, **args, **kw)
    else:
        o, lse = autoflash.attention_with_kvcache(q, k, v, seqlens, causal=causal, return_lse=True, **args, **kw)
    torch.cuda.synchronize()
    ref, ref_lse = reference(q, k, v, lengths, causal, args)
    result = check_output(f64(o), ref, f64(lse), ref_lse, "bf16")
    assert result.passed, result.describe()


@pytest.mark.parametrize("name", list(VARIANTS))
@pytest.mark.parametrize("is_paged", [False, True], ids=["contiguous", "paged"])
@pytest.mark.parametrize("seq_q", [1, 4])
@pytest.mark.parametrize("heads_q, heads_kv", [(32, 8), (8, 1)], ids=["gqa32/8", "mqa8/1"])
def test_each_variant_against_float64(name, is_paged, seq_q, heads_q, heads_kv):
    batch = 4
    q, k, v = make(batch, seq_q, heads_q, heads_kv, q_scale=3.0 if "softcap" in VARIANTS[name] else 1.0)
    args = variant_args(VARIANTS[name], batch, heads_q)
    run_and_check(q, k, v, [0, 1, 1337, CAPACITY], True, args, is_paged)


@pytest.mark.parametrize("num_splits", [1, 2, 7, 64])
def test_sinks_join_the_merged_denominator_once_whatever_the_split_count(num_splits):
    q, k, v = make(2, 2, 16, 2, seed=3)
    args = variant_args(dict(sinks=True, alibi_slopes="head"), 2, 16)
    run_and_check(q, k, v, [CAPACITY, 700], True, args, False, num_splits=num_splits)


def test_the_fused_merge_takes_the_sink_too():
    from autoflash.kernels.device import device_arch
    from autoflash.ops.decode import DECODE

    arch = device_arch(torch.cuda.current_device())[0]
    cfg = DECODE.default(arch, {"dtype": "bf16", "head_dim": 128, "m_tiles": 1, "sinks": True, "window": True})
    q, k, v = make(2, 1, 8, 2, seed=4)
    args = variant_args(dict(sinks=True, window_size=(300, -1)), 2, 8)
    seqlens = torch.tensor([CAPACITY, 999], dtype=torch.int32, device="cuda")
    o, lse = decode_attention(q, k, v, seqlens, causal=True, return_lse=True, num_splits=4,
                              config=cfg.replace(fused_combine=True), **args)
    ref, ref_lse = reference(q, k, v, [CAPACITY, 999], True, args)
    result = check_output(f64(o), ref, f64(lse), ref_lse, "bf16")
    assert result.passed, result.describe()


@pytest.mark.parametrize("seq_q", [1, 4])
def test_a_short_window_never_reads_the_keys_before_it(seq_q):
    """Keys before the window (rounded down to 16, where the kernel starts) hold NaN: any read of
    them (a V row times P = 0 is still NaN) would poison the output."""
    batch, left = 3, 100
    q, k, v = make(batch, seq_q, 32, 8, seed=5)
    lengths = [CAPACITY, 1500, 90]
    kn, vn = k.clone(), v.clone()
    for b, n in enumerate(lengths):
        lo = max(0, n - seq_q - left) // 16 * 16
        kn[b, :lo] = float("nan")
        vn[b, :lo] = float("nan")
    args = dict(window_size=(left, 0))
    seqlens = torch.tensor(lengths, dtype=torch.int32, device="cuda")
    for splits in (None, 1, 3):
        o, lse = autoflash.attention_with_kvcache(q, kn, vn, seqlens, causal=True, return_lse=True,
                                                  num_splits=splits, **args)
        ref, ref_lse = reference(q, k, v, lengths, True, args)
        result = check_output(f64(o), ref, f64(lse), ref_lse, "bf16")
        assert result.passed, (splits, result.describe())


def test_window_without_causal_and_a_right_bound():
    q, k, v = make(2, 4, 8, 2, seed=6)
    run_and_check(q, k, v, [CAPACITY, 33], False, dict(window_size=(50, 2)), False)
    run_and_check(q, k, v, [CAPACITY, 33], False, dict(window_size=(0, 0)), True)


@pytest.mark.parametrize("bad, match", [
    (dict(window_size=(-2, 0)), "window_size left"),
    (dict(softcap=-1.0), "softcap"),
    (dict(sinks="float32"), "sinks"),
    (dict(alibi_slopes="wrong shape"), "alibi_slopes"),
])
def test_bad_variant_arguments_are_refused_before_launch(bad, match):
    q, k, v = make(1, 1, 8, 2)
    if bad.get("sinks") == "float32":
        bad = dict(sinks=torch.zeros(8, device="cuda", dtype=torch.float16))
    if bad.get("alibi_slopes") == "wrong shape":
        bad = dict(alibi_slopes=torch.zeros(3, device="cuda"))
    with pytest.raises(ValueError, match=match):
        autoflash.attention_with_kvcache(q, k, v, **bad)


def test_graph_replay_with_new_lengths_under_a_window_and_sinks():
    """The split count comes from shapes and the window's width (host values fixed at capture); each
    sequence's window start comes from its cache_seqlens on the device, so replays stay correct."""
    q, k, v = make(3, 2, 16, 4, seed=7)
    args = variant_args(dict(window_size=(200, -1), sinks=True, alibi_slopes="head"), 3, 16)
    seqlens = torch.tensor([CAPACITY, 700, 1], dtype=torch.int32, device="cuda")
    run = dict(causal=True, return_lse=True, **args)
    autoflash.attention_with_kvcache(q, k, v, seqlens, **run)  # compile and plan outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        o, lse = autoflash.attention_with_kvcache(q, k, v, seqlens, **run)
    for lengths in ([CAPACITY, 700, 1], [0, 1999, 201], [5, 16, 17]):
        seqlens.copy_(torch.tensor(lengths, dtype=torch.int32))
        graph.replay()
        torch.cuda.synchronize()
        ref, ref_lse = reference(q, k, v, lengths, True, args)
        result = check_output(f64(o), ref, f64(lse), ref_lse, "bf16")
        assert result.passed, (lengths, result.describe())


@pytest.mark.parametrize("paged_key", [False, True])
def test_the_tuners_checked_run_and_timed_launch_of_a_variant_key(paged_key):
    from autoflash.kernels.compile import compile_kernel
    from autoflash.kernels.device import device_arch
    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.ops.decode import DECODE

    arch = device_arch(torch.cuda.current_device())[0]
    key = {"dtype": "bf16", "head_dim": 128, "m_tiles": 1, "paged": paged_key, "window": True, "softcap": True,
           "sinks": True, "alibi": True}
    kernel = LoadedKernel(compile_kernel(DECODE.default(arch, key)))
    for problem in DECODE.check_problems(key) + DECODE.verify_problems(key, 2048):
        result = DECODE.verify(kernel, problem, seed=1)
        assert result.passed, (problem, result.describe())
    problem = DECODE.bench_problem(key, 8192, 1 << 18)
    DECODE.launcher(kernel, problem, DECODE.make_inputs(problem, "bf16", 0))()
    torch.cuda.synchronize()
