"""tuned_configs/<arch>.json: the tuned entries autoflash.attention() serves.

File format (schema 2)::

    {"schema": 2, "arch": "sm_90", "entries": [ENTRY, ...]}

Each ENTRY is keyed by (op, device, template, the op's problem key, seq_bucket). Its
fields: ENTRY_FIELDS, the op's key fields flat (dtype and Operation.key_fields, e.g.
head_dim and causal for "forward") and its metric ("tflops" or "gbps"). Schema 1
(forward only, no "op" field) is read as op "forward".

A tuned_configs file is untrusted input (it may come from a pull request, a
download, a disk that filled up): reading validates it strictly, and any problem
raises StoreError naming the file and the entry. Writing is atomic (temp file in
the same folder + rename), and merge() holds a file lock while it reads, merges
and replaces, so two tuning runs writing one file both keep their entries.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import filelock
import platformdirs

from autoflash.atomic import atomic_write_text
from autoflash.kernels.archs import ARCHS, compatible_archs
from autoflash.kernels.config import ConfigError, OpConfig
from autoflash.kernels.registry import OPERATIONS
from autoflash.key_flags import off_values, with_new_flags

log = logging.getLogger("autoflash")

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)  # 1: forward entries without "op" (migrated on read)
MAX_FILE_BYTES = 16 * 1024 * 1024  # a tuned_configs file is a few hundred KB at most
MAX_ENTRIES = 10000
TUNED_ENV = "AUTOFLASH_TUNED_CONFIGS"  # extra folders searched first (os.pathsep-separated)

_PRINTABLE = re.compile(r"^[\x20-\x7e]{1,128}$")  # a device name: printable ASCII, no newlines
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+\-]{0,31}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
_NAME = re.compile(r"^[A-Za-z0-9_]{1,200}$")


class StoreError(ValueError):
    """A tuned_configs file that cannot be trusted; the message names file and entry."""


# ------------------------------------------------------------------- key
@dataclass(frozen=True, order=True)
class EntryKey:
    """What a tuned entry is for. template is None when the tuner chose among all
    templates, or the template's name when the run fixed one (--template); key is the
    op's problem key as (field, value) pairs."""

    op: str
    device: str
    template: str | None
    key: tuple
    seq_bucket: int

    def describe(self) -> str:
        op = OPERATIONS.get(self.op)
        what = op.describe_key(dict(self.key)) if op else str(dict(self.key))
        return f"{self.device} / {self.op} / {self.template or 'any template'} / {what} N~{self.seq_bucket}"

    def sort_key(self) -> tuple:
        return (self.op, self.device, self.template or "", self.key, self.seq_bucket)


def key_fields(op_name: str) -> tuple[str, ...]:
    return ("dtype",) + OPERATIONS[op_name].key_fields


def problem_key(entry: dict) -> dict:
    """The op's problem key of an entry, e.g. {"dtype": "bf16", "head_dim": 128, "causal": False}."""
    return {f: entry[f] for f in key_fields(entry["op"])}


def entry_key(entry: dict) -> EntryKey:
    return EntryKey(entry["op"], entry["device"], entry["template"], tuple(problem_key(entry).items()),
                    entry["seq_bucket"])


# ----------------------------------------------------------- validation
def _is_int(x) -> bool:
    return type(x) is int


def _is_num(x) -> bool:
    return type(x) in (int, float) and math.isfinite(x)


def _pos_num(x) -> bool:
    return _is_num(x) and x > 0


def _nonneg_num(x) -> bool:
    return _is_num(x) and x >= 0


def _count(x) -> bool:
    return _is_int(x) and 0 <= x <= 10**7


def _str(pattern):
    return lambda x: isinstance(x, str) and bool(pattern.match(x))


