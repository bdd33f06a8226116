"""Serving prefill on the GPU (issue 15's bars), bf16, D 128, causal, in one run:

1. varlen prefill: a packed batch of 16 sequences of mixed lengths (128..8192 tokens, fixed seed)
   through autoflash.attention_varlen, against
   - autoflash's dense kernel on the same number of tokens (16 sequences of the mean length; bar: the
     varlen TFLOP/s >= 0.9x the dense TFLOP/s), and
   - SDPA's backends on the equivalent padded batch (16 x the longest length, is_causal: right
     padding leaves every real row's keys real; bar: >= 1.0x the best backend's time).
   TFLOP/s count the useful pairs: sum over sequences of L (L + 1) / 2 for varlen and padded SDPA.
2. chunked prefill: 256 new query tokens per sequence after a 1024-token cache (batch 4, 32 heads)
   through autoflash.attention_with_kvcache (bottom-right causal over the cache in place), against
   SDPA with the explicit bottom-right mask (torch's causal_lower_right) on (B, H, N, D) copies
   (bar: >= 1.0x the best backend that accepts it).

Times: CUDA events, median of many calls after warm-up (benchmarks/common.time_ms), rounds
interleaved (every implementation once per round); the table gives the median over rounds and
the spread (max - min) / median.

  python benchmarks/bench_varlen.py [--rounds 5] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.nn.attention.bias import causal_lower_right  # noqa: E402

import autoflash  # noqa: E402
from common import time_ms  # noqa: E402

SDPA = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION}
HEADS, D, DT = 16, 128, torch.bfloat16


def sdpa(backend, q, k, v, **kw):
    def run():
        with sdpa_kernel(SDPA[backend]):
            return F.scaled_dot_product_attention(q, k, v, **kw)
    return run


def varlen_case(lengths: list[int]) -> tuple[dict, float]:
    """Implementations of the varlen prefill problem, and its useful FLOPs."""
    b, total, longest = len(lengths), sum(lengths), max(lengths)
    q, k, v = (torch.randn(total, HEADS, D, device="cuda", dtype=DT) for _ in range(3))
    cu = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int32, device="cuda")
    mean = total // b
    dq, dk, dv = (torch.randn(b, HEADS, mean, D, device="cuda", dtype=DT) for _ in range(3))
    pq, pk, pv = (torch.zeros(b, HEADS, longest, D, device="cuda", dtype=DT) for _ in range(3))
    starts = cu.tolist()
    for i, (s, n) in enumerate(zip(starts, lengths)):  # right padding
        for dst, src in ((pq, q), (pk, k), (pv, v)):
            dst[i, :, :n] = src[s:s + n].transpose(0, 1)
    impls = {"varlen": lambda: autoflash.attention_varlen(q, k, v, cu, cu, longest, longest, causal=True),
             "dense": lambda: autoflash.attention(dq, dk, dv, causal=True)}
    impls.update({f"padded {n}": sdpa(n, pq, pk, pv, is_causal=True) for n in SDPA})
    flops = {name: 2.0 * HEADS * D * sum(n * (n + 1) for n in lengths) for name in impls}
    flops["dense"] = 2.0 * b * HEADS * D * mean * (mean + 1)
    check = (impls["varlen"]()[starts[3]:starts[4]].transpose(0, 1).float()
             - F.scaled_dot_product_attention(pq[3:4, :, :lengths[3]], pk[3:4, :, :lengths[3]],
                                              pv[3:4, :, :lengths[3]], is_causal=True)[0].float())
    print(f"varlen vs SDPA on sequence 3 (length {lengths[3]}): max abs diff {check.abs().max().item():.3e}")
    return impls, flops


def chunked_case(batch=4, heads=32, cache=1024, chunk=256) -> tuple[dict, dict]:
    n = cache + chunk
    q = torch.randn(batch, chunk, heads, D, device="cuda", dtype=DT)
    k, v = (torch.randn(batch, n, heads, D, device="cuda", dtype=DT) for _ in range(2))
    seqlens = torch.full((batch,), n, dtype=torch.int32, device="cuda")
    tq, tk, tv = (x.transpose(1, 2).contiguous() for x in (q, k, v))
    mask = causal_lower_right(chunk, n)
    impls = {"ours": lambda: autoflash.attention_with_kvcache(q, k, v, seqlens, causal=True)}
    impls.update({f"sdpa {name}": sdpa(name, tq, tk, tv, attn_mask=mask) for name in SDPA})
    pairs = sum(min(n, cache + i + 1) for i in range(chunk))
    flops = {name: 4.0 * batch * heads * D * pairs for name in impls}
    diff = (impls["ours"]().transpose(1, 2).float() - F.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask).float())
    print(f"chunked prefill vs SDPA (bottom-right mask): max abs diff {diff.abs().max().item():.3e}")
    return impls, flops


def measure(impls: dict, flops: dict, rounds: int) -> dict:
    times = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            if times[name] is None:
                continue
            try:
                times[name].append(time_ms(fn, reps=20, max_seconds=1.0))
            except RuntimeError as exc:  # a backend refusing the problem: n/a, with why
                print(f"  {name}: n/a ({str(exc).splitlines()[0][:100]})")
                times[name] = None
    return {name: dict(ms=statistics.median(ts), tflops=flops[name] / (statistics.median(ts) * 1e-3) / 1e12,
                       spread=(max(ts) - min(ts)) / statistics.median(ts))
            for name, ts in times.items() if ts}


def table(title: str, r: dict, ours: str) -> None:
    print(f"\n{title}\n| implementation | ms | TFLOP/s (useful pairs) | spread | ours' speed-up |\n|---|---|---|---|---|")
    for name, m in r.items():
        print(f"| {name} | {m['ms']:.3f} | {m['tflops']:.0f} | {m['spread']:.1%} | {m['ms'] / r[ours]['ms']:.2f}x |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "."), "bench_varlen.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    lengths = np.random.default_rng(0).integers(128, 8193, 16).tolist()
    print(f"{torch.cuda.get_device_name()}, bf16, D {D}, causal; varlen lengths {lengths}")
    varlen = measure(*varlen_case(lengths), args.rounds)
    chunked = measure(*chunked_case(), args.rounds)
    table(f"varlen prefill: 16 sequences, {sum(lengths)} tokens, {HEADS} heads", varlen, "varlen")
    table("chunked prefill: batch 4, 32 heads, 256 new tokens after 1024 cached", chunked, "ours")
    best_padded = min(m["ms"] for n, m in varlen.items() if n.startswith("padded"))
    best_sdpa = min(m["ms"] for n, m in chunked.items() if n.startswith("sdpa"))
    print(f"\nbars: varlen/dense TFLOP/s {varlen['varlen']['tflops'] / varlen['dense']['tflops']:.2f} (>= 0.9); "
          f"varlen vs best padded SDPA {best_padded / varlen['varlen']['ms']:.2f}x (>= 1.0); "
          f"chunked prefill vs best SDPA {best_sdpa / chunked['ours']['ms']:.2f}x (>= 1.0)")
    Path(args.json).write_text(json.dumps(dict(device=torch.cuda.get_device_name(), lengths=lengths,
                                               varlen=varlen, chunked=chunked), indent=1))


if __name__ == "__main__":
    main()
