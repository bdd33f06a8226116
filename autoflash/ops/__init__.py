"""Operations: one module per kernel family, each registering itself (see base.py
for the contract and /templates/README.md for a walk-through).

Importing this package registers the built-in operations, then the files named in
$AUTOFLASH_PLUGINS (os.pathsep-separated paths of Python files that register their
own operations or templates; every process of a run imports them, compile pool and
runner included, since they inherit the environment). An operation module of this
package that does not exist yet is skipped; one that fails to import fails loudly (a
broken operation must not silently vanish from the registry).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from autoflash.kernels.registry import (OPERATIONS, TEMPLATES, operation, register_operation, register_template,
                                        templates_of, unregister_operation)
from autoflash.ops.base import Operation

BUILT_IN = ("forward", "decode", "backward")
PLUGINS_ENV = "AUTOFLASH_PLUGINS"


def _load_built_in() -> None:
    for name in BUILT_IN:
        module = f"{__name__}.{name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def import_file(path: str) -> None:
    """Import a Python file by path, once per process (it registers what it defines)."""
    name = "autoflash_plugin_" + os.path.splitext(os.path.basename(path))[0]
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_load_built_in()
for _path in filter(None, os.environ.get(PLUGINS_ENV, "").split(os.pathsep)):
    import_file(_path)

__all__ = ["PLUGINS_ENV", "import_file", "OPERATIONS", "TEMPLATES", "Operation", "operation", "register_operation", "register_template",
           "templates_of", "unregister_operation"]
