"""Template: one kernel template's rules. Which configs it accepts, its search space,
the shared memory a block needs, and the compile-time values it is rendered with.

The Python decides *which* specialisation; the template decides *how* it computes.
Each operation's templates derive from this class (autoflash/ops/<op>_<template>.py).
"""
from __future__ import annotations

import itertools

from autoflash.kernels.archs import ARCHS
from autoflash.kernels.config import OpConfig
from autoflash.kernels.elements import DTYPE_BYTES, ELEMENT_TYPES
from autoflash.kernels.registry import OPERATIONS


def spell_values(values) -> str:
    """Key values for a message: a run of four or more evenly spaced integers as 'first..last step s' (every head
    dim a multiple of 8: '8..256 step 8'), else the sorted values joined by commas."""
    v = sorted(values)
    if len(v) >= 4 and all(type(x) is int for x in v) and v[1] > v[0]:
        step = v[1] - v[0]
        if all(b - a == step for a, b in zip(v, v[1:])):
            return f"{v[0]}..{v[-1]} step {step}"
    return ", ".join(map(str, v))



def next_tile(head_dim: int, tiles: tuple[int, ...]) -> int:
    """The first of a template's tile head dims (ascending) that holds head_dim; head_dim itself past the last (a
    key the template's values refuse)."""
    return next((d for d in tiles if d >= head_dim), head_dim)


class Template:
    """Base class: subclasses fill in the class attributes and the hooks."""

    name: str = ""  # also the prefix of every config name (and kernel symbol) of this template
    template_file: str = ""  # under templates/ (or a test's own folder: template_dir)
    template_dir: str | None = None  # None: the package's templates/
    op: str = ""  # the operation it implements (registry.OPERATIONS)
    archs: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    # Problem-key fields this template limits, and the values it supports (e.g. {"head_dim": (64, 128)}).
    key_values: dict[str, tuple] = {}
    # Each knob of the search space and the values it may take. The knob's name is the
    # config field, the --knob name and the template variable ({{ block_n }}).
    knobs: dict[str, tuple[int, ...]] = {}

    # ------------------------------------------------------------- hooks
    def own_problems(self, cfg: OpConfig) -> list[str]:
        """Rules beyond the allowed values: e.g. how knobs must relate to each other."""
        return []

    def smem_bytes(self, cfg: OpConfig) -> int:
        """Dynamic shared memory one block of the main kernel needs (the one owner of that number)."""
        raise NotImplementedError

    def template_values(self, cfg: OpConfig) -> dict:
        """Compile-time constants besides common_values, as ints or plain C++ literals."""
        return {}

    def default(self, arch: str, key: dict) -> OpConfig:
        """A safe, reasonably fast config of this template for a problem key (ValueError if none)."""
        raise ValueError(f"template {self.name} has no default")

    # ----------------------------------------------------------- shared
    def supports(self, arch: str, key: dict) -> bool:
        """True if the template builds for `arch` and handles problems of this key."""
        return (arch in self.archs and key.get("dtype") in self.dtypes
                and all(key.get(f) in allowed for f, allowed in self.key_values.items()))

    def problems(self, cfg: OpConfig) -> list[str]:
        errors = []
        if cfg.arch not in self.archs:
            errors.append(f"template {self.name} does not support arch {cfg.arch} (supports {list(self.archs)})")
        if cfg.dtype not in self.dtypes:
            errors.append(f"template {self.name} does not support dtype {cfg.dtype} (supports {list(self.dtypes)})")
        for field, allowed in self.key_values.items():
            if getattr(cfg, field) not in allowed:
                errors.append(f"{field} {getattr(cfg, field)} is not supported by {self.name} (supports {spell_values(allowed)})")
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

    def config(self, arch: str, key: dict, **knobs) -> OpConfig:
        """The config of this template for a problem key and knob values (not validated)."""
        return OPERATIONS[self.op].config_class(template=self.name, arch=arch, **key, **knobs)

    def space(self, arch: str, key: dict, knobs: dict | None = None) -> list[OpConfig]:
        """Every combination of the knobs (each limited to knobs[name] if given there);
        rule-breakers included: pruning is the caller's choice, so it can say why."""
        allowed = self.restricted_knobs(knobs)
        names = list(allowed)
        return [self.config(arch, key, **dict(zip(names, values)))
                for values in itertools.product(*(allowed[n] for n in names))]

    def restricted_knobs(self, knobs: dict | None) -> dict:
        """This template's knobs, each limited to the values in `knobs` (if named there)."""
        return {name: tuple(v for v in values if not knobs or name not in knobs or v in knobs[name])
                for name, values in self.knobs.items()}

    def values(self, cfg: OpConfig) -> dict:
        """Everything the template is rendered with: each config field under its own name
        (bools as true/false), the element type, threads, and template_values."""
        common = {"kernel_name": cfg.name, "elem_type": ELEMENT_TYPES[cfg.dtype],
                  "elem_bytes": DTYPE_BYTES[cfg.dtype], "threads": cfg.threads}
        for field, value in cfg.to_dict().items():
            if field not in ("template", "arch"):
                common[field] = ("true" if value else "false") if isinstance(value, bool) else value
        return {**common, **self.template_values(cfg)}
