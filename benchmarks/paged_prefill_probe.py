"""Chunked prefill on a paged cache at bench_kvcache's shape (batch 4, 32 heads, D 128, bf16, 256 new
tokens after 1024 cached, causal bottom-right), kernel times by CUDA-graph replay in interleaved rounds
(benchmarks/graph_timing.py): the paged path as served (pages 16 and 64, shuffled), the same path with a
few flash_fwd_wgmma paged tiles pinned (which of tile and ring depth matter), the contiguous cache and
SDPA cuDNN with an explicit bottom-right mask. Each paged row is checked against the contiguous one first.

    PYTHONPATH=$PWD python3 benchmarks/paged_prefill_probe.py [--rounds 10] [--compile-only]
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoflash.kernels.registry import TEMPLATES  # noqa: E402

WG = TEMPLATES["flash_fwd_wgmma"]
KEY = {"dtype": "bf16", "head_dim": 128, "causal": True}
# (block_m, block_n, stages) pinned beside the served pick; every one ptxas-clean paged (NVRTC 13.5)
TILES = [(128, 128, 3), (128, 64, 4), (128, 96, 3), (64, 128, 4)]
BATCH, HEADS, CACHE, CHUNK, D = 4, 32, 1024, 256, 128


def pinned_configs() -> dict:
    cfgs = {}
    for bm, bn, st in TILES:
        cfg = WG.config("sm_90a", KEY, block_m=bm, block_n=bn, warps=4 * (bm // 64 + 1), stages=st).replace(paged=True)
        if not cfg.problems():
            cfgs[f"wgmma {bm}x{bn} s{st}"] = cfg
    return cfgs


def _compile(cfg_dict):
    from autoflash.kernels.compile import compile_kernel
    from autoflash.ops.forward_base import KernelConfig

    cfg = KernelConfig.from_dict(cfg_dict)
    r = compile_kernel(cfg).report
    return f"{cfg.name}: {r.registers} regs, {r.spills} B spilled"


def compile_all() -> None:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(8, os.cpu_count())) as pool:
        for line in pool.map(_compile, [c.to_dict() for c in pinned_configs().values()]):
            print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--compile-only", action="store_true")
    args = ap.parse_args()
    if args.compile_only:
        compile_all()
        return
    import autoflash
    from autoflash.kernels.device import device_arch
    from autoflash.serve import kvcache
    from bench_kvcache import chunked_inputs, prefill_table, sdpa_call, shuffled
    from graph_timing import Impl, measure

    n = CACHE + CHUNK
    q, k, v, seqlens, (tq, tk, tv), mask, work = chunked_inputs(BATCH, HEADS, CACHE, CHUNK, D)
    arch, dev = device_arch(0)
    flags = tuple((f, False) for f in ("window", "softcap", "sinks", "alibi"))
    pick = kvcache.paged_config(arch, dev, "bf16", D, True, flags, n)
    print(f"served paged config: {pick.name}", flush=True)
    original = kvcache.paged_config

    def paged_call(kp, vp, table, cfg=None):
        def call():
            if cfg is not None:
                kvcache.paged_config = lambda *a: cfg
            try:
                return autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=True)
            finally:
                kvcache.paged_config = original
        return call

    ref = autoflash.attention_with_kvcache(q, k, v, seqlens, causal=True).float()
    impls = [Impl("contiguous cache", lambda: autoflash.attention_with_kvcache(q, k, v, seqlens, causal=True),
                  work=work)]
    for page in (16, 64):
        (kp, table), (vp, _) = shuffled(k, page), shuffled(v, page)
        runs = {f"paged {page}, served ({pick.block_m}x{pick.block_n} s{pick.stages})": paged_call(kp, vp, table)}
        if page == 16:
            runs.update({f"paged {page}, {label}": paged_call(kp, vp, table, cfg)
                         for label, cfg in pinned_configs().items()})
        for name, call in runs.items():
            err = (call().float() - ref).abs().max().item()
            print(f"{name}: max |paged - contiguous| = {err:.3g}", flush=True)
            impls.append(Impl(name, call, work=work))
    impls.append(Impl("sdpa cudnn (mask)", sdpa_call("cudnn", tq, tk, tv, attn_mask=mask), work=work))
    r = measure(impls, args.rounds)
    title = (f"chunked prefill on a paged cache: batch {BATCH}, {HEADS} heads, D {D}, {CHUNK} new tokens after "
             f"{CACHE} cached, causal bottom-right, bf16 ({args.rounds} interleaved rounds)")
    prefill_table(title, r, "contiguous cache")
    cudnn = r["sdpa cudnn (mask)"].get("s")
    if cudnn:
        print("\nvs sdpa cudnn (mask): " + ", ".join(f"{name} {cudnn / m['s']:.2f}x" for name, m in r.items()
                                                     if m.get("s") and not name.startswith("sdpa")))


if __name__ == "__main__":
    main()
