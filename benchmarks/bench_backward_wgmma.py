"""flash_bwd_wgmma (Hopper) beside flash_bwd_mma and SDPA's cuDNN and flash backward: TFLOP/s of the
backward alone, bf16/fp16, D 64/128, causal and not, N 4096 by default (16k tokens: B = 16384 / N,
H = 2048 / D). FLOPs: 2.5 x the forward's (FlashAttention's convention), halved for causal. Timing as
benchmarks/bench_backward.py (CUDA events, warm-up, interleaved rounds, median; spread = range of the
round medians); each autoflash kernel pinned (its config, and for flash_bwd_wgmma its dQ schedule,
ops/backward_wgmma: "wgmma" the default, "wgmma_own" DQ_OWN_KEYS, "wgmma_bulk" DQ_BULK_REDUCE (these two
with --schedules), "wgmma_ws" / "wgmma_plain" the default's tiles with / without a producer warpgroup
(stages 2), "wgmma_pipe" with a producer and the pipelined schedule (stages 3), each where valid and not
the default) and
launched as attention_backward() launches it, on one saved O and LSE (float32 torch
forward). Also each gradient's relative error against SDPA's flash backward (a sanity check; the
float64 checks are tests/test_backward_wgmma_gpu.py).

    python benchmarks/bench_backward_wgmma.py [--dtypes bf16,fp16] [--head-dims 64,128] [--seqs 4096]
        [--others]   # also every other valid wgmma config of every dQ schedule (bf16)
        [--schedules]   # also the DQ_OWN_KEYS and DQ_BULK_REDUCE schedules
        [--deterministic]   # also both templates' deterministic defaults (wgmma_det, mma_det)
    python benchmarks/bench_backward_wgmma.py --precompile   # compile every config it times, in parallel
"""
import argparse
import math
import os
import sys

import cupy
import torch

from bench_backward import backward_flops, rel, sdpa_backward, time_interleaved

from autoflash.kernels.archs import build_arch
from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.kernels.loaded import LoadedKernel, stream_handle
from autoflash.ops import backward_wgmma
from autoflash.ops.backward import TEMPLATE as MMA
from autoflash.ops.backward_gpu import launch_plan
from autoflash.ops.backward_kernels import BackwardProblem
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def key(dtype, d, causal, deterministic=False):
    return dict(dtype=dtype, head_dim=d, causal=causal, deterministic=deterministic, window=False, softcap=False,
                sinks=False, alibi=False)


SCHEDULES = {"": (False, False), "_own": (True, False), "_bulk": (False, True)}  # (DQ_OWN_KEYS, DQ_BULK_REDUCE)


def with_schedule(schedule, fn, *args):
    """fn(*args) with ops/backward_wgmma's dQ schedule switches set (its rules and values read them)."""
    saved = backward_wgmma.DQ_OWN_KEYS, backward_wgmma.DQ_BULK_REDUCE
    backward_wgmma.DQ_OWN_KEYS, backward_wgmma.DQ_BULK_REDUCE = SCHEDULES[schedule]
    try:
        return fn(*args)
    finally:
        backward_wgmma.DQ_OWN_KEYS, backward_wgmma.DQ_BULK_REDUCE = saved


