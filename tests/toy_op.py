"""A toy operation defined only in the tests: y = alpha * x, rows of `width` elements.

Everything an operation gives the pipeline is here (autoflash/ops/base.py is the
contract): its config class, its template's rules (tests/templates/toy_scale.cu.j2),
its problem key (dtype, width), bucket (rows), float64 reference, verification
shapes, byte count (metric GB/s), inputs, launch and default. test_toy_op.py tunes it
end to end through the stand-in runner and the unchanged tuner, store and CLI.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from autoflash.kernels.arrays import poisoned, random_normal, to_float64
from autoflash.kernels.config import OpConfig
from autoflash.kernels.elements import DTYPE_BYTES
from autoflash.kernels.template import Template
from autoflash.ops.base import Operation
from autoflash.ops.reference import Check, compare

ALPHA = 0.75


@dataclass(frozen=True)
class ToyConfig(OpConfig):
    width: int  # problem-key field: elements per row
    block: int  # knob: rows per block
    warps: int  # knob

    op: ClassVar[str] = "toy"
    name_parts: ClassVar[tuple] = (("width", "w"), ("block", "b"), ("warps", "warps"))


class ToyTemplate(Template):
    name = "toy_scale"
    template_file = "toy_scale.cu.j2"
    template_dir = str(Path(__file__).resolve().parent / "templates")
    op = "toy"
    archs = ("sm_80", "sm_86", "sm_89", "sm_90")
    dtypes = ("fp32", "fp16")
    key_values = {"width": (32, 64)}
    knobs = {"block": (1, 2, 4, 8, 16), "warps": (1, 2, 4)}

    def own_problems(self, cfg: ToyConfig) -> list[str]:
        if cfg.block * cfg.width < cfg.threads:
            return [f"block * width = {cfg.block * cfg.width} leaves some of the {cfg.threads} threads idle"]
        return []

    def smem_bytes(self, cfg: ToyConfig) -> int:
        return 4 * cfg.block * cfg.width

    def default(self, arch: str, key: dict) -> ToyConfig:
        return self.config(arch, key, block=4, warps=2).validate()


@dataclass
class ToyProblem:
    rows: int
    width: int


class ToyOp(Operation):
    name = "toy"
    config_class = ToyConfig
    templates = (ToyTemplate(),)
    key_fields = ("width",)
    key_defaults = {"width": (64,)}
    bucket_name = "rows"
    default_buckets = (1024, 8192)
    metric = "gbps"
    default_tokens = 1

    def bench_problem(self, key: dict, bucket: int, tokens: int) -> dict:
        return {"rows": bucket, "width": key["width"]}

    def check_problems(self, key: dict) -> list[dict]:
        return [{"rows": 1, "width": key["width"]}, {"rows": 1001, "width": key["width"]}]

    def verify_problems(self, key: dict, bucket: int) -> list[dict]:
        return [{"rows": bucket, "width": key["width"]}, {"rows": bucket // 2 + 1, "width": key["width"]}]

    def work(self, problem: dict) -> float:
        return 2.0 * 4 * problem["rows"] * problem["width"]  # read x, write y (counted as fp32 bytes)

    def default(self, arch: str, key: dict) -> ToyConfig:
        return self.templates[0].default(arch, key)

    # ---- GPU side
    def input_bytes(self, problem: dict, dtype: str) -> int:
        return 2 * DTYPE_BYTES[dtype] * problem["rows"] * problem["width"]

    def make_inputs(self, problem: dict, dtype: str, seed: int):
        import cupy

        x = random_normal(cupy.random.default_rng(seed), (problem["rows"], problem["width"]), dtype)
        return x, poisoned(x.shape, dtype)

    def launcher(self, kernel, problem: dict, inputs):
        import cupy
        import numpy as np

        x, y = inputs
        cfg = kernel.config
        grid = (math.ceil(problem["rows"] / cfg.block), 1, 1)
        args = (x, y, np.int32(problem["rows"]), np.float32(ALPHA))
        stream = cupy.cuda.get_current_stream()
        return lambda: kernel.function(grid, (cfg.threads, 1, 1), args, shared_mem=kernel.smem, stream=stream)

    def verify(self, kernel, problem: dict, seed: int) -> Check:
        import cupy

        dtype = kernel.config.dtype
        x, y = self.make_inputs(problem, dtype, seed)
        self.launcher(kernel, problem, (x, y))()
        cupy.cuda.get_current_stream().synchronize()
        return compare(to_float64(y, dtype), reference(to_float64(x, dtype)), dtype)


def reference(x):
    """The toy's float64 reference."""
    return ALPHA * x


TOY = ToyOp()
