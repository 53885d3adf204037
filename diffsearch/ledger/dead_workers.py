"""Trials left RUNNING by a worker that is gone, found without waiting for heartbeats where possible.

Heartbeats (Optuna's, see storage.py) find dead workers on any machine after a grace period. Two cases
they miss or find late: a worker on this machine whose process is gone (its pid says so at once), and
trials started by a worker without heartbeats (an older diffsearch, a crash before the first beat),
which heartbeats never report. Both are failed here and handed to the storage's retry callback, the
same path a heartbeat-stale trial takes.
"""

from __future__ import annotations

import datetime
import os
import socket

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from diffsearch.ledger.optuna_private import (
    fail_stale_trials,
    frozen_trial_id,
    stale_trial_callback,
    storage_of,
    trial_id,
)

# Why a dead worker's trial failed, for a person: kept apart from ``fail_reason``, which marks a trial that
# counts against the budget (``studies.is_done``); a lost trial does not count, its retry does.
LOST_ATTR = "lost_reason"
RETRY_OF_ATTR = "retry_of"  # on a retry: the number of the lost trial it re-runs

# legacy trials without a worker record are failed once they have run this long without one
NO_RECORD_GRACE_SECONDS = 60
RECORD_GRACE_SECONDS = 5
# a dead worker's trial is re-run at most this many times (Optuna's retry callback, both storages)
MAX_RETRIES = 3


def worker_id() -> str:
    """``host:pid`` of this process, recorded on every trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _is_dead(trial: optuna.trial.FrozenTrial, host: str, now: datetime.datetime) -> bool:
    worker = trial.user_attrs.get("worker")
    if worker:
        # a retry starts with its dead predecessor's record until its new worker writes its own
        if "failed_trial" in trial.system_attrs and (now - trial.datetime_start).total_seconds() < RECORD_GRACE_SECONDS:
            return False
        worker_host, _, pid = worker.rpartition(":")
        return worker_host == host and pid.isdigit() and not _process_alive(int(pid))
    return (now - trial.datetime_start).total_seconds() > NO_RECORD_GRACE_SECONDS


def lost_reason(trial: FrozenTrial, why: str, max_retry: int | None, retried: bool = True) -> str:
    """``why`` the trial's worker is gone, and what happens to its params, in one line."""
    if not retried:
        return f"{why}; not queued again by the ledger (heartbeats are off)"
    tries = len(trial.system_attrs.get("retry_history", [])) + 1
    if max_retry is not None and tries > max_retry:
        return f"{why}; not retried again: its params ran {tries} times and every worker died"
    return f"{why}; its params run again in a new trial (user attr {RETRY_OF_ATTR} = {trial.number})"


def record_lost(
    storage: optuna.storages.BaseStorage, trial: FrozenTrial, why: str, max_retry: int | None, retried: bool = True
) -> None:
    """Write ``lost_reason`` on a RUNNING trial about to be failed (Optuna refuses attrs once it has ended,
    so the reason cannot name the retry's number: the retry names this trial in ``retry_of``)."""
    try:
        storage.set_trial_user_attr(frozen_trial_id(trial), LOST_ATTR, lost_reason(trial, why, max_retry, retried))
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # another worker failed it first (and wrote its reason)


def lost_heartbeat(
    storage: optuna.storages.BaseStorage, trial_ids: list[int], grace: float, max_retry: int | None
) -> None:
    """The storages' hook before Optuna fails heartbeat-stale trials: each gets its ``lost_reason``."""
    for tid in trial_ids:
        trial = storage.get_trial(tid)
        worker = trial.user_attrs.get("worker", "(unrecorded)")
        record_lost(storage, trial, f"worker {worker} lost its heartbeat (silent for over {grace:g} s)", max_retry)


class RetryWithReason:
    """Optuna's RetryHeartbeatStaleTrialCallback (same system attrs, same limit), except that the retry
    carries ``retry_of`` and not its predecessor's ``lost_reason``."""

    def __init__(self, max_retry: int | None):
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        system_attrs = {"failed_trial": trial.number, "retry_history": [], **trial.system_attrs}
        system_attrs["retry_history"] = [*system_attrs["retry_history"], trial.number]
        if self.max_retry is not None and self.max_retry < len(system_attrs["retry_history"]):
            return
        user_attrs = {k: v for k, v in trial.user_attrs.items() if k != LOST_ATTR} | {RETRY_OF_ATTR: trial.number}
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs=user_attrs,
                system_attrs=system_attrs,
            )
        )