# field -> (check, description), for every op's entries; the op adds its key fields and its metric.
# All are required; default_ms may be null. Checked here rather than with jsonschema (a new
# dependency): the checks after these (config against its template's rules and the entry's key)
# need code anyway, and this way every error reads "<file>: entry N (key): field must be ...".
ENTRY_FIELDS = {
    "op": (lambda x: isinstance(x, str) and x in OPERATIONS, f"a registered operation ({sorted(OPERATIONS)})"),
    "device": (_str(_PRINTABLE), "a GPU name (printable ASCII, 1-128 characters)"),
    "template": (lambda x: x is None or (isinstance(x, str) and bool(_NAME.match(x))), "null or a template name"),
    "seq_bucket": (lambda x: _is_int(x) and 1 <= x <= 2**24, "an integer in 1..16777216"),
    "config": (lambda x: isinstance(x, dict), "an object (a kernel config)"),
    "problem": (lambda x: isinstance(x, dict) and 0 < len(x) <= 8, "an object of 1-8 sizes"),
    "ms": (_pos_num, "a positive number (milliseconds)"),
    "max_rel_error": (_nonneg_num, "a non-negative number"),
    "trials": (lambda x: isinstance(x, dict), "an object {run, complete, pruned, failed}"),
    "spread": (_nonneg_num, "a non-negative number (relative spread of the re-timed finalists)"),
    "finalists": (lambda x: isinstance(x, list) and len(x) <= 32, "a list of at most 32 {name, ms}"),
    "default_ms": (lambda x: x is None or _pos_num(x), "null or a positive number"),
    "nvrtc": (_str(_VERSION), "a version string"),
    "driver": (_str(_VERSION), "a version string"),
    "autoflash": (_str(_VERSION), "a version string"),
    "date": (_str(_DATE), "an ISO 8601 date-time"),
}
METRICS = ("tflops", "gbps")
TRIAL_FIELDS = ("run", "complete", "pruned", "failed")


def validate_entry(entry, arch: str) -> dict:
    """Check one entry; raise ValueError describing the first problems found."""
    if not isinstance(entry, dict):
        raise ValueError(f"entry must be an object, got {type(entry).__name__}")
    if entry.get("op") not in OPERATIONS:
        raise ValueError(f"op must be a registered operation ({sorted(OPERATIONS)}), got {_short(entry.get('op'))}")
    op = OPERATIONS[entry["op"]]
    allowed = set(ENTRY_FIELDS) | set(key_fields(op.name)) | {op.metric}
    unknown = sorted(set(entry) - allowed)
    missing = sorted(allowed - set(entry))
    errors = []
    if unknown:
        errors.append(f"unknown field(s) {[u[:40] for u in unknown[:5]]}")
    if missing:
        errors.append(f"missing field(s) {missing}")
    if errors:
        raise ValueError("; ".join(errors))
    for field, (check, what) in ENTRY_FIELDS.items():
        if not check(entry[field]):
            errors.append(f"{field} must be {what}, got {_short(entry[field])}")
    if not _pos_num(entry[op.metric]):
        errors.append(f"{op.metric} must be a positive number, got {_short(entry[op.metric])}")
    kinds = {f.name: f.type for f in dataclasses.fields(op.config_class)}
    for field in op.key_fields:  # typed as the config's field of that name (its values: the config's check)
        ok = type(entry[field]) is bool if kinds[field] in ("bool", bool) else _is_int(entry[field])
        if not ok:
            errors.append(f"{field} must be {'true or false' if kinds[field] in ('bool', bool) else 'an integer'}, "
                          f"got {_short(entry[field])}")
    if errors:
        raise ValueError("; ".join(errors))
    prob = entry["problem"]
    if not all(isinstance(k, str) and _is_int(v) and 1 <= v <= 2**31 for k, v in prob.items()):
        raise ValueError(f"problem must hold positive integers, got {_short(prob)}")
    trials = entry["trials"]
    if set(trials) != set(TRIAL_FIELDS) or not all(_count(trials[f]) for f in TRIAL_FIELDS):
        raise ValueError(f"trials must be {{run, complete, pruned, failed}} of counts, got {_short(trials)}")
    for f in entry["finalists"]:
        if not (isinstance(f, dict) and set(f) == {"name", "ms"} and isinstance(f["name"], str)
                and _NAME.match(f["name"]) and _pos_num(f["ms"])):
            raise ValueError(f"finalists must hold {{name, ms}} objects, got {_short(f)}")
    try:
        cfg = OpConfig.from_dict(entry["config"])
    except (ConfigError, TypeError) as exc:
        raise ValueError(f"config: {exc}") from None
    if cfg.op != op.name:
        raise ValueError(f"config is a {cfg.op} config, the entry is for {op.name}")
    if cfg.arch not in compatible_archs(arch):
        raise ValueError(f"config is for {cfg.arch}, but this file holds {arch} entries")
    mismatch = [f for f in key_fields(op.name)
                if type(getattr(cfg, f)) is not type(entry[f]) or getattr(cfg, f) != entry[f]]
    if mismatch:
        raise ValueError(f"config's {mismatch} differ from the entry's key")
    if entry["template"] is not None and cfg.template != entry["template"]:
        raise ValueError(f"entry is for template {entry['template']}, its config uses {cfg.template}")
    return entry


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _reject_constant(name):
    raise ValueError(f"{name} is not a number JSON allows")


