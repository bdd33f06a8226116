"""fault_test: a TEST-ONLY forward template whose kernel can be built to fault.

It lets the tests drive real GPU faults (an illegal-address write, a hang, wrong
values) through the tuner's runner. It lives with the tests (its source in
tests/templates/), so real tuning never sees it: a test registers it (`registered()`),
and names fault_test_plugin.py in $AUTOFLASH_PLUGINS, so a runner subprocess registers it too.

The forward's KernelConfig has no fault field, so this template reads `stages` as its
fault knob: stages = 1 + FAULTS.index(mode).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from autoflash.ops.forward_base import KernelConfig  # not `from autoflash`: a runner imports this plugin while autoflash itself is loading
from autoflash.kernels.registry import TEMPLATES, register_template
from autoflash.ops.forward_base import ForwardTemplate

FAULTS = ("none", "wrong", "oob", "hang")  # the template's FAULT constant is the index


class FaultTestTemplate(ForwardTemplate):
    name = "fault_test"
    template_file = "fault_test.cu.j2"
    template_dir = str(Path(__file__).resolve().parent / "templates")
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
        return {"fault": cfg.stages - 1}

    def default_tiles(self, key: dict) -> list[dict]:
        return [dict(block_m=64, block_n=32, warps=2, stages=1)]


TEMPLATE = FaultTestTemplate()
PLUGIN = str(Path(__file__).resolve().parent / "fault_test_plugin.py")  # for $AUTOFLASH_PLUGINS


def config(fault: str, arch: str = "sm_90", dtype: str = "fp32", head_dim: int = 64, causal: bool = False,
           block_m: int = 64) -> KernelConfig:
    """The config of a kernel with this fault ("none", "wrong", "oob" or "hang")."""
    return KernelConfig(template=TEMPLATE.name, arch=arch, dtype=dtype, head_dim=head_dim, causal=causal,
                        block_m=block_m, block_n=32, warps=block_m // 32, stages=FAULTS.index(fault) + 1)


def fault_of(cfg: KernelConfig) -> str:
    return FAULTS[cfg.stages - 1]


@contextlib.contextmanager
def registered():
    """The template registered in this process for the duration of the block."""
    register_template(TEMPLATE)
    try:
        yield TEMPLATE
    finally:
        TEMPLATES.pop(TEMPLATE.name, None)
