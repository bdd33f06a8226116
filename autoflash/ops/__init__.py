"""Operations: one module per kernel family, each registering itself (see base.py
for the contract and /templates/README.md for a walk-through).

Importing this package registers the built-in operations. An operation module of
this package that does not exist yet is skipped; one that fails to import fails
loudly (a broken operation must not silently vanish from the registry).
"""
from __future__ import annotations

import importlib

from autoflash.kernels.registry import (OPERATIONS, TEMPLATES, operation, register_operation, register_template,
                                        templates_of, unregister_operation)
from autoflash.ops.base import Operation

BUILT_IN = ("forward", "decode", "backward")


def _load_built_in() -> None:
    for name in BUILT_IN:
        module = f"{__name__}.{name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


_load_built_in()

__all__ = ["OPERATIONS", "TEMPLATES", "Operation", "operation", "register_operation", "register_template",
           "templates_of", "unregister_operation"]
