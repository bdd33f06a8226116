"""Attention variants (issue 17) on one GPU in one run: autoflash vs FlexAttention vs SDPA.

For each head dim and sequence length (bf16, heads 16, batch * N = --tokens):
  window   causal sliding window, window_size=(1024, 0)  (each query sees itself and 1024 keys back)
  softcap  non-causal, softcap 30                          (Gemma 2)
  sinks    non-causal, one sink logit per head             (gpt-oss)
  alibi    causal, ALiBi slopes 2^(-8 (h+1) / H)           (BLOOM, MPT)
each timed as
  autoflash   autoflash.attention(..., window_size / softcap / sinks / alibi_slopes)
  flex        torch.compile'd flex_attention with score_mod / block_mask (sinks: one extra key of
              zero value whose score_mod is the sink, the only way flex's softmax gets the term)
  sdpa        torch SDPA with an explicit mask where one expresses the variant (window: boolean
              mask; alibi: additive bias, N <= 4096 only, its N x N x H bias is too big beyond)
and autoflash's own plain kernel (non-causal or causal, as the variant) for the per-visible-pair bar.
TFLOP/s count 4 * D per visible (query, key) pair (window and causal masks counted exactly; sinks
add none). CUDA events after warm-up, the median of --reps per round, rounds interleaved across
methods; the table gives the median over rounds and the spread (max/min - 1). Flex's first call
(its compilation) is timed apart.

    python benchmarks/bench_variants.py --head-dims 128 64 --seqs 4096 16384 --json out.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import autoflash

import common  # noqa: E402  (benchmarks/common.py: run as python benchmarks/bench_variants.py)
import graph_timing  # noqa: E402  (benchmarks/graph_timing.py)

WINDOW_LEFT = 1024
SOFTCAP = 30.0
HEADS = 16
VARIANTS = ("window", "softcap", "sinks", "alibi")
CAUSAL = {"window": True, "softcap": False, "sinks": False, "alibi": True}


def visible_pairs(n: int, causal: bool, left: int = -1) -> int:
    """(query, key) pairs visible in one N x N head: all, causal, or causal with a left window."""
    if not causal:
        return n * n
    if left < 0:
        return n * (n + 1) // 2
    full = min(n, left + 1)  # rows from `left` on see left + 1 keys, the first ones i + 1
    return full * (full + 1) // 2 + (n - full) * (left + 1)


def alibi_slopes(heads: int) -> torch.Tensor:
    return 2.0 ** (-8.0 * torch.arange(1, heads + 1, dtype=torch.float32) / heads)


def time_methods(runners: dict, rounds: int, reps: int, graph: bool) -> dict:
    """name -> (ms per call, max/min of the round medians - 1), methods interleaved round by round.
    graph: each method captured `reps` times in one CUDA graph and replayed (kernel level: no launch
    gaps, graph_timing.Impl); else reps CUDA-event timings of single eager calls (warm-up done by the caller)."""
    if graph:
        impls = [graph_timing.Impl(name, fn, calls=reps) for name, fn in runners.items()]
        for impl in impls:
            try:
                impl.capture()
            except Exception as exc:  # not capturable: that method has no number, and the row says why
                print(f"  {impl.name}: not captured in a CUDA graph ({type(exc).__name__}: {str(exc)[:120]})")
                impl.graph = None
        for _ in range(rounds):
            for impl in impls:
                impl.replay()
        out = {impl.name: (1e3 * statistics.median(impl.times), max(impl.times) / min(impl.times) - 1)
               for impl in impls if impl.times}
        del impls
        torch.cuda.empty_cache()
        return out
    times = {name: [] for name in runners}
    for _ in range(rounds):  # interleaved: every method once per round
        for name, fn in runners.items():
            times[name].append(statistics.median(common.event_times(fn, reps)))
    return {name: (statistics.median(ts), max(ts) / min(ts) - 1) for name, ts in times.items()}


# ---------------------------------------------------------------------------- the runners
def autoflash_runner(variant: str, q, k, v, slopes, sinks, plain: bool = False):
    """autoflash.attention with the variant's arguments (plain: its causality without the variant)."""
    causal = CAUSAL[variant]
    variant = None if plain else variant
    kw = {}
    if variant == "window":
        kw["window_size"] = (WINDOW_LEFT, 0)
    elif variant == "softcap":
        kw["softcap"] = SOFTCAP
    elif variant == "sinks":
        kw["sinks"] = sinks
    elif variant == "alibi":
        kw["alibi_slopes"] = slopes
    return lambda: autoflash.attention(q, k, v, causal=causal, **kw)


