"""`autoflash show`, `verify`, `report` and `export`."""
from __future__ import annotations

import json
from pathlib import Path

from autoflash import report, store
from autoflash.cli.common import CliError, cfg_name, speed, table
from autoflash.export import export_main
from autoflash.kernels.archs import ARCHS, compatible_archs
from autoflash.kernels.device import device_arch
from autoflash.kernels.registry import OPERATIONS
from autoflash.tuning.entries import check_entry_offline, check_entry_on_gpu
from autoflash.tuning.listing import stored_listing
from autoflash.tuning.storage import storage_file


def cmd_report(args) -> int:
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
    try:
        done = export_main(args)
    except ValueError as exc:  # ExportError, ConfigError: bad flags or config text
        raise CliError(str(exc)) from None
    print(f"wrote {done.source} and {done.header} ({done.config.name})")
    return 0


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
            rows = [[e["op"], _key_label(e), e["seq_bucket"], e["template"] or "any", cfg_name(e),
                     f"{e['ms']:.3f}", speed(e), f"{e['max_rel_error']:.1e}",
                     f"{e['default_ms'] / e['ms']:.2f}x" if e.get("default_ms") else "-", e["date"][:10]]
                    for e in es]
            print(table(["op", "problem", "N", "template", "config", "ms", "speed", "rel err", "vs default",
                         "date"], rows))
    return 0


def _key_label(entry: dict) -> str:
    return OPERATIONS[entry["op"]].describe_key(store.problem_key(entry))


def _show_trials(args) -> int:
    if args.storage:
        local = storage_file(args.storage)
        if local is not None and not local.is_file():  # opening it would create an empty one
            raise CliError(f"no tuning storage at {local}: give the --storage of an earlier `autoflash tune`")
        listing = stored_listing(args.storage)
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
        listed = []
        for r in rows:
            ms = r.get("ms") or {}
            times = " ".join(f"{b}:{v:.3f}" for b, v in ms.items()) if ms else "-"
            why = r.get("reason") or ""
            if r.get("duplicate_of") is not None:
                why = (why + " " if why else "") + f"(duplicate of {r['duplicate_of']})"
            listed.append([r["number"], r["state"], r.get("config", ""), times, why[:100]])
        print(table(["#", "state", "config", "ms per N", "reason"], listed))
    return 0


# -------------------------------------------------------------- verify
def cmd_verify(args) -> int:
    dirs = args.dir or store.search_dirs()
    arch = args.arch
    device_name = None
    if not args.compile_only:
        try:
            gpu_arch, device_name = device_arch(args.device)
        except Exception as exc:
            raise CliError(f"no usable GPU ({type(exc).__name__}: {exc}); use --compile-only --arch ARCH") from None
        if arch and arch not in compatible_archs(gpu_arch):
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
        ck, problems = check_entry_offline(e)
        status = "ok" if not problems else "BAD: " + "; ".join(problems)
        if not problems and not args.compile_only:
            checks = check_entry_on_gpu(e, args.device)
            bad = [f"{_sizes(p)}: {c.describe()}" for p, c in checks if not c.passed]
            worst = max(c.rel_error for _, c in checks)
            status = (f"ok (rel err {worst:.1e} at {'; '.join(_sizes(p) for p, _ in checks)})" if not bad
                      else "WRONG: " + "; ".join(bad))
            problems = bad
        failures += bool(problems)
        rows.append([e["device"][:28], e["op"], _key_label(e), e["seq_bucket"], ck.name, ck.report.registers,
                     ck.report.spills, status])
    print(table(["device", "op", "problem", "N", "config", "regs", "spills", "result"], rows))
    what = "compiled" if args.compile_only else f"checked on {device_name}"
    print(f"\n{len(entries) - failures}/{len(entries)} {arch} configs {what}: "
          + ("all pass" if not failures else f"{failures} FAILED"))
    return 1 if failures else 0



def _sizes(problem: dict) -> str:
    """The sizes that differ between an entry's verify problems, e.g. 'seq_q=4096 seq_k=4096'."""
    return " ".join(f"{k}={v}" for k, v in problem.items() if k.startswith("seq") or k.endswith("len"))
