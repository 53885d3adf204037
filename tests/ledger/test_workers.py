"""Many workers on one study: a worker killed mid-trial is detected by its heartbeat and its trial re-run.

Real storages (a PostgreSQL server on loopback, a JournalStorage file), real worker processes, a real
SIGKILL. Trials are cheap (small data, 40 epochs, well under a second each).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from diffsearch.ledger.dead_workers import retried_trial
from diffsearch.ledger import done_trials, is_done, open_storage

pytestmark = pytest.mark.slow  # real worker processes for tens of seconds
TRIALS = 18
CHEAP = [
    "--dataset",
    "moons",
    "--searcher",
    "random",
    "--points",
    "2000",
    "--held-out",
    "500",
    "--epochs",
    "40",
    "--baseline-runs",
    "0",
    "--heartbeat",
    "1",
]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "diffsearch", *args]


_STORAGES: dict[str, optuna.storages.BaseStorage] = {}


def _load(storage_url: str, study: str) -> optuna.Study | None:
    # one storage object per URL: each RDBStorage holds a connection pool, and polling must not open
    # a new pool every time (PostgreSQL: "too many clients")
    if storage_url not in _STORAGES:
        _STORAGES[storage_url] = open_storage(storage_url)
    storage = _STORAGES[storage_url]
    try:
        return optuna.load_study(study_name=study, storage=storage)
    except KeyError:
        return None


def _kill_one_mid_trial(
    storage_url: str, study: str, pids: set[int] | None, timeout: float = 120, spare: int | None = None
) -> str:
    """SIGKILL a worker while it runs a trial (any worker but ``spare`` when ``pids`` is None); its
    ``host:pid``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        loaded = _load(storage_url, study)
        # wait for a few finished trials first, so the kill lands in the middle of the study
        if loaded is not None and len(done_trials(loaded)) >= 5:
            for trial in loaded.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                worker = trial.user_attrs.get("worker", ":0")
                pid = int(worker.rsplit(":", 1)[1])
                if (
                    pid
                    and pid != spare
                    and (pids is None or pid in pids)
                    and _kill_if_still_running(storage_url, study, trial.number, pid, drawn=True)
                ):
                    return worker
        time.sleep(0.05)
    raise AssertionError("no worker was caught running a trial")


def _kill_if_still_running(storage_url: str, study: str, number: int, pid: int, drawn: bool = False) -> bool:
    """SIGKILL worker ``pid`` if its trial ``number``, seen RUNNING, still runs; whether it was killed.

    Frozen first, so it cannot finish the trial between this check and the kill (it did once: the
    killed worker's last trial was then COMPLETE, not FAIL); let go again if it had finished it. With
    ``drawn``, killed only once it has drawn a parameter (CI once caught a worker between creating its
    trial and its first suggestion; ``_check_ledger`` needs something drawn to compare with the retry).
    """
    os.kill(pid, signal.SIGSTOP)
    trial = _load(storage_url, study).trials[number]
    if trial.state == TrialState.RUNNING and (trial.params or not drawn):
        os.kill(pid, signal.SIGKILL)
        return True
    os.kill(pid, signal.SIGCONT)
    return False


def _check_ledger(storage_url: str, study_name: str, killed_worker: str) -> None:
    study = _load(storage_url, study_name)
    trials = study.get_trials(deepcopy=False)
    done = done_trials(study)
    assert len(done) == TRIALS, [t.state.name for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # the killed worker's last trial (it may have finished the one seen running just before the kill)
    # (a dropped duplicate retry keeps its dead predecessor's worker record: not one of its trials)
    dead = max(
        (t for t in trials if t.user_attrs.get("worker") == killed_worker and "surplus" not in t.user_attrs),
        key=lambda t: t.number,
    )
    assert dead.state == TrialState.FAIL and "fail_reason" not in dead.user_attrs
    # a person reads why it failed; it does not count against the budget (no fail_reason), its retry does
    assert killed_worker in dead.user_attrs["lost_reason"]
    retries = [t for t in trials if retried_trial(t.system_attrs) == dead.number and "surplus" not in t.user_attrs]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].user_attrs["retry_of"] == dead.number
    # a worker killed while its objective was still suggesting has drawn only some params: the retry
    # re-runs those and draws the rest (Optuna's RetryFailedTrialCallback enqueues what the trial had)
    drawn = dead.params.items()
    assert drawn and drawn <= retries[0].params.items()
    # the dead worker's config is in the finished trials exactly once: re-run, not duplicated
    assert sum(drawn <= t.params.items() for t in done) == 1
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) == TRIALS