def configs(arch, dtype, d, causal, others=False, schedules=False, deterministic=False):
    """name -> (config, dQ schedule): flash_bwd_wgmma's default (wgmma), with schedules in every dQ
    schedule (wgmma<schedule>), its tiles with / without a producer warpgroup (wgmma_ws / wgmma_plain)
    where valid and not the default, and flash_bwd_mma's
    default for the key; with others, every other valid flash_bwd_wgmma config of every schedule
    (wgmma<schedule>_bm<block_m>_bn<block_n>_w<warps>)."""
    k = key(dtype, d, causal)
    wg_arch = build_arch(WGMMA.archs, arch)
    chosen = {f"wgmma{s}": (with_schedule(s, WGMMA.default, wg_arch, k), s) for s in SCHEDULES if schedules or not s}
    c = chosen["wgmma"][0]
    for name, producer, stages in (("wgmma_ws", 1, 2), ("wgmma_plain", 0, 2), ("wgmma_pipe", 1, 3)):
        alts = [WGMMA.config(wg_arch, k, block_m=bm, block_n=c.block_n, warps=4 * (WGMMA.consumers(c) + producer),
                             stages=stages, warps_q=c.warps_q) for bm in (c.block_m, 64, 128)]  # (D 64: 64 / 128 queries)
        alt = next((a for a in alts if not a.problems()), None)
        if alt is not None and alt != c and not (producer and os.environ.get("BENCH_NO_WS")
                                                  or stages == 3 and os.environ.get("BENCH_NO_PIPE")):
            chosen[name] = (alt, "")  # (BENCH_NO_WS: the run script's guard if its tests fail)
    chosen["mma"] = (MMA.default(build_arch(MMA.archs, arch), k), "")
    if deterministic:
        kd = key(dtype, d, causal, True)
        chosen["wgmma_det"] = (WGMMA.default(wg_arch, kd), "")
        chosen["mma_det"] = (MMA.default(build_arch(MMA.archs, arch), kd), "")
    for s in SCHEDULES if others else ():
        for c in with_schedule(s, lambda: [c for c in WGMMA.space(wg_arch, k) if not c.problems()]):
            if (c, s) not in chosen.values():
                chosen[f"wgmma{s}_bm{c.block_m}_bn{c.block_n}_w{c.warps}"] = (c, s)
    return chosen


def pinned(cfg, schedule, q, k, v, out, lse, dout, causal):
    """A callable running one backward with this kernel (as attention_backward launches it), returning
    (dq, dk, dv)."""
    kernel = with_schedule(schedule, lambda: LoadedKernel(compile_kernel(cfg)))  # (its shared memory too)
    b, hq, nq, d = q.shape
    p = BackwardProblem(b, hq, k.shape[1], nq, k.shape[2], d, causal, 0)
    plan = launch_plan(kernel, p, 1 / math.sqrt(d))
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    workspace = torch.empty(plan.workspace_bytes, dtype=torch.uint8, device=q.device)
    ptr = torch.cuda.current_stream().cuda_stream
    stream = stream_handle(ptr) if ptr else cupy.cuda.Stream.null  # 0: the legacy default stream

    def run():
        plan(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), lse.data_ptr(), dout.data_ptr(),
             dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), workspace.data_ptr(), stream)
        return dq, dk, dv

    return run


def _compile(cfg_schedule):
    cfg, schedule = cfg_schedule
    return with_schedule(schedule, lambda: compile_kernel(cfg).report)


def precompile(arch, dtypes, head_dims, others, schedules, deterministic):
    from concurrent.futures import ProcessPoolExecutor

    cfgs = list(dict.fromkeys(c for t in dtypes for d in head_dims for causal in (False, True)
                              for c in configs(arch, t, d, causal, others and t == "bf16", schedules,
                                               deterministic).values()))
    with ProcessPoolExecutor() as pool:
        for (cfg, schedule), rep in zip(cfgs, pool.map(_compile, cfgs)):
            print(f"  compiled {cfg.name} schedule '{schedule}': {rep.registers} registers, {rep.spills} B spilled",
                  flush=True)


