"""Re-checking tuned entries (`autoflash verify`): offline (render, compile, resources)
and on this GPU (the operation's own check at the entry's verify problems)."""
from __future__ import annotations

import dataclasses

from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.config import OpConfig
from autoflash.kernels.loaded import LoadedKernel
from autoflash.kernels.registry import OPERATIONS, TEMPLATES
from autoflash.store import problem_key
from autoflash.tuning.space import resource_check


def check_entry_offline(entry: dict) -> tuple[object, list[str]]:
    """Render and compile a tuned entry's config (no GPU): (CompiledKernel, problems).
    Problems: spills, shared memory over the arch's limit, registers no SM can hold."""
    cfg = OpConfig.from_dict(entry["config"])
    ck = compile_kernel(cfg)
    _, reasons = resource_check(cfg, dataclasses.asdict(ck.report), TEMPLATES[cfg.template].smem_bytes(cfg))
    return ck, reasons


def check_entry_on_gpu(entry: dict, device: int = 0, seed: int = 0) -> list[tuple[dict, object]]:
    """Run a tuned entry's kernel on this GPU against the operation's float64 reference
    at its verify problems (for the forward: its bucket and an odd length): [(problem, Check)]."""
    import cupy

    op = OPERATIONS[entry["op"]]
    cfg = OpConfig.from_dict(entry["config"])
    with cupy.cuda.Device(device):
        kernel = LoadedKernel(compile_kernel(cfg))
        return [(p, op.verify(kernel, p, seed + i))
                for i, p in enumerate(op.verify_problems(problem_key(entry), entry["seq_bucket"]))]
