"""fault_test: a TEST-ONLY template whose kernel can be built to fault.

It lets the tests drive real GPU faults (an illegal-address write, a hang, wrong
values) through the tuner's runner. autoflash.variants never registers it, so real
tuning never sees it; a test registers it (`registered()`) and the runner
subprocess it starts registers it too (`serve`).

KernelConfig has a fixed set of fields, so this template reads `stages` as its
fault knob: stages = 1 + FAULTS.index(mode).
"""
from __future__ import annotations

import contextlib

from autoflash.config import KernelConfig
from autoflash.variants.base import Variant

FAULTS = ("none", "wrong", "oob", "hang")  # the template's FAULT constant is the index


class FaultTestVariant(Variant):
    name = "fault_test"
    template_file = "fault_test.cu.j2"
    archs = ("sm_80", "sm_86", "sm_89", "sm_90")
    dtypes = ("fp32", "fp16", "bf16")
    head_dims = (32, 64)
    knobs = {
        "block_m": (32, 64, 128),
        "block_n": (32,),  # not used by the kernel
        "warps": (1, 2, 4),
        "stages": tuple(range(1, len(FAULTS) + 1)),
    }

    def own_problems(self, cfg: KernelConfig) -> list[str]:
        if cfg.block_m != cfg.threads:
            return [f"block_m={cfg.block_m} must equal the {cfg.threads} threads (one query row per thread)"]
        return []

    def smem_bytes(self, cfg: KernelConfig) -> int:
        return 0

    def template_values(self, cfg: KernelConfig) -> dict:
        return {**self.common_values(cfg), "fault": cfg.stages - 1}

    def default(self, arch: str, dtype: str, head_dim: int, causal: bool) -> KernelConfig:
        return config("none", arch, dtype, head_dim, causal)


VARIANT = FaultTestVariant()


def config(fault: str, arch: str = "sm_90", dtype: str = "fp32", head_dim: int = 64, causal: bool = False,
           block_m: int = 64) -> KernelConfig:
    """The config of a kernel with this fault ("none", "wrong", "oob" or "hang")."""
    return KernelConfig(template=VARIANT.name, arch=arch, dtype=dtype, head_dim=head_dim, causal=causal,
                        block_m=block_m, block_n=32, warps=block_m // 32, stages=FAULTS.index(fault) + 1)


def fault_of(cfg: KernelConfig) -> str:
    return FAULTS[cfg.stages - 1]


@contextlib.contextmanager
def registered():
    """The variant registered in this process for the duration of the block."""
    from autoflash import variants

    variants.register(VARIANT)
    try:
        yield VARIANT
    finally:
        variants.VARIANTS.pop(VARIANT.name, None)


def serve(conn, spec: dict) -> None:
    """runner.serve with this variant registered: a spawned runner starts from a fresh
    import and would otherwise reject these configs. Tests put it in place of
    runner.serve, which RunnerProcess starts."""
    from autoflash import runner, variants

    variants.register(VARIANT)
    runner.serve(conn, spec)
