"""What the commands share: the one-line error, flag parsers, tables, entry labels."""
from __future__ import annotations

import argparse

from autoflash.kernels.config import OpConfig
from autoflash.kernels.registry import OPERATIONS

UNITS = {"tflops": "TFLOP/s", "gbps": "GB/s"}


class CliError(Exception):
    """An error the CLI reports in one line (exit status 2)."""


def csv(kind):
    def parse(text: str):
        out = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(kind(part))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{part!r} is not a valid {kind.__name__}") from None
        return out

    return parse


def knob(text: str):
    """--knob NAME=V1,V2: the knob's name is the config field (and the template variable)."""
    name, sep, values = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--knob takes NAME=V1,V2,... (got {text!r})")
    try:
        return name.strip(), tuple(int(v) for v in values.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--knob {name} values must be integers (got {values!r})") from None


def key_value(text: str):
    """--key NAME=V1,V2: values of a problem-key field (integers, or yes/no)."""
    name, sep, values = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--key takes NAME=V1,V2,... (got {text!r})")
    out = []
    for v in (v.strip() for v in values.split(",") if v.strip()):
        if v in ("yes", "no"):
            out.append(v == "yes")
        else:
            try:
                out.append(int(v))
            except ValueError:
                raise argparse.ArgumentTypeError(f"--key {name} values must be integers or yes/no (got {v!r})") from None
    return name.strip(), tuple(out)


def flatten(lists):
    return [x for sub in (lists or []) for x in sub]


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def cfg_name(entry: dict) -> str:
    return OpConfig.from_dict(entry["config"]).name


def speed(entry: dict) -> str:
    """An entry's measured rate in its op's unit, e.g. '512.3 TFLOP/s'."""
    metric = OPERATIONS[entry["op"]].metric
    return f"{entry[metric]:.1f} {UNITS.get(metric, metric)}"
