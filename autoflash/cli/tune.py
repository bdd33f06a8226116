"""`autoflash tune` and `autoflash worker`: build the study keys from the flags, start
the runner (a GPU subprocess, or the stand-in), run the tuner, merge the entries."""
from __future__ import annotations

import datetime
import itertools
import os
import sys
import time
from pathlib import Path

import platformdirs
from tqdm import tqdm

from autoflash import store
from autoflash.cli.common import CliError, flatten, table
from autoflash.cli.progress import Progress, print_summary
from autoflash.kernels.archs import build_arch, compatible_archs
from autoflash.kernels.device import no_gpu_reason
from autoflash.kernels.elements import DTYPES
from autoflash.kernels.registry import OPERATIONS, templates_of
from autoflash.kernels.template import spell_values
from autoflash.runner.process import InlineRunner, RunnerProcess
from autoflash.runner.protocol import InfoRequest
from autoflash.runner.standin import DEVICE_NAME as STANDIN_DEVICE, StandInBackend
from autoflash.tuning import campaign
from autoflash.tuning.compile_only import compile_space
from autoflash.tuning.compile_pool import default_workers
from autoflash.tuning.keys import StudyKey, TuneError, TuneOptions
from autoflash.tuning.listing import write_log
from autoflash.tuning.space import check_knobs, templates_for
from autoflash.tuning.storage import WORKER_ID
from autoflash.tuning.tuner import Tuner


def _probe_gpu(device: int):
    """Start the GPU runner subprocess and ask it what GPU is here (this process
    never touches CUDA): (info, runner); the runner is reused for tuning."""
    runner = RunnerProcess({"kind": "gpu", "device": device}, timeout_s=120)
    try:
        info = runner.call(InfoRequest(), timeout=180)
    except BaseException:
        runner.close()
        raise
    if not info.ok:
        runner.close()
    return info, runner


def _key_values(args, op) -> dict[str, list]:
    """Each problem-key field of the op and the values to tune: --dtype, --head-dim,
    --causal for the fields of those names, --key NAME=V1,V2 for any field, else the
    op's defaults."""
    given = {"dtype": flatten(args.dtype), "head_dim": flatten(args.head_dim),
             "causal": {"yes": [True], "no": [False], "both": [False, True], None: []}[args.causal]}
    for name, values in args.key or []:
        given[name] = list(values)
    unknown = sorted(n for n, v in given.items() if v and n not in ("dtype",) + op.key_fields)
    if unknown:
        raise CliError(f"the {op.name} problem key has no field(s) {unknown}; its fields: "
                       f"{['dtype', *op.key_fields]}")
    out = {"dtype": given["dtype"] or list(DTYPES)}
    bad = sorted(set(out["dtype"]) - set(DTYPES))
    if bad:
        raise CliError(f"unknown dtype(s) {bad}; choose from {list(DTYPES)}")
    for field in op.key_fields:
        out[field] = given.get(field) or list(op.key_defaults.get(field, ()))
        if not out[field]:
            raise CliError(f"give the {op.name} key field {field} (--key {field}=V1,V2)")
    return out


def _keys(args, arch: str, device: str) -> tuple[list, list[str]]:
    op = OPERATIONS[args.op]
    values = _key_values(args, op)
    templates = args.template or None
    keys, skipped = [], []
    for combo in itertools.product(*values.values()):
        key = dict(zip(values, combo))
        try:
            found = templates_for(op.name, arch, key, templates)
        except TuneError as exc:
            raise CliError(str(exc)) from None
        if not found:
            skipped.append(f"{op.describe_key(key)}: no template{' of ' + ','.join(templates) if templates else ''} "
                           f"supports it on {arch}")
            continue
        if templates and len(templates) == 1:
            keys.append(StudyKey.of(op.name, arch, device, templates[0], **key))
        elif templates:  # several fixed templates: one study each
            keys += [StudyKey.of(op.name, arch, device, t.name, **key) for t, _ in found]
        else:
            keys.append(StudyKey.of(op.name, arch, device, None, **key))
    if not keys:
        raise CliError("nothing to tune: " + "; ".join(skipped) + ". " + _supported(op, arch))
    return keys, skipped


def _supported(op, arch: str) -> str:
    """What the op's templates take on this arch, per key field (for an error message)."""
    usable = [t for t in templates_of(op.name).values() if build_arch(t.archs, arch) is not None]
    if not usable:
        return f"No {op.name} template supports {arch}."
    return f"On {arch} the {op.name} templates take " + _allowed(t.key_values for t in usable)


def _allowed(tables) -> str:
    """'name v1, v2; ...': each name's values, united over several templates' {name: values} tables."""
    values: dict[str, set] = {}
    for by_name in tables:
        for name, allowed in by_name.items():
            values.setdefault(name, set()).update(allowed)
    return "; ".join(f"{name} {spell_values(v)}" for name, v in sorted(values.items()))


