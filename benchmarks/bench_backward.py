"""Attention backward TFLOP/s on one GPU: autoflash's backward (the served config) beside
PyTorch SDPA's flash, cuDNN and efficient backward, bf16 (--dtypes: also fp16), D 64/128 (--head-dims:
also 256), N 1024/4096, causal and not. Column autoflash is the config attention_backward serves (the
row prints it), autoflash_mma flash_bwd_mma's own (tuned or default) pinned where another template
serves, autoflash_default flash_bwd_mma's heuristic default pinned.

FLOPs: 2.5 x the forward's 4 * B * H * N^2 * D (FlashAttention's convention), halved for causal.
Each implementation's backward alone is timed: SDPA's as torch.autograd.grad of a saved forward
(retain_graph), autoflash's as attention_backward() on the saved O and LSE (its workspace
allocation included). CUDA events around each call, after warm-up; ROUNDS interleaved rounds
of REPS calls per implementation; the table gives the median of all calls and the spread of the
round medians. Random normal inputs, B = 16384 / N, H = 2048 / D (16k tokens, model width 2048).
Also: deterministic=True (bitwise repeatable dQ), and each gradient's relative error against
SDPA's flash backward (a sanity check; the float64 checks are tests/test_backward_gpu.py).

    python benchmarks/bench_backward.py [--json results.json]
    python benchmarks/bench_backward.py --dtypes bf16,fp16 --seqs 4096,16384 --sdpa flash,cudnn --no-det \
        --lse-from sdpa --rounds 3     # the tuned entries (column autoflash) vs the default config and SDPA
    python benchmarks/bench_backward.py --head-dims 64,128 --seqs 4096 --layouts   # a short A/B run
    python benchmarks/bench_backward.py --head-dims 64 --no-rows --sweep           # every valid D 64 config
    python benchmarks/bench_backward.py --regs sm_90   # no GPU: ptxas registers/spills of both layouts
    python benchmarks/bench_backward.py --precompile   # fill the compile cache in parallel first
    ncu --profile-from-start off ... python benchmarks/bench_backward.py --profile --head-dims 64 --seqs 4096 \\
        --sdpa cudnn   # one call each (bf16), for Nsight Compute (h200_final.sh ncu_bwd)
"""
import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from autoflash.serve.autograd import attention_backward

import common  # noqa: E402  (benchmarks/common.py: run as python benchmarks/bench_backward.py)

SDPA = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION}
ROUNDS, REPS, WARMUP = 5, 10, 3


def backward_flops(b, h, n, d, causal):
    return 2.5 * 4.0 * b * h * n * n * d / (2 if causal else 1)


def forward_lse(q, k, v, causal, scale, source="autoflash"):
    """O and LSE for the backward: autoflash's own forward if it serves these inputs (or, source
    "sdpa", SDPA's flash forward, which returns its natural-log LSE: no forward kernels to compile
    in a short device call), else float32 torch (any consistent O, LSE time the same); says which."""
    try:
        if source == "sdpa":
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, scale=scale)[:2]
            return out.contiguous(), lse.float().contiguous(), "sdpa_flash"
        import autoflash

        out, lse = autoflash.attention(q, k, v, causal=causal, scale=scale, return_lse=True)
        return out, lse, "autoflash"
    except Exception as exc:  # the forward's serving path may be unavailable; the backward is what is timed
        print(f"  ({source} forward unavailable: {type(exc).__name__}: {exc}; O and LSE from torch fp32)")
    s = (q.float() @ k.float().transpose(-1, -2)) * scale
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu(1), -math.inf)
    return (torch.softmax(s, -1) @ v.float()).to(q.dtype), torch.logsumexp(s, -1), "torch"


def sdpa_backward(name, q, k, v, dout, causal):
    """A callable running SDPA's backward (one backend) on a saved forward, and its grads; None if unsupported."""
    qq, kk, vv = (x.detach().clone().requires_grad_() for x in (q, k, v))
    try:
        with sdpa_kernel(SDPA[name]):
            out = F.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)
        grads = torch.autograd.grad(out, (qq, kk, vv), dout, retain_graph=True)
        torch.cuda.synchronize()
    except RuntimeError as exc:
        print(f"  sdpa {name}: not available ({str(exc).splitlines()[0][:80]})")
        return None, None
    return (lambda: torch.autograd.grad(out, (qq, kk, vv), dout, retain_graph=True)), grads


def time_interleaved(fns: dict, n_rounds: int = ROUNDS) -> dict:
    """name -> (median ms of all calls, spread of the round medians as a fraction)."""
    return common.time_interleaved(fns, n_rounds, REPS, WARMUP)


