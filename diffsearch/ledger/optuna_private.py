"""Every use of Optuna's private API, behind one named function each.

Optuna keeps heartbeats, trial ids and the storage of a study private. The ledger needs them to find
dead workers and to read a trial while it runs, so this module is the one place that calls in. The
ledger's two storages (storage.py, journal_heartbeat.py) also override Optuna's stale-trial hook
``_get_stale_trial_ids`` (storage.py also retries the private calls Optuna's trial cache makes into
the RDB storage while a database server is away), and journal_file.py takes the journal's own lock (``journal_lock``); nothing outside ``diffsearch/ledger`` touches private API.
"""

from __future__ import annotations

import warnings

import optuna
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.storages.journal._file import get_lock_file as journal_lock  # the journal backend's own lock

__all__ = [
    "BaseHeartbeat",
    "journal_lock",
    "storage_of",
    "trial_id",
    "frozen_trial_id",
    "heartbeat_enabled",
    "heartbeat_interval",
    "stale_trial_callback",
    "fail_stale_trials",
]


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    return study._storage


def trial_id(trial: optuna.Trial) -> int:
    """The storage's id of a running trial (its number is per study; the id is per storage)."""
    return trial._trial_id


def frozen_trial_id(trial: optuna.trial.FrozenTrial) -> int:
    return trial._trial_id


def heartbeat_enabled(study: optuna.Study) -> bool:
    return is_heartbeat_enabled(study._storage)


def heartbeat_interval(study: optuna.Study) -> int | None:
    return study._storage.get_heartbeat_interval()


def stale_trial_callback(study: optuna.Study):
    """The storage's retry callback for a dead worker's trial (None without heartbeats)."""
    storage = study._storage
    return storage.get_heartbeat_stale_trial_callback() if is_heartbeat_enabled(storage) else None


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's check for trials whose worker stopped beating (a no-op without heartbeats)."""
    if is_heartbeat_enabled(study._storage):
        with warnings.catch_warnings():  # "experimental" since Optuna 2.9; relied on on purpose
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