def cmd_tune(args) -> int:
    knobs = dict(args.knob or []) or None
    try:
        check_knobs(knobs, args.op, args.template)
    except TuneError as exc:
        raise CliError(str(exc)) from None
    buckets = tuple(sorted(set(flatten(args.seq_len)))) or OPERATIONS[args.op].default_buckets
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
    """The stand-in GPU; tests of several workers give it a hook (through the environment,
    which worker processes inherit) that logs each trial it runs, or hangs in one."""
    spec = {"kind": "standin", "arch": arch, "device_name": STANDIN_DEVICE, "device": device}
    if os.environ.get("AUTOFLASH_STANDIN_HOOK"):  # file.py:function, called at every trial
        spec["hook"] = os.environ["AUTOFLASH_STANDIN_HOOK"]
    return spec


def _runner_for(standin: dict | None, device: int):
    if standin is None:
        return _probe_gpu(device)
    runner = InlineRunner(StandInBackend(standin))
    return runner.call(InfoRequest()), runner


def _compile_workers(args, standin: dict | None) -> int | None:
    """Compile processes: --workers, else the stand-in compiles inline (0) and a real run
    takes the default (None: CPU cores - 1)."""
    if args.workers is not None or standin is None:
        return args.workers
    return 0


def cmd_worker(args) -> int:
    standin = _standin_spec(args.arch or "sm_90", args.device) if args.stand_in else None
    info, runner = _runner_for(standin, args.device)
    try:
        if not info.ok:
            raise CliError(f"no usable GPU {args.device}: {info.error}")
        try:
            name, keys, opts = campaign.load(args.storage, info.arch, info.device_name, args.campaign)
        except TuneError as exc:
            raise CliError(str(exc)) from None
        print(f"worker {WORKER_ID} on {info.device_name} (device {args.device}) joins {name}: "
              f"{len(keys)} problem(s)", flush=True)
        workers = _compile_workers(args, standin)
        progress = Progress()
        tuner = Tuner(opts, runner, info, workers=workers, standin=standin, progress=progress)
        try:
            tuner.run(keys)
        finally:
            progress.close()
        print(f"ran {progress.done} trial(s) here; time: {tuner.stats.describe()}")
        return 0
    finally:
        runner.close()