def precompile(arch: str, sweep: bool = False, head_dims=(64, 128)) -> None:
    """Compile (into the disk cache) every config this benchmark and tests/test_backward_gpu.py use,
    in parallel processes: GPU time is not spent waiting for NVRTC one kernel at a time. The
    whole knob sweep only with sweep=True."""
    from concurrent.futures import ProcessPoolExecutor

    from autoflash.ops.backward import OPERATION

    keys = [dict(dtype=t, head_dim=d, causal=c, deterministic=det) for t in ("bf16", "fp16") for d in (64, 128, 256)
            for c in (False, True) for det in (False, True) if t == "bf16" or not det]
    configs = [OPERATION.default(arch, k) for k in keys]
    configs += [f(arch, k, n) for k in keys for n in (1024, 4096, 16384) if not k["deterministic"]
                for f in (served_config, lambda *a: mma_config(*a)[0])]
    configs += [c.replace(dtype=t) for t in ("bf16", "fp16") for d in (64, 128) for causal in (False, True)
                for c in layout_configs(arch, d, causal)]  # both warp layouts (tests pin them too)
    configs = list(dict.fromkeys(configs))
    configs += sweep_configs(arch, head_dims, (False,)) if sweep else []
    with ProcessPoolExecutor() as pool:
        for cfg, regs in zip(configs, pool.map(_compile, configs)):
            print(f"  compiled {cfg.name}: {regs}")


def full_key(key: dict) -> dict:
    """A backward key as attention_backward builds it (variant flags off)."""
    return {**key, **{f: False for f in ("window", "softcap", "sinks", "alibi")}}


def served_config(arch: str, key: dict, n: int):
    """The config attention_backward serves for this key and length on this GPU, whichever template
    (serve/autograd.py decides; arch is this GPU's)."""
    from autoflash.serve.autograd import _served_config

    return _served_config(torch.cuda.current_device(), full_key(key), n)


def mma_config(arch: str, key: dict, n: int):
    """The flash_bwd_mma config for this key and length (a tuned entry, else the heuristic default) and
    where it came from: the mma bar's column when another template serves the key."""
    from autoflash.kernels.device import device_arch
    from autoflash.serve import dispatch

    return dispatch.explain(arch, device_arch(torch.cuda.current_device())[1], "backward", full_key(key), n,
                            template="flash_bwd_mma")


def sweep_configs(arch: str, head_dims=(64, 128), causal_values=(False, True)) -> list:
    """Every valid flash_bwd_mma config (deterministic off) for bf16 at these head dims and causal values."""
    from autoflash.ops.backward import TEMPLATE

    return [c for d in head_dims for causal in causal_values
            for c in TEMPLATE.space(arch, dict(dtype="bf16", head_dim=d, causal=causal, deterministic=False))
            if not c.problems()]


def sweep(arch: str, n: int = 4096, head_dims=(64, 128), causal_values=(False,)) -> None:
    """TFLOP/s of every valid config at N = n: data for the default (the tuner's job later)."""
    print(f"\n# config sweep, bf16, N={n} (median ms, TFLOP/s)")
    by_key = {}
    for cfg in sweep_configs(arch, head_dims, causal_values):
        by_key.setdefault((cfg.head_dim, cfg.causal), []).append(cfg)
    for (d, causal), configs in by_key.items():
        b, h = 16384 // n, 2048 // d
        q, k, v, dout = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
        out, lse, _ = forward_lse(q, k, v, causal, 1 / math.sqrt(d))
        fns = {c.name: (lambda c=c: attention_backward(q, k, v, out, lse, dout, causal=causal, config=c))
               for c in configs}
        timed = time_interleaved(fns)
        flops = backward_flops(b, h, n, d, causal)
        for name, (ms, spread) in sorted(timed.items(), key=lambda kv: kv[1][0]):
            print(f"  d{d} causal={causal} {name}: {ms:.3f} ms {flops / (ms * 1e-3) / 1e12:.0f} TFLOP/s "
                  f"(spread {100 * spread:.1f}%)", flush=True)
        del q, k, v, dout, out, lse, fns
        torch.cuda.empty_cache()


def profile(causal: bool = False, n: int = 4096, d: int = 128, sdpa=("flash", "cudnn"), mma: bool = False) -> None:
    """One backward call of autoflash (mma: flash_bwd_mma's config for the key, as the mma column) and one of each
    SDPA backend between cudaProfilerStart/Stop, after warm-up, for Nsight Compute (--profile-from-start off)."""
    b, h = 16384 // n, 2048 // d
    q, k, v, dout = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    out, lse, _ = forward_lse(q, k, v, causal, 1 / math.sqrt(d))
    key = dict(dtype="bf16", head_dim=d, causal=causal, deterministic=False)
    if mma:
        from autoflash.kernels.device import device_arch

        cfg = mma_config(device_arch(torch.cuda.current_device())[0], key, n)[0]
    else:
        cfg = None
    print(f"profiled: {cfg.name if cfg else 'the served backward'}, b {b} h {h} n {n} d {d} causal {causal}", flush=True)
    theirs = [fn for fn, _ in (sdpa_backward(name, q, k, v, dout, causal) for name in sdpa) if fn]
    for _ in range(3):
        attention_backward(q, k, v, out, lse, dout, causal=causal, config=cfg)
        for fn in theirs:
            fn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    attention_backward(q, k, v, out, lse, dout, causal=causal, config=cfg)
    for fn in theirs:
        fn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()


