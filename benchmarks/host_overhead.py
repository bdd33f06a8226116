"""Host cost of one autoflash.attention() call, and what it does to the end-to-end number.

    PYTHONPATH=<autoflash checkout>:$PWD python3 benchmarks/host_overhead.py --label after --out after.json
    python3 benchmarks/host_overhead.py --compare before.json after.json

Run it once per autoflash version (e.g. the last commit unpacked into another folder
put first on PYTHONPATH), then --compare prints the two side by side.

Part 1, host microseconds per call: a tiny problem (B=1, H=2, N=128, D=128, bf16:
a few us of GPU work) called 1000 times in a row, wall clock over the loop, median of
7 loops. The GPU keeps up, so the loop measures the host; the tiny kernel's own time
(graph replay) is printed beside it as the floor under which a number would mean the
loop was GPU-bound.

Part 2, the table of benchmarks/bench_attention.py (same shapes, same timing: CUDA
events around one call after a synchronize, so host time before the launch counts),
plus the same autoflash call captured in a CUDA graph (host work gone: kernel time),
and SDPA's backends, cuDNN also through a graph.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def host_us(fn, calls=1000, loops=7):
    import torch

    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    per_call = []
    for _ in range(loops):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - t0) / calls * 1e6)
        torch.cuda.synchronize()
    return statistics.median(per_call)


def graph_ms(fn, time_ms):
    """time_ms of replaying fn() captured in a CUDA graph (after a warm-up call)."""
    import torch

    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return time_ms(graph.replay)


def part1(torch, autoflash, common):
    from autoflash.kernels.device import device_arch
    from autoflash.ops.forward_base import Problem
    from autoflash.ops.forward_launch import default_scale, launch as launch_kernel
    from autoflash.serve import api, dispatch

    arch, device = device_arch(0)
    rows = {}
    g = torch.Generator(device="cuda").manual_seed(1)
    mk = lambda n=128: torch.randn(1, 2, n, 128, device="cuda", generator=g).to(torch.bfloat16)  # noqa: E731
    q, k, v = mk(), mk(), mk()
    q2, k2, v2 = mk(), mk(), mk()
    cfg, how = dispatch.explain(arch, device, "forward", {"dtype": "bf16", "head_dim": 128, "causal": False}, 128)
    rows["config"] = f"{cfg.name} ({how})"
    attention = autoflash.attention
    rows["attention() tuned-config look-up"] = host_us(lambda: attention(q, k, v))
    rows["attention(config=cfg)"] = host_us(lambda: attention(q, k, v, config=cfg))
    rows["attention(return_lse=True)"] = host_us(lambda: attention(q, k, v, return_lse=True))
    flip = [0]

    def alternate():  # two pointer sets, as two layers would give
        flip[0] ^= 1
        return attention(q, k, v) if flip[0] else attention(q2, k2, v2)

    rows["attention() alternating 2 pointer sets"] = host_us(alternate)
    pool = [(mk(), mk(), mk()) for _ in range(600)]  # more sets than any descriptor cache holds
    it = [0]

    def fresh():  # a new pointer set on every call: TMA descriptors encoded every time
        it[0] = (it[0] + 1) % len(pool)
        return attention(*pool[it[0]])

    rows["attention() new pointers every call (600-set cycle)"] = host_us(fresh, calls=600)
    kernel = api.loaded_kernel(cfg, 0)
    p = Problem(1, 2, 2, 128, 128, 128, False)
    o = torch.empty_like(q)
    ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), 0)
    stream = torch.cuda.current_stream().cuda_stream
    rows["LoadedKernel.launch (no checks, no allocation)"] = host_us(
        lambda: launch_kernel(kernel, *ptrs, p, default_scale(128), stream))
    try:
        import autoflash.torch as aft

        with torch.no_grad():
            rows["autoflash.torch.scaled_dot_product_attention"] = host_us(
                lambda: aft.scaled_dot_product_attention(q, k, v))
    except Exception as exc:  # noqa: BLE001 - report, do not stop the run
        rows["autoflash.torch.scaled_dot_product_attention"] = f"failed: {exc}"
    from torch.nn.attention import sdpa_kernel

    F = torch.nn.functional
    for name in ("sdpa_cudnn", "sdpa_flash"):
        backend = common.SDPA_BACKENDS[name]
        run = common.sdpa_runner(name, q, k, v, False)
        rows[f"{name} (sdpa_kernel context per call, as the table)"] = host_us(run) if run else None
        with sdpa_kernel(backend):
            rows[f"{name} (backend set once)"] = host_us(lambda: F.scaled_dot_product_attention(q, k, v))
    rows["tiny kernel itself (graph replay, us)"] = 1e3 * graph_ms(lambda: attention(q, k, v), common.time_ms)
    if hasattr(kernel, "plan"):  # this version has launch plans: time the stages of one call
        rows.update(stages(torch, api, dispatch, kernel, cfg, q, k, v, arch, device))
    return rows


def stages(torch, api, dispatch, kernel, cfg, q, k, v, arch, device):
    """Each step attention() takes, alone, 1000 times (the launch floor launches)."""
    from autoflash.ops.forward_launch import plan as plan_of

    ops = [api.as_operand(x, n) for x, n in ((q, "q"), (k, "k"), (v, "v"))]
    p = api.check_inputs(*ops)
    plan = plan_of(kernel, p, 128 ** -0.5)
    o = torch.empty_like(q)
    ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), 0)
    args = plan.args(*ptrs)
    stream = api._stream(ops[0])
    cupy = api._cupy()
    return {
        "stage: as_operand x3": host_us(lambda: (api.as_operand(q, "q"), api.as_operand(k, "k"),
                                                 api.as_operand(v, "v"))),
        "stage: check_inputs": host_us(lambda: api.check_inputs(*ops)),
        "stage: dispatch.select (cached, 2 stat calls)": host_us(
            lambda: dispatch.select(arch, device, "bf16", 128, False, 128)),
        "stage: loaded_kernel + plan look-up": host_us(lambda: plan_of(api.loaded_kernel(cfg, 0), p, 128 ** -0.5)),
        "stage: output allocation (new_empty)": host_us(lambda: api._empty_like(ops[0], ops[0].shape, "bf16")),
        "stage: current stream": host_us(lambda: api._stream(ops[0])),
        "stage: device check": host_us(lambda: cupy.cuda.runtime.getDevice() == 0),
        "stage: kernel arguments (descriptor cache hit)": host_us(lambda: plan.args(*ptrs)),
        "stage: CuPy launch, arguments ready (launches)": host_us(
            lambda: plan.function(plan.grid, plan.block, args, shared_mem=plan.smem, stream=stream)),
    }


def part2(torch, autoflash, common, args):
    from autoflash.kernels.device import device_arch
    from autoflash.ops.reference import TOLERANCE
    from autoflash.serve import dispatch

    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
    arch, device = device_arch(0)
    rows = []
    for dtype in args.dtypes:
        for d in args.head_dims:
            for causal in (c == "yes" for c in args.causal):
                for n in args.seq_lens:
                    b, h = max(1, 64 * 4096 // (n * 16)), 16
                    g = torch.Generator(device="cuda").manual_seed(n + d)
                    q, k, v = (torch.randn(b, h, n, d, device="cuda", generator=g).to(dtypes[dtype])
                               for _ in range(3))
                    cfg, how = dispatch.explain(arch, device, "forward", {"dtype": dtype, "head_dim": d, "causal": causal}, n)
                    run = lambda: autoflash.attention(q, k, v, causal=causal, config=cfg)  # noqa: E731
                    out = run()
                    qs, ks, vs = (t[:1, :1].double() for t in (q, k, v))
                    ref = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=causal)
                    rel = ((out[:1, :1].double() - ref).norm() / ref.norm()).item()
                    flops = lambda ms: common.tflops(b, h, n, n, d, causal, ms)  # noqa: E731
                    row = {"dtype": dtype, "head_dim": d, "causal": causal, "seq_len": n, "config": cfg.name,
                           "source": how, "rel_err": rel, "correct": rel <= TOLERANCE[dtype],
                           "autoflash": flops(common.time_ms(run)),
                           "autoflash_default_path": flops(common.time_ms(
                               lambda: autoflash.attention(q, k, v, causal=causal))),
                           "autoflash_graph": flops(graph_ms(run, common.time_ms))}
                    for backend in ("sdpa_flash", "sdpa_cudnn", "sdpa_efficient"):
                        fn = common.sdpa_runner(backend, q, k, v, causal)
                        row[backend] = flops(common.time_ms(fn)) if fn else float("nan")
                    fn = common.sdpa_runner("sdpa_cudnn", q, k, v, causal)
                    try:
                        row["sdpa_cudnn_graph"] = flops(graph_ms(fn, common.time_ms)) if fn else float("nan")
                    except RuntimeError as exc:
                        row["sdpa_cudnn_graph"] = float("nan")
                        print(f"cuDNN graph capture failed: {exc}", flush=True)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def measure(args):
    import torch

    sys.path.insert(0, str(HERE))
    import common

    import autoflash

    print(f"autoflash from {Path(autoflash.__file__).parent}", flush=True)
    result = {"label": args.label, "torch": torch.__version__, "device": torch.cuda.get_device_name(0)}
    result["host_us"] = part1(torch, autoflash, common)
    for name, us in result["host_us"].items():
        print(f"{args.label:>8} | {name:<60} | {us if isinstance(us, str) else f'{us:.2f}'}", flush=True)
    if not args.host_only:
        result["table"] = part2(torch, autoflash, common, args)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


def compare(before_path, after_path):
    before, after = (json.loads(Path(p).read_text()) for p in (before_path, after_path))
    print(f"\n{after['device']}, torch {after['torch']}")
    print(f"\nHost time per call, us (tiny problem) | {before['label']} | {after['label']}")
    print("|---|---|---|")
    for name, a in after["host_us"].items():
        b = before["host_us"].get(name)
        fmt = lambda x: x if isinstance(x, str) else ("-" if x is None else f"{x:.1f}")  # noqa: E731
        print(f"| {name} | {fmt(b)} | {fmt(a)} |")
    if "table" not in after or "table" not in before:
        return
    print(f"\nTFLOP/s, bench_attention.py timing ({before['label']} / {after['label']}); "
          "graph = the autoflash call replayed from a CUDA graph")
    print("| dtype | D | causal | N | attention() before | attention() after | after, tuned look-up | "
          "after, graph | flash | cuDNN | cuDNN graph | efficient | before/cuDNN | after/cuDNN | "
          "graph/cuDNN graph | check |")
    print("|---" * 16 + "|")
    key = lambda r: (r["dtype"], r["head_dim"], r["causal"], r["seq_len"])  # noqa: E731
    old = {key(r): r for r in before["table"]}
    for r in after["table"]:
        o = old.get(key(r))
        if o is None:
            continue
        print(f"| {r['dtype']} | {r['head_dim']} | {'yes' if r['causal'] else 'no'} | {r['seq_len']} | "
              f"{o['autoflash']:.0f} | {r['autoflash']:.0f} | {r['autoflash_default_path']:.0f} | "
              f"{r['autoflash_graph']:.0f} | {r['sdpa_flash']:.0f} | {r['sdpa_cudnn']:.0f} | "
              f"{r['sdpa_cudnn_graph']:.0f} | {r['sdpa_efficient']:.0f} | {o['autoflash'] / o['sdpa_cudnn']:.2f} | "
              f"{r['autoflash'] / r['sdpa_cudnn']:.2f} | {r['autoflash_graph'] / r['sdpa_cudnn_graph']:.2f} | "
              f"{'ok' if r['correct'] and o['correct'] else 'WRONG'} {r['rel_err']:.1e} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", default="run")
    ap.add_argument("--out", default=None)
    ap.add_argument("--host-only", action="store_true")
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp16"])
    ap.add_argument("--head-dims", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--seq-lens", nargs="+", type=int, default=[1024, 4096, 16384])
    ap.add_argument("--causal", nargs="+", default=["no", "yes"])
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args()
    if args.compare:
        compare(*args.compare)
    else:
        measure(args)


if __name__ == "__main__":
    main()
