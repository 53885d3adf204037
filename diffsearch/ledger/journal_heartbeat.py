"""Heartbeats for Optuna's JournalStorage, so a worker killed mid-trial is detected on one machine too.

Optuna implements heartbeats only for RDBStorage (SQLite, PostgreSQL, MySQL). Workers sharing a journal
file need the same guarantee, so this subclass records each running trial's heartbeat as a trial system
attr (one journal line per interval) and reports trials whose last beat is older than the grace period.
Optuna's own machinery then does the rest: ``fail_stale_trials`` at the start of every trial and the
``RetryHeartbeatStaleTrialCallback`` that re-enqueues the dead worker's trial.
"""

from __future__ import annotations

import time
from typing import Callable

import optuna
from optuna.storages import JournalStorage
from optuna.trial import FrozenTrial, TrialState

from diffsearch.ledger.dead_workers import MAX_RETRIES, lost_heartbeat
from diffsearch.ledger.optuna_private import BaseHeartbeat, frozen_trial_id

HEARTBEAT_ATTR = "diffsearch:heartbeat"


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    def __init__(
        self,
        backend,
        heartbeat_interval: int,
        grace_period: int | None = None,
        heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    ):
        super().__init__(backend)
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period if grace_period is not None else 2 * heartbeat_interval
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # the trial ended between two beats

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # the journal file is shared by processes of one machine, so their clocks agree
        now = time.time()
        ids = [
            frozen_trial_id(trial)
            for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
            if HEARTBEAT_ATTR in trial.system_attrs and now - trial.system_attrs[HEARTBEAT_ATTR] > self.grace_period
        ]
        lost_heartbeat(self, ids, self.grace_period, MAX_RETRIES)  # each one's lost_reason, before Optuna fails it
        return ids

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.heartbeat_stale_trial_callback