def test_three_workers_on_postgres_survive_a_sigkill(tmp_path, postgres_url):
    study = "workers-pg"
    # one job that starts 2 local workers, and one `diffsearch worker` as another machine would run it
    job = subprocess.Popen(
        _cli(
            "hparams",
            *CHEAP,
            "--trials",
            str(TRIALS),
            "--workers",
            "2",
            "--storage",
            postgres_url,
            "--study",
            study,
            "--out",
            str(tmp_path / "job"),
        ),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while _load(postgres_url, study) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    worker = subprocess.Popen(
        _cli(
            "worker", "--study", study, "--storage", postgres_url, "--heartbeat", "1", "--out", str(tmp_path / "worker")
        ),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = _kill_one_mid_trial(postgres_url, study, {worker.pid})
    assert worker.wait(timeout=60) == -signal.SIGKILL
    _, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    _check_ledger(postgres_url, study, killed)


def test_four_local_workers_on_a_journal_file_survive_a_sigkill(tmp_path):
    storage = str(tmp_path / "study.log")
    study = "workers-journal"
    job = subprocess.Popen(
        _cli(
            "hparams",
            *CHEAP,
            "--trials",
            str(TRIALS),
            "--workers",
            "4",
            "--storage",
            storage,
            "--study",
            study,
            "--out",
            str(tmp_path / "job"),
        ),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # the job's own process trains trials too (--workers 4: it and 3 started beside it); kill another
    killed = _kill_one_mid_trial(storage, study, None, spare=job.pid)
    _, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    _check_ledger(storage, study, killed)


def _open_when_released(url, barrier):
    barrier.wait()
    open_storage(url)


def test_workers_started_together_on_a_fresh_sqlite_file_all_open_it(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for round_ in range(3):  # the schema race is timing-dependent: several fresh files
        url = f"sqlite:///{tmp_path}/fresh{round_}.db"
        barrier = context.Barrier(4)
        workers = [context.Process(target=_open_when_released, args=(url, barrier)) for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert [w.exitcode for w in workers] == [0, 0, 0, 0]


def test_optimizer_search_shared_by_workers_survives_a_sigkill(tmp_path):
    """The tree search hands each level to 3 local workers and a joining `diffsearch worker`; one is killed."""
    storage, study_name, budget = str(tmp_path / "rules.log"), "rules", 10
    job = subprocess.Popen(
        _cli(
            "optimizer",
            "--budget",
            str(budget),
            "--levels",
            "1",
            "--scale",
            "1",
            "--baselines",
            "none",
            "--top",
            "1",
            "--workers",
            "3",
            "--heartbeat",
            "1",
            "--storage",
            storage,
            "--study",
            study_name,
            "--out",
            str(tmp_path / "run"),
            "--json",
        ),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    while _load(storage, study_name) is None:
        assert job.poll() is None, job.communicate()
        time.sleep(0.2)
    joined = subprocess.Popen(
        _cli("worker", "--study", study_name, "--storage", storage, "--heartbeat", "1"),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    killed = None
    while killed is None and time.monotonic() < deadline:  # a worker other than the searching process
        for trial in _load(storage, study_name).get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get("worker", "")
            pid = int(worker.rsplit(":", 1)[1]) if ":" in worker else 0
            if pid and pid != job.pid and _kill_if_still_running(storage, study_name, trial.number, pid):
                killed = worker
                break
        time.sleep(0.05)
    assert killed is not None, "no worker was caught training a rule"
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err.decode()[-2000:]
    if joined.pid != int(killed.rsplit(":", 1)[1]):
        assert joined.wait(timeout=60) == 0  # it leaves once the job marks the study finished
    results = json.loads(out)
    assert results["search"]["evaluated"] == budget
    trials = _load(storage, study_name).get_trials(deepcopy=False)
    search = [t for t in trials if t.user_attrs.get("role") == "search"]
    done = [t for t in search if is_done(t)]
    assert len(done) == budget and len({t.user_attrs["key"] for t in done}) == budget
    dead = max((t for t in trials if t.user_attrs.get("worker") == killed), key=lambda t: t.number)
    assert dead.state == TrialState.FAIL and "fail_reason" not in dead.user_attrs
    assert killed in dead.user_attrs["lost_reason"]
    rerun = [t for t in done if t.user_attrs["key"] == dead.user_attrs["key"]]
    # the kill may land while the dead trial was still filling in its params: same rule, as far as it got
    assert len(rerun) == 1 and all(rerun[0].params[name] == value for name, value in dead.params.items())
    assert len({t.user_attrs["worker"] for t in done}) >= 2  # the work was shared
