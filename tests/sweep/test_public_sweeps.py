"""Sweep files written by others for W&B (public_sweeps/, sources in its README): each parses and runs one
trial with ``diffsearch sweep FILE --trials 1`` on a program that accepts any command line; one with a
macro that does not exist is refused in one line."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import PROGRAMS
from diffsearch.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

PUBLIC = Path(__file__).resolve().parent / "public_sweeps"
REFUSED = {"Ayers1013_DreamProLog_sweep.yaml": "unknown macro '${interpereter}'"}
RUNNABLE = sorted(p.name for p in PUBLIC.glob("*.yaml") if p.name not in REFUSED)


def in_place(name: str, folder: Path) -> Path:
    """The file beside accept_anything.py copied where its ``program`` says (relative to the file)."""
    source = PUBLIC / name
    program = folder / yaml.safe_load(source.read_text())["program"]
    program.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROGRAMS / "accept_anything.py", program)
    shutil.copy(source, folder / name)
    return folder / name


def test_every_file_is_attributed():
    readme = (PUBLIC / "README.md").read_text()
    assert all(f"| {p.name} |" in readme for p in PUBLIC.glob("*.yaml"))
    assert len(RUNNABLE) >= 5


@pytest.mark.parametrize("name", RUNNABLE)
def test_a_public_sweep_file_runs_one_trial(name, tmp_path, monkeypatch, capsys):
    path = in_place(name, tmp_path)
    metric = (yaml.safe_load(path.read_text()).get("metric") or {}).get("name", "unused")
    monkeypatch.setenv("ACCEPT_ANYTHING_METRICS", metric)
    code = main(
        [
            "sweep",
            str(path),
            "--trials",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--storage",
            str(tmp_path / "journal.log"),
            "--json",
        ]
    )  # a journal opens faster than SQLite
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads(captured.out)
    assert results["counts"]["complete"] == 1, results["trials"]
    trial = results["trials"][0]
    got = json.loads((Path(trial["stdout_log"]).parent / "argv.json").read_text())
    assert got["argv"], "the program got the trial's values on its command line"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_public_sweep_file_with_a_mistake_is_refused_in_one_line(name, tmp_path, capsys):
    path = in_place(name, tmp_path)
    assert main(["sweep", str(path), "--trials", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and REFUSED[name] in err, err
    assert not (tmp_path / "run").exists()
