"""docs/cli.md has a section for every command of `python -m gpt2np`, and in that section's option
table a row for every argument and option of the command, read from the command's own parser (each
gpt2np/cli module's `build_parser`)."""

import re
from pathlib import Path

import pytest

from gpt2np.cli import SUBCOMMANDS, corpus, download, export, findings, generate, patch, run

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
SECTIONS = {                      # command -> (its heading in docs/cli.md, its module)
    "run": ("`python -m gpt2np TEXT`", run),
    "download": ("`python -m gpt2np download [NAME]`", download),
    "findings": ("`python -m gpt2np findings`", findings),
    "generate": ("`python -m gpt2np generate TEXT`", generate),
    "corpus": ("`python -m gpt2np corpus FILE|DIR|-`", corpus),
    "export": ("`python -m gpt2np export TEXT --html FILE`", export),
    "patch": ("`python -m gpt2np patch CLEAN CORRUPTED`", patch),
}


def first_cells(heading):
    """The first cell of every table row under `## heading`, up to the next section."""
    text = CLI_MD.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    rows = [line for line in text[start:end if end > 0 else None].splitlines() if line.startswith("| ")]
    return [re.split(r"(?<!\\) \| ", row[2:])[0].replace("\\|", "|") for row in rows]


def names(parser):
    """Every option string (--top-k) and positional name (TEXT, FILE|DIR|-) of a parser."""
    out = []
    for action in parser._actions:
        if "--help" in action.option_strings:
            continue
        out += action.option_strings or [action.metavar or action.dest.upper()]
    return out


def test_every_command_has_a_section():
    assert set(SUBCOMMANDS) | {"run"} == set(SECTIONS)


@pytest.mark.parametrize("command", SECTIONS)
def test_every_option_is_in_the_commands_table(command):
    heading, module = SECTIONS[command]
    cells = " ".join(first_cells(heading))
    missing = [name for name in names(module.build_parser())
               if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", cells)]
    assert not missing, f"docs/cli.md, section {heading}: no table row for {missing}"
