"""Host cost of one autoflash.attention() call and of the torch drop-in beside SDPA's, and what it does
to the end-to-end number.

    PYTHONPATH=<autoflash checkout>:$PWD python3 benchmarks/host_overhead.py --label after --out after.json
    python3 benchmarks/host_overhead.py --compare before.json after.json

Run it once per autoflash version (e.g. the last commit unpacked into another folder
put first on PYTHONPATH), then --compare prints the two side by side.

Part 1, host microseconds per call: a tiny problem (B=1, H=2, N=128, D=128, bf16:
a few us of GPU work) called 1000 times in a row, wall clock over the loop; every path
(autoflash.attention(), the drop-in, SDPA's backends) is timed in each of 9 interleaved
rounds, so they share the machine's state; median and spread (min..max) over the rounds.
The GPU keeps up, so the loop measures the host; the tiny kernel's own time (graph replay)
is printed beside it as the floor under which a number would mean the loop was GPU-bound.
The last lines compare attention() and the drop-in with SDPA's cuDNN path (issue 18's bar:
at or below it).

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
ROUNDS = 9


def host_rounds(fns: dict, calls=1000, rounds=ROUNDS) -> dict:
    """{name: {"median", "min", "max"}} host us per call of each fn, the fns interleaved round by round.
    A value may be (fn, context): its calls then run inside `with context():` (e.g. an SDPA backend
    set once around the loop)."""
    import contextlib

    import torch

    fns = {name: f if isinstance(f, tuple) else (f, contextlib.nullcontext) for name, f in fns.items()}
    for fn, context in fns.values():
        with context():
            for _ in range(50):
                fn()
    torch.cuda.synchronize()
    per_call = {name: [] for name in fns}
    for _ in range(rounds):
        for name, (fn, context) in fns.items():
            with context():
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn()
                per_call[name].append((time.perf_counter() - t0) / calls * 1e6)
            torch.cuda.synchronize()
    return {name: {"median": statistics.median(v), "min": min(v), "max": max(v)} for name, v in per_call.items()}


def graph_ms(fn, time_ms):
    """time_ms of replaying fn() captured in a CUDA graph (after a warm-up call)."""
    import torch

    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return time_ms(graph.replay)


ATTENTION = "attention() tuned-config look-up"
DROP_IN = "autoflash.torch.scaled_dot_product_attention"
CUDNN = "sdpa_cudnn (backend set once)"
CUDNN_CTX = "sdpa_cudnn (sdpa_kernel context per call, as the table)"


def part1(torch, autoflash, common):
    from torch.nn.attention import sdpa_kernel

    from autoflash.kernels.device import device_arch
    from autoflash.serve import api, dispatch

    arch, device = device_arch(0)
    g = torch.Generator(device="cuda").manual_seed(1)
    mk = lambda n=128: torch.randn(1, 2, n, 128, device="cuda", generator=g).to(torch.bfloat16)  # noqa: E731
    q, k, v = mk(), mk(), mk()
    q2, k2, v2 = mk(), mk(), mk()
    qt, kt, vt = (torch.randn(1, 128, 2, 128, device="cuda", generator=g).to(torch.bfloat16).transpose(1, 2)
                  for _ in range(3))  # (B, N, H, D) projections seen as (B, H, N, D), as Hugging Face passes them
    cfg, how = dispatch.explain(arch, device, "forward", {"dtype": "bf16", "head_dim": 128, "causal": False}, 128)
    attention = autoflash.attention
    flip = [0]

    def alternate():  # two pointer sets, as two layers would give
        flip[0] ^= 1
        return attention(q, k, v) if flip[0] else attention(q2, k2, v2)

    import autoflash.torch as aft

    F = torch.nn.functional
    fns = {ATTENTION: lambda: attention(q, k, v),
           "attention(config=cfg)": lambda: attention(q, k, v, config=cfg),
           "attention(return_lse=True)": lambda: attention(q, k, v, return_lse=True),
           "attention(causal=True)": lambda: attention(q, k, v, causal=True),
           "attention() alternating 2 pointer sets": alternate,
           "attention() on (B, N, H, D) views": lambda: attention(qt, kt, vt),
           DROP_IN: lambda: aft.scaled_dot_product_attention(q, k, v),
           "autoflash.torch drop-in, is_causal=True": lambda: aft.scaled_dot_product_attention(q, k, v, is_causal=True),
           "torch.empty_like (the allocation alone)": lambda: torch.empty_like(q)}
    for name in ("sdpa_cudnn", "sdpa_flash"):
        run = common.sdpa_runner(name, q, k, v, False)
        if run:
            fns[f"{name} (sdpa_kernel context per call, as the table)"] = run
    for name in ("sdpa_cudnn", "sdpa_flash"):  # the backend set once around each round's loop
        fns[f"{name} (backend set once)"] = (lambda: F.scaled_dot_product_attention(q, k, v),
                                             lambda backend=common.SDPA_BACKENDS[name]: sdpa_kernel(backend))
    rows = host_rounds(fns)  # grad mode on (the default), inputs without grad: inference as most code calls it
    pool = [(mk(), mk(), mk()) for _ in range(600)]  # more sets than any descriptor cache holds
    it = [0]

    def fresh():  # a new pointer set on every call: TMA descriptors encoded every time
        it[0] = (it[0] + 1) % len(pool)
        return attention(*pool[it[0]])

    rows.update(host_rounds({"attention() new pointers every call (600-set cycle)": fresh}, calls=600))
    rows.update(stages(torch, api, cfg, q, k, v))
    rows["tiny kernel itself (graph replay, us)"] = 1e3 * graph_ms(lambda: attention(q, k, v), common.time_ms)
    rows["config"] = f"{cfg.name} ({how})"
    return rows


def stages(torch, api, cfg, q, k, v):
    """The launch alone, 1000 times: through the plan's packed driver call and through CuPy's
    launcher with the same arguments already built (the floor each path stands on)."""
    from autoflash.ops.forward_launch import plan as plan_of

    ops = [api.as_operand(x, n) for x, n in ((q, "q"), (k, "k"), (v, "v"))]
    p = api.check_inputs(*ops)
    plan = plan_of(api.loaded_kernel(cfg, 0), p, 128 ** -0.5)
    o = torch.empty_like(q)
    ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), 0)
    if not hasattr(plan, "packed"):  # a version before packed launches
        return {}
    args = plan.args(*ptrs)
    packed = plan.packed(*ptrs)
    raw = torch.cuda.current_stream().cuda_stream
    stream = api._stream(ops[0])
    # a PackedSequence (it has .leading) takes the pointers as one tuple; an older tree's PackedLaunch one by one
    launch = (lambda: packed(ptrs, raw)) if hasattr(packed, "leading") else (lambda: packed(*ptrs, raw))
    return host_rounds({
        "stage: packed driver launch (launches)": launch,
        "stage: CuPy launch, arguments built (launches)": lambda: plan.function(
            plan.grid, plan.block, args, shared_mem=plan.smem, stream=stream)})


def bar_lines(rows: dict) -> list[str]:
    """attention() and the drop-in against SDPA's cuDNN path, medians (issue 18 item 3)."""
    lines = []
    for ours in (ATTENTION, DROP_IN):
        for theirs in (CUDNN, CUDNN_CTX):
            a, b = rows.get(ours), rows.get(theirs)
            if isinstance(a, dict) and isinstance(b, dict):
                verdict = "at or below" if a["median"] <= b["median"] else "ABOVE"
                lines.append(f"{ours}: {a['median']:.1f} us vs {theirs}: {b['median']:.1f} us -> "
                             f"{a['median'] / b['median']:.2f}x, {verdict} cuDNN")
    return lines


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


def fmt_host(x) -> str:
    if isinstance(x, dict):
        return f"{x['median']:.2f} ({x['min']:.2f}..{x['max']:.2f})"
    return x if isinstance(x, str) else ("-" if x is None else f"{x:.2f}")


def measure(args):
    import torch

    sys.path.insert(0, str(HERE))
    import common

    import autoflash

    print(f"autoflash from {Path(autoflash.__file__).parent}", flush=True)
    result = {"label": args.label, "torch": torch.__version__, "device": torch.cuda.get_device_name(0)}
    result["host_us"] = part1(torch, autoflash, common)
    print(f"host us per call, median (min..max) of {ROUNDS} interleaved rounds of 1000 calls", flush=True)
    for name, us in result["host_us"].items():
        print(f"{args.label:>8} | {name:<60} | {fmt_host(us)}", flush=True)
    for line in bar_lines(result["host_us"]):
        print(line, flush=True)
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
        print(f"| {name} | {fmt_host(before['host_us'].get(name))} | {fmt_host(a)} |")
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
