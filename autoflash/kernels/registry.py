"""The two tables every stage looks names up in: operations and templates.

Filled at import time by the operation modules (autoflash/ops/ registers the built-in
ones when `autoflash` is imported; a test registers its own). This module imports
nothing of autoflash, so every layer may use it without a cycle.
"""
from __future__ import annotations

OPERATIONS: dict = {}  # op name -> ops.base.Operation
TEMPLATES: dict = {}  # template name -> kernels.template.Template


def register_operation(op) -> None:
    """Register an operation and its templates (op.templates)."""
    OPERATIONS[op.name] = op
    for t in op.templates:
        register_template(t)


def register_template(template) -> None:
    if template.op not in OPERATIONS:
        raise ValueError(f"template {template.name}: register its operation {template.op!r} first")
    TEMPLATES[template.name] = template


def unregister_operation(name: str) -> None:
    """Remove an operation and its templates (tests that register a toy operation)."""
    OPERATIONS.pop(name, None)
    for tname in [n for n, t in TEMPLATES.items() if t.op == name]:
        del TEMPLATES[tname]


def operation(name: str):
    try:
        return OPERATIONS[name]
    except KeyError:
        raise KeyError(f"unknown operation {name!r}; registered: {sorted(OPERATIONS)}") from None


def templates_of(op_name: str) -> dict:
    return {n: t for n, t in TEMPLATES.items() if t.op == op_name}
