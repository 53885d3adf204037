"""Every job that reads a prompt set refuses a bad --prompts file in one line, exit 2, nothing written
(the prompt, noise and schedule jobs share one reader)."""

import pytest

from diffsearch.cli.main import main

JOBS = {
    "prompt": ["prompt", "--model", "tiny", "--clip", "tiny"],
    "noise": ["noise", "--model", "tiny", "--clip", "tiny"],
    "schedule": ["schedule", "--model", "fashion"],
}
FILES = {"not-utf8": b"\xff\xfea shoe\n", "empty": b"# only a comment\n\n"}
MESSAGES = {"not-utf8": "not UTF-8 text", "empty": "no prompts in it"}


@pytest.mark.parametrize("job", sorted(JOBS))
@pytest.mark.parametrize("kind", sorted(FILES))
def test_a_bad_prompt_file_is_one_line_and_exit_2(job, kind, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(FILES[kind])
    out = tmp_path / "run"
    assert main([*JOBS[job], "--prompts", str(prompts), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and MESSAGES[kind] in err, err
    assert not out.exists() or not any(out.iterdir())
