"""tuned_configs/<arch>.json: the tuned entries autoflash.attention() serves.

File format (schema 1)::

    {"schema": 1, "arch": "sm_90", "entries": [ENTRY, ...]}

Each ENTRY is keyed by (device, template, dtype, head_dim, causal, seq_bucket) and
records what was measured; see ENTRY_FIELDS for every field and its type.

A tuned_configs file is untrusted input (it may come from a pull request, a
download, a disk that filled up): reading validates it strictly, and any problem
raises StoreError naming the file and the entry. Writing is atomic (temp file in
the same folder + rename), and merge() holds a file lock while it reads, merges
and replaces, so two tuning runs writing one file both keep their entries.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autoflash.config import ARCHS, DTYPES, ConfigError, KernelConfig

log = logging.getLogger("autoflash")

SCHEMA = 1
BUCKETS = (1024, 4096, 16384)  # the sequence lengths tuned by default; look-up takes the nearest
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
    templates, or the template's name when the run fixed one (--template)."""

    device: str
    template: str | None
    dtype: str
    head_dim: int
    causal: bool
    seq_bucket: int

    def describe(self) -> str:
        return (f"{self.device} / {self.template or 'any template'} / {self.dtype} d{self.head_dim} "
                f"{'causal' if self.causal else 'non-causal'} N~{self.seq_bucket}")

    def sort_key(self) -> tuple:
        return (self.device, self.template or "", self.dtype, self.head_dim, self.causal, self.seq_bucket)