def direct_runner(variant: str, q, k, v, slopes, sinks, plain: bool = False):
    """The same kernel launched without autoflash.attention (forward_launch.launch on the arch's
    default config for the key; plain: the variant's causality without the variant): used, and
    said so in the row, when attention() raises."""
    from autoflash.kernels.device import device_arch
    from autoflash.kernels.registry import TEMPLATES
    from autoflash.ops.forward_base import VARIANT_FLAGS, Problem
    from autoflash.ops.forward_launch import launch
    from autoflash.serve.api import loaded_kernel

    causal = CAUSAL[variant]
    variant = None if plain else variant
    b, h, n, d = q.shape
    fields = {"window": dict(window_left=WINDOW_LEFT, window_right=0), "softcap": dict(softcap=SOFTCAP),
              "sinks": dict(sinks=sinks.data_ptr()), "alibi": dict(alibi_slopes=slopes.data_ptr())}.get(variant, {})
    p = Problem(b, h, k.shape[1], n, k.shape[2], d, causal, **fields)
    arch = "sm_90a" if device_arch(0)[0] in ("sm_90", "sm_90a") else device_arch(0)[0]
    template = TEMPLATES["flash_fwd_wgmma" if arch == "sm_90a" else "flash_fwd_mma"]
    flags = {f: f == variant for f in VARIANT_FLAGS}
    kernel = loaded_kernel(template.default(arch, {"dtype": "bf16", "head_dim": d, "causal": causal, **flags}), 0)
    out = torch.empty_like(q)
    scale = d ** -0.5
    return lambda: launch(kernel, q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), 0, p, scale,
                          torch.cuda.current_stream().cuda_stream) or out


def flex_runner(variant: str, q, k, v, slopes, sinks, compiled):
    from torch.nn.attention.flex_attention import create_block_mask

    n = q.shape[2]

    def causal_mask(b, h, qi, ki):
        return qi >= ki

    def window_mask(b, h, qi, ki):
        return (qi >= ki) & (qi - ki <= WINDOW_LEFT)

    if variant == "window":
        mask = create_block_mask(window_mask, None, None, n, n, device="cuda")
        return lambda: compiled(q, k, v, block_mask=mask)
    if variant == "softcap":
        def softcap(score, b, h, qi, ki):
            return SOFTCAP * torch.tanh(score / SOFTCAP)
        return lambda: compiled(q, k, v, score_mod=softcap)
    if variant == "alibi":
        mask = create_block_mask(causal_mask, None, None, n, n, device="cuda")

        def alibi(score, b, h, qi, ki):
            return score - slopes[h] * (qi - ki).abs()
        return lambda: compiled(q, k, v, score_mod=alibi, block_mask=mask)
    # sinks: one extra key with value 0 whose score is the head's sink logit
    zeros = torch.zeros_like(k[:, :, :1])
    k1, v1 = torch.cat([k, zeros], dim=2), torch.cat([v, zeros], dim=2)

    def sink(score, b, h, qi, ki):
        return torch.where(ki == n, sinks[h], score)
    return lambda: compiled(q, k1, v1, score_mod=sink)


def sdpa_runner(variant: str, q, k, v, slopes):
    """SDPA with an explicit mask, or None where no mask expresses the variant (or it is too big)."""
    import torch.nn.functional as F

    n = q.shape[2]
    i = torch.arange(n, device="cuda")
    dist = i[:, None] - i[None, :]
    if variant == "window":
        mask = (dist >= 0) & (dist <= WINDOW_LEFT)
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if variant == "alibi" and n <= 4096:
        bias = -slopes.to("cuda")[:, None, None] * dist.abs()[None].float()
        bias = bias.masked_fill(dist[None] < 0, float("-inf")).to(q.dtype)[None]
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    return None


