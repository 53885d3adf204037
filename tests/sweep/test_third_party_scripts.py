"""Scripts nobody wrote for diffsearch, tuned unchanged: they log through accelerate's TensorBoard tracker, a
bare SummaryWriter, or wandb (reading their values from ``wandb.config``), and print nothing a sweep reads."""

import json
import math

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import PROGRAMS
from diffsearch.cli.main import main

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]


def sweep(tmp_path, program, metric, parameters, **settings):
    path = tmp_path / "sweep.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "program": str(PROGRAMS / program),
                "method": "tpe",
                "metric": metric,
                "trials": 4,
                "parameters": parameters,
                **settings,
            },
            sort_keys=False,
        )
    )
    return path


def trials_of(out):
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{out}/study.db")
    return optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{out}/study.db").trials


def test_accelerate_tensorboard_tracker_is_tuned_and_a_pruner_stops_a_trial_from_its_live_logs(tmp_path):
    out = tmp_path / "run"
    path = sweep(
        tmp_path,
        "log_accelerate.py",
        {"name": "val_loss", "goal": "minimize"},
        {
            "learning_rate": {"distribution": "log_uniform_values", "min": 1.0e-3, "max": 0.3},
            "steps": {"value": 6},
            "step_seconds": {"value": 0.3},
            "output_dir": {"value": "${trial_dir}"},
        },  # each trial logs into its own folder
        early_terminate={"type": "successive_halving", "min_iter": 1, "eta": 2},
        preload=["torch", "accelerate", "torch.utils.tensorboard"],
    )  # imported once, trials forked from it
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    trials = trials_of(out)
    assert len(trials) == 4 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    for trial in trials:
        folder = out / "trials" / str(trial.number)
        assert trial.user_attrs["trial_dir"] == str(folder)
        assert trial.user_attrs["arguments"]["output_dir"] == str(folder)
        assert list(folder.glob("regression/events.out.tfevents.*"))  # accelerate's tracker wrote there
        assert trial.user_attrs["metric_source"] == "tensorboard"
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all(set(t.intermediate_values) == set(range(1, 7)) for t in complete)
    assert all(t.value == t.intermediate_values[6] for t in complete)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned
    for trial in pruned:  # stopped while it trained, from what it had logged so far
        assert trial.user_attrs["pruned_at_step"] < 6
        assert "finished" not in (out / "trials" / str(trial.number) / "stdout.log").read_text()


def summary_writer_objective(lr, momentum, steps=10):
    """What log_summary_writer.py logs at each step (float32, as TensorBoard stores it)."""
    x = y = vx = vy = 0.0
    values = []
    for _ in range(steps):
        vx, vy = momentum * vx + 2 * (x - 3), momentum * vy + 2 * (y + 1)
        x, y = x - lr * vx, y - lr * vy
        values.append((x - 3) ** 2 + (y + 1) ** 2)
    return values


def test_a_bare_summary_writer_is_tuned(tmp_path):
    out = tmp_path / "run"
    path = sweep(
        tmp_path,
        "log_summary_writer.py",
        {"name": "loss/objective", "goal": "minimize", "source": "tensorboard", "path": "tb"},
        {
            "lr": {"distribution": "uniform", "min": 0.01, "max": 0.4},
            "momentum": {"values": [0.0, 0.5]},
            "logdir": {"value": "${trial_dir}/tb"},
        },
        preload=["torch.utils.tensorboard"],
    )
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    trials = trials_of(out)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    for trial in trials:
        expected = summary_writer_objective(trial.params["lr"], trial.params["momentum"])
        assert [trial.intermediate_values[s] for s in range(10)] == pytest.approx(expected, rel=1e-6)
        assert trial.value == pytest.approx(expected[-1], rel=1e-6)


def test_a_wandb_script_reads_the_trials_values_from_wandb_config_and_its_logs_are_the_metric(tmp_path):
    out = tmp_path / "run"
    path = sweep(
        tmp_path,
        "wandb_config.py",
        {"name": "val.loss", "goal": "minimize"},
        {
            "learning_rate": {"distribution": "uniform", "min": 0.05, "max": 0.45},
            "optimizer": {
                "parameters": {
                    "name": {"values": ["sgd", "adam"]},
                    "decay": {"distribution": "uniform", "min": 0.0, "max": 0.5},
                }
            },
            "epochs": {"value": 4},
        },
        command=["${env}", "${interpreter}", "${program}"],
    )  # no flags: wandb.config only
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    trials = trials_of(out)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    for trial in trials:
        arguments = trial.user_attrs["arguments"]
        printed = (out / "trials" / str(trial.number) / "stdout.log").read_text()
        config = json.loads(next(line for line in printed.splitlines() if line.startswith("CONFIG "))[7:])
        assert config == {**arguments, "epoch_seconds": 0.0}  # the trial's values, not the script's defaults
        x = 5.0
        for epoch in range(1, 5):
            x -= arguments["learning_rate"] * 2 * x * (1 - arguments["optimizer"]["decay"])
        assert trial.value == pytest.approx(x * x + 0.01 * math.log(5))
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4]
        assert trial.user_attrs["metric_source"] == "wandb"


def test_a_metric_no_source_reports_fails_saying_where_it_looked(tmp_path):
    out = tmp_path / "run"
    path = sweep(
        tmp_path,
        "wandb_config.py",
        {"name": "loss", "goal": "minimize"},
        {"epochs": {"value": 2}},
        trials=1,
        command=["${env}", "${interpreter}", "${program}"],
    )
    assert main(["sweep", str(path), "--out", str(out)]) == 1
    (trial,) = trials_of(out)
    reason = trial.user_attrs["fail_reason"]
    assert trial.user_attrs["fail_kind"] == "never_reported"
    assert reason.startswith("metric 'loss' was never reported: no JSON line on stdout holds it")
    assert f"no TensorBoard event files under {out / 'trials' / '0'}" in reason
    assert f"the wandb run under {out / 'trials' / '0'}: it logged epoch, val.loss" in reason