def entry_key(entry: dict) -> EntryKey:
    return EntryKey(entry["device"], entry["template"], entry["dtype"], entry["head_dim"], entry["causal"],
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


# field -> (check, description). All fields are required; default_ms may be null.
# Checked here rather than with jsonschema (a new dependency): the checks after these
# (config against its template's rules and the entry's key) need code anyway, and this
# way every error reads "<file>: entry N (key): field must be ..." in one style.
ENTRY_FIELDS = {
    "device": (_str(_PRINTABLE), "a GPU name (printable ASCII, 1-128 characters)"),
    "template": (lambda x: x is None or (isinstance(x, str) and bool(_NAME.match(x))), "null or a template name"),
    "dtype": (lambda x: x in DTYPES, f"one of {list(DTYPES)}"),
    "head_dim": (lambda x: _is_int(x) and 1 <= x <= 1024, "an integer in 1..1024"),
    "causal": (lambda x: type(x) is bool, "true or false"),
    "seq_bucket": (lambda x: _is_int(x) and 1 <= x <= 2**24, "an integer in 1..16777216"),
    "config": (lambda x: isinstance(x, dict), "an object (a kernel config)"),
    "problem": (lambda x: isinstance(x, dict), "an object {batch, heads, seq}"),
    "ms": (_pos_num, "a positive number (milliseconds)"),
    "tflops": (_pos_num, "a positive number"),
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
PROBLEM_FIELDS = ("batch", "heads", "seq")
TRIAL_FIELDS = ("run", "complete", "pruned", "failed")


def compatible_archs(arch: str) -> tuple[str, ...]:
    """Archs whose cubins a GPU of `arch` runs and whose configs <arch>.json may hold
    (sm_90 also holds sm_90a configs: the same chip, with its arch-specific features)."""
    return tuple(a for a in (arch, arch + "a") if a in ARCHS)


def validate_entry(entry, arch: str) -> dict:
    """Check one entry; raise ValueError describing the first problems found."""
    if not isinstance(entry, dict):
        raise ValueError(f"entry must be an object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(ENTRY_FIELDS))
    missing = sorted(set(ENTRY_FIELDS) - set(entry))
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
    if errors:
        raise ValueError("; ".join(errors))
    prob = entry["problem"]
    if set(prob) != set(PROBLEM_FIELDS) or not all(_is_int(prob[f]) and 1 <= prob[f] <= 2**31 for f in PROBLEM_FIELDS):
        raise ValueError(f"problem must be {{batch, heads, seq}} of positive integers, got {_short(prob)}")
    trials = entry["trials"]
    if set(trials) != set(TRIAL_FIELDS) or not all(_count(trials[f]) for f in TRIAL_FIELDS):
        raise ValueError(f"trials must be {{run, complete, pruned, failed}} of counts, got {_short(trials)}")
    for f in entry["finalists"]:
        if not (isinstance(f, dict) and set(f) == {"name", "ms"} and isinstance(f["name"], str)
                and _NAME.match(f["name"]) and _pos_num(f["ms"])):
            raise ValueError(f"finalists must hold {{name, ms}} objects, got {_short(f)}")
    try:
        cfg = KernelConfig.from_dict(entry["config"])
    except (ConfigError, TypeError) as exc:
        raise ValueError(f"config: {exc}") from None
    if cfg.arch not in compatible_archs(arch):
        raise ValueError(f"config is for {cfg.arch}, but this file holds {arch} entries")
    mismatch = [f for f in ("dtype", "head_dim", "causal") if getattr(cfg, f) != entry[f]]
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
    if data["schema"] != SCHEMA:
        raise StoreError(f"{path}: schema {_short(data['schema'])} is not supported (this autoflash reads {SCHEMA})")
    if data["arch"] != arch:
        raise StoreError(f"{path}: holds arch {_short(data['arch'])} but is named for {arch}")
    entries = data["entries"]
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise StoreError(f"{path}: entries must be a list of at most {MAX_ENTRIES} objects")
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


def _entry_label(entry) -> str:
    if isinstance(entry, dict):
        parts = [str(entry.get(f))[:40] for f in ("dtype", "head_dim", "causal", "seq_bucket") if f in entry]
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


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, rename: readers see the old
    file or the new one, never half of one. (No library: atomicwrites, which did
    this, is archived and points to os.replace.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(path: str | Path, entries: list[dict], arch: str | None = None) -> None:
    path = Path(path)
    arch = arch or path.stem
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
    import hashlib

    key = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:24]
    folder = Path(tempfile.gettempdir()) / "autoflash-locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}.lock"


def merge(path: str | Path, new_entries: list[dict], arch: str | None = None) -> list[dict]:
    """Add entries to a file, replacing those with the same key and keeping the rest.

    Holds a lock (lock_path) while it reads, merges and writes, so concurrent writers
    all land. A damaged existing file is an error (it is never silently overwritten)."""
    import filelock

    path = Path(path)
    arch = arch or path.stem
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(lock_path(path)), timeout=120):
        merged = {entry_key(e): e for e in read(path, arch)}
        for e in new_entries:
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
    from importlib import resources

    return Path(str(resources.files("autoflash") / "tuned_configs"))


def user_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("autoflash")) / "tuned_configs"


def search_dirs() -> list[Path]:
    """Folders looked in, first wins: $AUTOFLASH_TUNED_CONFIGS, the user's data dir, the shipped ones."""
    dirs = [Path(p) for p in os.environ.get(TUNED_ENV, "").split(os.pathsep) if p]
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


def lookup(entries: list[dict], device: str, dtype: str, head_dim: int, causal: bool, seq_len: int,
           template: str | None = None) -> tuple[dict | None, str]:
    """The entry serving a problem and how it was found: exact device, else any device
    of the arch; within those, the nearest sequence bucket (in log scale). Entries
    tuned over all templates are preferred to ones tuned with a template fixed."""
    same = [e for e in entries if e["dtype"] == dtype and e["head_dim"] == head_dim and e["causal"] == causal]
    if template is not None:
        same = [e for e in same if e["config"]["template"] == template]
    for how, group in (("exact device", [e for e in same if e["device"] == device]), ("same arch", same)):
        if not group:
            continue
        any_template = [e for e in group if e["template"] is None]
        group = any_template or group
        best = min(group, key=lambda e: (abs(math.log2(max(seq_len, 1) / e["seq_bucket"])), e["seq_bucket"]))
        exact = best["seq_bucket"] == seq_len
        return best, how + (", bucket" if exact else ", nearest bucket") + f" N={best['seq_bucket']}"
    return None, "no tuned entry"
