"""`autoflash` command line: tune, show, verify. A thin layer over tune.py and store.py;
this is the only module that prints."""
from __future__ import annotations

import argparse
import datetime
import logging
import sys
import time
from pathlib import Path

from autoflash import store
from autoflash.config import ARCHS, DTYPES

log = logging.getLogger("autoflash")

STANDIN_DEVICE = "Stand-in GPU"


class CliError(Exception):
    """An error the CLI reports in one line (exit status 2)."""


def _csv(kind):
    def parse(text: str):
        out = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(kind(part))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{part!r} is not a valid {kind.__name__}") from None
        return out

    return parse


def _knob(text: str):
    name, sep, values = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--knob takes NAME=V1,V2,... (got {text!r})")
    try:
        return name.strip(), tuple(int(v) for v in values.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--knob {name} values must be integers (got {values!r})") from None


def _flatten(lists):
    return [x for sub in (lists or []) for x in sub]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autoflash", description="Generated, tuned flash-attention kernels.")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="log what the library does (INFO)")
    loud.add_argument("-q", "--quiet", action="store_true", help="log errors only (no warnings)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tune", help="tune kernels for this GPU (without a GPU: compile the search space)",
                       description="Search each problem's config space with Optuna: compile -> verify -> time, "
                                   "and merge the fastest correct config per problem into <out>/<arch>.json. "
                                   "Without a GPU (or with --compile-only) it renders and compiles the search "
                                   "space for --arch and prints the resource table instead.")
    t.add_argument("--arch", choices=sorted(ARCHS), help="target arch; must be this GPU's own unless --compile-only")
    t.add_argument("--dtype", type=_csv(str), action="append", help=f"comma list of {', '.join(DTYPES)} (default: all)")
    t.add_argument("--head-dim", type=_csv(int), action="append", help="comma list (default: 64,128)")
    t.add_argument("--seq-len", type=_csv(int), action="append",
                   help=f"sequence-length buckets, comma list (default: {','.join(map(str, store.BUCKETS))})")
    t.add_argument("--causal", choices=("yes", "no", "both"), default="both")
    t.add_argument("--template", action="append", help="fix the template (repeatable; default: every template)")
    t.add_argument("--knob", type=_knob, action="append", metavar="NAME=V1,V2",
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
    t.add_argument("--devices", type=_csv(int), metavar="I,J,...",
                   help="tune on several GPUs of this machine: one worker each, sharing the studies through "
                        "--storage (default storage: a journal file under the user state dir); this process "
                        "works on the first and writes the entries")
    t.add_argument("--grace", type=float, default=120.0,
                   help="seconds without a heartbeat after which another worker's running trial is lost "
                        "and queued again (default: 120)")
    t.add_argument("--tokens", type=int, default=None, help="batch*heads*N of the timed problems (default: 131072)")
    t.add_argument("--all", action="store_true", help="--compile-only: list every config, rule-pruned ones too")
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
    r.add_argument("--bench", type=Path, help="plot a benchmarks/bench_attention.py --out JSON")
    r.add_argument("--out", type=Path, default=Path("report"), help="folder for the PNGs (default: ./report)")
    e = sub.add_parser("export", help="write a kernel as a standalone .cu plus a C++ header with its launch shape")
    from autoflash.export import add_arguments as add_export_arguments

    add_export_arguments(e)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.INFO if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    try:
        return {"tune": cmd_tune, "worker": cmd_worker, "show": cmd_show, "verify": cmd_verify,
                "export": cmd_export, "report": cmd_report}[args.command](args)
    except (CliError, store.StoreError) as exc:
        print(f"autoflash {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"autoflash {args.command}: interrupted", file=sys.stderr)
        return 130


def cmd_report(args) -> int:
    from autoflash import report

    if not (args.storage or args.bench):
        raise CliError("give --storage URL (tuning studies) and/or --bench FILE (a benchmark JSON)")
    written = []
    try:
        if args.bench:
            written += report.plot_bench(args.bench, args.out)
        if args.storage:
            written += report.plot_study(args.storage, args.out)
    except RuntimeError as exc:  # matplotlib missing
        raise CliError(str(exc)) from None
    for path in written:
        print(path)
    return 0


def cmd_export(args) -> int:
    from autoflash.export import export_main

    try:
        done = export_main(args)
    except ValueError as exc:  # ExportError, ConfigError: bad flags or config text
        raise CliError(str(exc)) from None
    print(f"wrote {done.source} and {done.header} ({done.config.name})")
    return 0


# ---------------------------------------------------------------- tune
def _probe_gpu(device: int):
    """Start the GPU runner subprocess and ask it what GPU is here (this process
    never touches CUDA): (info, runner); the runner is reused for tuning."""
    from autoflash.runner import RunnerProcess

    runner = RunnerProcess({"kind": "gpu", "device": device}, timeout_s=120)
    try:
        info = runner.call({"op": "info"}, timeout=180)
    except BaseException:
        runner.close()
        raise
    if not info.get("ok"):
        runner.close()
    return info, runner


def _keys(args, arch: str, device: str) -> tuple[list, list[str]]:
    from autoflash.tune import HEAD_DIMS, StudyKey, variants_for

    dtypes = _flatten(args.dtype) or list(DTYPES)
    bad = sorted(set(dtypes) - set(DTYPES))
    if bad:
        raise CliError(f"unknown dtype(s) {bad}; choose from {list(DTYPES)}")
    head_dims = _flatten(args.head_dim) or list(HEAD_DIMS)
    causals = {"yes": [True], "no": [False], "both": [False, True]}[args.causal]
    templates = args.template or None
    keys, skipped = [], []
    for dtype in dtypes:
        for d in head_dims:
            try:
                found = variants_for(arch, dtype, d, templates)
            except Exception as exc:
                raise CliError(str(exc)) from None
            if not found:
                skipped.append(f"{dtype} d{d}: no template{' of ' + ','.join(templates) if templates else ''} "
                               f"supports it on {arch}")
                continue
            for c in causals:
                if templates and len(templates) == 1:
                    keys.append(StudyKey(arch, device, templates[0], dtype, d, c))
                elif templates:  # several fixed templates: one study each
                    keys += [StudyKey(arch, device, v.name, dtype, d, c) for v, _ in found]
                else:
                    keys.append(StudyKey(arch, device, None, dtype, d, c))
    if not keys:
        raise CliError("nothing to tune: " + "; ".join(skipped))
    return keys, skipped


def cmd_tune(args) -> int:
    from autoflash import tune

    knobs = dict(args.knob or []) or None
    try:
        tune.check_knobs(knobs, args.template)
    except tune.TuneError as exc:
        raise CliError(str(exc)) from None
    buckets = tuple(sorted(set(_flatten(args.seq_len)))) or store.BUCKETS
    if any(b < 1 for b in buckets):
        raise CliError("--seq-len values must be positive")
    if args.trials < 1:
        raise CliError("--trials must be at least 1")
    if args.devices is not None:
        if not args.devices or any(d < 0 for d in args.devices):
            raise CliError("--devices takes GPU indices, e.g. --devices 0,1,2,3")
        if args.device is not None:
            raise CliError("give --device or --devices, not both")
    device = args.devices[0] if args.devices else (args.device or 0)
    if args.grace <= 0:
        raise CliError("--grace must be positive")
    standin = None
    if args.stand_in:
        if args.out is None:
            raise CliError("--stand-in writes fake timings: give --out (never the shipped tuned_configs/)")
        standin = _standin_spec(args.arch or "sm_90", device)

    if args.compile_only:
        if not args.arch:
            raise CliError("--compile-only needs --arch (e.g. --arch sm_89): there is no GPU to take it from")
        return _compile_only(args, knobs, standin, reason=None)

    info, runner = _runner_for(standin, device)
    try:
        return _tune_on_gpu(args, knobs, standin, buckets, info, runner)
    finally:
        runner.close()


def _standin_spec(arch: str, device: int) -> dict:
    """The stand-in GPU; tests of several workers ask it (through the environment, which
    worker processes inherit) to log each trial it runs, or to hang in its first trial."""
    import os

    spec = {"kind": "standin", "arch": arch, "device_name": STANDIN_DEVICE, "device": device}
    for name in ("record", "hang"):
        value = os.environ.get(f"AUTOFLASH_STANDIN_{name.upper()}")
        if value:
            spec[name] = value
    return spec


def _runner_for(standin: dict | None, device: int):
    if standin is None:
        return _probe_gpu(device)
    from autoflash.runner import InlineRunner, StandInBackend

    runner = InlineRunner(StandInBackend(standin))
    return runner.call({"op": "info"}), runner


def _compile_workers(args, standin: dict | None) -> int | None:
    """Compile processes: --workers, else the stand-in compiles inline (0) and a real run
    takes the default (None: CPU cores - 1)."""
    if args.workers is not None or standin is None:
        return args.workers
    return 0


def cmd_worker(args) -> int:
    from autoflash import campaign, tune

    standin = _standin_spec(args.arch or "sm_90", args.device) if args.stand_in else None
    info, runner = _runner_for(standin, args.device)
    try:
        if not info.get("ok"):
            raise CliError(f"no usable GPU {args.device}: {info.get('error')}")
        try:
            name, keys, opts = campaign.load(args.storage, info["arch"], info["device_name"], args.campaign)
        except tune.TuneError as exc:
            raise CliError(str(exc)) from None
        print(f"worker {tune.WORKER_ID} on {info['device_name']} (device {args.device}) joins {name}: "
              f"{len(keys)} problem(s)", flush=True)
        workers = _compile_workers(args, standin)
        progress = _Progress()
        tuner = tune.Tuner(opts, runner, info, workers=workers, standin=standin, progress=progress)
        try:
            tuner.run(keys)
        finally:
            progress.close()
        print(f"ran {progress.done} trial(s) here; time: {tuner.stats.describe()}")
        return 0
    finally:
        runner.close()


def _tune_on_gpu(args, knobs, standin, buckets, info, runner) -> int:
    from autoflash import tune

    if not info.get("ok"):
        if not args.arch:
            raise CliError(f"no usable GPU ({info.get('error')}); to compile a search space without one, "
                           "pass --arch, e.g. --arch sm_90 --compile-only")
        return _compile_only(args, knobs, standin, reason=info.get("error"))
    gpu_arch = info["arch"]
    if args.arch and args.arch not in store.compatible_archs(gpu_arch):
        raise CliError(f"this GPU ({info['device_name']}) is {gpu_arch}, not {args.arch}: timings must come from "
                       f"the target. Tune with --arch {gpu_arch} here, or use --compile-only to compile "
                       f"{args.arch}'s search space without timing it")
    arch = gpu_arch  # the file and study arch; sm_90a-only templates join an sm_90 study (variants_for)
    keys, skipped = _keys(args, arch, info["device_name"])
    for note in skipped:
        print(f"skipped {note}")
    out_dir = args.out or store.default_out_dir()
    log_path = args.log or _default_log_path(arch)
    storage = args.storage
    if args.devices and not storage:  # the workers need a storage to meet in
        storage = str(log_path.with_suffix(".journal"))
    opts = tune.TuneOptions(trials=args.trials, timeout=args.timeout, seed=args.seed, sampler=args.sampler,
                            storage=storage, buckets=buckets, tokens=args.tokens or tune.TOKENS, knobs=knobs,
                            grace_s=args.grace)
    workers = _compile_workers(args, standin)
    if args.devices and workers is None:  # the compile pools of this machine's workers share its cores
        workers = max(1, tune.default_workers() // len(args.devices))
    print(f"tuning {len(keys)} problem(s) on {info['device_name']} ({arch}, driver {info.get('driver')}, "
          f"NVRTC {info.get('nvrtc')}), buckets N={','.join(map(str, buckets))}, up to {args.trials} trials each"
          + (f", storage {storage}" if storage else ""))
    others = _start_workers(args, keys, opts, workers, standin, log_path) if args.devices else None
    progress = _Progress()
    tuner = tune.Tuner(opts, runner, info, workers=workers, standin=standin, progress=progress)
    try:
        results = tuner.run(keys)
    except tune.TuneError as exc:
        raise CliError(str(exc)) from None
    except BaseException:
        if others is not None:
            others.stop()
        raise
    finally:
        progress.close()
    for problem in others.wait() if others is not None else []:
        print(f"warning: {problem}", file=sys.stderr)
    entries = [e for r in results for e in r.entries]
    path = Path(out_dir) / f"{arch}.json"
    if entries:
        store.merge(path, entries, arch)
    tune.write_log(log_path, results, tuner.stats, info)
    _print_summary(results)
    print(f"\n{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} merged into {path}" if entries
          else "\nno correct config found: nothing written")
    print(f"every trial (config, times, or why it was pruned or failed): {log_path}  "
          f"(autoflash show --log {log_path})")
    print("time: " + tuner.stats.describe())
    return 0 if entries else 1


def _start_workers(args, keys, opts, workers, standin, log_path: Path):
    """Publish the campaign and start a worker for every device after the first."""
    from autoflash import campaign

    name = campaign.publish(opts.storage, keys, opts)
    commands = [(d, campaign.worker_command(opts.storage, d, name, workers,
                                            standin_arch=standin["arch"] if standin else None,
                                            verbose=args.verbose)) for d in args.devices[1:]]
    if len(set(args.devices)) < len(args.devices):
        print("note: several workers share a GPU: the protocol is exercised, the timings are not meaningful")
    print(f"campaign {name}: this process on device {args.devices[0]}, "
          f"{len(commands)} more worker(s) on device(s) {','.join(str(d) for d, _ in commands) or '-'}; "
          f"other machines join with: autoflash worker --storage {opts.storage} --device N")
    return campaign.LocalWorkers(commands, log_path.parent / (log_path.stem + "-workers"))


def _default_log_path(arch: str) -> Path:
    import platformdirs

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(platformdirs.user_state_dir("autoflash")) / "tune-logs" / f"{arch}-{stamp}.json"


class _Progress:
    """One tqdm bar per problem key: trials done here out of the budget left, best time
    so far, failures. Bars only on a terminal (tqdm's disable=None); the summary table
    at the end is printed either way."""

    def __init__(self):
        self.bars = {}
        self.best = {}
        self.failed = {}
        self.count = {}  # per key (a disabled tqdm bar does not count)
        self.done = 0

    def __call__(self, event: str, **kw) -> None:
        if event == "start":
            from tqdm import tqdm

            for i, (key, todo) in enumerate(kw["studies"]):
                self.bars[key] = tqdm(total=todo, desc=key.describe(), unit="trial", position=i, leave=True,
                                      dynamic_ncols=True, file=sys.stderr, disable=None)
                self.failed[key] = self.count[key] = 0
        elif event == "trial":
            if kw.get("duplicate") or kw.get("stage") == "rules":
                return
            key = kw["key"]
            self.done += 1
            self.count[key] = self.count.get(key, 0) + 1
            if kw["state"] == "FAIL":
                self.failed[key] = self.failed.get(key, 0) + 1
            ms = kw.get("ms") or {}
            if kw["state"] == "COMPLETE" and ms:
                self.best[key] = min(self.best.get(key, float("inf")), min(ms.values()))
            bar = self.bars.get(key)
            if bar is not None:
                best = f"{self.best[key]:.3f} ms" if key in self.best else "-"
                bar.set_postfix_str(f"best {best}, failed {self.failed[key]}", refresh=False)
                bar.update(1)
        elif event == "study_done" and kw["entries"]:
            bar = self.bars.get(kw["key"])
            for e in kw["entries"]:
                line = (f"  {kw['key'].describe()} N={e['seq_bucket']}: {_cfg_name(e)} "
                        f"{e['ms']:.3f} ms {e['tflops']:.1f} TFLOP/s")
                (bar.write if bar is not None else print)(line)

    def close(self):
        for bar in self.bars.values():
            bar.close()


def _cfg_name(entry: dict) -> str:
    from autoflash.config import KernelConfig

    return KernelConfig.from_dict(entry["config"]).name


def _table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _print_summary(results) -> None:
    rows = []
    for r in results:
        c = r.counts
        for e in r.entries:
            vs = f"{e['default_ms'] / e['ms']:.2f}x" if e.get("default_ms") else "-"
            rows.append([r.key.describe(), e["seq_bucket"], _cfg_name(e), f"{e['ms']:.3f}", f"{e['tflops']:.1f}",
                         f"{e['max_rel_error']:.1e}", vs, f"{100 * e['spread']:.1f}%",
                         f"{c['run']}/{c['pruned']}/{c['failed']}"])
        if not r.entries:
            rows.append([r.key.describe(), "-", "no correct config", "-", "-", "-", "-", "-",
                         f"{c['run']}/{c['pruned']}/{c['failed']}"])
    print()
    print(_table(["problem", "N", "best config", "ms", "TFLOP/s", "rel err", "vs default", "spread",
                  "trials run/pruned/failed"], rows))


def _compile_only(args, knobs, standin, reason: str | None) -> int:
    from autoflash import tune

    arch = args.arch
    if reason is not None:
        print(f"No usable GPU here ({reason}).\nWithout a GPU, `autoflash tune` does what needs none: it renders "
              f"and compiles the {arch} search space with NVRTC, prunes what {arch}'s resources rule out, and "
              f"prints what is left (the space a {arch} GPU will search). Nothing is timed or written.\n")
    keys, skipped = _keys(args, arch, "(compile only)")
    for note in skipped:
        print(f"skipped {note}")
    t0 = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=0, unit="kernel", desc=f"compiling {arch}", file=sys.stderr, disable=None)

    def progress(event, **kw):
        bar.total = kw["total"]
        bar.update(kw["done"] - bar.n)

    try:
        rows = tune.compile_space(keys, knobs, workers=args.workers, standin=standin, progress=progress)
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    rows.sort(key=lambda r: (r.config.dtype, r.config.head_dim, r.config.causal, r.config.template, r.status != "ok",
                             r.config.name))
    shown = [r for r in rows if args.all or r.status != "rule"]
    table = [[r.config.name, r.status, r.registers if r.registers is not None else "-",
              r.spills if r.spills is not None else "-",
              f"{r.smem / 1024:.1f}" if r.smem is not None else "-",
              r.config.threads, r.blocks_per_sm if r.blocks_per_sm is not None else "-", r.reason[:90]]
             for r in shown]
    print(_table(["config", "status", "regs", "spills", "smem KB", "threads", "blocks/SM", "reason"], table))
    counts = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    cached = sum(r.cached for r in rows)
    print(f"\n{arch}: {len(rows)} configs over {len(keys)} problem(s): {counts.get('ok', 0)} compiled and fit "
          f"(the space a {arch} GPU will search), {counts.get('resources', 0)} pruned by resources, "
          f"{counts.get('compile-error', 0)} compile errors, {counts.get('rule', 0)} pruned by template rules"
          f"{'' if args.all else ' (not listed; --all lists them)'}. "
          f"{bar.total} compiled ({cached} from cache) in {wall:.1f} s.")
    if reason is not None:
        print(f"\nTo tune, run the same command on a {arch} GPU.")
    return 0 if counts.get("ok") else 1


# ---------------------------------------------------------------- show
def _arch_files(dirs: list[Path], arch: str | None) -> list[str]:
    found = set()
    for d in dirs:
        for p in Path(d).glob("*.json"):
            if p.stem in ARCHS and (arch is None or p.stem == arch):
                found.add(p.stem)
    return sorted(found)


def cmd_show(args) -> int:
    if args.storage or args.log:
        return _show_trials(args)
    dirs = args.dir or store.search_dirs()
    archs = _arch_files(dirs, args.arch)
    if not archs:
        print(f"no tuned configs in {', '.join(map(str, dirs))}" + (f" for {args.arch}" if args.arch else ""))
        return 0
    for arch in archs:
        entries = store.entries_for_arch(arch, dirs)
        by_device: dict[str, list] = {}
        for e in entries:
            by_device.setdefault(e["device"], []).append(e)
        for device, es in sorted(by_device.items()):
            es.sort(key=lambda e: store.entry_key(e).sort_key())
            print(f"\n{arch} / {device}: {len(es)} entries")
            rows = [[e["dtype"], e["head_dim"], "yes" if e["causal"] else "no", e["seq_bucket"],
                     e["template"] or "any", _cfg_name(e), f"{e['ms']:.3f}", f"{e['tflops']:.1f}",
                     f"{e['max_rel_error']:.1e}",
                     f"{e['default_ms'] / e['ms']:.2f}x" if e.get("default_ms") else "-", e["date"][:10]]
                    for e in es]
            print(_table(["dtype", "D", "causal", "N", "template", "config", "ms", "TFLOP/s", "rel err",
                          "vs default", "date"], rows))
    return 0


def _show_trials(args) -> int:
    import json

    from autoflash import tune

    if args.storage:
        listing = tune.stored_listing(args.storage)
    else:
        try:
            data = json.loads(Path(args.log).read_text())
            listing = {name: s["trials"] for name, s in data["studies"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CliError(f"cannot read tune log {args.log}: {exc}") from None
    listing = {k: v for k, v in listing.items() if args.key in k}
    if not listing:
        print("no autoflash studies found" + (f" matching {args.key!r}" if args.key else ""))
        return 0
    for name, rows in listing.items():
        print(f"\n{name}: {len(rows)} trials")
        table = []
        for r in rows:
            ms = r.get("ms") or {}
            times = " ".join(f"{b}:{v:.3f}" for b, v in ms.items()) if ms else "-"
            why = r.get("reason") or ""
            if r.get("duplicate_of") is not None:
                why = (why + " " if why else "") + f"(duplicate of {r['duplicate_of']})"
            table.append([r["number"], r["state"], r.get("config", ""), times, why[:100]])
        print(_table(["#", "state", "config", "ms per N", "reason"], table))
    return 0


# -------------------------------------------------------------- verify
def cmd_verify(args) -> int:
    from autoflash import tune

    dirs = args.dir or store.search_dirs()
    arch = args.arch
    device_name = None
    if not args.compile_only:
        from autoflash.api import device_arch

        try:
            gpu_arch, device_name = device_arch(args.device)
        except Exception as exc:
            raise CliError(f"no usable GPU ({type(exc).__name__}: {exc}); use --compile-only --arch ARCH") from None
        if arch and arch not in store.compatible_archs(gpu_arch):
            raise CliError(f"this GPU ({device_name}) is {gpu_arch}; verify {arch} configs with --compile-only")
        arch = gpu_arch
    elif not arch:
        raise CliError("--compile-only needs --arch")
    entries = store.entries_for_arch(arch, dirs)
    if not entries:
        print(f"no tuned configs for {arch} in {', '.join(map(str, dirs))}")
        return 0
    failures = 0
    rows = []
    for e in sorted(entries, key=lambda e: store.entry_key(e).sort_key()):
        ck, problems = tune.check_entry_offline(e)
        status = "ok" if not problems else "BAD: " + "; ".join(problems)
        if not problems and not args.compile_only:
            checks = tune.check_entry_on_gpu(e, args.device)
            bad = [f"N={p['seq_q']}: {c.describe()}" for p, c in checks if not c.passed]
            worst = max(c.rel_error for _, c in checks)
            status = (f"ok (rel err {worst:.1e} at N={','.join(str(p['seq_q']) for p, _ in checks)})" if not bad
                      else "WRONG: " + "; ".join(bad))
            problems = bad
        failures += bool(problems)
        rows.append([e["device"][:28], e["dtype"], e["head_dim"], "yes" if e["causal"] else "no", e["seq_bucket"],
                     ck.name, ck.report.registers, ck.report.spills, status])
    print(_table(["device", "dtype", "D", "causal", "N", "config", "regs", "spills", "result"], rows))
    what = "compiled" if args.compile_only else f"checked on {device_name}"
    print(f"\n{len(entries) - failures}/{len(entries)} {arch} configs {what}: "
          + ("all pass" if not failures else f"{failures} FAILED"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
