"""The archs autoflash builds for: their resource limits and which cubins run where.

The one owner of arch compatibility: the tuner, the store, dispatch and the runner
all ask compatible_archs / build_arch, nobody re-derives "sm_90 also runs sm_90a".
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchLimits:
    """Per-arch resource limits used to prune configs without a GPU.

    From CUDA's arch traits (CCCL cuda/__device/arch_traits.h); smem_per_block is
    the opt-in maximum a block may ask for (1 KB of the SM's shared memory is
    reserved per block, already subtracted here).
    """

    cc: int  # compute capability, e.g. 90
    smem_per_block: int  # bytes, opt-in dynamic + static
    smem_per_sm: int  # bytes usable by all resident blocks
    threads_per_sm: int
    blocks_per_sm: int
    regs_per_sm: int = 65536
    regs_per_thread: int = 255


ARCHS: dict[str, ArchLimits] = {
    "sm_70": ArchLimits(70, 96 * 1024, 96 * 1024, 2048, 32),
    "sm_75": ArchLimits(75, 64 * 1024, 64 * 1024, 1024, 16),
    "sm_80": ArchLimits(80, 163 * 1024, 164 * 1024, 2048, 32),
    "sm_86": ArchLimits(86, 99 * 1024, 100 * 1024, 1536, 16),
    "sm_89": ArchLimits(89, 99 * 1024, 100 * 1024, 1536, 24),
    "sm_90": ArchLimits(90, 227 * 1024, 228 * 1024, 2048, 32),
    "sm_90a": ArchLimits(90, 227 * 1024, 228 * 1024, 2048, 32),
}


def compatible_archs(arch: str) -> tuple[str, ...]:
    """Archs whose cubins a GPU of `arch` runs and whose configs <arch>.json may hold
    (sm_90 also holds sm_90a configs: the same chip, with its arch-specific features)."""
    return tuple(a for a in (arch, arch + "a") if a in ARCHS)


def build_arch(supported: tuple[str, ...], gpu_arch: str) -> str | None:
    """The arch a template that supports `supported` builds for on a GPU of gpu_arch,
    or None if it cannot run there (an sm_90 GPU builds sm_90a-only templates for sm_90a)."""
    return next((a for a in compatible_archs(gpu_arch) if a in supported), None)


def arch_of_capability(cc: int) -> str | None:
    """The arch to build for on a GPU of compute capability cc: the exact one if known,
    else the newest known one of the same major (never an arch-specific 'a' one)."""
    exact = f"sm_{cc}"
    if exact in ARCHS:
        return exact
    same_major = [a for a, lim in ARCHS.items() if lim.cc // 10 == cc // 10 and lim.cc <= cc and not a.endswith("a")]
    return max(same_major, key=lambda a: ARCHS[a].cc) if same_major else None
