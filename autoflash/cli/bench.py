"""`autoflash bench`: time the kernels attention() serves against SDPA's backends (autoflash.bench)."""
from __future__ import annotations

import json
from pathlib import Path

from autoflash import bench, report
from autoflash.cli.common import CliError, csv, flatten


def _needs_torch_and_gpu():
    try:
        import torch
    except ModuleNotFoundError:
        raise CliError("autoflash bench compares with PyTorch SDPA: install torch (with CUDA) first") from None
    if not torch.cuda.is_available():
        raise CliError("autoflash bench needs a CUDA GPU, and torch sees none on this machine")


def cmd_bench(args) -> int:
    _needs_torch_and_gpu()
    grid = bench.DEFAULT_GRID
    causal = {"yes": (True,), "no": (False,), "both": (False, True)}[args.causal] if args.causal else grid["causal"]
    result = bench.run(flatten(args.dtype) or grid["dtypes"], flatten(args.head_dim) or grid["head_dims"],
                       flatten(args.seq_len) or grid["seq_lens"], causal, tokens=args.tokens, rounds=args.rounds,
                       progress=(lambda line: None) if args.json else print)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print()
        print(bench.format_table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    if args.plots:
        try:
            written = report.plot_bench_result(result, args.plots)
        except RuntimeError as exc:  # matplotlib missing
            raise CliError(str(exc)) from None
        if not args.json:
            print("plots: " + ", ".join(map(str, written)))
    return 0


def add_arguments(p) -> None:
    p.add_argument("--dtype", type=csv(str), action="append", help="comma list (default: bf16,fp16)")
    p.add_argument("--head-dim", type=csv(int), action="append", help="comma list (default: 64,128,256)")
    p.add_argument("--seq-len", type=csv(int), action="append", help="comma list (default: 1024,4096,16384)")
    p.add_argument("--causal", choices=("yes", "no", "both"), help="default: both")
    p.add_argument("--tokens", type=int, default=64 * 4096, help="batch*16 heads*N of every row (default: 262144)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per row (default: 5)")
    p.add_argument("--json", action="store_true", help="print the result as JSON only (for scripts)")
    p.add_argument("--out", type=Path, help="also write the result JSON here")
    p.add_argument("--plots", type=Path, help="write TFLOP/s plots (PNG per dtype and head dim) into this folder")
