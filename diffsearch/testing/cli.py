"""The one-line refusal every suite checks: a command exits 2 with one line on stderr and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest


def assert_refused(argv: list[str], words: str, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``diffsearch ARGV --out OUT`` exits 2, prints one line holding ``words`` on stderr, leaves no OUT."""
    from diffsearch.cli.main import main

    code = main([*argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, f"diffsearch {' '.join(argv)} exited {code}, not 2"
    assert err.count("\n") == 1 and words in err, f"expected one line with {words!r}, got {err!r}"
    assert not out.exists(), f"{out} was written although the command was refused"
