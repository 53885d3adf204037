"""Budgets that forgive a broken program: the first trials failing the same way stop the sweep; after a fix the
same command runs their values again without them using up the budget; --trials tops the study up."""

import json

import optuna
import pytest
from optuna.trial import TrialState

from conftest import PROGRAMS
from diffsearch.cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

WORKING = (PROGRAMS / "train_regression.py").read_text()
BROKEN = "import schedulefree  # a dependency that is not installed\n" + WORKING


def said(captured):
    """What the command printed, as one line per word gap (rich wraps long lines at the terminal's width)."""
    return " ".join((captured.out + captured.err).split())


def trials_of(out, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out}/study.db").trials


def test_a_broken_program_stops_the_sweep_then_after_a_fix_the_same_command_completes_its_budget(
    sweep_file, tmp_path, capsys
):
    program = tmp_path / "train.py"
    program.write_text(BROKEN)
    path = sweep_file(program=str(program), trials=4)
    command = ["sweep", str(path), "--out", str(tmp_path / "run")]
    out, study = tmp_path / "run", "sweep-train-tpe"

    assert main(command) == 1
    printed = capsys.readouterr()
    trials = trials_of(out, study)
    assert [t.state for t in trials] == [TrialState.FAIL] * 3  # stopped after 3 of the 4, not the whole budget
    reason = "exit code 1: ModuleNotFoundError: No module named 'schedulefree'"
    assert all(t.user_attrs["fail_reason"] == reason for t in trials)
    stop_line = (
        f"stopped early: the first 3 trials failed the same way ({reason}); fix the program and run the "
        "same command again: trials that failed this way do not count against the budget"
    )
    assert stop_line in said(printed)
    assert json.loads((out / "results.json").read_text())["halted"] == stop_line

    assert main(command) == 1  # rerun unfixed: the values of the 3 failures run again, fail alike, stop it
    trials = trials_of(out, study)
    assert [t.user_attrs.get("rerun_of") for t in trials] == [None, None, None, 0, 1, 2]
    assert all(t.state == TrialState.FAIL for t in trials) and (out / "trials" / "5").is_dir()
    capsys.readouterr()

    program.write_text(WORKING)  # fixed
    assert main(command) == 0
    printed = capsys.readouterr()
    assert (
        "3 trial(s) of an earlier run failed for the program's own reasons (trials 3, 4, 5): they do not "
        "count against the budget, and their values run again first"
    ) in said(printed)
    results = json.loads((out / "results.json").read_text())
    assert results["counts"] == {"complete": 4, "pruned": 0, "failed": 0, "cut_short": 0, "not_counted": 6}
    assert results["halted"] is None
    trials = trials_of(out, study)
    assert [t.state for t in trials] == [TrialState.FAIL] * 6 + [TrialState.COMPLETE] * 4
    for first, last in zip(trials[:3], trials[6:9]):  # the failed values ran again and completed
        assert last.params == first.params and last.user_attrs["rerun_of"] == first.number + 3

    assert main(command + ["--trials", "6"]) == 0  # tops the study up to 6 counted trials
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["complete"] == 6 and results["budget"] == 6
    assert len(trials_of(out, study)) == 12  # nothing ran again: the earlier failures had been rerun


def test_different_failures_do_not_stop_a_sweep_and_a_reached_target_does(sweep_file, tmp_path):
    out = tmp_path / "run"
    path = sweep_file(
        method="grid",
        trials=None,
        parameters={
            "learning_rate": {"value": 0.05},
            "optimizer": {"value": "sgd"},
            "momentum": None,
            "mode": {"values": ["crash", "silent", "ok"]},
        },
    )
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["failed"] == 2 and results["counts"]["complete"] == 1 and results["halted"] is None

    out = tmp_path / "target"
    path = sweep_file(name="target.yaml", trials=5, metric={"name": "val_loss", "goal": "minimize", "target": 1.0e6})
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["complete"] == 1  # the first trial reached the target: the sweep stopped there
    assert results["halted"].startswith("stopped: trial 0 reached metric.target 1e+06 (val_loss ")
