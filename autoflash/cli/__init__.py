"""`autoflash` command line: tune, worker, show, verify, report, export, bench. A thin layer
over autoflash.tuning and autoflash.store (commands in tune.py and show.py); the CLI
is the only part of autoflash that prints."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from autoflash import store
from autoflash.cli import bench as bench_cli
from autoflash.cli.common import CliError, csv, key_value, knob
from autoflash.cli.show import cmd_export, cmd_report, cmd_show, cmd_verify
from autoflash.cli.tune import cmd_tune, cmd_worker
from autoflash.export import add_arguments as add_export_arguments
from autoflash.kernels.archs import ARCHS
from autoflash.kernels.elements import DTYPES
from autoflash.kernels.registry import OPERATIONS

log = logging.getLogger("autoflash")

__all__ = ["CliError", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (the usage block is what --help is for)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="autoflash", description="Generated, tuned flash-attention kernels.")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="log what the library does (INFO)")
    loud.add_argument("-q", "--quiet", action="store_true", help="log errors only (no warnings)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tune", help="tune kernels for this GPU (without a GPU: compile the search space)",
                       description="Search each problem's config space with Optuna: compile -> verify -> time, "
                                   "and merge the fastest correct config per problem into <out>/<arch>.json. "
                                   "Without a GPU (or with --compile-only) it renders and compiles the search "
                                   "space for --arch and prints the resource table instead.")
    t.add_argument("--op", choices=sorted(OPERATIONS), default="forward",
                   help="the operation to tune (default: forward)")
    t.add_argument("--arch", choices=sorted(ARCHS), help="target arch; must be this GPU's own unless --compile-only")
    t.add_argument("--dtype", type=csv(str), action="append", help=f"comma list of {', '.join(DTYPES)} (default: all)")
    t.add_argument("--head-dim", type=csv(int), action="append", help="comma list (default: 64,128)")
    t.add_argument("--seq-len", type=csv(int), action="append",
                   help="sequence-length buckets (the op's bucket sizes), comma list (default: "
                        f"{','.join(map(str, OPERATIONS['forward'].default_buckets))} for forward)")
    t.add_argument("--causal", choices=("yes", "no", "both"), default=None, help="default: both")
    t.add_argument("--key", type=key_value, action="append", metavar="NAME=V1,V2",
                   help="values of a field of the op's problem key, integers or yes/no (repeatable; "
                        "--dtype, --head-dim and --causal are the same for fields of those names)")
    t.add_argument("--template", action="append", help="fix the template (repeatable; default: every template)")
    t.add_argument("--knob", type=knob, action="append", metavar="NAME=V1,V2",
                   help="restrict a knob of the search space, e.g. --knob block_m=64,128 (repeatable)")
    t.add_argument("--trials", type=int, default=64, help="configs compiled and timed per problem (default: 64)")
    t.add_argument("--timeout", type=float, help="seconds per problem; what is running then finishes")
    t.add_argument("--seed", type=int, default=0, help="sampler seed (default: 0)")
    t.add_argument("--sampler", choices=("auto", "tpe", "exhaustive", "random"), default="auto",
                   help="auto (default): exhaustive when the valid space fits --trials, else TPE")
    t.add_argument("--storage", help="Optuna storage to resume from / share: sqlite:///tune.db, a journal file "
                                     "path (e.g. tune.log), or any RDB URL")
    t.add_argument("--out", type=Path, help="folder for <arch>.json (default: the checkout's tuned_configs/, "
                                            "else the user data dir)")
    t.add_argument("--log", type=Path, help="write every trial of every problem here as JSON "
                                            "(default: a new file under the user state dir's tune-logs/)")
    t.add_argument("--compile-only", action="store_true",
                   help="no GPU needed: render and compile the space for --arch, prune by resources, print the table")
    t.add_argument("--workers", type=int, help="compile processes (default: CPU cores - 1, shared among --devices)")
    t.add_argument("--device", type=int, help="GPU index (default: 0)")
    t.add_argument("--devices", type=csv(int), metavar="I,J,...",
                   help="tune on several GPUs of this machine: one worker each, sharing the studies through "
                        "--storage (default storage: a journal file under the user state dir); this process "
                        "works on the first and writes the entries")
    t.add_argument("--grace", type=float, default=120.0,
                   help="seconds without a heartbeat after which another worker's running trial is lost "
                        "and queued again (default: 120)")
    t.add_argument("--warm-start", action="store_true",
                   help="seed each study with the configs already tuned for its problem on this arch (e.g. "
                        "another GPU model's winners), so a short study ends at least as fast as them")
    t.add_argument("--tokens", type=int, default=None, help="batch*heads*N of the timed problems (default: 131072)")
    t.add_argument("--all", action="store_true", help="--compile-only: list every config, rule-pruned ones too")
    t.add_argument("--whole-space", action="store_true",
                   help="--compile-only: compile every config of the space (default: the served configs of each "
                        "problem and a sample, unless --knob or --all is given)")
    t.add_argument("--stand-in", action="store_true",
                   help="testing only: a deterministic stand-in GPU and compiler (fake timings; needs --out)")

    w = sub.add_parser("worker", help="join a tuning campaign in a shared storage with one GPU of this machine",
                       description="Join the newest (or --campaign) campaign that `autoflash tune --storage` "
                                   "published in STORAGE for this GPU's model, and run its trials until its "
                                   "budget is spent. Writes no tuned_configs: the tune process does.")
    w.add_argument("--storage", required=True, help="the campaign's Optuna storage: an RDB URL "
                                                    "(postgresql://user@host/db) or a journal file on a shared disk")
    w.add_argument("--device", type=int, default=0, help="GPU index (default: 0)")
    w.add_argument("--campaign", help="campaign name (default: the newest one for this GPU model)")
    w.add_argument("--workers", type=int, help="compile processes (default: CPU cores - 1)")
    w.add_argument("--arch", choices=sorted(ARCHS), help="--stand-in only: the stand-in GPU's arch")
    w.add_argument("--stand-in", action="store_true", help="testing only: the deterministic stand-in GPU")

    s = sub.add_parser("show", help="list tuned configs per arch and device, or the trials of a tuning run")
    s.add_argument("--arch", choices=sorted(ARCHS))
    s.add_argument("--dir", type=Path, action="append", help="tuned_configs folder (default: the search path)")
    s.add_argument("--storage", help="list every trial of every study in this Optuna storage")
    s.add_argument("--log", type=Path, help="list every trial of a tune log written by `autoflash tune`")
    s.add_argument("--key", default="", help="only studies whose name contains this text")

    v = sub.add_parser("verify", help="re-check every tuned config on this GPU (or compile them with --compile-only)")
    v.add_argument("--arch", choices=sorted(ARCHS), help="default: this GPU's arch")
    v.add_argument("--compile-only", action="store_true", help="compile and check resources without a GPU")
    v.add_argument("--dir", type=Path, action="append", help="tuned_configs folder (default: the search path)")
    v.add_argument("--device", type=int, default=0)
    r = sub.add_parser("report", help="PNG plots of tuning studies and of a benchmark run")
    r.add_argument("--storage", help="plot every study in this Optuna storage (journal file or RDB URL)")
    r.add_argument("--bench", type=Path,
                   help="plot a benchmark JSON (autoflash bench --json, bench_attention.py --out, bench_decode.py)")
    r.add_argument("--out", type=Path, default=Path("report"), help="folder for the PNGs (default: ./report)")
    e = sub.add_parser("export", help="write a kernel as a standalone .cu plus a C++ header with its launch shape")
    add_export_arguments(e)
    b = sub.add_parser("bench", help="time the kernels attention() serves against PyTorch SDPA's backends",
                       description="Time, on this GPU and in one run, the kernel autoflash.attention() serves for "
                                   "each shape beside SDPA's flash, cuDNN and efficient backends: CUDA-graph replay, "
                                   "interleaved rounds; prints TFLOP/s, ratios and the spread (needs torch).")
    bench_cli.add_arguments(b)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.INFO if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    try:
        return {"tune": cmd_tune, "worker": cmd_worker, "show": cmd_show, "verify": cmd_verify,
                "export": cmd_export, "report": cmd_report,
                "bench": bench_cli.cmd_bench}[args.command](args)
    except (CliError, store.StoreError) as exc:
        print(f"autoflash {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"autoflash {args.command}: interrupted", file=sys.stderr)
        return 130
