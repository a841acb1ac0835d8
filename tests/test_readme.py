"""Every ``inloop`` command the README shows exists, with the options it is shown with.

Each command is parsed by the real CLI with ``--help`` added: a misspelled
command or an option that does not exist fails the parse (exit status 2),
while the command itself does not run. What the commands do is tested in
``tests/cli``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inloop.cli.main import app

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands() -> list[str]:
    """The ``inloop ...`` command lines of the README's shell blocks and inline code."""
    text = README.read_text(encoding="utf-8")
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        lines += block.replace("\\\n", " ").splitlines()
    lines += re.findall(r"`(inloop [^`]+)`", text)
    commands = []
    for line in lines:
        words = shlex.split(line, comments=True)
        # `INLOOP_X=... inloop serve worker` sets a variable first.
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)
        if words[:1] == ["inloop"]:
            commands.append(shlex.join(words))
    return sorted(set(commands))


COMMANDS = readme_commands()


def test_the_readme_shows_the_everyday_commands() -> None:
    shown = {" ".join(shlex.split(c)[1:3]) for c in COMMANDS}
    for command in ("serve register", "serve create", "serve set", "label disagreements"):
        assert command in shown


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_parses(command: str) -> None:
    out = CliRunner().invoke(app, [*shlex.split(command)[1:], "--help"])
    assert out.exit_code == 0, f"{command!r} does not parse:\n{out.output}"
