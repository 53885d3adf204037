"""Every command's ``--help`` reads as prose: registry entries print their descriptions, never a Python repr."""

import re

import pytest

from diffsearch.cli.main import COMMANDS, build_parser

REPR = re.compile(r"Entry\(|object at 0x|<function |<lambda>")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_descriptions_not_reprs(command, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser(command).parse_args([command, "--help"])
    assert stop.value.code == 0
    shown = capsys.readouterr().out
    assert command in shown
    assert not REPR.search(shown), (
        REPR.search(shown).group(0) + " in: " + shown[REPR.search(shown).start() - 200 :][:400]
    )
