"""The ledger: every evaluation is an Optuna trial in one storage (SQLite, PostgreSQL, journal file, ...).

Studies record their job and settings as user attrs, so a study can be resumed (or joined) with only
the storage URL and the study name, and so a study is never reused by a different job by mistake.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from diffsearch.errors import UsageError
from diffsearch.journal_heartbeat import HeartbeatJournalStorage

# attrs that must match when a study is resumed; the others (budget, ...) may change between runs
IDENTITY_ATTRS = ("job", "space", "dataset", "epochs", "width", "resolution", "fid_samples", "score", "lr_grid")


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
MAX_RETRIES = 3


def open_storage(url: str, heartbeat: int | None = None) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL, or a JournalStorage for a path ending in ``.log``.

    ``heartbeat`` (seconds) turns on Optuna's heartbeats with a grace period of three beats and retries
    of dead workers' trials (at most ``MAX_RETRIES`` times each). Jobs whose trials run through
    ``study.optimize`` in workers pass it; jobs that ask and tell in one process leave it off.
    """
    beats: dict[str, Any] = {}
    if heartbeat is not None:
        with warnings.catch_warnings():  # "experimental" since Optuna 2.8; we rely on it on purpose
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
        beats = {"heartbeat_interval": heartbeat, "grace_period": 3 * heartbeat,
                 "heartbeat_stale_trial_callback": retry}
    try:
        if url.endswith(".log") and "://" not in url:
            Path(url).parent.mkdir(parents=True, exist_ok=True)
            backend = optuna.storages.journal.JournalFileBackend(url)
            if heartbeat is None:
                return optuna.storages.JournalStorage(backend)
            return HeartbeatJournalStorage(backend, **beats)
        if "://" not in url:
            raise UsageError(f"storage {url!r} is neither a database URL (sqlite:///file.db, "
                             "postgresql://...) nor a journal file path ending in .log")
        return _rdb_storage(url, beats)
    except UsageError:
        raise
    except Exception as exc:  # driver missing, host unreachable, bad path: the user needs one line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot open storage {url!r}: {reason}") from None


_SCHEMA_RACE = ("UNIQUE constraint", "duplicate key", "already exists", "database is locked")


def _rdb_storage(url: str, beats: dict[str, Any], attempts: int = 5) -> optuna.storages.RDBStorage:
    # Two processes creating the schema of one fresh database race on its version row (workers started
    # together, a dashboard opened at start-up); the loser finds the schema made once it looks again.
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, **beats)
        except Exception as exc:
            if attempt == attempts - 1 or not any(sign in str(exc) for sign in _SCHEMA_RACE):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def create_or_load_study(storage: optuna.storages.BaseStorage, name: str, attrs: dict[str, Any],
                         sampler: optuna.samplers.BaseSampler | None = None,
                         pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Create the study, or load it after checking it was made by the same job on the same data."""
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize",
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    existing = study.user_attrs
    for key in IDENTITY_ATTRS:
        if key in existing and key in attrs and existing[key] != attrs[key]:
            raise UsageError(f"study {name!r} was made with {key}={existing[key]!r}, not {attrs[key]!r}: "
                             "use another --study name")
    for key, value in attrs.items():
        if existing.get(key) != value:
            study.set_user_attr(key, value)
    return study


def is_done(trial: FrozenTrial) -> bool:
    """Finished trials count against the budget; a trial cut by Ctrl-C or a crash does not."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs


def done_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if is_done(t)]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda t: t.value) if complete else None
