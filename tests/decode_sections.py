"""A compiled decode module's ptxas report split per kernel, and the kernels the module must hold: the split kernel,
_combine, and _combine_lanes where decode_kernels.lanes_combine renders it."""
import re

from autoflash.ops.decode_kernels import lanes_combine


def kernel_sections(log: str) -> dict:
    """kernel name -> its part of NVRTC's log (ptxas -v)."""
    parts = re.split(r"Compiling entry function '([^']+)'", log)
    return dict(zip(parts[1::2], parts[2::2]))


def module_kernels(cfg) -> set:
    return {cfg.name, cfg.name + "_combine"} | ({cfg.name + "_combine_lanes"} if lanes_combine(cfg) else set())
