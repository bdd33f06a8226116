"""Which kernel config serves a problem: a tuned entry (tuned_configs/, see store.py)
if there is one, else a heuristic default."""
from __future__ import annotations

import logging
import os

from autoflash import store
from autoflash.config import KernelConfig

log = logging.getLogger("autoflash")

# Template preference per dtype for the heuristic default: the first that supports
# the arch, dtype and head dim wins.
PREFERENCE = {
    "fp32": ("flash_fwd_simt",),
    "fp16": ("flash_fwd_wgmma", "flash_fwd_mma", "flash_fwd_simt"),
    "bf16": ("flash_fwd_wgmma", "flash_fwd_mma", "flash_fwd_simt"),
}


def build_arch(variant, gpu_arch: str) -> str | None:
    """The arch a template builds for on a GPU of gpu_arch, or None if it cannot run there.
    An sm_90 GPU (H100) also runs sm_90a code (wgmma, setmaxnreg): such templates build for sm_90a."""
    if gpu_arch in variant.archs:
        return gpu_arch
    if gpu_arch + "a" in variant.archs:
        return gpu_arch + "a"
    return None


def heuristic_default(arch: str, dtype: str, head_dim: int, causal: bool) -> KernelConfig:
    from autoflash.variants import VARIANTS

    tried = []
    for name in PREFERENCE[dtype]:
        variant = VARIANTS.get(name)
        if variant is None or dtype not in variant.dtypes:
            continue
        use_arch = build_arch(variant, arch)
        if use_arch is None:
            continue
        if head_dim not in variant.head_dims:
            tried.append(f"{name} supports head dims {list(variant.head_dims)}")
            continue
        return variant.default(use_arch, dtype, head_dim, causal)
    from autoflash.api import InputError

    raise InputError(f"no template supports {dtype} head_dim={head_dim} on {arch}" + (": " + "; ".join(tried) if tried else ""))


_warned: set[tuple] = set()


def tune_command(arch: str, dtype: str, head_dim: int, causal: bool) -> str:
    return (f"autoflash tune --arch {arch} --dtype {dtype} --head-dim {head_dim} "
            f"--causal {'yes' if causal else 'no'}")


def explain(arch: str, device_name: str, dtype: str, head_dim: int, causal: bool, seq_len: int,
            template: str | None = None) -> tuple[KernelConfig, str]:
    """The config serving a problem and where it came from. Fallbacks, in order: an
    entry tuned on this exact device, one tuned on another device of the same arch
    (nearest sequence bucket in both), the heuristic default (with a one-time
    warning naming the command that tunes it). A damaged tuned_configs file raises
    StoreError naming the file and entry: it is never silently ignored.

    Answers are cached per problem and per state of the tuned files (each file's
    path, mtime and size, stat-ed on every call): a file written or removed while the
    process runs is seen on the next call, and a hit costs no JSON read, no search and
    no config validation."""
    key = (arch, device_name, dtype, head_dim, causal, seq_len, template)
    stamp = _files_stamp(arch)
    hit = _chosen.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1], hit[2]
    cfg, how = _explain_uncached(arch, device_name, dtype, head_dim, causal, seq_len, template)
    if len(_chosen) >= _MAX_CHOSEN:
        _chosen.clear()  # many distinct lengths: start over rather than track recency
    _chosen[key] = (stamp, cfg, how)
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


def _files_stamp(arch: str) -> tuple:
    stamp = []
    for path in _tuned_paths(arch):
        try:
            st = os.stat(path)
        except OSError:
            continue
        stamp.append((path, st.st_mtime_ns, st.st_size))
    return tuple(stamp)


def _explain_uncached(arch: str, device_name: str, dtype: str, head_dim: int, causal: bool, seq_len: int,
                      template: str | None) -> tuple[KernelConfig, str]:
    entries = store.entries_for_arch(arch)
    entry, how = store.lookup(entries, device_name, dtype, head_dim, causal, seq_len, template)
    if entry is not None:
        cfg = KernelConfig.from_dict(entry["config"])
        log.debug("tuned config %s for %s %s d%d causal=%s N=%d (%s)", cfg.name, device_name, dtype, head_dim,
                  causal, seq_len, how)
        return cfg, "tuned: " + how
    cfg = heuristic_default(arch, dtype, head_dim, causal)
    key = (arch, dtype, head_dim, causal)
    if key not in _warned:
        _warned.add(key)
        log.warning("autoflash: no tuned config for %s %s head_dim=%d causal=%s on %s; using the untuned default "
                    "%s. Tune it with: %s", arch, dtype, head_dim, causal, device_name, cfg.name,
                    tune_command(arch, dtype, head_dim, causal))
    return cfg, "heuristic default"


def select(arch: str, device_name: str, dtype: str, head_dim: int, causal: bool, seq_len: int) -> KernelConfig:
    return explain(arch, device_name, dtype, head_dim, causal, seq_len)[0]
