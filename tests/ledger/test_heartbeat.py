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

from diffsearch.ledger.dead_workers import fail_dead_workers_trials
from diffsearch.ledger import open_storage

from helpers import running_trial, tiny_task


def _storage_url(tmp_path, kind: str) -> str:
    return f"sqlite:///{tmp_path / 'h.db'}" if kind == "sqlite" else str(tmp_path / "h.log")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_silent_trial_is_failed_after_grace_and_retried_with_its_params(tmp_path, kind):
    storage = open_storage(_storage_url(tmp_path, kind), heartbeat=1)  # grace period: 3 s
    study = optuna.create_study(storage=storage)
    silent = running_trial(study, "another-machine:1")
    alive = running_trial(study, "another-machine:2")
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
    dead = running_trial(study, f"{host}:{gone.pid}")
    living = running_trial(study, f"{host}:{subprocess.os.getpid()}")
    remote = running_trial(study, "another-machine:1")
    assert fail_dead_workers_trials(study) == [dead.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == TrialState.FAIL
    assert states[living.number] == states[remote.number] == TrialState.RUNNING
    assert [t.system_attrs["failed_trial"] for t in study.get_trials(states=(TrialState.WAITING,))] == [dead.number]


def test_a_dead_trial_retried_by_two_workers_runs_once(tmp_path):
    # two workers sweeping at the same moment can both fail a dead trial and both enqueue its retry
    # (seen in a benchmark ledger on SQLite); the second retry must be dropped, not trained again
    from diffsearch.jobs.training_trials import run_search
    from diffsearch.spaces.training import TOY2D

    storage = open_storage(_storage_url(tmp_path, "sqlite"), heartbeat=10)
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = study.ask()
    TOY2D.suggest(dead)
    dead.set_user_attr("worker", f"{socket.gethostname()}:{gone.pid}")
    assert fail_dead_workers_trials(study) == [dead.number]
    storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(dead._trial_id))  # the other worker
    first, second = study.get_trials(states=(TrialState.WAITING,))

    run_search(study, TOY2D, tiny_task(1), n_trials=2, seed=0)
    trials = study.get_trials()
    assert trials[first.number].state == TrialState.COMPLETE
    assert trials[first.number].params == trials[dead.number].params
    assert trials[second.number].state == TrialState.FAIL
    assert "already retries" in trials[second.number].user_attrs["surplus"]
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(completed) == 2 and completed[1].params != trials[dead.number].params


def test_the_retry_of_a_dead_retry_runs(tmp_path):
    # Optuna's retry keeps ``failed_trial`` at the first failure of a chain: the retry of a retry that
    # died too must not be taken for a duplicate of its predecessor and dropped (seen in CI)
    from diffsearch.jobs.training_trials import run_search
    from diffsearch.spaces.training import TOY2D

    storage = open_storage(_storage_url(tmp_path, "sqlite"), heartbeat=10)
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead_worker = f"{socket.gethostname()}:{gone.pid}"
    first = study.ask()
    TOY2D.suggest(first)
    first.set_user_attr("worker", dead_worker)
    fail_dead_workers_trials(study)
    retry = study.ask()  # takes the waiting retry, then goes silent as well
    storage.set_trial_state_values(retry._trial_id, state=TrialState.FAIL)
    storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(retry._trial_id))
    (second_retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert second_retry.system_attrs["retry_history"] == [first.number, retry.number]

    run_search(study, TOY2D, tiny_task(1), n_trials=1, seed=0)
    trials = study.get_trials()
    assert trials[second_retry.number].state == TrialState.COMPLETE, trials[second_retry.number].user_attrs
    assert trials[second_retry.number].params == trials[first.number].params


def test_a_live_worker_whose_trial_was_failed_as_stale_goes_on(tmp_path, monkeypatch):
    # under load a live worker can miss its beats; another worker fails its trial and queues the retry,
    # and Optuna's tell then raises in the live worker (optuna/optuna#5470): it must survive that
    import diffsearch.jobs.training_trials as run
    from diffsearch.spaces.training import TOY2D

    storage = open_storage(_storage_url(tmp_path, "journal"), heartbeat=10)
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    evaluate, judged_stale = run.evaluate_trial, []

    def evaluated_while_judged_stale(trial, *args):
        score = evaluate(trial, *args)
        if not judged_stale:  # what another worker's fail_stale_trials does meanwhile
            judged_stale.append(trial.number)
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(trial._trial_id))
        return score

    monkeypatch.setattr(run, "evaluate_trial", evaluated_while_judged_stale)
    run.run_search(study, TOY2D, tiny_task(1), n_trials=2, seed=0)
    trials = study.get_trials()
    (stale,) = judged_stale
    assert trials[stale].state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == stale]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == trials[stale].params
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 2


def test_a_bug_in_the_objective_still_stops_the_worker(tmp_path, monkeypatch):
    # only a trial failed and retried by another worker is let go; an unexpected error is not swallowed
    import diffsearch.jobs.training_trials as run
    from diffsearch.spaces.training import TOY2D

    study = optuna.create_study(storage=open_storage(_storage_url(tmp_path, "journal"), heartbeat=10))

    def broken(trial, *args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(run, "evaluate_trial", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        run.run_search(study, TOY2D, tiny_task(1), n_trials=2, seed=0)


def test_the_work_queue_runs_a_twice_retried_trial_once(tmp_path):
    from diffsearch.ledger.trial_loop import TrialRunner

    class Counting(TrialRunner):
        def __init__(self, study):
            super().__init__(study)
            self.calls: list[int] = []

        def evaluate(self, trial):
            self.calls.append(trial.number)
            return 1.0

    storage = open_storage(_storage_url(tmp_path, "sqlite"), heartbeat=10)
    study = optuna.create_study(storage=storage)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = running_trial(study, f"{socket.gethostname()}:{gone.pid}")
    dead.set_user_attr("key", "rule-1")
    fail_dead_workers_trials(study)
    storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(dead._trial_id))
    first, second = study.get_trials(states=(TrialState.WAITING,))
    runner = Counting(study)
    while runner.waiting():
        runner.run_one()
    assert runner.calls == [first.number]
    assert "already retries" in study.get_trials()[second.number].user_attrs["surplus"]


def test_the_work_queue_survives_its_trial_failed_as_stale(tmp_path):
    from diffsearch.ledger.trial_loop import TrialRunner

    storage = open_storage(_storage_url(tmp_path, "journal"), heartbeat=10)
    study = optuna.create_study(storage=storage)

    class JudgedStale(TrialRunner):
        def evaluate(self, trial):  # another worker fails this live trial meanwhile
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            storage.get_heartbeat_stale_trial_callback()(study, storage.get_trial(trial._trial_id))
            return 1.0

    study.enqueue_trial({}, user_attrs={"key": "rule-1"})
    JudgedStale(study).run_one()
    first, retry = study.get_trials()
    assert first.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert retry.system_attrs["failed_trial"] == first.number
