"""Kernel configs: one specialisation of one template, validated strictly before it
reaches the template.

A config can come from a file (tuned_configs/, a user's JSON), so it is untrusted
input: every field is type-checked against its dataclass annotation, names are
compared with closed sets, and the template's own rules must accept it before any of
it is turned into CUDA source.

Each operation has its own config class (a frozen dataclass deriving from OpConfig:
template, arch, dtype, then its problem-key fields and knobs, all ints or bools);
OpConfig.from_dict picks the class from the config's template.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import ClassVar

from autoflash.kernels.archs import ARCHS, ArchLimits
from autoflash.kernels.elements import DTYPES
from autoflash.kernels.registry import OPERATIONS, TEMPLATES


class ConfigError(ValueError):
    """A kernel config that is malformed or breaks its template's rules."""


@dataclass(frozen=True)
class OpConfig:
    """Fields every config has. Subclasses add int and bool fields only (problem-key
    fields such as head_dim, and knobs such as block_n), so a config is plain data."""

    template: str
    arch: str
    dtype: str

    op: ClassVar[str] = ""  # the operation this config class belongs to
    # (field, prefix) in the order they appear in the name; default: every int field, prefix = its name.
    # An int field that is 0 is left out (0 = not used); a true bool field adds its own name at the end.
    name_parts: ClassVar[tuple] = ()

    # ----------------------------------------------------------------- naming
    @property
    def name(self) -> str:
        """Deterministic name: kernel symbol, cache key part, JSON key and log tag."""
        parts = [self.template, self.arch, self.dtype]
        ints = self.name_parts or tuple((f.name, f.name) for f in self._typed_fields("int"))
        parts += [f"{prefix}{getattr(self, field)}" for field, prefix in ints if getattr(self, field)]
        parts += [f.name for f in self._typed_fields("bool") if getattr(self, f.name)]
        return "_".join(parts)

    @property
    def threads(self) -> int:
        return 32 * getattr(self, "warps")  # every op's configs have a `warps` knob

    @property
    def limits(self) -> ArchLimits:
        return ARCHS[self.arch]

    # ------------------------------------------------------------ conversion
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data) -> "OpConfig":
        """Build and validate a config from untrusted data (e.g. a JSON file). On OpConfig
        itself the class is chosen by the config's template; on an op's class the
        template must belong to that op."""
        if not isinstance(data, dict):
            raise ConfigError(f"kernel config must be an object, got {type(data).__name__}")
        template = TEMPLATES.get(data.get("template")) if isinstance(data.get("template"), str) else None
        if template is None:
            raise ConfigError(f"template {data.get('template')!r} is not one of {sorted(TEMPLATES)}")
        target = OPERATIONS[template.op].config_class
        if cls is not OpConfig and not issubclass(target, cls):
            raise ConfigError(f"template {template.name} is a {template.op} template, not a {cls.op} one")
        fields = {f.name: f for f in dataclasses.fields(target)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}; allowed: {sorted(fields)}")
        missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING and n not in data]
        if missing:
            raise ConfigError(f"config is missing key(s) {missing}")
        return target(**data).validate()

    def replace(self, **changes) -> "OpConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    @functools.cache  # per class: validation runs over every config of a search space (a million at wgmma's)
    def _typed_fields(cls, kind: str) -> tuple:
        return tuple(f for f in dataclasses.fields(cls) if f.type in (kind, {"int": int, "bool": bool}[kind]))

    # ------------------------------------------------------------ validation
    def problems(self) -> list[str]:
        """Every reason this config is invalid (empty when valid)."""
        errors = []
        for f in self._typed_fields("int"):
            value = getattr(self, f.name)
            if type(value) is not int:  # bool is an int subclass: reject it too
                errors.append(f"{f.name} must be an integer, got {value!r}")
        for f in self._typed_fields("bool"):
            if type(getattr(self, f.name)) is not bool:
                errors.append(f"{f.name} must be true or false, got {getattr(self, f.name)!r}")
        for name, allowed in (("template", TEMPLATES), ("arch", ARCHS), ("dtype", DTYPES)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                errors.append(f"{name} {value!r} is not one of {sorted(allowed)}")
        if errors:  # the template's rules assume well-typed, known values
            return errors
        template = TEMPLATES[self.template]
        if template.op != self.op:
            return [f"template {self.template} is a {template.op} template, not a {self.op} one"]
        return template.problems(self)

    def validate(self) -> "OpConfig":
        errors = self.problems()
        if errors:
            raise ConfigError(f"invalid kernel config {self.to_dict()}: " + "; ".join(errors))
        return self