def _no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate key {k[:40]!r}")
        obj[k] = v
    return obj


def parse(text: str, path: str | Path, arch: str | None = None) -> list[dict]:
    """Entries of one file's text, validated; arch defaults to the file's stem."""
    arch = arch or Path(path).stem
    if arch not in ARCHS:
        raise StoreError(f"{path}: the file name must be <arch>.json with arch one of {sorted(ARCHS)}")
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise StoreError(f"{path}: not valid JSON ({str(exc)[:200]})") from None
    if not isinstance(data, dict) or set(data) != {"schema", "arch", "entries"}:
        keys = sorted(data)[:5] if isinstance(data, dict) else type(data).__name__
        raise StoreError(f"{path}: must be an object with keys schema, arch, entries (got {keys})")
    if data["schema"] not in READABLE_SCHEMAS or type(data["schema"]) is not int:
        raise StoreError(f"{path}: schema {_short(data['schema'])} is not supported (this autoflash reads "
                         f"{list(READABLE_SCHEMAS)})")
    if data["arch"] != arch:
        raise StoreError(f"{path}: holds arch {_short(data['arch'])} but is named for {arch}")
    entries = data["entries"]
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise StoreError(f"{path}: entries must be a list of at most {MAX_ENTRIES} objects")
    entries = [with_new_flags(_from_schema_1(e) if data["schema"] == 1 else e) for e in entries]
    seen = {}
    for i, entry in enumerate(entries):
        try:
            validate_entry(entry, arch)
        except ValueError as exc:
            raise StoreError(f"{path}: entry {i}{_entry_label(entry)}: {exc}") from None
        key = entry_key(entry)
        if key in seen:
            raise StoreError(f"{path}: entry {i} repeats the key of entry {seen[key]} ({key.describe()})")
        seen[key] = i
    return entries


def _from_schema_1(entry):
    """Schema 1 held forward entries only, without "op"; everything else is unchanged."""
    return {"op": "forward", **entry} if isinstance(entry, dict) and "op" not in entry else entry


def _entry_label(entry) -> str:
    if isinstance(entry, dict):
        fields = key_fields(entry["op"]) if entry.get("op") in OPERATIONS else ("dtype",)
        parts = [str(entry.get(f))[:40] for f in fields + ("seq_bucket",) if f in entry]
        if parts:
            return " (" + " ".join(parts) + ")"
    return ""


