"""Problem-key fields added to an operation after tuned entries were written (the forward's
variant flags window/softcap/sinks/alibi, decode's paged: bools whose config default is False; the
forward's head_dim_v: an int whose config default 0 means "not used"): an entry, key or study that
lacks one means its config default, since it was made for the plain problem. So old tuned_configs
files stay valid and plain keys keep their study names."""
from __future__ import annotations

import dataclasses

from autoflash.kernels.registry import OPERATIONS


def off_values(op_name: str) -> dict:
    """The op's key fields whose config default means "off" (a bool False, an int 0), with it."""
    op = OPERATIONS[op_name]
    defaults = {f.name: f.default for f in dataclasses.fields(op.config_class)}
    return {f: defaults[f] for f in op.key_fields
            if f in defaults and (defaults[f] is False or (type(defaults[f]) is int and defaults[f] == 0))}


def off_flags(op_name: str) -> tuple[str, ...]:
    """The op's key fields whose config default is off (off_values)."""
    return tuple(off_values(op_name))


def is_off(op_name: str, field: str, value) -> bool:
    """value is field's off default (same type: 0 is not False)."""
    off = off_values(op_name)
    return field in off and type(value) is type(off[field]) and value == off[field]


def with_new_flags(entry):
    """A tuned entry (a dict with "op") with each missing off field read as its default."""
    op = OPERATIONS.get(entry.get("op")) if isinstance(entry, dict) else None
    if op is None:
        return entry
    missing = {f: d for f, d in off_values(op.name).items() if f not in entry}
    return {**entry, **missing} if missing else entry