def _tune_on_gpu(args, knobs, standin, buckets, info, runner) -> int:
    if not info.ok:
        if not args.arch:
            raise CliError(f"no usable GPU ({info.error}); to compile a search space without one, "
                           "pass --arch, e.g. --arch sm_90 --compile-only")
        return _compile_only(args, knobs, standin, reason=info.error)
    gpu_arch = info.arch
    if args.arch and args.arch not in compatible_archs(gpu_arch):
        raise CliError(f"this GPU ({info.device_name}) is {gpu_arch}, not {args.arch}: timings must come from "
                       f"the target. Tune with --arch {gpu_arch} here, or use --compile-only to compile "
                       f"{args.arch}'s search space without timing it")
    arch = gpu_arch  # the file and study arch; sm_90a-only templates join an sm_90 study (templates_for)
    keys, skipped = _keys(args, arch, info.device_name)
    for note in skipped:
        print(f"skipped {note}")
    out_dir = args.out or store.default_out_dir()
    log_path = args.log or _default_log_path(arch)
    storage = args.storage
    if args.devices and not storage:  # the workers need a storage to meet in
        storage = str(log_path.with_suffix(".journal"))
    opts = TuneOptions(trials=args.trials, timeout=args.timeout, seed=args.seed, sampler=args.sampler,
                       storage=storage, buckets=buckets, tokens=args.tokens, knobs=knobs, grace_s=args.grace,
                       warm_start=args.warm_start)
    workers = _compile_workers(args, standin)
    if args.devices and workers is None:  # the compile pools of this machine's workers share its cores
        workers = max(1, default_workers() // len(args.devices))
    print(f"tuning {len(keys)} problem(s) on {info.device_name} ({arch}, driver {info.driver}, "
          f"NVRTC {info.nvrtc}), buckets N={','.join(map(str, buckets))}, up to {args.trials} trials each"
          + (f", storage {storage}" if storage else ""))
    others = _start_workers(args, keys, opts, workers, standin, log_path) if args.devices else None
    progress = Progress()
    tuner = Tuner(opts, runner, info, workers=workers, standin=standin, progress=progress)
    try:
        results = tuner.run(keys)
    except TuneError as exc:
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
    write_log(log_path, results, tuner.stats, info)
    print_summary(results)
    print(f"\n{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} merged into {path}" if entries
          else "\nno correct config found: nothing written")
    print(f"every trial (config, times, or why it was pruned or failed): {log_path}  "
          f"(autoflash show --log {log_path})")
    print("time: " + tuner.stats.describe())
    return 0 if entries else 1


def _start_workers(args, keys, opts, workers, standin, log_path: Path):
    """Publish the campaign and start a worker for every device after the first."""
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
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(platformdirs.user_state_dir("autoflash")) / "tune-logs" / f"{arch}-{stamp}.json"


# The tuning flags that only matter when kernels are timed.
_TIMING_FLAGS = {"trials": 64, "seq_len": None, "timeout": None, "tokens": None, "storage": None, "devices": None}
# Configs of each problem a compile-only run compiles besides the served ones (--whole-space: all).
SAMPLE_PER_PROBLEM = 2


def _compile_only(args, knobs, standin, reason: str | None) -> int:
    arch = args.arch
    if reason is not None:
        print(f"No usable GPU here: {no_gpu_reason(reason)}.\nWithout a GPU, `autoflash tune` does what needs none: it renders "
              f"and compiles the {arch} search space with NVRTC, prunes what {arch}'s resources rule out, and "
              f"prints what is left (the space a {arch} GPU will search). Nothing is timed or written.\n")
    ignored = [f"--{f.replace('_', '-')}" for f, default in _TIMING_FLAGS.items() if getattr(args, f, default) != default]
    if ignored:
        print(f"note: {', '.join(ignored)} only matter when kernels are timed: ignored here")
    keys, skipped = _keys(args, arch, "(compile only)")
    for note in skipped:
        print(f"skipped {note}")
    # --knob narrows the space by hand and --all asks for every config: both mean the whole (narrowed) space
    sample = None if args.whole_space or knobs or args.all else SAMPLE_PER_PROBLEM
    print(f"compiling {'the whole search space' if sample is None else f'the served configs and {sample} more'} "
          f"of {len(keys)} problem(s) for {arch}" + ("" if sample is None else " (--whole-space: all of it)"),
          flush=True)
    t0 = time.perf_counter()
    bar = tqdm(total=0, unit="kernel", desc=f"compiling {arch}", file=sys.stderr, disable=None)
    said = [0]

    def progress(event, **kw):
        bar.total = kw["total"]
        bar.update(kw["done"] - bar.n)
        tenth = 10 * kw["done"] // max(1, kw["total"])
        if bar.disable and tenth > said[0]:  # no terminal, no bar: a line every tenth
            said[0] = tenth
            print(f"compiled {kw['done']}/{kw['total']} kernels ({time.perf_counter() - t0:.0f} s)", flush=True)

    try:
        rows = compile_space(keys, knobs, workers=args.workers, standin=standin, progress=progress, sample=sample)
    finally:
        bar.close()
    if not rows:
        raise CliError("no config of the search space matches " + " ".join(
            f"--knob {k}={','.join(map(str, v))}" for k, v in (knobs or {}).items()) + "; " + _knob_values(keys))
    wall = time.perf_counter() - t0
    rows.sort(key=lambda r: (r.config.op, tuple(OPERATIONS[r.config.op].key_of(r.config).values()),
                             r.config.template, r.status != "ok", r.config.name))
    shown = [r for r in rows if args.all or r.status != "rule"]
    listed = [[r.config.name, r.status, r.registers if r.registers is not None else "-",
              r.spills if r.spills is not None else "-",
              f"{r.smem / 1024:.1f}" if r.smem is not None else "-",
              r.config.threads, r.blocks_per_sm if r.blocks_per_sm is not None else "-", r.reason[:90]]
             for r in shown]
    counts = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    cached = sum(r.cached for r in rows)
    summary = (f"{arch}: {len(rows)} configs over {len(keys)} problem(s): {counts.get('ok', 0)} compiled and fit "
          f"({'the space a ' + arch + ' GPU will search' if sample is None else 'served configs and a sample'}), "
          f"{counts.get('resources', 0)} pruned by resources, "
          f"{counts.get('compile-error', 0)} compile errors, {counts.get('rule', 0)} pruned by template rules"
          f"{'' if args.all else ' (not listed; --all lists them)'}. "
          f"{bar.total} compiled ({cached} from cache) in {wall:.1f} s.")
    print(f"\n{summary}\n")  # the summary first, the table after it, and the summary again below
    print(table(["config", "status", "regs", "spills", "smem KB", "threads", "blocks/SM", "reason"], listed))
    print(f"\n{summary}")
    if reason is not None:
        print(f"\nTo tune, run the same command on a {arch} GPU.")
    return 0 if counts.get("ok") else 1


def _knob_values(keys) -> str:
    return "the knobs take " + _allowed(t.knobs for key in keys for t, _ in templates_for(
        key.op, key.arch, key.params, [key.template] if key.template else None))


