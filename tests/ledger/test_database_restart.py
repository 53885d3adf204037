"""A PostgreSQL server that drops every connection, restarts, or stays down under a running study.

A server of its own (the restarts would cut the other tests' connections), started as `make test`
starts the shared one (tests/helpers.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from diffsearch.errors import StorageUnavailable
from diffsearch.ledger import done_trials, open_storage
from diffsearch.ledger.reconnect import RETRY_ENV

optuna.logging.set_verbosity(optuna.logging.ERROR)
pytestmark = pytest.mark.slow  # a server of its own, restarted several times


@pytest.fixture(scope="module")
def server():
    from helpers import postgres_server

    with postgres_server() as url:
        yield url


def _pg_ctl(url: str, action: str) -> None:
    from helpers import pg_ctl

    pg_ctl(url, action)


def _kill_connections(url: str) -> int:
    from helpers import kill_connections

    return kill_connections(url.rsplit(":", 1)[1].split("/")[0])


def _x(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0, 1)


def _check(url: str, name: str, trials: int) -> None:
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    assert len(done_trials(study)) == trials
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}


def test_workers_go_on_after_the_server_drops_their_connections(server):
    study = optuna.create_study(storage=open_storage(server, heartbeat=1), study_name="dropped")
    study.optimize(_x, n_trials=2)
    assert _kill_connections(server) >= 1
    study.optimize(_x, n_trials=2)  # the pooled connection was dead
    _check(server, "dropped", 4)


def test_workers_go_on_after_the_server_restarts_mid_trial(server):
    study = optuna.create_study(storage=open_storage(server, heartbeat=1), study_name="restarted")

    def restart_in_the_third(trial: optuna.Trial) -> float:
        if trial.number == 2:
            _pg_ctl(server, "restart")  # its heartbeat thread and its tell meet a new server
        return _x(trial)

    study.optimize(restart_in_the_third, n_trials=4)
    _check(server, "restarted", 4)


def test_workers_wait_for_a_server_that_is_stopped_then_started(server, monkeypatch):
    monkeypatch.setenv(RETRY_ENV, "60")
    study = optuna.create_study(storage=open_storage(server, heartbeat=1), study_name="stopped")
    study.optimize(_x, n_trials=1)
    _pg_ctl(server, "stop")
    later = threading.Timer(4, _pg_ctl, (server, "start"))
    later.start()
    start = time.monotonic()
    study.optimize(_x, n_trials=2)  # its first call waits for the server
    later.join()
    assert time.monotonic() - start >= 3
    _check(server, "stopped", 3)


def test_a_server_that_stays_down_ends_the_run_in_one_line_within_the_bound(server, tmp_path):
    """A CLI run: the server stops mid-study and does not come back; then it does, and a rerun finishes."""
    command = [
        sys.executable, "-m", "diffsearch", "hparams", "--dataset", "moons", "--points", "600", "--held-out",
        "200", "--epochs", "30", "--trials", "4", "--baseline-runs", "0", "--heartbeat", "1",
        "--storage", server, "--study", "down", "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", **{RETRY_ENV: "6"})
    job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    storage = open_storage(server)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # stop the server once a trial has finished
        try:
            if done_trials(optuna.load_study(study_name="down", storage=storage)):
                break
        except KeyError:
            pass
        time.sleep(0.1)
    _pg_ctl(server, "stop")
    stopped = time.monotonic()
    try:
        _, err = job.communicate(timeout=60)
        took = time.monotonic() - stopped
    finally:
        _pg_ctl(server, "start")
    assert job.returncode == 1, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("trials ")]  # the progress bar
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("diffsearch: error: the database at postgresql") and "rerun the same command" in lines[0]
    assert "127.0.0.1" in lines[0] and took < 6 + 15  # the bound, and one training step to reach a call
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    study = optuna.load_study(study_name="down", storage=open_storage(server))
    assert len(done_trials(study)) == 4
    assert not study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))


def test_a_call_that_finds_the_server_down_waits_at_most_the_bound(server, monkeypatch):
    monkeypatch.setenv(RETRY_ENV, "2")
    storage = open_storage(server)
    study = optuna.create_study(storage=storage, study_name="bound")
    _pg_ctl(server, "stop")
    try:
        start = time.monotonic()
        with pytest.raises(StorageUnavailable, match="did not answer"):
            study.get_trials()
        assert time.monotonic() - start < 2 + 1
        start = time.monotonic()
        with pytest.raises(StorageUnavailable):  # once the bound is spent, the next call fails at once
            study.get_trials()
        assert time.monotonic() - start < 1
    finally:
        _pg_ctl(server, "start")
    assert study.get_trials() == []  # and the storage works again once the server is back