def read(path: str | Path, arch: str | None = None) -> list[dict]:
    """Validated entries of a tuned_configs file ([] if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise StoreError(f"{path}: {size} bytes is over the {MAX_FILE_BYTES} bytes a tuned_configs file may have")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path}: not UTF-8 text ({exc})") from None
    return parse(text, path, arch)


def dumps(entries: list[dict], arch: str) -> str:
    ordered = sorted(entries, key=lambda e: entry_key(e).sort_key())
    return json.dumps({"schema": SCHEMA, "arch": arch, "entries": ordered}, indent=1, sort_keys=False,
                      allow_nan=False) + "\n"


def write(path: str | Path, entries: list[dict], arch: str | None = None) -> None:
    path = Path(path)
    arch = arch or path.stem
    entries = [with_new_flags(e) for e in entries]  # flags added since (key_flags.py) read False
    for i, entry in enumerate(entries):
        try:
            validate_entry(entry, arch)
        except ValueError as exc:
            raise StoreError(f"refusing to write {path}: new entry {i}{_entry_label(entry)}: {exc}") from None
    atomic_write_text(path, dumps(entries, arch))


def lock_path(path: Path) -> Path:
    """The lock serialising writers of one tuned_configs file. It lives in the temp dir,
    keyed by the file's absolute path, so no lock file litters tuned_configs/ (a
    checkout); it serialises the processes of one machine."""
    key = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:24]
    folder = Path(tempfile.gettempdir()) / "autoflash-locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}.lock"


def merge(path: str | Path, new_entries: list[dict], arch: str | None = None) -> list[dict]:
    """Add entries to a file, replacing those with the same key and keeping the rest.

    Holds a lock (lock_path) while it reads, merges and writes, so concurrent writers
    all land. A damaged existing file is an error (it is never silently overwritten)."""
    path = Path(path)
    arch = arch or path.stem
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(lock_path(path)), timeout=120):
        merged = {entry_key(e): e for e in read(path, arch)}
        for e in map(with_new_flags, new_entries):
            merged[entry_key(e)] = e
        entries = list(merged.values())
        write(path, entries, arch)
    log.info("wrote %d entries (%d new or replaced) to %s", len(entries), len(new_entries), path)
    return entries


# ------------------------------------------------------------- folders
def shipped_dir() -> Path:
    """tuned_configs/ at the top of a checkout, or the copy a wheel installs in the package."""
    checkout = Path(__file__).resolve().parent.parent / "tuned_configs"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("autoflash") / "tuned_configs"))


def user_dir() -> Path:
    return Path(platformdirs.user_data_dir("autoflash")) / "tuned_configs"


def search_dirs() -> list[Path]:
    """Folders looked in, first wins: $AUTOFLASH_TUNED_CONFIGS, the user's data dir, the shipped ones."""
    dirs = [Path(p) for p in os.environ.get(TUNED_ENV, "").split(os.pathsep) if p]
    for d in dirs:  # a typo here would otherwise serve other configs without a word
        if not d.is_dir():
            what = "is a file" if d.exists() else "does not exist"
            raise StoreError(f"${TUNED_ENV} names {d}, which {what}: it takes folders holding <arch>.json "
                             f"files, separated by '{os.pathsep}'")
    return dirs + [user_dir(), shipped_dir()]


def default_out_dir() -> Path:
    """Where `autoflash tune` writes: the checkout's tuned_configs/ if writable (an
    editable install), else the user's data dir (site-packages is not ours to write)."""
    shipped = shipped_dir()
    if (shipped.parent / "pyproject.toml").exists() and os.access(shipped, os.W_OK):
        return shipped
    return user_dir()


_READ_CACHE: dict[tuple, list[dict]] = {}


def entries_for_arch(arch: str, dirs: list[Path] | None = None) -> list[dict]:
    """Entries for an arch from every search folder, earlier folders overriding later
    ones key by key. Re-read when a file changes."""
    merged: dict[EntryKey, dict] = {}
    for folder in reversed(dirs if dirs is not None else search_dirs()):
        path = Path(folder) / f"{arch}.json"
        try:
            st = path.stat()
        except OSError:
            continue
        stamp = (str(path), st.st_mtime_ns, st.st_size)
        if stamp not in _READ_CACHE:
            _READ_CACHE[stamp] = read(path, arch)
        for e in _READ_CACHE[stamp]:
            merged[entry_key(e)] = e
    return list(merged.values())


def lookup(entries: list[dict], device: str, op: str, key: dict, seq_len: int,
           template: str | None = None) -> tuple[dict | None, str]:
    """The entry serving a problem and how it was found: exact device, else any device
    of the arch; within those, the nearest sequence bucket (in log scale). Entries
    tuned over all templates are preferred to ones tuned with a template fixed."""
    key = {**off_values(op), **key} if op in OPERATIONS else key  # a flag left out is off
    same = [e for e in entries if e["op"] == op and all(e[f] == v and type(e[f]) is type(v) for f, v in key.items())]
    same = [e for e in same if template is None or e["config"]["template"] == template]
    for how, group in (("exact device", [e for e in same if e["device"] == device]), ("same arch", same)):
        if not group:
            continue
        any_template = [e for e in group if e["template"] is None]
        group = any_template or group
        best = min(group, key=lambda e: (abs(math.log2(max(seq_len, 1) / e["seq_bucket"])), e["seq_bucket"]))
        exact = best["seq_bucket"] == seq_len
        return best, how + (", bucket" if exact else ", nearest bucket") + f" N={best['seq_bucket']}"
    return None, "no tuned entry"
