"""Studies explain themselves: metric names, notes, artifacts, repeats studies, reasons for lost trials.

Everything is read back through Optuna's (and optuna-dashboard's) public API, as a person's tools would.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import warnings

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from diffsearch.ledger import is_done, open_storage
from diffsearch.ledger.dead_workers import LOST_ATTR, RETRY_OF_ATTR, fail_dead_workers_trials
from diffsearch.ledger.explain import attach, explain_study
from diffsearch.ledger.importance import common_params, param_importance

from helpers import running_trial, tiny_png

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def test_metric_name_and_note_are_set_once(tmp_path):
    import optuna_dashboard

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    explain_study(study, "PRDC loss", "# s\nwhat it holds", {"kind": "repeats"})
    explain_study(study, "PRDC loss", "# s\nwhat it holds", {"kind": "repeats"})  # a resume: nothing new
    again = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 's.db'}")
    assert again.metric_names == ["PRDC loss"]
    assert optuna_dashboard.get_note(again).startswith("# s\nwhat it holds")
    assert again.user_attrs["kind"] == "repeats" and "what it holds" in again.user_attrs["note"]


def test_without_optuna_dashboard_the_note_is_a_user_attr(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import fails as if not installed
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    explain_study(study, "FID", "the note")
    assert study.metric_names == ["FID"] and study.user_attrs["note"] == "the note\n"


def test_attached_files_are_listed_readable_and_not_uploaded_twice(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=storage, study_name="s")
    picture = tiny_png(tmp_path / "samples.png")
    first = attach(study, picture, tmp_path)
    assert attach(study, picture, tmp_path) == first  # a resumed run: same file, same artifact
    assert attach(study, tmp_path / "missing.png", tmp_path) is None
    (meta,) = optuna.artifacts.get_all_artifact_meta(optuna.load_study(study_name="s", storage=storage))
    assert meta.filename == "samples.png" and meta.mimetype == "image/png"
    store = optuna.artifacts.FileSystemArtifactStore(str(tmp_path / "artifacts"))
    with store.open_reader(meta.artifact_id) as reader:
        assert reader.read() == picture.read_bytes()
    tiny_png(picture, (0, 0, 255))  # redrawn: a new artifact
    assert attach(study, picture, tmp_path) != first
    assert len(optuna.artifacts.get_all_artifact_meta(study)) == 2


def _conditional_study(n=24):
    study = optuna.create_study()
    rng = __import__("random").Random(0)
    for i in range(n):
        lr = 10 ** rng.uniform(-4, -1)
        params = {"lr": lr, "optimizer": "adamw" if i % 2 else "adam"}
        dists = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "optimizer": CategoricalDistribution(["adam", "adamw"])}
        if params["optimizer"] == "adamw":
            params["weight_decay"] = rng.uniform(0, 0.1)
            dists["weight_decay"] = FloatDistribution(0, 0.1)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=abs(lr - 0.01)))
    return study


def test_importance_is_over_the_params_every_trial_has():
    study = _conditional_study()
    assert common_params(study) == (["lr", "optimizer"], ["weight_decay"])
    result = param_importance(study)
    assert set(result["importances"]) == {"lr", "optimizer"} and result["left_out_conditional"] == ["weight_decay"]
    assert result["importances"]["lr"] > 0.5 and "fANOVA" in result["evaluator"]
    assert abs(sum(result["importances"].values()) - 1) < 1e-6


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_dead_workers_trial_says_why_and_its_retry_says_what_it_retries(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 'h.db'}" if kind == "sqlite" else str(tmp_path / "h.log")
    study = optuna.create_study(storage=open_storage(url, heartbeat=10))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    worker = f"{socket.gethostname()}:{gone.pid}"
    dead = running_trial(study, worker)
    assert fail_dead_workers_trials(study) == [dead.number]
    lost = study.get_trials()[dead.number]
    assert lost.state == TrialState.FAIL and not is_done(lost)  # its retry counts, not it
    assert f"worker {worker} is gone" in lost.user_attrs[LOST_ATTR] and "fail_reason" not in lost.user_attrs
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.user_attrs[RETRY_OF_ATTR] == dead.number and LOST_ATTR not in retry.user_attrs
    assert retry.params == lost.params


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_silent_workers_trial_says_it_lost_its_heartbeat(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 'h.db'}" if kind == "sqlite" else str(tmp_path / "h.log")
    storage = open_storage(url, heartbeat=1)  # grace period: 3 s
    study = optuna.create_study(storage=storage)
    silent = running_trial(study, "another-machine:7")
    storage.record_heartbeat(silent._trial_id)
    time.sleep(4.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)  # Optuna's own path, as study.optimize runs it
    lost = study.get_trials()[silent.number]
    assert lost.state == TrialState.FAIL and not is_done(lost)
    assert lost.user_attrs[LOST_ATTR].startswith("worker another-machine:7 lost its heartbeat (silent for over 3 s)")
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.user_attrs[RETRY_OF_ATTR] == silent.number and LOST_ATTR not in retry.user_attrs


@pytest.mark.slow
def test_hparams_studies_explain_themselves(tmp_path):
    import optuna_dashboard

    from diffsearch.jobs.hparams import HparamsOptions, run_hparams

    results = run_hparams(
        HparamsOptions(
            dataset="moons",
            searcher="random",
            trials=4,
            epochs=4,
            min_epochs=1,
            n_points=3000,
            held_out=1000,
            repeats=1,
            baseline_runs=1,
            out=str(tmp_path),
            study="hp",
            heartbeat=None,
        )
    )
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search = optuna.load_study(study_name="hp", storage=storage)
    repeats = optuna.load_study(study_name="hp.repeats", storage=storage)
    assert search.metric_names == repeats.metric_names == ["PRDC loss"]
    assert "**PRDC loss** = mean(|1 - precision|" in optuna_dashboard.get_note(search)
    assert '"Best trial" and parameter importance do not apply' in optuna_dashboard.get_note(repeats)
    assert repeats.user_attrs["kind"] == "repeats" and repeats.user_attrs["repeats_of"] == "hp"
    assert repeats.user_attrs["roles"] == ["best", "baseline"] and "kind" not in search.user_attrs
    for study in (search, repeats):  # the samples plot, attached and readable
        (meta,) = optuna.artifacts.get_all_artifact_meta(study)
        assert meta.filename == "samples.png"
    for trial in search.trials:  # no pruner, yet the checkpoints are recorded
        assert sorted(trial.intermediate_values) == [1, 2]
        assert trial.user_attrs["config.beta_schedule"] and "config" not in trial.user_attrs
        assert trial.user_attrs["seconds"] == round(trial.user_attrs["seconds"], 3)
        assert trial.user_attrs["scores"].startswith("precision ")
    importance = results["importance"]
    assert "weight_decay" not in importance["params"] and "lr" in importance["params"]
    assert set(importance["left_out_conditional"]) <= {"weight_decay", "warmup_ratio"}
