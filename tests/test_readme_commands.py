"""Every command the READMEs show in a ``bash`` block parses: ``python -m tinyinterp ...``
with the command line's own parser, ``python studies/bird_study.py ...`` with the study's
(so a renamed option or recipe cannot leave a README command that no longer runs).
Commands with a placeholder (DIR, RUN, "...") are left out; nothing is run."""
import re
import shlex
import sys
from pathlib import Path

import pytest

from tinyinterp.__main__ import build_parser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "studies"))
import bird_study  # noqa: E402

READMES = sorted([ROOT / "README.md", *ROOT.glob("*/README.md")])
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$|\.\.\.|<")


def bash_commands(path):
    """(line number, argv) of each command in the file's ```bash blocks, continuation lines
    joined, comments dropped, commands joined by && apart."""
    commands, inside, pending, start = [], False, "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            inside = line.strip() == "```bash"
            continue
        if not inside:
            continue
        if not pending:
            start = number
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        words = shlex.split(pending, comments=True)
        pending = ""
        while words:  # "a && b": each command on its own
            cut = words.index("&&") if "&&" in words else len(words)
            commands.append((start, words[:cut]))
            words = words[cut + 1:]
    return commands


def checked_commands():
    found = []
    for path in READMES:
        for number, argv in bash_commands(path):
            if any(PLACEHOLDER.search(token) for token in argv):
                continue
            if argv[:3] == ["python", "-m", "tinyinterp"] or argv[:2] == ["python", "studies/bird_study.py"]:
                found.append(pytest.param(argv, id=f"{path.relative_to(ROOT)}:{number}"))
    return found


COMMANDS = checked_commands()


def test_the_readmes_show_commands_of_both_kinds():
    argvs = [p.values[0] for p in COMMANDS]
    assert sum(a[1] == "-m" for a in argvs) >= 5
    assert sum(a[1] == "studies/bird_study.py" for a in argvs) >= 10


@pytest.mark.parametrize("argv", COMMANDS)
def test_the_command_parses(argv, capsys):
    try:
        if argv[1] == "-m":
            build_parser().parse_args(argv[3:])
        else:
            bird_study.parse_args(argv[2:])
    except SystemExit:
        pytest.fail(f"{shlex.join(argv)}: {capsys.readouterr().err.strip()}")
