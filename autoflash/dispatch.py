"""Which kernel config serves a problem: tuned entry if any, else a heuristic default."""
from __future__ import annotations

import logging

from autoflash.config import KernelConfig

log = logging.getLogger("autoflash")

# Template preference per dtype for the heuristic default: the first that supports
# the arch, dtype and head dim wins.
PREFERENCE = {
    "fp32": ("flash_fwd_simt",),
    "fp16": ("flash_fwd_wgmma", "flash_fwd_mma", "flash_fwd_simt"),
    "bf16": ("flash_fwd_wgmma", "flash_fwd_mma", "flash_fwd_simt"),
}


def heuristic_default(arch: str, dtype: str, head_dim: int, causal: bool) -> KernelConfig:
    from autoflash.variants import VARIANTS

    tried = []
    for name in PREFERENCE[dtype]:
        variant = VARIANTS.get(name)
        if variant is None or dtype not in variant.dtypes:
            continue
        # An sm_90 GPU (H100) also runs sm_90a code (wgmma, setmaxnreg): such templates build for sm_90a.
        use_arch = arch if arch in variant.archs else arch + "a" if arch + "a" in variant.archs else None
        if use_arch is None:
            continue
        if head_dim not in variant.head_dims:
            tried.append(f"{name} supports head dims {list(variant.head_dims)}")
            continue
        return variant.default(use_arch, dtype, head_dim, causal)
    from autoflash.api import InputError

    raise InputError(f"no template supports {dtype} head_dim={head_dim} on {arch}" + (": " + "; ".join(tried) if tried else ""))


def select(arch: str, device_name: str, dtype: str, head_dim: int, causal: bool, seq_len: int) -> KernelConfig:
    return heuristic_default(arch, dtype, head_dim, causal)
