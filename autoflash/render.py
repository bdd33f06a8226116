"""Render a KernelConfig into CUDA source with Jinja2.

Only a validated config reaches a template, and every value passed in is an int
or a literal chosen from a closed set, so nothing in a config file can inject
text into the CUDA source.
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import jinja2

from autoflash.config import KernelConfig


def templates_dir() -> Path:
    """templates/ at the top of a checkout, or the copy a wheel installs inside the package."""
    checkout = Path(__file__).resolve().parent.parent / "templates"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("autoflash") / "templates"))


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,  # a missing constant is an error, never an empty string
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(cfg: KernelConfig) -> str:
    """CUDA source for one validated config; its kernel symbol is cfg.name."""
    from autoflash.variants import VARIANTS

    cfg.validate()
    variant = VARIANTS[cfg.template]
    values = variant.template_values(cfg)
    for key, value in values.items():  # defence in depth: only ints and known literals
        if not isinstance(value, int) and not (isinstance(value, str) and value.replace("_", "").isalnum()):
            raise ValueError(f"template value {key}={value!r} is not a plain literal")
    return environment().get_template(variant.template_file).render(**values)
