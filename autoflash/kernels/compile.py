"""Compile rendered CUDA source to a cubin with NVRTC (through CuPy), on disk cache.

Works without a GPU: NVRTC only needs its library and the CUDA headers, both from
PyPI wheels. We always emit a cubin for the exact arch, never PTX: a newer NVRTC
from PyPI makes PTX an older driver refuses, while its cubin loads fine.

Cache contract: an entry is <key>.cubin + <key>.json, keyed by the source, the
options, the NVRTC version and the package version; the JSON holds the cubin's
sha256, and an entry that does not match is rebuilt, never trusted. Writes are
atomic (temp file + rename) under a file lock, with a second look after the lock
is taken, so concurrent processes build each kernel once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

import filelock
import platformdirs

from autoflash.version import __version__
from autoflash.atomic import atomic_write_bytes
from autoflash.kernels.config import OpConfig
from autoflash.kernels.render import rendering

log = logging.getLogger("autoflash")

CACHE_ENV = "AUTOFLASH_CACHE_DIR"
REPORT_FIELDS = "wgmma_serialized C75xx"  # in the cache key: entries cached before a report field existed are rebuilt


class CompileError(RuntimeError):
    """NVRTC rejected a kernel; the message names the file holding its source."""


@dataclass(frozen=True)
class ResourceReport:
    """What ptxas reported for the kernel."""

    registers: int
    spill_stores: int
    spill_loads: int
    stack_frame: int
    static_smem: int
    # ptxas C7511 (too few registers for the wgmma pipeline), C7515 (other instructions define a wgmma's accumulator
    # inside a pipeline stage), ...: it waits for each wgmma before the next. No spill shows it; the kernel runs
    # correct but 1.1-1.7x slower (causal_trim on the H200, NOTES eighth session)
    wgmma_serialized: bool = False
    source: str = "ptxas"  # "cubin" when read back from the ELF (see report_from_cubin)

    @property
    def spills(self) -> int:
        return self.spill_stores + self.spill_loads


@dataclass(frozen=True)
class CompiledKernel:
    config: OpConfig
    cubin: bytes
    report: ResourceReport
    log: str
    cached: bool = False
    # the template values it was rendered with (None: compiled from a given source); LoadedKernel.values
    values: dict | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.config.name


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return Path(platformdirs.user_cache_dir("autoflash"))


@functools.cache
def nvrtc_version() -> str:
    from cupy.cuda import nvrtc

    major, minor = nvrtc.getVersion()
    return f"{major}.{minor}"


@functools.cache
def include_dir() -> str:
    import cupy

    path = Path(cupy.cuda.get_cuda_path() or "") / "include"
    if not (path / "cuda_fp16.h").exists():
        raise CompileError(
            f"CUDA headers not found under {path}: install the nvidia-cuda-runtime wheel "
            "(pip install 'autoflash[cu13]') or set CUDA_PATH to a CUDA toolkit"
        )
    return str(path)


def nvrtc_options(cfg: OpConfig) -> list[str]:
    return [
        f"--gpu-architecture={cfg.arch}",  # sm_XX: NVRTC emits a cubin for exactly this arch
        "--use_fast_math",
        "--std=c++17",
        "--ptxas-options=-v",  # the resource report, parsed below
        f"-I{include_dir()}",
    ]


_PTXAS_PATTERNS = {
    "registers": r"Used (\d+) registers",
    "spill_stores": r"(\d+) bytes spill stores",
    "spill_loads": r"(\d+) bytes spill loads",
    "stack_frame": r"(\d+) bytes stack frame",
    "static_smem": r"(\d+) bytes smem",
}


def _elf_sections(blob: bytes) -> dict[str, tuple[int, int, int]]:
    """name -> (offset, size, sh_info) of every section of an ELF64 image. (struct, not
    pyelftools: only the section table is needed, and .nv.info is NVIDIA's own format.)"""
    shoff = struct.unpack_from("<Q", blob, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", blob, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", blob, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]
    sections = {}
    for h in headers:
        start = names_at + h[0]
        name = blob[start:blob.index(b"\0", start)].decode()
        sections[name] = (h[4], h[5], h[7])
    return sections


_EIATTR_REGCOUNT, _EIATTR_FRAME_SIZE = 0x2F, 0x11  # attributes in a cubin's .nv.info section


def report_from_cubin(cubin: bytes, kernel: str) -> ResourceReport:
    """Registers and stack frame read from the cubin itself, for when NVRTC's log
    has no ptxas report (NVRTC 13 skips ptxas, and its -v output, when its own
    cache holds the kernel). The cubin does not separate spills from other local
    memory, so the whole stack frame is counted as spill stores (conservative)."""
    sections = _elf_sections(cubin)
    if f".text.{kernel}" not in sections or ".nv.info" not in sections:
        raise CompileError(f"cubin has no code or .nv.info for {kernel}")
    # sh_info of a kernel's .text: symbol index in the low 24 bits (registers in the top 8)
    symbol = sections[f".text.{kernel}"][2] & 0xFFFFFF
    offset, size, _ = sections[".nv.info"]
    values, i = {}, offset
    while i + 4 <= offset + size:  # records: format u8, attribute u8, size u16, payload
        fmt, attr, length = cubin[i], cubin[i + 1], struct.unpack_from("<H", cubin, i + 2)[0]
        if fmt != 4:  # only "sized" records have a payload here
            i += 4
            continue
        if length == 8:
            sym, value = struct.unpack_from("<II", cubin, i + 4)
            if sym == symbol:
                values[attr] = value
        i += 4 + length
    if _EIATTR_REGCOUNT not in values:
        raise CompileError(f"cubin records no register count for {kernel}")
    frame = values.get(_EIATTR_FRAME_SIZE, 0)
    return ResourceReport(values[_EIATTR_REGCOUNT], frame, 0, frame, 0, source="cubin")


def _kernel_section(text: str, kernel: str) -> str:
    """This kernel's lines of a log that may report several kernels of one source (a
    decode kernel and its `_combine`): from its 'Compiling entry function' line to the
    next one; names are matched whole, so `k` never picks up `k_combine`'s lines."""
    entries = list(re.finditer(r"Compiling entry function '([^']+)'", text))
    for i, m in enumerate(entries):
        if m.group(1) == kernel:
            return text[m.start():entries[i + 1].start() if i + 1 < len(entries) else len(text)]
    whole = re.search(rf"Function properties for {re.escape(kernel)}\n", text)
    return text[whole.start():] if whole else text


def parse_ptxas_report(text: str, kernel: str) -> ResourceReport:
    """Pick the kernel's lines out of NVRTC's log (ptxas -v output)."""
    section = _kernel_section(text, kernel)
    values = {}
    for field, pattern in _PTXAS_PATTERNS.items():
        match = re.search(pattern, section)
        values[field] = int(match.group(1)) if match else 0
    if not re.search(_PTXAS_PATTERNS["registers"], section):
        raise CompileError(f"no ptxas resource report for {kernel} in the NVRTC log:\n{text}")
    serialized = re.search(rf"\(C75\d\d\) [^\n]*wgmma[^\n]*serialized[^\n]*function '{re.escape(kernel)}'", text)
    return ResourceReport(**values, wgmma_serialized=bool(serialized))


def resource_report(cubin: bytes, text: str, kernel: str) -> ResourceReport:
    """ptxas's own report when the log has one, else what the cubin records."""
    if f"Function properties for {kernel}\n" in text:
        return parse_ptxas_report(text, kernel)
    log.debug("no ptxas report in the NVRTC log for %s; reading the cubin", kernel)
    return report_from_cubin(cubin, kernel)


def _elf_size(blob: bytes) -> int:
    """Size of an ELF64 image: the end of its last header table or section."""
    if len(blob) < 64 or blob[:4] != b"\x7fELF":
        return len(blob)
    phoff, shoff = struct.unpack_from("<QQ", blob, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", blob, 0x36)
    headers = [shoff + shentsize * shnum, phoff + phentsize * phnum]  # either table may come last
    for i in range(shnum):  # and so may a section's data
        _, kind, _, _, offset, size = struct.unpack_from("<IIQQQQ", blob, shoff + i * shentsize) \
            if shoff + (i + 1) * shentsize <= len(blob) else (0, 8, 0, 0, 0, 0)
        if kind != 8:  # SHT_NOBITS occupies no file space
            headers.append(offset + size)
    return max(len(blob), *headers)


@contextlib.contextmanager
def _nvrtc_cache_disabled():
    """NVRTC 13 keeps its own compilation cache (across processes) and, on a hit,
    returns an empty log: no ptxas report. CUDA_CACHE_DISABLE=1 turns that cache off;
    it is set only around the compile call, so the caller's process keeps its setting.
    Our own disk cache is what saves repeat compiles."""
    with _ENV_LOCK:
        old = os.environ.get("CUDA_CACHE_DISABLE")
        os.environ["CUDA_CACHE_DISABLE"] = "1"
        try:
            yield
        finally:
            if old is None:
                del os.environ["CUDA_CACHE_DISABLE"]
            else:
                os.environ["CUDA_CACHE_DISABLE"] = old


_ENV_LOCK = threading.Lock()


def _nvrtc_compile(source: str, cfg: OpConfig) -> tuple[bytes, str]:
    from cupy.cuda import nvrtc

    prog = nvrtc.createProgram(source, f"{cfg.name}.cu", [], [])
    try:
        try:
            with _nvrtc_cache_disabled():
                nvrtc.compileProgram(prog, nvrtc_options(cfg))
        except nvrtc.NVRTCError as exc:
            path = _save_failed_source(cfg, source)
            raise CompileError(
                f"NVRTC failed for {cfg.name} ({exc}); source saved to {path}\n{nvrtc.getProgramLog(prog)}"
            ) from None
        cubin = nvrtc.getCUBIN(prog)
        text = nvrtc.getProgramLog(prog)
    finally:
        nvrtc.destroyProgram(prog)
    # CuPy 14.2 returns the cubin one byte short; the driver ignores it but
    # cuobjdump/nvdisasm reject the ELF, so pad it back to the size the header gives.
    cubin = cubin + b"\0" * (_elf_size(cubin) - len(cubin))
    return cubin, text


def _save_failed_source(cfg: OpConfig, source: str) -> Path:
    folder = cache_dir() / "failed"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cfg.name}.cu"
    path.write_text(source)
    return path


def cache_key(source: str, cfg: OpConfig) -> str:
    h = hashlib.sha256()
    for part in (source, "\0".join(nvrtc_options(cfg)), nvrtc_version(), __version__, REPORT_FIELDS):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _load_entry(stem: Path, cfg: OpConfig, values: dict | None) -> CompiledKernel | None:
    """A cache entry, or None if absent or damaged (a damaged one is rebuilt)."""
    meta_path, cubin_path = stem.with_suffix(".json"), stem.with_suffix(".cubin")
    if not (meta_path.exists() and cubin_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        cubin = cubin_path.read_bytes()
        if hashlib.sha256(cubin).hexdigest() != meta["sha256"] or meta["name"] != cfg.name:
            raise ValueError("checksum or name mismatch")
        report = ResourceReport(**meta["report"])
        return CompiledKernel(cfg, cubin, report, meta["log"], cached=True, values=values)
    except Exception as exc:  # any damage: rebuild
        log.warning("compile cache entry %s is damaged (%s); rebuilding", stem, exc)
        return None


def compile_kernel(cfg: OpConfig, source: str | None = None, use_cache: bool = True) -> CompiledKernel:
    """Render (unless given the source), compile and cache one kernel."""
    values = None
    if source is None:
        source, values = rendering(cfg)
    if not use_cache:
        cubin, text = _nvrtc_compile(source, cfg)
        return CompiledKernel(cfg, cubin, resource_report(cubin, text, cfg.name), text, values=values)

    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / cache_key(source, cfg)
    entry = _load_entry(stem, cfg, values)
    if entry is not None:
        return entry

    with filelock.FileLock(str(stem) + ".lock", timeout=600):
        entry = _load_entry(stem, cfg, values)  # another process may have built it meanwhile
        if entry is not None:
            return entry
        cubin, text = _nvrtc_compile(source, cfg)
        report = resource_report(cubin, text, cfg.name)
        meta = {
            "name": cfg.name,
            "config": cfg.to_dict(),
            "sha256": hashlib.sha256(cubin).hexdigest(),
            "report": dataclasses.asdict(report),
            "log": text,
            "nvrtc": nvrtc_version(),
        }
        atomic_write_bytes(stem.with_suffix(".cubin"), cubin)
        atomic_write_bytes(stem.with_suffix(".json"), json.dumps(meta, indent=1).encode())
    return CompiledKernel(cfg, cubin, report, text, values=values)