def fail_dead_workers_trials(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials whose worker is known to be gone; retry them as stale trials are. Numbers."""
    storage = storage_of(study)
    host, now = socket.gethostname(), datetime.datetime.now()
    retry = stale_trial_callback(study)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_dead(trial, host, now):
            continue
        worker = trial.user_attrs.get("worker")
        record_lost(
            storage,
            trial,
            f"worker {worker} is gone (its process ended)"
            if worker
            else f"its worker never recorded itself in {NO_RECORD_GRACE_SECONDS} s (an older diffsearch, "
            "or a crash before the first beat)",
            getattr(retry, "max_retry", None),
            retry is not None,
        )
        try:
            if not storage.set_trial_state_values(frozen_trial_id(trial), state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        failed.append(trial.number)
        if retry is not None:
            retry(study, storage.get_trial(frozen_trial_id(trial)))
    return failed


def retried_trial(system_attrs: dict) -> int | None:
    """The number of the failed trial that a retry re-runs (None for a trial that is not a retry).

    Optuna's retry callback keeps ``failed_trial`` at the *first* failure of a chain, so the retry of a
    retry names the original; the immediate predecessor is the last entry of ``retry_history``.
    """
    history = system_attrs.get("retry_history")
    return history[-1] if history else system_attrs.get("failed_trial")


def earlier_retry(study: optuna.Study, trial: optuna.Trial) -> int | None:
    """The number of an earlier trial that retries the same failed trial as ``trial`` does, if any.

    Two workers that sweep at the same moment can both fail a dead worker's trial and both enqueue a
    retry: SQLite's read of the state and its update are not one atomic step across processes. Only
    the first retry should run; the caller drops the others. A retry of that retry (it died too) is
    not a duplicate: it re-runs a different failed trial.
    """
    failed = retried_trial(storage_of(study).get_trial_system_attrs(trial_id(trial)))
    if failed is None:
        return None
    for other in study.get_trials(deepcopy=False):
        if other.number < trial.number and retried_trial(other.system_attrs) == failed:
            return other.number
    return None


def failed_by_another_worker(study: optuna.Study, running_id: int | None) -> bool:
    """Whether this process's trial was failed as heartbeat-stale by another worker while it still ran.

    Under load a live worker can miss its beats for the grace period. Optuna then fails its trial and
    queues the retry, and the live worker's own ``tell`` raises (optuna/optuna#5470) instead of ending
    the trial; the caller catches that and goes on, since the retry runs the same params elsewhere.
    """
    if running_id is None:
        return False
    trial = storage_of(study).get_trial(running_id)
    if trial.state != TrialState.FAIL or "fail_reason" in trial.user_attrs or "surplus" in trial.user_attrs:
        return False
    # its retry is the mark of the stale check: a bug in the objective also ends FAIL, but unretried
    return any(retried_trial(t.system_attrs) == trial.number for t in study.get_trials(deepcopy=False))


def finished_by_another_worker(study: optuna.Study, running_id: int | None, exc: Exception) -> bool:
    """Whether this process's ``tell`` failed because another worker ran the same trial and finished it first.

    On SQLite two workers can both take one waiting trial: Optuna claims it with SELECT ... FOR UPDATE, which
    SQLite ignores, so both read it WAITING and both set it RUNNING. The work is the same (an enqueued trial's
    params say all of it), the first result stands, and the second ``tell`` raises (Optuna's check before the
    write, or the storage's at the write when the first finished in between); the caller goes on.
    """
    said = isinstance(exc, UpdateFinishedTrialError) or str(exc).startswith("Cannot tell a COMPLETE trial")
    if running_id is None or not said:
        return False
    return storage_of(study).get_trial(running_id).state == TrialState.COMPLETE


def sweep_dead_workers(study: optuna.Study) -> None:
    """Fail (and queue the retries of) trials whose worker is gone: by its pid on this machine at once,
    and by Optuna's heartbeat check on any machine."""
    fail_dead_workers_trials(study)
    fail_stale_trials(study)


# A lost trial whose retry has not been queued yet (the worker that failed it is between the two writes,
# normally milliseconds apart) holds its place in the budget this long at most: if that worker died in
# between, the retry never comes. Longer costs that long wherever a lost trial's retry does not come: 30 s
# made the SIGKILL test of the optimizer job (tests/ledger/test_workers.py) 26 s slower.
RETRY_ON_ITS_WAY_SECONDS = 5


def _will_be_retried(trial: FrozenTrial, max_retry: int | None) -> bool:
    return max_retry is None or len(trial.system_attrs.get("retry_history", [])) + 1 <= max_retry


def places_of_retries(study: optuna.Study, trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the trials that hold a place in the budget for a retry not yet running: a WAITING retry
    (the first of its failed trial; a duplicate holds none), and a lost trial whose retry is on its way.

    A dead worker's trial is failed and then its retry queued, in two writes. A worker that asks for a
    trial in between, or before the retry is taken, must not take the lost trial's place with a fresh
    trial: the budget would then be met while the retry still waits, and the study be left with a
    WAITING trial that a later run would pick up.
    """
    retry = stale_trial_callback(study)
    if retry is None:
        return set()
    max_retry = getattr(retry, "max_retry", None)
    retried = {}
    for t in trials:
        failed = retried_trial(t.system_attrs)
        if failed is not None:
            retried.setdefault(failed, t)  # trials are in number order: the first retry of each
    now = datetime.datetime.now()
    places = set()
    for t in trials:
        if t.state == TrialState.WAITING and retried_trial(t.system_attrs) is not None:
            if retried[retried_trial(t.system_attrs)].number == t.number:
                places.add(t.number)
        elif (
            t.state == TrialState.FAIL
            and LOST_ATTR in t.user_attrs
            and "fail_reason" not in t.user_attrs
            and t.number not in retried
            and _will_be_retried(t, max_retry)
            and t.datetime_complete is not None
            and (now - t.datetime_complete).total_seconds() < RETRY_ON_ITS_WAY_SECONDS
        ):
            places.add(t.number)
    return places


def close_waiting_retries(study: optuna.Study, reason: str) -> list[int]:
    """End the retries still WAITING once the study's budget is met (duplicates, or retries whose place
    another trial took): each is taken as a worker would take it, marked ``surplus`` and failed, so a
    later run of the same command does not run it. Their numbers."""
    storage = storage_of(study)
    closed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if retried_trial(t.system_attrs) is None:
            continue
        tid = frozen_trial_id(t)
        try:
            if not storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                continue  # a worker took it first
            storage.set_trial_user_attr(tid, "worker", worker_id())
            storage.set_trial_user_attr(tid, "surplus", reason)
            storage.set_trial_state_values(tid, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        closed.append(t.number)
    return closed
