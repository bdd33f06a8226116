"""autoflash (the config attention() serves) vs PyTorch SDPA's backends, side by side in one run.

    PYTHONPATH=$PWD python3 benchmarks/bench_attention.py [--dtypes bf16 fp16] [--head-dims 64 128 256]
        [--seq-lens 1024 4096 16384] [--causal no yes] [--out results.json]

Batch x heads is chosen so B*H*N = 64 x 4096 (H = 16) for every N, which fills the
132 SMs. TFLOP/s = 4*B*H*N^2*D / time, halved for causal. Each autoflash output is checked
against float64 attention (SDPA's math path on doubles) on one head before it is timed.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import sdpa_runner, tflops, time_ms  # noqa: E402

import autoflash  # noqa: E402
import autoflash.serve.api  # noqa: E402
import autoflash.kernels.device  # noqa: E402
import autoflash.serve.dispatch  # noqa: E402
from autoflash.ops.reference import TOLERANCE  # noqa: E402

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
BACKENDS = ("sdpa_flash", "sdpa_cudnn", "sdpa_efficient")
TOKENS = 64 * 4096


def check(q, k, v, causal, out, dtype):
    """Relative error of autoflash vs float64 attention on the first (batch, head)."""
    qs, ks, vs = (t[:1, :1].double() for t in (q, k, v))
    ref = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=causal)
    rel = ((out[:1, :1].double() - ref).norm() / ref.norm()).item()
    return rel, rel <= TOLERANCE[dtype]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp16"])
    ap.add_argument("--head-dims", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--seq-lens", nargs="+", type=int, default=[1024, 4096, 16384])
    ap.add_argument("--causal", nargs="+", default=["no", "yes"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    arch, device = autoflash.kernels.device.device_arch(0)
    rows = []
    for dtype in args.dtypes:
        for d in args.head_dims:
            for causal in (c == "yes" for c in args.causal):
                for n in args.seq_lens:
                    b, h = max(1, TOKENS // (n * 16)), 16
                    g = torch.Generator(device="cuda").manual_seed(n + d)
                    q, k, v = (torch.randn(b, h, n, d, device="cuda", generator=g).to(TORCH_DTYPES[dtype])
                               for _ in range(3))
                    cfg, how = autoflash.serve.dispatch.explain(arch, device, "forward", {"dtype": dtype, "head_dim": d, "causal": causal}, n)
                    run = lambda: autoflash.attention(q, k, v, causal=causal, config=cfg)  # noqa: E731
                    rel, ok = check(q, k, v, causal, run(), dtype)
                    row = {"dtype": dtype, "head_dim": d, "causal": causal, "seq_len": n, "batch": b, "heads": h,
                           "config": cfg.name, "source": how, "rel_err": rel, "correct": ok}
                    row["autoflash"] = tflops(b, h, n, n, d, causal, time_ms(run))
                    for backend in BACKENDS:
                        fn = sdpa_runner(backend, q, k, v, causal)
                        row[backend] = tflops(b, h, n, n, d, causal, time_ms(fn)) if fn else float("nan")
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"device": device, "arch": arch, "torch": torch.__version__,
                                              "rows": rows}, indent=1))
    print(f"\n{device} ({arch}), torch {torch.__version__}; TFLOP/s (ratio = autoflash / backend)")
    print(f"| dtype | D | causal | N | autoflash | {' | '.join(BACKENDS)} | vs flash | vs cuDNN | template | check |")
    print("|---|---|---|---|---|" + "---|" * len(BACKENDS) + "---|---|---|---|")
    for r in rows:
        vals = " | ".join(f"{r[bk]:.0f}" for bk in BACKENDS)
        print(f"| {r['dtype']} | {r['head_dim']} | {'yes' if r['causal'] else 'no'} | {r['seq_len']} | "
              f"{r['autoflash']:.0f} | {vals} | {r['autoflash'] / r['sdpa_flash']:.2f}x | "
              f"{r['autoflash'] / r['sdpa_cudnn']:.2f}x | {r['config'].split('_sm')[0]} | "
              f"{'ok' if r['correct'] else 'WRONG'} {r['rel_err']:.1e} |")


if __name__ == "__main__":
    main()