def problem(dtype: str, d: int, n: int, causal: bool, tokens: int = 16384):
    """The timed problem (`tokens` a row, 16k unless given; H x D = 2048): q, k, v, dout, the forward's O and LSE, and
    SDPA flash's gradients as the reference (None where it refuses)."""
    b, h = max(1, tokens // n), 2048 // d
    torch.manual_seed(0)
    q, k, v, dout = (torch.randn(b, h, n, d, device="cuda", dtype=DTYPES[dtype]) for _ in range(4))
    out, lse = torch_forward(q, k, v, causal, 1 / math.sqrt(d))
    return q, k, v, dout, out, lse, sdpa_backward("flash", q, k, v, dout, causal)[1]


def problems(dtypes, head_dims, seqs: str, tokens: int = 16384, causal_values=(False, True)):
    """Every timed problem in the table's order: (dtype, d, n, causal) and problem()'s tensors."""
    for dtype in dtypes:
        for d in head_dims:
            for n in (int(x) for x in seqs.split(",")):
                for causal in causal_values:
                    yield (dtype, d, n, causal), problem(dtype, d, n, causal, tokens)


def torch_forward(q, k, v, causal, scale):
    """O (input dtype) and natural-log LSE (float32) of a float32 torch forward."""
    s = (q.float() @ k.float().transpose(-1, -2)) * scale
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu(1), -math.inf)
    lse = torch.logsumexp(s, -1)
    out = (torch.softmax(s, -1) @ v.float()).to(q.dtype)
    del s
    return out, lse


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="bf16")
    parser.add_argument("--head-dims", default="64,128")
    parser.add_argument("--seqs", default="4096")
    parser.add_argument("--others", action="store_true", help="also time every other valid wgmma config (bf16)")
    parser.add_argument("--schedules", action="store_true", help="also the DQ_OWN_KEYS, DQ_BULK_REDUCE schedules")
    parser.add_argument("--deterministic", action="store_true", help="also the deterministic defaults")
    parser.add_argument("--precompile", action="store_true", help="only compile the kernels, then exit")
    args = parser.parse_args()
    dtypes = args.dtypes.split(",")
    head_dims = [int(x) for x in args.head_dims.split(",")]
    arch = device_arch(torch.cuda.current_device())[0]
    if args.precompile:
        precompile(arch, dtypes, head_dims, args.others, args.schedules, args.deterministic)
        return 0
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; backward TFLOP/s (2.5x forward FLOPs)")
    rows = []
    for (dtype, d, n, causal), (q, k, v, dout, out, lse, ref) in problems(dtypes, head_dims, args.seqs):
        fns, errs = {}, {}
        for name, (cfg, schedule) in configs(arch, dtype, d, causal, args.others and dtype == "bf16",
                                             args.schedules, args.deterministic).items():
            fns[name] = pinned(cfg, schedule, q, k, v, out, lse, dout, causal)
            if ref is not None:
                errs[name] = max(rel(a, r) for a, r in zip(fns[name](), ref))
        for name in ("cudnn", "flash"):
            fn, _ = sdpa_backward(name, q, k, v, dout, causal)
            if fn is not None:
                fns[f"sdpa_{name}"] = fn
        timed = time_interleaved(fns)
        flops = backward_flops(*q.shape[:2], n, d, causal)
        tf = {name: flops / (ms * 1e-3) / 1e12 for name, (ms, _) in timed.items()}
        rows.append((dtype, d, n, causal, tf, timed["wgmma"][1], errs))
        print(f"  {dtype} d{d} n{n} causal={causal}: " + ", ".join(f"{x} {y:.0f}" for x, y in tf.items())
              + "; max rel err vs sdpa flash " + ", ".join(f"{x} {y:.1e}" for x, y in errs.items()),
              flush=True)
        del q, k, v, dout, out, lse, fns, ref
        torch.cuda.empty_cache()
    names = ["wgmma", "wgmma_ws", "wgmma_pipe", "wgmma_plain", "wgmma_own", "wgmma_bulk", "wgmma_det", "mma", "mma_det",
             "sdpa_cudnn", "sdpa_flash"]
    pairs = (("wgmma", "mma"), ("wgmma", "sdpa_cudnn"), ("wgmma_ws", "sdpa_cudnn"), ("wgmma_ws", "wgmma"),
             ("wgmma_pipe", "sdpa_cudnn"), ("wgmma_pipe", "wgmma_ws"),
             ("wgmma", "wgmma_plain"), ("wgmma_det", "wgmma"), ("wgmma_det", "mma_det"),
             ("wgmma_own", "sdpa_cudnn"), ("wgmma_bulk", "sdpa_cudnn"))
    print("\n| dtype | D | N | causal | " + " | ".join(names) + " | " + " | ".join(f"{a}/{b}" for a, b in pairs)
          + " | spread (wgmma) |")
    print("|" + "---|" * (len(names) + len(pairs) + 5))
    for dtype, d, n, causal, tf, spread, _ in rows:
        cells = [f"{tf[x]:.0f}" if x in tf else "n/a" for x in names]
        ratios = [f"{tf[a] / tf[b]:.2f}x" if a in tf and b in tf else "n/a" for a, b in pairs]
        print(f"| {dtype} | {d} | {n} | {causal} | " + " | ".join(cells + ratios) + f" | {100 * spread:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
