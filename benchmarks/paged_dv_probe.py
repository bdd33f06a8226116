"""GPU probe behind README's paged-prefill and Dqk != Dv rows (helper M's, extended by helper W).

--parts paged: chunked prefill on a paged cache (attention_with_kvcache with a block_table; pages of
  16 and 64, shuffled), each paged kernel (flash_fwd_wgmma, flash_fwd_mma) pinned, vs the contiguous
  cache, the same configs unpaged and SDPA (explicit bottom-right mask), interleaved rounds.
--parts dv: Dqk != Dv forward (bf16, B 4, H 16, N 4096; pairs 192/128, 128/64, 64/128), full and causal:
  autoflash's pick, flash_fwd_mma's default, flash_fwd_wgmma's default and (192/128) a few other wgmma
  tiles, beside SDPA's cuDNN / flash / efficient backends, interleaved rounds of CUDA-event timings
  (median over all calls, spread of the round medians). TFLOP/s = 2 (Dqk + Dv) B H N^2 (/2 causal).
--compile-only: compile the chosen parts' configs in a process pool (fills the kernel cache) and exit.

    PYTHONPATH=$PWD python benchmarks/paged_dv_probe.py --parts dv [--rounds 3] [--compile-only]
"""
import argparse
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoflash.kernels.registry import TEMPLATES  # noqa: E402

PAIRS = [(192, 128), (128, 64), (64, 128)]
B2, H2, N2 = 4, 16, 4096
# wgmma tiles tried beside the default at 192/128 (block_m, block_n, stages); all ptxas-clean (NVRTC 13.5)
EXTRA_192 = [(128, 112, 2), (128, 96, 2), (128, 80, 2), (192, 80, 2), (192, 64, 3)]
WG, MMA = TEMPLATES["flash_fwd_wgmma"], TEMPLATES["flash_fwd_mma"]


