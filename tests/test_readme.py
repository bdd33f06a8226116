"""README stays true: its CLI reference is what the parser prints, and its quick-start
test command is the one CI runs."""
import re
from pathlib import Path

from autoflash.cli import reference as cli_reference

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```\n(.*?)```", section, re.S)]


def test_cli_reference_is_generated_from_the_parser():
    _, block, _ = cli_reference.split(README)
    assert block == cli_reference.render(), "README's CLI reference is stale: run python -m autoflash.cli.reference --write"


def test_quick_start_commands_are_what_ci_runs():
    main_job, tests = _quick_start_commands()
    assert main_job == "pip install -e '.[cu13]' && autoflash tune --arch sm_90"
    assert tests == "pip install -e '.[cu13,test]' && python -m pytest -q"
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert tests in ci, f".ci/run must run README's test command: {tests}"