def layout_configs(arch: str, d: int, causal: bool) -> list:
    """The default config of bf16 (d, causal) with warps_q 1 and 2 (same tiles), where both are valid."""
    from autoflash.ops.backward import OPERATION

    cfg = OPERATION.default(arch, dict(dtype="bf16", head_dim=d, causal=causal, deterministic=False))
    configs = [cfg.replace(warps_q=wq) for wq in (1, 2)]
    return [c for c in configs if not c.problems()]


def print_registers(arch: str, head_dims) -> None:
    """ptxas resources (main kernel) of the bf16 default tiles with each warp layout, no GPU needed."""
    from autoflash.kernels.compile import compile_kernel
    from autoflash.ops.backward import OPERATION, TEMPLATE

    for d in head_dims:
        for causal in (False, True):
            default = OPERATION.default(arch, dict(dtype="bf16", head_dim=d, causal=causal, deterministic=False))
            for cfg in dict.fromkeys([default] + layout_configs(arch, d, causal)):
                rep = compile_kernel(cfg).report
                print(f"  {cfg.name}: {rep.registers} registers, {rep.spill_stores} B spilled, "
                      f"{TEMPLATE.smem_bytes(cfg)} B shared memory")


def _compile(cfg):
    from autoflash.kernels.compile import compile_kernel

    return compile_kernel(cfg).report


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--regs", metavar="ARCH", help="only print ptxas registers/spills for ARCH (no GPU), then exit")
    parser.add_argument("--precompile", action="store_true", help="only compile the kernels (parallel), then exit")
    parser.add_argument("--sweep", action="store_true",
                        help="also time every valid config at N=4096, non-causal, at --head-dims")
    parser.add_argument("--rows", action=argparse.BooleanOptionalAction, default=True,
                        help="the table rows beside SDPA (--no-rows: only the sweep)")
    parser.add_argument("--profile", action="store_true",
                        help="one call of ours and of each --sdpa backend at the first --head-dims and --seqs, for ncu")
    parser.add_argument("--causal", action="store_true", help="with --profile: the causal backward")
    parser.add_argument("--mma", action="store_true", help="with --profile: flash_bwd_mma's config, not the served one")
    parser.add_argument("--head-dims", default="64,128", help="comma-separated head dims (default 64,128)")
    parser.add_argument("--seqs", default="1024,4096", help="comma-separated sequence lengths (default 1024,4096)")
    parser.add_argument("--dtypes", default="bf16", help="comma-separated: bf16, fp16 (default bf16)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"interleaved rounds (default {ROUNDS})")
    parser.add_argument("--sdpa", default=",".join(SDPA), help=f"SDPA backends timed (default {','.join(SDPA)})")
    parser.add_argument("--lse-from", choices=("autoflash", "sdpa"), default="autoflash",
                        help="the forward giving O and LSE (sdpa: no forward kernels to compile)")
    parser.add_argument("--no-det", action="store_true", help="leave out the deterministic column (shorter runs)")
    parser.add_argument("--layouts", action="store_true",
                        help="also time the default tiles with each S/dP warp layout (warps_q 1 and 2), interleaved")
    args = parser.parse_args()
    head_dims = tuple(int(x) for x in args.head_dims.split(","))
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if args.regs:
        print_registers(args.regs, head_dims)
        return 0
    if args.precompile:
        from autoflash.kernels.device import device_arch

        precompile(device_arch(torch.cuda.current_device())[0], args.sweep, head_dims)
        return 0
    if args.profile:
        profile(args.causal, int(args.seqs.split(",")[0]), head_dims[0], args.sdpa.split(","), args.mma)
        return 0
    torch.manual_seed(0)
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; backward TFLOP/s (2.5x forward FLOPs)")
    rows = []
    from autoflash.kernels.device import device_arch
    from autoflash.ops.backward_kernels import TEMPLATE as MMA

    arch = device_arch(torch.cuda.current_device())[0]
    for dtype, d, n in [(t, d, int(n)) for t in args.dtypes.split(",") for d in head_dims if args.rows
                        for n in args.seqs.split(",")]:
        for causal in (False, True):
            b, h = max(1, 16384 // n), 2048 // d
            q, k, v, dout = (torch.randn(b, h, n, d, device="cuda", dtype=dtypes[dtype]) for _ in range(4))
            scale = 1 / math.sqrt(d)
            out, lse, source = forward_lse(q, k, v, causal, scale, args.lse_from)
            # autoflash: what attention_backward serves (a tuned entry if tuned_configs/ has one, else the
            # default); autoflash_mma: flash_bwd_mma's own choice pinned, where another template serves;
            # autoflash_default: flash_bwd_mma's heuristic default pinned, for the tuning's gain
            key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=False)
            served, (mma, how) = served_config(arch, key, n), mma_config(arch, key, n)
            default = MMA.default(arch, full_key(key))
            fns = {"autoflash": lambda: attention_backward(q, k, v, out, lse, dout, causal=causal),
                   "autoflash_default": lambda: attention_backward(q, k, v, out, lse, dout, causal=causal,
                                                                   config=default)}
            if mma != served:
                fns["autoflash_mma"] = lambda: attention_backward(q, k, v, out, lse, dout, causal=causal, config=mma)
            if not args.no_det:
                fns["autoflash_det"] = lambda: attention_backward(q, k, v, out, lse, dout, causal=causal,
                                                                  deterministic=True)
            for cfg in layout_configs(arch, d, causal) if args.layouts else []:
                fns[f"autoflash_wq{cfg.warps_q}"] = (
                    lambda cfg=cfg: attention_backward(q, k, v, out, lse, dout, causal=causal, config=cfg))
            ref = None
            for name in args.sdpa.split(","):
                fn, grads = sdpa_backward(name, q, k, v, dout, causal)
                if fn is not None:
                    fns[f"sdpa_{name}"] = fn
                    ref = grads if name == "flash" else ref
            ours = attention_backward(q, k, v, out, lse, dout, causal=causal)
            errs = [rel(a, r) for a, r in zip(ours, ref)] if ref is not None else []
            det = [attention_backward(q, k, v, out, lse, dout, causal=causal, deterministic=True)
                   for _ in range(0 if args.no_det else 2)]
            repeatable = all(torch.equal(a, c) for a, c in zip(*det)) if len(det) == 2 else None
            timed = time_interleaved(fns, args.rounds)
            flops = backward_flops(b, h, n, d, causal)
            row = dict(served=served.name, mma=mma.name, mma_how=how, dtype=dtype, head_dim=d, seq=n, causal=causal,
                       batch=b, heads=h, forward_source=source, rel_err_vs_sdpa_flash=errs,
                       deterministic_repeatable=repeatable,
                       ms={k_: t[0] for k_, t in timed.items()}, spread={k_: t[1] for k_, t in timed.items()},
                       tflops={k_: flops / (t[0] * 1e-3) / 1e12 for k_, t in timed.items()})
            rows.append(row)
            print(f"  {dtype} d{d} n{n} causal={causal}: " + ", ".join(f"{k_} {row['tflops'][k_]:.0f}"
                  for k_ in row["tflops"]) + f"; err vs flash {['%.1e' % e for e in errs]}; "
                  f"det repeatable {repeatable}; served {served.name}; mma {mma.name} ({how})", flush=True)
            del fns, ref, ours, det
            torch.cuda.empty_cache()
    if args.sweep:
        sweep(arch, head_dims=head_dims)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    names = ["autoflash", "autoflash_mma", "autoflash_default", "autoflash_det", "sdpa_flash", "sdpa_cudnn",
             "sdpa_efficient"]
    names += sorted({k_ for r in rows for k_ in r["tflops"] if k_.startswith("autoflash_wq")})
    # vs flash / cuDNN: the served backward's; mma vs flash: flash_bwd_mma's (issue 16's mma bar)
    print("\n| dtype | D | N | causal | " + " | ".join(names)
          + " | vs flash | vs cuDNN | mma vs flash | spread (ours) |")
    print("|" + "---|" * (len(names) + 8))
    for r in rows:
        t = r["tflops"]
        cells = [f"{t[k_]:.0f}" if k_ in t else "n/a" for k_ in names]
        ratio = [f"{t['autoflash'] / t[k_]:.2f}x" if k_ in t else "n/a" for k_ in ("sdpa_flash", "sdpa_cudnn")]
        ratio.append(f"{t.get('autoflash_mma', t['autoflash']) / t['sdpa_flash']:.2f}x" if "sdpa_flash" in t else "n/a")
        print(f"| {r['dtype']} | {r['head_dim']} | {r['seq']} | {r['causal']} | " + " | ".join(cells + ratio)
              + f" | {100 * r['spread']['autoflash']:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
