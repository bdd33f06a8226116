"""README's CLI reference, rendered from the parser itself (autoflash.cli.build_parser).

    python -m autoflash.cli.reference            # print the reference
    python -m autoflash.cli.reference --write    # put it in README.md between the markers

tests/test_readme.py fails when README's block differs from render(), so the reference
cannot drift from the options the CLI really takes. Help is formatted at a fixed width
and without colour, so the text does not depend on the terminal it was made in.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autoflash.cli import build_parser

START = "<!-- cli-reference:start -->"
END = "<!-- cli-reference:end -->"
WIDTH = 100  # argparse otherwise wraps to $COLUMNS / the terminal
README = Path(__file__).resolve().parents[2] / "README.md"


def _help(parser: argparse.ArgumentParser) -> str:
    cls = parser.formatter_class
    parser.formatter_class = lambda prog: cls(prog, width=WIDTH)
    parser.color = False  # Python 3.14 colours help when it thinks it writes to a terminal
    # argparse pads some wrapped lines with trailing spaces; Markdown and editors drop them
    return "\n".join(line.rstrip() for line in parser.format_help().strip().splitlines())


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    # argparse has no public accessor for subparsers; its action is the documented way in
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(action.choices.items())


def render() -> str:
    """The Markdown between the markers: `autoflash --help`, then each subcommand's help."""
    parser = build_parser()
    parts = ["<!-- generated from autoflash/cli/ by `python -m autoflash.cli.reference --write` -->",
             "```\n" + _help(parser) + "\n```"]
    for name, sub in _subcommands(parser):
        parts.append(f"### `autoflash {name}`\n\n```\n{_help(sub)}\n```")
    return "\n\n".join(parts) + "\n"


def split(text: str) -> tuple[str, str, str]:
    """README text -> (before the block, the block, after it); the markers stay outside."""
    head, start, rest = text.partition(START + "\n")
    block, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README has no {START} ... {END} block")
    return head + start, block, end + tail


def write(path: Path = README) -> bool:
    """Rewrite the block in README; True if it changed."""
    text = path.read_text(encoding="utf-8")
    head, block, tail = split(text)
    new = render()
    if block == new:
        return False
    path.write_text(head + new + tail, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m autoflash.cli.reference", description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"replace the block in {README.name}")
    args = ap.parse_args(argv)
    if args.write:
        print(f"{README}: {'updated' if write() else 'already up to date'}")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
