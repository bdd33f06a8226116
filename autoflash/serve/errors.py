"""Errors the serving path raises before any launch."""
from __future__ import annotations


class InputError(ValueError):
    """Arguments attention() cannot take; the message names the problem."""
