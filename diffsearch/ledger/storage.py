"""Opening a storage: a database URL (SQLite, PostgreSQL, ...) or a journal file, with heartbeats."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import optuna

from diffsearch.errors import UsageError
from diffsearch.ledger.dead_workers import MAX_RETRIES, RetryWithReason, lost_heartbeat
from diffsearch.ledger.journal_file import JournalFile
from diffsearch.ledger.journal_heartbeat import HeartbeatJournalStorage
from diffsearch.ledger.reconnect import LONGEST_PAUSE, Reconnecting, reconnecting


def default_storage_url(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def run_location(study: str, out: str | None, storage: str | None) -> tuple[str, str]:
    """The run directory (default ``runs/<study>``) and storage URL (default: a SQLite file in it)."""
    out = out or str(Path("runs") / study)
    if storage is None:
        Path(out).mkdir(parents=True, exist_ok=True)
        storage = default_storage_url(Path(out))
    return out, storage


# A worker that dies mid-trial (SIGKILL, lost machine) stops beating; after the grace period the next
# worker to start a trial marks it failed and Optuna's retry callback enqueues the same params again.
DEFAULT_HEARTBEAT_SECONDS = 10


def open_storage(url: str, heartbeat: int | None = None) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL, or a JournalStorage for a path ending in ``.log``.

    ``heartbeat`` (seconds) turns on Optuna's heartbeats with a grace period of three beats and retries
    of dead workers' trials (at most ``MAX_RETRIES`` times each). Jobs whose trials run through
    ``study.optimize`` in workers pass it; jobs that ask and tell in one process leave it off.
    """
    beats: dict[str, Any] = {}
    if heartbeat is not None:
        retry = RetryWithReason(max_retry=MAX_RETRIES)  # Optuna's retry callback, with retry_of on the retry
        beats = {
            "heartbeat_interval": heartbeat,
            "grace_period": 3 * heartbeat,
            "heartbeat_stale_trial_callback": retry,
        }
    try:
        if url.endswith(".log") and "://" not in url:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            backend = JournalFile(url)  # cuts a torn last record instead of writing after it
            if heartbeat is None:
                return optuna.storages.JournalStorage(backend)
            return HeartbeatJournalStorage(backend, **beats)
        if "://" not in url:
            raise UsageError(
                f"storage {url!r} is neither a database URL (sqlite:///file.db, "
                "postgresql://...) nor a journal file path ending in .log"
            )
        return _rdb_storage(url, beats)
    except UsageError:
        raise
    except Exception as exc:  # driver missing, host unreachable, bad path: the user needs one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot open storage {url!r}: {reason}") from None


class _RDBStorage(Reconnecting, optuna.storages.RDBStorage):
    """Optuna's RDBStorage, with two changes:

    - a trial about to be failed for a stale heartbeat first gets its ``lost_reason``;
    - a server database that restarts or drops its connections is waited for (``reconnect.py``), and no
      trial is failed for a stale heartbeat until its worker had the time to beat again after the restart.
    """

    def __init__(self, url: str, **kwargs: Any):
        self._init_reconnect(_shown(url), server=not url.startswith("sqlite"))
        super().__init__(url, **kwargs)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # every worker's beats stopped with the server: give them time to beat again once it is back
        settle = self._grace() + LONGEST_PAUSE
        if self.back_within(settle) or self._server_age() < settle:
            return []
        ids = super()._get_stale_trial_ids(study_id)
        lost_heartbeat(self, ids, self._grace(), MAX_RETRIES)
        return ids

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self._call(optuna.storages.RDBStorage.record_heartbeat, (trial_id,), {})
        except Exception:  # the server down past the bound, a full disk: the beat is skipped (in its own
            pass  # thread); the trial's next storage call meets the same error and the run says it in one line

    def _grace(self) -> float:
        return self.grace_period if self.grace_period is not None else 2 * self.heartbeat_interval

    def _server_age(self) -> float:
        """Seconds since the PostgreSQL server started (infinite for other databases)."""
        if self.engine.dialect.name != "postgresql":
            return float("inf")
        import sqlalchemy

        with self.engine.connect() as connection:
            age = connection.execute(sqlalchemy.text("SELECT EXTRACT(EPOCH FROM now() - pg_postmaster_start_time())"))
            return float(age.scalar())


# every call that reads or writes the database (record_heartbeat retries on its own, above)
reconnecting(
    _RDBStorage,
    [
        "create_new_study",
        "delete_study",
        "set_study_user_attr",
        "set_study_system_attr",
        "get_study_id_from_name",
        "get_study_name_from_id",
        "get_study_directions",
        "get_study_user_attrs",
        "get_study_system_attrs",
        "get_trial_user_attrs",
        "get_trial_system_attrs",
        "get_all_studies",
        "create_new_trial",
        "set_trial_param",
        "get_trial_param",
        "set_trial_state_values",
        "set_trial_intermediate_value",
        "set_trial_user_attr",
        "set_trial_system_attr",
        "get_trial_id_from_study_id_trial_number",
        "get_trial",
        "get_all_trials",
        "get_best_trial",
        "get_n_trials",
        "_get_stale_trial_ids",
        # what Optuna's trial cache (the storage a study holds) calls instead of the public methods
        "_create_new_trial",
        "_get_best_trial_id",
        "_get_trials",
        "_set_trial_param",
    ],
)


def _shown(url: str) -> str:
    """The URL for a message: its password hidden."""
    try:
        import sqlalchemy

        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


_SCHEMA_RACE = ("UNIQUE constraint", "duplicate key", "already exists", "database is locked")


def _rdb_storage(url: str, beats: dict[str, Any], attempts: int = 5) -> optuna.storages.RDBStorage:
    # Two processes creating the schema of one fresh database race on its version row (workers started
    # together, a dashboard opened at start-up); the loser finds the schema made once it looks again.
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # a database server restarted under a running study leaves dead pooled connections:
                # each one is tested (and replaced) before use
                engine = {} if url.startswith("sqlite") else {"engine_kwargs": {"pool_pre_ping": True}}
                return _RDBStorage(url, **beats, **engine)
        except Exception as exc:
            if attempt == attempts - 1 or not any(sign in str(exc) for sign in _SCHEMA_RACE):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
