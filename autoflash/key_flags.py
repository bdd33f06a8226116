"""Bool problem-key fields added to an operation after tuned entries were written (the forward's
variant flags window/softcap/sinks/alibi, decode's paged): an entry, key or study that lacks one
means False, its config default, since it was made for the plain problem. So old tuned_configs
files stay valid and plain keys keep their study names."""
from __future__ import annotations

import dataclasses

from autoflash.kernels.registry import OPERATIONS


def off_flags(op_name: str) -> tuple[str, ...]:
    """The op's bool key fields whose config default is False."""
    op = OPERATIONS[op_name]
    defaults = {f.name: f.default for f in dataclasses.fields(op.config_class)}
    return tuple(f for f in op.key_fields if defaults.get(f) is False)


def with_new_flags(entry):
    """A tuned entry (a dict with "op") with each missing off flag read as False."""
    op = OPERATIONS.get(entry.get("op")) if isinstance(entry, dict) else None
    if op is None:
        return entry
    missing = {f: False for f in off_flags(op.name) if f not in entry}
    return {**entry, **missing} if missing else entry