# ---------------------------------------------------------------------------- one shape
def bench_shape(d: int, n: int, tokens: int, rounds: int, reps: int, flex, variants=VARIANTS,
                graph: bool = False) -> list[dict]:
    batch = max(1, tokens // n)
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(batch, HEADS, n, d, device="cuda", dtype=torch.bfloat16, generator=gen) for _ in range(3))
    slopes = alibi_slopes(HEADS).cuda()
    sinks = torch.randn(HEADS, device="cuda", generator=gen)  # logits of the order of the scores
    rows = []
    for variant in variants:
        causal = CAUSAL[variant]
        pairs = visible_pairs(n, causal, WINDOW_LEFT if variant == "window" else -1)
        runners = {"autoflash": autoflash_runner(variant, q, k, v, slopes, sinks),
                   "plain": autoflash_runner(variant, q, k, v, slopes, sinks, plain=True)}
        sdpa = sdpa_runner(variant, q, k, v, slopes)
        if sdpa is not None:
            runners["sdpa"] = sdpa
        row = {"variant": variant, "head_dim": d, "seq": n, "batch": batch, "heads": HEADS, "causal": causal,
               "visible_pairs": pairs}
        if flex is not None:
            runners["flex"] = flex_runner(variant, q, k, v, slopes, sinks, flex)
        errors = {}
        for name in ("autoflash", "plain"):  # attention() failing: time the same kernels launched directly
            try:
                runners[name]()
            except Exception as exc:
                errors[name + "_api"] = f"{type(exc).__name__}: {str(exc)[:160]}"
                runners[name] = direct_runner(variant, q, k, v, slopes, sinks, plain=name == "plain")
                row[name + "_path"] = "direct launch, default config"
        for name, fn in list(runners.items()):  # first call: compilation (timed for flex), then warm-up
            try:
                t0 = time.perf_counter()
                fn()
                torch.cuda.synchronize()
                row[f"{name}_first_s"] = round(time.perf_counter() - t0, 2)
                for _ in range(3):
                    fn()
            except Exception as exc:  # keep the other methods' numbers; say why this one has none
                errors[name] = f"{type(exc).__name__}: {str(exc)[:160]}"
                del runners[name]
        torch.cuda.synchronize()
        if "flex" in runners:  # same problem, same answer: the largest difference of the outputs
            out = runners["autoflash"]()
            row["max_abs_diff_vs_flex"] = float((out.float() - runners["flex"]().float()).abs().max())
        flops = 4.0 * batch * HEADS * d * pairs
        for name, (ms, spread) in time_methods(runners, rounds, reps, graph).items():
            row[f"{name}_ms"] = ms
            row[f"{name}_tflops"] = flops / (ms * 1e-3) / 1e12
            row[f"{name}_spread"] = spread
        plain_pairs = visible_pairs(n, causal)
        if "plain_ms" in row:  # the plain kernel's own rate per visible pair
            row["plain_tflops"] = 4.0 * batch * HEADS * d * plain_pairs / (row["plain_ms"] * 1e-3) / 1e12
        if errors:
            row["errors"] = errors
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def format_table(rows: list[dict]) -> str:
    head = (f"{'variant':8} {'D':>4} {'N':>6} {'autoflash':>9} {'plain':>7} {'flex':>7} {'sdpa':>7} "
            f"{'vs flex':>8} {'vs plain':>8} {'spread':>7} {'flex 1st s':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        def t(name):
            return f"{r[name + '_tflops']:7.1f}" if name + "_tflops" in r else f"{'-':>7}"
        af = r.get("autoflash_tflops")
        vs_flex = f"{af / r['flex_tflops']:7.2f}x" if af and r.get("flex_tflops") else f"{'-':>8}"
        vs_plain = f"{af / r['plain_tflops']:7.2f}x" if af and r.get("plain_tflops") else f"{'-':>8}"
        spread = f"{100 * r['autoflash_spread']:6.1f}%" if "autoflash_spread" in r else f"{'-':>7}"
        lines.append(f"{r['variant']:8} {r['head_dim']:4d} {r['seq']:6d} {t('autoflash'):>9} {t('plain')} {t('flex')} "
                     f"{t('sdpa')} {vs_flex} {vs_plain} {spread} {r.get('flex_first_s', '-'):>10}")
    lines.append("TFLOP/s per visible (query, key) pair, bf16; vs flex / vs plain: autoflash's ratio "
                 "(bars: >= 1.5x flex, >= 0.9x plain); spread: autoflash's max/min over rounds - 1.")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--head-dims", type=int, nargs="+", default=[128, 64])
    ap.add_argument("--seqs", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--tokens", type=int, default=32768, help="batch * N per shape")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--no-flex", action="store_true", help="skip FlexAttention (its compilation takes minutes)")
    ap.add_argument("--graph", action="store_true",
                    help="kernel level: time CUDA-graph replays of --reps calls (default: single eager calls)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    flex = None
    if not args.no_flex:
        from torch.nn.attention.flex_attention import flex_attention

        flex = torch.compile(flex_attention, dynamic=False)
    rows = []
    for d in args.head_dims:
        for n in args.seqs:
            rows += bench_shape(d, n, args.tokens, args.rounds, args.reps, flex, args.variants, args.graph)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
