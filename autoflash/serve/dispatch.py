"""Which kernel config serves a problem of an operation: a tuned entry
(tuned_configs/, see store.py) if there is one, else the operation's heuristic default."""
from __future__ import annotations

import logging
import os
import time

from autoflash import store
from autoflash.kernels.config import OpConfig
from autoflash.kernels.registry import OPERATIONS
from autoflash.serve.errors import InputError

log = logging.getLogger("autoflash")

def heuristic_default(arch: str, op: str, key: dict) -> OpConfig:
    """The operation's default config for a key; InputError when no template supports it."""
    try:
        return OPERATIONS[op].default(arch, key)
    except ValueError as exc:
        raise InputError(str(exc)) from None


_warned: set[tuple] = set()
FORWARD_FLAGS = ("head_dim", "causal")  # forward key fields with their own `autoflash tune` flag


def tune_command(arch: str, op: str, key: dict) -> str:
    """The command that tunes a key (forward's own flags, --key NAME=V for the others)."""
    flags = [f"--arch {arch}"] + ([] if op == "forward" else [f"--op {op}"]) + [f"--dtype {key['dtype']}"]
    for field, value in key.items():
        if field == "dtype" or (op == "forward" and field not in FORWARD_FLAGS and value is False):
            continue  # a forward variant flag left off is the default
        text = ("yes" if value else "no") if isinstance(value, bool) else str(value)
        own = op == "forward" and field in FORWARD_FLAGS
        flags.append(f"--{field.replace('_', '-')} {text}" if own else f"--key {field}={text}")
    return "autoflash tune " + " ".join(flags)


def explain(arch: str, device_name: str, op: str, key: dict, seq_len: int,
            template: str | None = None, default: OpConfig | None = None) -> tuple[OpConfig, str]:
    """The config serving a problem and where it came from. Fallbacks, in order: an
    entry tuned on this exact device, one tuned on another device of the same arch
    (nearest sequence bucket in both), `default` if the caller gives one (its template's
    own default, no warning), else the heuristic default (with a one-time
    warning naming the command that tunes it). A damaged tuned_configs file raises
    StoreError naming the file and entry: it is never silently ignored.

    Answers are cached per problem and per state of the tuned files (each file's
    path, mtime and size, stat-ed on every call): a file written or removed while the
    process runs is seen on the next call, and a hit costs no JSON read, no search and
    no config validation."""
    cache_key = (arch, device_name, op, tuple(key.items()), seq_len, template, default)
    stamp = files_stamp(arch)
    hit = _chosen.get(cache_key)
    if hit is not None and hit[0] == stamp:
        return hit[1], hit[2]
    cfg, how = _explain_uncached(arch, device_name, op, key, seq_len, template, default)
    if len(_chosen) >= _MAX_CHOSEN:
        _chosen.clear()  # many distinct lengths: start over rather than track recency
    _chosen[cache_key] = (stamp, cfg, how)
    return cfg, how


_MAX_CHOSEN = 4096
_chosen: dict[tuple, tuple] = {}  # key -> (files stamp, config, how)
_paths: dict[tuple, tuple[str, ...]] = {}


def _tuned_paths(arch: str) -> tuple[str, ...]:
    """The <arch>.json path in every search folder. Resolving the folders costs ~50 us
    (platformdirs, Path.resolve), so they are resolved again only when the environment
    variable or store.search_dirs itself (tests replace it) changes."""
    key = (store.search_dirs, os.environ.get(store.TUNED_ENV), arch)
    paths = _paths.get(key)
    if paths is None:
        if len(_paths) >= 64:
            _paths.clear()
        paths = _paths[key] = tuple(os.path.join(d, f"{arch}.json") for d in store.search_dirs())
    return paths


def files_stamp(arch: str) -> tuple:
    """(path, mtime, size) of every tuned file of arch that exists: what a cached answer was
    made from. One system call per search path: a path found missing is probed with
    os.access (no exception raised and caught per call) until it appears."""
    now = clock()
    stamp = _read_stamp(arch)
    _recent[arch] = (now, stamp)
    return stamp


STAMP_MAX_AGE_S = 0.1  # how stale recent_files_stamp may be
clock = time.monotonic  # tests replace it
_recent: dict[str, tuple[float, tuple]] = {}


def recent_files_stamp(arch: str) -> tuple:
    """files_stamp(arch) as last read, read again when that reading is older than STAMP_MAX_AGE_S:
    attention()'s call plans (serve/call_plans.py) check it on every call, so a tuned file
    written or removed is seen within 0.1 s without the system calls (and the environment look-up)
    on each of thousands of calls a second. explain() itself reads the files' state every time."""
    hit = _recent.get(arch)
    if hit is not None and clock() - hit[0] < STAMP_MAX_AGE_S:
        return hit[1]
    return files_stamp(arch)


def _read_stamp(arch: str) -> tuple:
    stamp = []
    for path in _tuned_paths(arch):
        if path in _absent and not os.access(path, os.F_OK):
            continue
        try:
            st = os.stat(path)
        except OSError:
            _absent.add(path)
            continue
        _absent.discard(path)
        stamp.append((path, st.st_mtime_ns, st.st_size))
    return tuple(stamp)


_absent: set[str] = set()


def _explain_uncached(arch: str, device_name: str, op: str, key: dict, seq_len: int,
                      template: str | None, default: OpConfig | None) -> tuple[OpConfig, str]:
    entries = store.entries_for_arch(arch)
    entry, how = store.lookup(entries, device_name, op, key, seq_len, template)
    if entry is not None:
        cfg = OpConfig.from_dict(entry["config"])
        log.debug("tuned config %s for %s %s %s N=%d (%s)", cfg.name, device_name, op, key, seq_len, how)
        return cfg, "tuned: " + how
    if default is not None:
        return default, "template default"
    cfg = heuristic_default(arch, op, key)
    warned = (arch, op, tuple(key.items()))
    if warned not in _warned:
        _warned.add(warned)
        log.warning("autoflash: no tuned config for %s %s %s on %s; using the untuned default %s. Tune it with: %s",
                    arch, op, " ".join(f"{k}={v}" for k, v in key.items()), device_name or "any GPU", cfg.name,
                    tune_command(arch, op, key))
    return cfg, "heuristic default"


def select(arch: str, device_name: str, op: str, key: dict, seq_len: int) -> OpConfig:
    return explain(arch, device_name, op, key, seq_len)[0]
