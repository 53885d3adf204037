"""``diffsearch sweep``: a real training program (programs/train_regression.py) tuned end to end."""

import json
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from conftest import PROGRAMS
from helpers import wait_for_a_complete_trial
from diffsearch.cli.main import main
from diffsearch.jobs.sweep import SweepOptions, run_sweep
from diffsearch.ledger.interrupt import graceful_interrupts

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def run_cli(*args):
    return main([str(a) for a in args])


def load(out, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out}/study.db")


def test_tpe_runs_six_trials_with_conditionals_logs_and_results(sweep_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("sweep", sweep_file(), "--trials", 6, "--out", out, "--json") == 0
    results = json.loads(capsys.readouterr().out)
    assert results == json.loads((out / "results.json").read_text())
    assert results["counts"] == {"complete": 6, "pruned": 0, "failed": 0, "cut_short": 0, "not_counted": 0}
    assert results["best"]["value"] == min(t["value"] for t in results["trials"])
    study = load(out, "sweep-train_regression-tpe")
    assert study.user_attrs["job"] == "sweep" and study.direction == optuna.study.StudyDirection.MINIMIZE
    for trial in study.trials:
        command, arguments = trial.user_attrs["command"], trial.user_attrs["arguments"]
        assert command.startswith(sys.executable) or "env " in command
        assert "--steps=4" in command and arguments["steps"] == 4  # a constant is passed on
        # the program exits 1 if --momentum reaches plain SGD: every trial completed, so it never did
        assert ("--momentum=" in command) == (arguments["optimizer"] == "momentum") == ("momentum" in trial.params)
        log = (out / "trials" / str(trial.number) / "stdout.log").read_text()
        assert trial.user_attrs["stdout_log"] == str(out / "trials" / str(trial.number) / "stdout.log")
        assert "step 4: training" in log and '"val_loss"' in log
        assert trial.intermediate_values.keys() == {1, 2, 3, 4}
        assert trial.value == trial.intermediate_values[4]  # the last report is the value


def test_successive_halving_stops_programs_from_their_reports(sweep_file, tmp_path):
    out = tmp_path / "run"
    path = sweep_file(
        method="random",
        trials=6,
        parameters={"steps": {"value": 6}, "step_seconds": {"value": 0.1}},
        early_terminate={"type": "successive_halving", "min_iter": 1, "eta": 2},
    )
    assert run_cli("sweep", path, "--out", out, "--seed", 3) == 0
    trials = load(out, "sweep-train_regression-random").trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == 6
    for trial in pruned:
        step = trial.user_attrs["pruned_at_step"]
        assert max(trial.intermediate_values) == step < 6
        assert "step 6: training" not in (out / "trials" / str(trial.number) / "stdout.log").read_text()


def test_a_crash_a_hang_and_silence_fail_with_reasons_and_the_budget_is_kept(sweep_file, tmp_path, capsys):
    out = tmp_path / "run"
    path = sweep_file(
        method="grid",
        trials=None,
        parameters={
            "learning_rate": {"value": 0.05},
            "optimizer": {"value": "sgd"},
            "momentum": None,
            "mode": {"values": ["ok", "crash", "hang", "silent"]},
        },
    )
    started = time.monotonic()
    assert run_cli("sweep", path, "--out", out, "--trial-timeout", 3) == 0
    assert time.monotonic() - started < 60  # the hanging program was stopped, not waited for
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert (
        results["counts"] == {"complete": 1, "pruned": 0, "failed": 3, "cut_short": 0, "not_counted": 0}
        and results["budget"] == 4
    )
    reasons = {t["params"]["mode"]: t for t in results["trials"]}
    assert reasons["crash"]["fail_reason"] == (
        "exit code 1: RuntimeError: CUDA error: an illegal memory access was encountered"
    )
    assert reasons["hang"]["fail_reason"] == "timed out after 3 s (--trial-timeout)"
    assert reasons["silent"]["fail_kind"] == "never_reported" and "never reported" in reasons["silent"]["fail_reason"]
    assert "trial" in printed and "timed out" in printed and "1 complete, 0 pruned, 3 failed" in printed


def test_a_diverging_program_fails_at_its_first_non_finite_report(sweep_file, tmp_path):
    out = tmp_path / "run"
    path = sweep_file(
        trials=1,
        parameters={
            "learning_rate": {"value": 1000.0},
            "optimizer": {"value": "sgd"},
            "momentum": None,
            "steps": {"value": 300},
        },
    )
    assert run_cli("sweep", path, "--out", out) == 1  # no trial completed: nothing to use
    trial = load(out, "sweep-train_regression-tpe").trials[0]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_kind"] == "not_finite"
    assert "'val_loss' was inf" in trial.user_attrs["fail_reason"] or "was nan" in trial.user_attrs["fail_reason"]


def test_when_no_trial_reports_the_metric_the_end_says_so(sweep_file, tmp_path, capsys):
    out = tmp_path / "run"
    path = sweep_file(trials=2, metric={"name": "val_los", "goal": "minimize"})  # a typo of the reported name
    assert run_cli("sweep", path, "--out", out) == 1
    captured = capsys.readouterr()
    assert "no trial reported metric 'val_los'" in captured.out + captured.err
    assert json.loads((out / "results.json").read_text())["counts"]["failed"] == 2


def test_plain_print_reports_and_a_maximised_metric(sweep_file, tmp_path):
    out = tmp_path / "run"
    path = sweep_file(
        trials=3, metric={"name": "val_loss", "goal": "maximize"}, parameters={"plain_print": {"value": True}}
    )
    assert run_cli("sweep", path, "--out", out, "--study", "worst") == 0
    study = load(out, "worst")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    results = json.loads((out / "results.json").read_text())
    assert results["best"]["value"] == max(t.value for t in study.trials)


def test_gpus_set_cuda_visible_devices_of_the_programs(tmp_path):
    sweep = tmp_path / "gpu.yaml"
    sweep.write_text(
        f"program: {PROGRAMS / 'report_gpu.py'}\nmetric: {{name: gpu}}\nmethod: random\n"
        "trials: 2\nparameters:\n  x: {values: [1, 2]}\n"
    )
    assert run_cli("sweep", sweep, "--out", tmp_path / "run", "--gpus", "3,5") == 0
    trials = load(tmp_path / "run", "sweep-report_gpu-random").trials
    assert [t.value for t in trials] == [3.0, 3.0]  # this process is worker 0: gpus[0]
    assert all(t.user_attrs["cuda_visible_devices"] == "3" for t in trials)


def test_ctrl_c_then_rerun_repeats_no_finished_trial(sweep_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    options = SweepOptions(file=str(sweep_file(trials=5)), out=str(out))
    interrupted = []

    def ctrl_c_after_two(what, done, total, best):  # Ctrl-C once two trials have finished
        if done == 2 and not interrupted:
            interrupted.append(done)
            signal.raise_signal(signal.SIGINT)

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        with graceful_interrupts(), pytest.raises(KeyboardInterrupt):
            run_sweep(options, progress=ctrl_c_after_two)
    finally:
        signal.signal(signal.SIGINT, before)
    study = load(out, "sweep-train_regression-tpe")
    kept = {t.number: (t.params, t.datetime_complete) for t in study.trials if t.state == TrialState.COMPLETE}
    assert len(kept) == 2
    results = run_sweep(options)
    trials = load(out, "sweep-train_regression-tpe").trials
    assert results["counts"]["complete"] == 5
    assert all((trials[n].params, trials[n].datetime_complete) == kept[n] for n in kept)  # untouched
    assert sum(1 for t in trials if t.state == TrialState.COMPLETE) == 5  # 3 more ran, none twice


def test_a_worker_joins_a_sweep_and_raises_its_budget(sweep_file, tmp_path, capsys):
    out = tmp_path / "run"
    storage = f"sqlite:///{out}/study.db"
    assert run_cli("sweep", sweep_file(trials=2), "--out", out) == 0
    assert (
        run_cli("worker", "--study", "sweep-train_regression-tpe", "--storage", storage, "--trials", 4, "--out", out)
        == 0
    )
    trials = load(out, "sweep-train_regression-tpe").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert run_cli("list") == 0 and "sweep" in capsys.readouterr().out


@pytest.mark.slow
def test_two_workers_share_the_study_each_on_its_own_gpu(tmp_path):
    # each program waits until a program of the other worker has started: both workers must run trials
    sweep = tmp_path / "pair.yaml"
    sweep.write_text(
        f"program: {PROGRAMS / 'report_gpu.py'}\nmetric: {{name: gpu}}\nmethod: random\n"
        f"trials: 4\nparameters:\n  pair_dir: {{value: {tmp_path / 'pair'}}}\n"
        "  x: {min: 0.0, max: 1.0}\n"
    )
    out = tmp_path / "run"
    assert run_cli("sweep", sweep, "--out", out, "--workers", 2, "--gpus", "0,1") == 0
    every = load(out, "sweep-report_gpu-random").trials
    # two workers that start a trial at the same moment when one is left: the later one ends it failed as
    # surplus, never run and never counted (CI saw one)
    surplus = [t for t in every if "surplus" in t.user_attrs]
    assert all(t.state == TrialState.FAIL and "worker" not in t.user_attrs for t in surplus)
    trials = [t for t in every if "surplus" not in t.user_attrs]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    gpu_of = {}
    for trial in trials:
        assert gpu_of.setdefault(trial.user_attrs["worker"], trial.value) == trial.value  # one GPU per worker
    assert sorted(gpu_of.values()) == [0.0, 1.0]


@pytest.mark.slow
def test_a_real_ctrl_c_then_rerun(sweep_file, tmp_path):
    out = tmp_path / "run"
    path = sweep_file(trials=8, parameters={"step_seconds": {"value": 0.3}})
    cmd = [sys.executable, "-m", "diffsearch", "sweep", str(path), "--out", str(out)]
    process = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    if not wait_for_a_complete_trial(out / "study.db", 300, poll=0.2):
        process.kill()
        pytest.fail("no trial completed within 300 s")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert b"Traceback" not in err
    kept = {
        t.number: t.params for t in load(out, "sweep-train_regression-tpe").trials if t.state == TrialState.COMPLETE
    }
    assert 1 <= len(kept) < 8
    subprocess.run(cmd, check=True, capture_output=True)
    trials = load(out, "sweep-train_regression-tpe").trials
    assert sum(1 for t in trials if t.state == TrialState.COMPLETE) == 8
    assert all(trials[n].params == p for n, p in kept.items())


def test_best_trials_table_fits_an_80_column_terminal():
    from rich.console import Console

    from diffsearch.cli.sweep import best_trials_table

    params = {f"hyperparameter_{j}": 1e-3 * j for j in range(10)} | {"lr_scheduler": "cosine_with_restarts"}
    shown = [{"number": i, "value": 0.5 + i, "params": params} for i in range(10)]
    console = Console(width=80, record=True)
    console.print(best_trials_table(shown, 12, "fid", 80))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 80 and "…" not in text  # nothing cut
    assert all(name in text for name in params) and "more in results.json" in text
    few = [{"number": i, "value": 0.5 + i, "params": {"lr": 1e-3}} for i in range(3)]
    table = best_trials_table(few, 3, "fid", 80)
    assert [c.header for c in table.columns] == ["trial", "fid", "lr"]  # a trial per row when it fits
