"""A full disk under the run folder: files written whole or not at all, and one line "no space left on <path>"."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess

import optuna
import pytest

from diffsearch.cli.main import main
from diffsearch.errors import DiskFull
from diffsearch.run_files import write_atomic

FAST = [
    "hparams",
    "--dataset",
    "moons",
    "--searcher",
    "random",
    "--trials",
    "2",
    "--points",
    "1500",
    "--held-out",
    "500",
    "--epochs",
    "1",
    "--baseline-runs",
    "0",
]


def _full_disk(*_, **__):
    raise OSError(errno.ENOSPC, "No space left on device")


@contextlib.contextmanager
def _small_tmpfs(path, size: str = "64k"):
    """A tmpfs of ``size`` at ``path`` (root only; skipped elsewhere)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_an_injected_full_disk_keeps_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    write_atomic(path, '{"old": true}')
    monkeypatch.setattr(os, "fsync", _full_disk)
    with pytest.raises(DiskFull, match=f"^no space left on {path}$"):
        write_atomic(path, '{"new": true}')
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind


def test_a_real_full_tmpfs_keeps_the_old_file_whole(tmp_path):
    with _small_tmpfs(tmp_path / "small") as small:
        path = small / "results.json"
        write_atomic(path, json.dumps({"old": True}))
        with open(small / "filler", "wb") as f, contextlib.suppress(OSError):
            f.write(b"x" * (1 << 20))  # fills the 64 KiB disk
        with pytest.raises(DiskFull, match="no space left on"):
            write_atomic(path, json.dumps({"new": "y" * 100_000}))
        assert json.loads(path.read_text()) == {"old": True}
        assert sorted(p.name for p in small.iterdir()) == ["filler", "results.json"]


@pytest.mark.slow
def test_a_full_disk_at_results_json_ends_the_run_in_one_line_and_the_rerun_finishes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = [*FAST, "--out", str(out)]
    real_fsync = os.fsync

    def results_json_full(fd):  # the disk fills up just as results.json is written
        if "results.json" in os.readlink(f"/proc/self/fd/{fd}"):
            _full_disk()
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", results_json_full)
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()  # the progress bar, then one line
    assert err[-1] == (
        f"diffsearch: error: no space left on {out / 'results.json'}; free some space and rerun "
        "the same command to resume"
    ) and not any("Traceback" in line for line in err)
    assert not (out / "results.json").exists()
    study = optuna.load_study(study_name="hparams-moons-random", storage=f"sqlite:///{out}/study.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2  # the trials were kept

    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(args) == 0
    assert json.loads((out / "results.json").read_text())["study"] == "hparams-moons-random"
    study = optuna.load_study(study_name="hparams-moons-random", storage=f"sqlite:///{out}/study.db")
    assert len(study.trials) == 2  # nothing ran twice


@pytest.mark.slow
def test_a_full_disk_while_saving_a_trials_samples_fails_that_trial_with_its_reason(tmp_path, monkeypatch):
    import diffsearch.jobs.training_trials as training_trials

    def full(array, path):
        raise DiskFull(f"no space left on {path}")

    monkeypatch.setattr(training_trials, "save_array", full)
    out = tmp_path / "run"
    assert main([*FAST, "--out", str(out)]) == 0
    study = optuna.load_study(study_name="hparams-moons-random", storage=f"sqlite:///{out}/study.db")
    reasons = [t.user_attrs.get("fail_reason", "") for t in study.trials]
    assert len(reasons) == 2 and all(r.startswith("no space left on ") and r.endswith(".npy") for r in reasons)


def test_a_full_disk_under_the_sqlite_ledger_is_known_through_optunas_wrapper():
    """Optuna wraps SQLite's "database or disk is full" in an error that does not say it (found by
    benchmarks/faults.py: the run ended in a traceback)."""
    import sqlite3

    from diffsearch.run_files import is_disk_full

    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as exc:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from exc
    except optuna.exceptions.StorageInternalError as wrapped:
        assert is_disk_full(wrapped)
    assert not is_disk_full(optuna.exceptions.StorageInternalError("exceeding max length"))