def dv_configs(d: int, dv: int, causal: bool) -> dict:
    """label -> KernelConfig of the autoflash kernels timed for one pair."""
    key = {"dtype": "bf16", "head_dim": d, "causal": causal, "head_dim_v": dv}
    wg = WG.default("sm_90a", key)
    cfgs = {f"wgmma default {wg.block_m}x{wg.block_n} s{wg.stages}": wg, "mma default": MMA.default("sm_90", key)}
    if (d, dv) == (192, 128):
        for bm, bn, st in EXTRA_192:
            cfgs[f"wgmma {bm}x{bn} s{st}"] = WG.config("sm_90a", key, block_m=bm, block_n=bn, warps=4 * (bm // 64 + 1),
                                                       stages=st)
    return cfgs


def _compile(cfg):
    from autoflash.kernels.compile import compile_kernel

    r = compile_kernel(cfg).report
    return f"{cfg.name}: {r.registers} regs, {r.spills} B spilled"


def compile_all(parts):
    cfgs = [c for d, dv in PAIRS for causal in (False, True) for c in dv_configs(d, dv, causal).values()] \
        if "dv" in parts else []
    if "paged" in parts:
        key = {"dtype": "bf16", "head_dim": 128, "causal": True}
        cfgs += [t.config(a, key, **kn).replace(paged=p) for t, a in ((WG, "sm_90a"), (MMA, "sm_90"))
                 for kn in t.default_tiles(key) for p in (False, True)]
        cfgs = [c for c in cfgs if not c.problems()]
    with ProcessPoolExecutor(min(12, multiprocessing.cpu_count()), mp_context=multiprocessing.get_context("spawn")) as pool:
        for line in pool.map(_compile, cfgs):
            print(line, flush=True)


def dv_part(rounds: int, reps: int):
    import torch

    import autoflash
    import common  # benchmarks/common.py
    from autoflash.kernels.device import device_arch
    from autoflash.serve import api

    arch, dev = device_arch(0)
    print(f"forward Dqk != Dv, bf16 B={B2} H={H2} N={N2}; TFLOP/s = 2 (Dqk + Dv) B H N^2 (causal /2); "
          f"median ms over {rounds} interleaved rounds x {reps} calls, spread = (max - min) / median of round medians")
    print("| Dqk/Dv | causal | kernel | ms | TFLOP/s | spread | vs best SDPA |\n|---|---|---|---|---|---|---|")
    for d, dv in PAIRS:
        q = torch.randn(B2, H2, N2, d, device="cuda", dtype=torch.bfloat16)
        k = torch.randn_like(q)
        v = torch.randn(B2, H2, N2, dv, device="cuda", dtype=torch.bfloat16)
        for causal in (False, True):
            flops = 2 * B2 * H2 * N2 * N2 * (d + dv) / (2 if causal else 1)
            pick = api.choose_config(arch, dev, "bf16", d, causal, N2, {"head_dim_v": dv})
            fns = {f"autoflash ({pick.template[10:]} {pick.block_m}x{pick.block_n} s{pick.stages})":
                   lambda c=causal: autoflash.attention(q, k, v, causal=c)}
            for label, cfg in dv_configs(d, dv, causal).items():
                if cfg.problems():
                    print(f"skip {label}: {cfg.problems()}")
                    continue
                fns[label] = lambda c=causal, cfg=cfg: autoflash.attention(q, k, v, causal=c, config=cfg)
            sdpa = []
            for name in ("sdpa_cudnn", "sdpa_flash", "sdpa_efficient"):
                run = common.sdpa_runner(name, q, k, v, causal)
                if run is None:
                    print(f"{name}: refused {d}/{dv}")
                else:
                    fns[name] = run
                    sdpa.append(name)
            # correctness of every autoflash kernel against SDPA's best-available backend (a sanity check)
            ref = fns[sdpa[0]]().float() if sdpa else None
            for label, fn in fns.items():
                if ref is not None and not label.startswith("sdpa"):
                    err = (fn().float() - ref).abs().max().item()
                    if err > 0.05:
                        print(f"WARNING {label}: max |autoflash - {sdpa[0]}| = {err:.3g}")
            times = common.time_interleaved(fns, rounds, reps)
            best = min((times[n][0] for n in sdpa), default=None)
            for label, (ms, spread) in times.items():
                ratio = f"{best / ms:.2f}x" if best else "-"
                print(f"| {d}/{dv} | {'yes' if causal else 'no'} | {label} | {ms:.3f} | {flops / ms / 1e9:.0f} | "
                      f"{spread:.1%} | {ratio} |", flush=True)


def paged_configs(head_dim: int = 128, causal: bool = True) -> dict:
    """label -> the paged configs timed: flash_fwd_wgmma's and flash_fwd_mma's first spill-free paged default."""
    from autoflash.kernels.compile import compile_kernel

    key = {"dtype": "bf16", "head_dim": head_dim, "causal": causal}
    out = {}
    for label, t, arch in (("wgmma", WG, "sm_90a"), ("mma", MMA, "sm_90")):
        valid = [c for c in (t.config(arch, key, **kn).replace(paged=True) for kn in t.default_tiles(key))
                 if not c.problems()]
        out[label] = next((c for c in valid if compile_kernel(c).report.spills == 0), valid[0])
    return out


def paged_part(rounds: int, reps: int):
    """Chunked prefill on a paged cache (helper M's rows, extended): each paged kernel pinned through
    kvcache.paged_config, beside the contiguous cache, the same configs unpaged, and SDPA with the mask;
    interleaved rounds of CUDA-event timings."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    import autoflash
    import common  # benchmarks/common.py
    from autoflash.kernels.device import device_arch
    from autoflash.ops.decode_launch import shuffled_pages
    from autoflash.serve import kvcache

    B, NQ, HQ, HKV, D, L = 8, 512, 32, 8, 128, 4096
    t = torch.bfloat16
    q = torch.randn(B, NQ, HQ, D, device="cuda", dtype=t)
    k = torch.randn(B, L, HKV, D, device="cuda", dtype=t); v = torch.randn_like(k)  # noqa: E702
    seqlens = torch.full((B,), L, dtype=torch.int32, device="cuda")
    flops = 4 * B * HQ * D * sum(L - NQ + i + 1 for i in range(NQ))  # visible pairs, bottom-right causal
    arch, dev = device_arch(0)
    flags = tuple((f, False) for f in ("window", "softcap", "sinks", "alibi"))
    print("kvcache.paged_config picks:", kvcache.paged_config(arch, dev, "bf16", D, True, flags, L).name, flush=True)
    cfgs = paged_configs(D, True)
    original = kvcache.paged_config

    def pinned(cfg, q, kp, vp, seqlens, table):
        kvcache.paged_config = lambda *a: cfg
        try:
            return autoflash.attention_with_kvcache(q, kp, vp, seqlens, block_table=table, causal=True)
        finally:
            kvcache.paged_config = original

    oc = autoflash.attention_with_kvcache(q, k, v, seqlens, causal=True)
    fns = {"contiguous cache (attention_with_kvcache)": lambda: autoflash.attention_with_kvcache(q, k, v, seqlens, causal=True)}
    keep = []
    for ps in (16, 64):
        mp = L // ps; npg = B * mp  # noqa: E702
        table = torch.from_numpy(shuffled_pages(B, mp, npg, 0)).cuda()
        kp = torch.empty(npg, ps, HKV, D, device="cuda", dtype=t); vp = torch.empty_like(kp)  # noqa: E702
        kp[table.reshape(-1).long()] = k.reshape(B * mp, ps, HKV, D); vp[table.reshape(-1).long()] = v.reshape(B * mp, ps, HKV, D)  # noqa: E702,E501
        keep.append((table, kp, vp))
        for label, cfg in cfgs.items():
            o = pinned(cfg, q, kp, vp, seqlens, table)
            print(f"page {ps} {label} ({cfg.name}): max |paged - contiguous| = "
                  f"{(o.float() - oc.float()).abs().max().item():.3g}", flush=True)
            fns[f"paged {ps}, {label} {cfg.block_m}x{cfg.block_n} s{cfg.stages}"] = \
                lambda cfg=cfg, kp=kp, vp=vp, table=table: pinned(cfg, q, kp, vp, seqlens, table)
    qv, kv, vv = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    for label, cfg in cfgs.items():
        fns[f"unpaged, {label} (same config)"] = lambda cfg=cfg: autoflash.attention(
            qv, kv, vv, causal=True, causal_alignment="bottom_right", config=cfg.replace(paged=False))
    ks, vs = kv.repeat_interleave(HQ // HKV, 1), vv.repeat_interleave(HQ // HKV, 1)
    mask = torch.ones(NQ, L, dtype=torch.bool, device="cuda").tril(L - NQ)
    for name, be in (("sdpa efficient (mask)", SDPBackend.EFFICIENT_ATTENTION), ("sdpa cudnn (mask)", SDPBackend.CUDNN_ATTENTION)):
        def run(be=be):
            with sdpa_kernel([be]):
                return F.scaled_dot_product_attention(qv, ks, vs, attn_mask=mask)
        try:
            run()
            fns[name] = run
        except Exception as e:  # noqa: BLE001  (a backend that refuses the mask)
            print(name, "failed:", str(e)[:100])
    times = common.time_interleaved(fns, rounds, reps)
    print(f"chunked prefill bf16 B={B} Nq={NQ} cache={L} Hq={HQ} Hkv={HKV} D={D}, causal bottom-right (SDPA: K/V "
          f"repeated to Hq, bool mask); median ms over {rounds} interleaved rounds x {reps} calls")
    print("| kernel | median ms | TFLOP/s (visible pairs) | spread |\n|---|---|---|---|")
    for n, (m, spread) in times.items():
        print(f"| {n} | {m:.3f} | {flops / m / 1e9:.0f} | {spread:.1%} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", nargs="+", default=["paged", "dv"], choices=["paged", "dv"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--compile-only", action="store_true")
    args = ap.parse_args()
    if args.compile_only:
        compile_all(args.parts)
        return
    if "paged" in args.parts:
        paged_part(args.rounds, args.reps)
    if "dv" in args.parts:
        dv_part(args.rounds, args.reps)


if __name__ == "__main__":
    main()
