"""What every template variant shares: the checks common to all kernels."""
from __future__ import annotations

import itertools
import math

from autoflash.config import ARCHS, DTYPE_BYTES, KernelConfig

LOG2E = 1.4426950408889634  # log2(e): the kernels run softmax in base 2

# Per-dtype C++ element types the templates are rendered with.
ELEMENT_TYPES = {"fp32": "float", "fp16": "__half", "bf16": "__nv_bfloat16"}


class Variant:
    """Base class: subclasses fill in the class attributes and the hooks."""

    name: str = ""
    template_file: str = ""
    archs: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    head_dims: tuple[int, ...] = ()
    # Each knob of the search space and the values it may take.
    knobs: dict[str, tuple[int, ...]] = {}

    # ------------------------------------------------------------- hooks
    def own_problems(self, cfg: KernelConfig) -> list[str]:
        raise NotImplementedError

    def smem_bytes(self, cfg: KernelConfig) -> int:
        """Dynamic shared memory one block needs."""
        raise NotImplementedError

    def template_values(self, cfg: KernelConfig) -> dict:
        """Compile-time constants for the template, as C++ literals or plain ints."""
        raise NotImplementedError

    def default(self, arch: str, dtype: str, head_dim: int, causal: bool) -> KernelConfig:
        raise NotImplementedError

    # ----------------------------------------------------------- shared
    def problems(self, cfg: KernelConfig) -> list[str]:
        errors = []
        if cfg.arch not in self.archs:
            errors.append(f"template {self.name} does not support arch {cfg.arch} (supports {list(self.archs)})")
        if cfg.dtype not in self.dtypes:
            errors.append(f"template {self.name} does not support dtype {cfg.dtype} (supports {list(self.dtypes)})")
        if cfg.head_dim not in self.head_dims:
            errors.append(f"head_dim {cfg.head_dim} is not supported by {self.name} (supports {list(self.head_dims)})")
        for knob, allowed in self.knobs.items():
            if getattr(cfg, knob) not in allowed:
                errors.append(f"{knob}={getattr(cfg, knob)} is not one of {list(allowed)} for {self.name}")
        if errors:
            return errors
        if cfg.threads > 1024:
            errors.append(f"{cfg.threads} threads per block exceeds 1024")
        errors += self.own_problems(cfg)
        if errors:
            return errors
        limit = ARCHS[cfg.arch].smem_per_block
        smem = self.smem_bytes(cfg)
        if smem > limit:
            errors.append(f"needs {smem} B of shared memory per block, {cfg.arch} allows {limit} B")
        return errors

    def space(self, arch: str, dtype: str, head_dim: int, causal: bool) -> list[KernelConfig]:
        """Every combination of the knobs; rule-breakers included (pruning is the
        caller's choice, so it can record why each one was dropped)."""
        names = list(self.knobs)
        configs = []
        for values in itertools.product(*(self.knobs[n] for n in names)):
            fields = dict(zip(names, values))
            configs.append(
                KernelConfig(template=self.name, arch=arch, dtype=dtype, head_dim=head_dim, causal=causal, **fields)
            )
        return configs

    def common_values(self, cfg: KernelConfig) -> dict:
        return {
            "kernel_name": cfg.name,
            "elem_type": ELEMENT_TYPES[cfg.dtype],
            "elem_bytes": DTYPE_BYTES[cfg.dtype],
            "head_dim": cfg.head_dim,
            "block_m": cfg.block_m,
            "block_n": cfg.block_n,
            "threads": cfg.threads,
            "stages": cfg.stages,
            "causal": "true" if cfg.causal else "false",
        }

    def kernel_args(self, cfg: KernelConfig, pointers: tuple[int, ...], p, scale: float) -> tuple:
        """Arguments of the shared kernel signature (launch.py). A template that needs
        more (e.g. a TMA tensor map) overrides launch_args and documents its signature."""
        return self.launch_args(cfg, p, scale)(*pointers)

    def launch_args(self, cfg: KernelConfig, p, scale: float):
        """A function of the five pointers (q, k, v, o, lse) returning the kernel's
        arguments: what depends only on (cfg, p, scale) is converted once, here, so a
        cached launch plan (launch.py) pays only for the pointers."""
        import numpy as np

        u64 = np.uint64
        tail = (np.int32(p.heads_q), np.int32(p.heads_kv), np.int32(p.seq_q), np.int32(p.seq_k),
                np.float32(scale * LOG2E))

        def args(q, k, v, o, lse):
            return (u64(q), u64(k), u64(v), u64(o), u64(lse)) + tail

        return args

    def grid(self, cfg: KernelConfig, batch: int, heads_q: int, seq_q: int) -> tuple[int, int, int]:
        """One block per (query tile, query head, batch): the FlashAttention-2 order.
        Query tiles vary fastest so blocks running together share one K/V head in L2."""
        return (math.ceil(seq_q / cfg.block_m), heads_q, batch)
