"""Render a kernel config into CUDA source with Jinja2.

Only a validated config reaches a template, and every value passed in is an int
or a literal chosen from a closed set, so nothing in a config file can inject
text into the CUDA source.
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import jinja2

from autoflash.kernels.config import OpConfig
from autoflash.kernels.registry import TEMPLATES


def templates_dir() -> Path:
    """templates/ at the top of a checkout, or the copy a wheel installs inside the package."""
    checkout = Path(__file__).resolve().parents[2] / "templates"
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("autoflash") / "templates"))


@functools.cache
def environment(folder: str | None = None) -> jinja2.Environment:
    """The Jinja2 environment over templates/ (or a test's own template folder, which
    also sees templates/ for the shared headers)."""
    folders = ([folder] if folder else []) + [str(templates_dir())]
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        undefined=jinja2.StrictUndefined,  # a missing constant is an error, never an empty string
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(cfg: OpConfig) -> str:
    """CUDA source for one validated config; its (main) kernel symbol is cfg.name."""
    return rendering(cfg)[0]


def rendering(cfg: OpConfig) -> tuple[str, dict]:
    """render(cfg) and the values it was rendered with (module switches included: a launch reads its
    choices, e.g. the grid's order, from these, not from the switch as it is later)."""
    cfg.validate()
    template = TEMPLATES[cfg.template]
    values = template.values(cfg)
    for key, value in values.items():  # defence in depth: only ints and known literals
        if not isinstance(value, int) and not (isinstance(value, str) and value.replace("_", "").isalnum()):
            raise ValueError(f"template value {key}={value!r} is not a plain literal")
    return environment(template.template_dir).get_template(template.template_file).render(**values), values
