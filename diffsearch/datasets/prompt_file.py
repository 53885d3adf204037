"""A prompt file (``--prompts FILE``): one prompt a line, blank lines and ``#`` comments skipped.

One reader for every job that takes a prompt set (prompt, noise, schedule), so each refuses the same bad
files in the same one line: missing, not UTF-8, or without a prompt.
"""

from __future__ import annotations

from pathlib import Path

from diffsearch.errors import UsageError


def read_prompt_file(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--prompts {path}: no such file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"--prompts {path}: not UTF-8 text (byte {exc.start} cannot be read); save it as UTF-8"
        ) from None
    prompts = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise UsageError(f"--prompts {path}: no prompts in it")
    return prompts
