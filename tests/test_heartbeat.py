"""Dead workers' trials are found (by heartbeat, or at once by pid on this machine) and queued again."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from diffsearch.dead_workers import fail_dead_workers_trials
from diffsearch.ledger import open_storage


def _storage_url(tmp_path, kind: str) -> str:
    return f"sqlite:///{tmp_path / 'h.db'}" if kind == "sqlite" else str(tmp_path / "h.log")


def _running_trial(study: optuna.Study, worker: str) -> optuna.Trial:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trial = study.ask()
    trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    trial.set_user_attr("worker", worker)
    return trial


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_silent_trial_is_failed_after_grace_and_retried_with_its_params(tmp_path, kind):
    storage = open_storage(_storage_url(tmp_path, kind), heartbeat=1)  # grace period: 3 s
    study = optuna.create_study(storage=storage)
    silent = _running_trial(study, "another-machine:1")
    alive = _running_trial(study, "another-machine:2")
    storage.record_heartbeat(silent._trial_id)
    time.sleep(2.5)  # SQLite's clock has one-second resolution: keep clear of the 3 s boundary
    storage.record_heartbeat(alive._trial_id)
    time.sleep(2.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)
    trials = study.get_trials()
    assert trials[silent.number].state == TrialState.FAIL
    assert trials[alive.number].state == TrialState.RUNNING
    retry = [t for t in trials if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].system_attrs["failed_trial"] == silent.number
    assert retry[0].params == trials[silent.number].params


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_trial_of_a_dead_local_process_is_failed_at_once(tmp_path, kind):
    storage = open_storage(_storage_url(tmp_path, kind), heartbeat=10)
    study = optuna.create_study(storage=storage)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    dead = _running_trial(study, f"{host}:{gone.pid}")
    living = _running_trial(study, f"{host}:{subprocess.os.getpid()}")
    remote = _running_trial(study, "another-machine:1")
    assert fail_dead_workers_trials(study) == [dead.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == TrialState.FAIL
    assert states[living.number] == states[remote.number] == TrialState.RUNNING
    assert [t.system_attrs["failed_trial"] for t in study.get_trials(states=(TrialState.WAITING,))] == [dead.number]
