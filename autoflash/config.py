"""KernelConfig: one kernel variant, validated strictly before it reaches a template.

A config can come from a file (tuned_configs/, a user's JSON), so it is untrusted
input: every field is type-checked and compared with a closed set of values, and
the template's own rules (autoflash.variants) must accept it, before any of it is
turned into CUDA source.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

DTYPES = ("fp32", "fp16", "bf16")
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


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


class ConfigError(ValueError):
    """A kernel config that is malformed or breaks its template's rules."""


@dataclass(frozen=True)
class KernelConfig:
    """One specialisation of one template. Sequence lengths and batch are run-time
    arguments of the kernel, so one compiled config serves every length."""

    template: str
    arch: str
    dtype: str
    head_dim: int
    causal: bool
    block_m: int  # Br: query rows per thread block
    block_n: int  # Bc: key/value rows per tile
    warps: int  # threads per block = 32 * warps
    stages: int = 1  # shared-memory pipeline depth for K/V tiles
    thread_m: int = 0  # flash_fwd_simt only: query rows per thread (0 = not used)

    # ----------------------------------------------------------------- naming
    @property
    def name(self) -> str:
        """Deterministic name: kernel symbol, cache key part, JSON key and log tag."""
        parts = [
            self.template,
            self.arch,
            self.dtype,
            f"d{self.head_dim}",
            f"br{self.block_m}",
            f"bc{self.block_n}",
            f"w{self.warps}",
            f"s{self.stages}",
        ]
        if self.thread_m:
            parts.append(f"tm{self.thread_m}")
        if self.causal:
            parts.append("causal")
        return "_".join(parts)

    @property
    def threads(self) -> int:
        return 32 * self.warps

    @property
    def limits(self) -> ArchLimits:
        return ARCHS[self.arch]

    # ------------------------------------------------------------ conversion
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data) -> "KernelConfig":
        """Build and validate a config from untrusted data (e.g. a JSON file).

        The dataclass is the schema (no jsonschema): field names and types are checked
        here, values in problems(), where the template's own rules also run."""
        if not isinstance(data, dict):
            raise ConfigError(f"kernel config must be an object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; allowed: {sorted(fields)}")
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise ConfigError(f"config is missing key(s) {missing}")
        cfg = cls(**data)
        cfg.validate()
        return cfg

    def replace(self, **changes) -> "KernelConfig":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------ validation
    def problems(self) -> list[str]:
        """Every reason this config is invalid (empty when valid)."""
        from autoflash.variants import VARIANTS

        errors = []
        for name in ("head_dim", "block_m", "block_n", "warps", "stages", "thread_m"):
            value = getattr(self, name)
            if type(value) is not int:  # bool is an int subclass: reject it too
                errors.append(f"{name} must be an integer, got {value!r}")
        if type(self.causal) is not bool:
            errors.append(f"causal must be true or false, got {self.causal!r}")
        for name, allowed in (("template", VARIANTS), ("arch", ARCHS), ("dtype", DTYPES)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                errors.append(f"{name} {value!r} is not one of {sorted(allowed)}")
        if errors:  # the template's rules assume well-typed, known values
            return errors
        return VARIANTS[self.template].problems(self)

    def validate(self) -> "KernelConfig":
        errors = self.problems()
        if errors:
            raise ConfigError(f"invalid kernel config {self.to_dict()}: " + "; ".join(errors))
        return self
