"""An off-by-default flash_fwd_wgmma switch (a forward_wgmma module constant, --switch NAME: it changes the rendered
source only) at kernel level: the served forward entries with the switch off, on, and off again (an A/A copy; the switch
sits between the two offs because the order of interleaved kernels moved results up to 1.7 % in earlier A/Bs), beside
SDPA's cuDNN. Written for DIAG_HALF (fourteenth session: a warpgroup's last key tile over the half of its keys it sees;
measured and removed, benchmarks/NOTES.md) and used since for POS_ONLY.

Rows (B*H*N = 64 x 4096, H = 16): bf16/fp16 x D 64/128 x causal N 1024/4096, D 256 causal N 1024 (bf16), and
non-causal D 64 N 1024 (bf16). Each kernel is a CUDA graph of --calls launches replayed in --rounds interleaved rounds
(benchmarks/graph_timing.py); the table gives TFLOP/s (median over rounds, causal counts half the work), x cuDNN and
the spread, then on/off, on/off2 and off2/off (the A/A).

    PYTHONPATH=$PWD python3 benchmarks/wgmma_switch_ab.py --switch NAME [--rounds 7] [--check] [--precompile]

--check adds max |on - off| over the outputs; --precompile compiles every kernel a run would time (8 processes, disk
cache) and prints registers, spills and whether ptxas serialised the wgmmas.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoflash.kernels.compile import compile_kernel  # noqa: E402
from autoflash.ops import forward_wgmma  # noqa: E402
from autoflash.serve.api import choose_config  # noqa: E402

ROWS = ([(t, d, True, n) for d in (64, 128) for n in (1024, 4096) for t in ("bf16", "fp16")]
        + [("bf16", 256, True, 1024), ("bf16", 64, False, 1024)])
LABELS = ("off", "on", "off2")


SWITCH = ""  # set by --switch (and in each --precompile worker by its initializer)


def set_switch(name):
    global SWITCH
    SWITCH = name


class switch:
    """forward_wgmma.<SWITCH> set to `on` inside the block."""
    def __init__(self, on):
        self.on = on

    def __enter__(self):
        self.old = getattr(forward_wgmma, SWITCH)
        setattr(forward_wgmma, SWITCH, self.on)

    def __exit__(self, *exc):
        setattr(forward_wgmma, SWITCH, self.old)


def served(dtype, d, causal, n):
    return choose_config("sm_90", "NVIDIA H200", dtype, d, causal, n)


def compiled(cfg, on):
    with switch(on):
        return compile_kernel(cfg)


def describe(cfg, on) -> str:
    r = compiled(cfg, on).report
    return (f"  {'on ' if on else 'off'} {cfg.name}: {r.registers} registers, {r.spills} B spilled, "
            f"stack {r.stack_frame} B, serialised {r.wgmma_serialized}")


def row(dtype, d, causal, n, rounds, calls, check):
    from forward_ab import cells, inputs, time_beside_cudnn
    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.ops.forward_launch import plan

    cfg = served(dtype, d, causal, n)
    q, k, v, p, scale = inputs(dtype, d, causal, n)
    kernels = {label: LoadedKernel(compiled(cfg, label == "on")) for label in LABELS}
    for kern in kernels.values():
        plan(kern, p, scale)
    res, outs = time_beside_cudnn(kernels, q, k, v, p, scale, rounds, calls)
    diff = f" | {(outs['on'].float() - outs['off'].float()).abs().max().item():.2e}" if check else ""
    cudnn = res.get("cudnn", {}).get("rate")
    rate = {key: res[key]["rate"] for key in LABELS if key in res}
    ratios = [f"{rate[a] / rate[b]:.3f}x" for a, b in (("on", "off"), ("on", "off2"), ("off2", "off"))]
    name = cfg.name.replace("flash_fwd_wgmma_sm_90a_", "")
    print(f"| {dtype} d{d} {'causal' if causal else 'full'} N{n} | {name} | " + " | ".join(cells(res, LABELS))
          + f" | {cudnn / 1e12 if cudnn else float('nan'):.0f} | " + " | ".join(ratios) + f"{diff} |", flush=True)


def precompile() -> None:
    jobs = [(served(*r), on) for r in ROWS for on in (False, True)]
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn"), initializer=set_switch,
                             initargs=(SWITCH,)) as pool:
        for line in pool.map(describe, *zip(*jobs)):
            print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switch", default=os.environ.get("WGMMA_SWITCH"),
                    help="the forward_wgmma constant to turn on, e.g. POS_ONLY (default: $WGMMA_SWITCH)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=10, help="launches per CUDA graph")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    if not isinstance(getattr(forward_wgmma, args.switch, None), bool):
        ap.error(f"forward_wgmma has no switch {args.switch!r}")
    set_switch(args.switch)
    if args.precompile:
        return precompile()
    import torch

    print(f"{torch.cuda.get_device_name()}; graphs of {args.calls} launches, {args.rounds} interleaved rounds; "
          f"TFLOP/s (x cuDNN, spread); the served config with {SWITCH} off, on, off again")
    print("| row | served config | off | on | off2 | cuDNN | on/off | on/off2 | off2/off (A/A)"
          + (" | max on-off" if args.check else "") + " |")
    for r in ROWS:
        row(*r, args.rounds, args.calls, args.check)


if __name__ == "__main__":
    main()
