"""Each kernel template's rules: which configs it accepts, its search space, its
default, and the compile-time constants its template is rendered with.

The Python decides *which* specialisation; the template decides *how* it computes.
"""
from __future__ import annotations

from autoflash.variants.base import Variant
from autoflash.variants.simt import SIMT

VARIANTS: dict[str, Variant] = {SIMT.name: SIMT}


def register(variant: Variant) -> None:
    VARIANTS[variant.name] = variant


def _register_optional() -> None:
    # Later templates register themselves here; each module is plain Python
    # (no CUDA import), so this stays cheap and GPU-free.
    import importlib

    for module in ("autoflash.variants.mma", "autoflash.variants.wgmma"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        register(mod.VARIANT)


_register_optional()
