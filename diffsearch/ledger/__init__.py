"""The ledger: every evaluation of every job is an Optuna trial in one storage.

- ``storage``: open a storage (database URL or journal file), heartbeats on or off, where a run lives;
- ``studies``: create a study or check a resumed one, mark it finished, count its finished trials;
- ``trial_loop``: run trials with one guard (a budget of sampler trials, or a queue of waiting ones);
- ``workers``: ``--workers N`` processes on this machine;
- ``dead_workers`` and ``journal_heartbeat``: find a worker that died mid-trial and re-run its trial;
- ``interrupt``: Ctrl-C that never cuts a storage write in half;
- ``optuna_private``: the only module that touches Optuna's private API.
"""

from diffsearch.ledger.storage import (
    DEFAULT_HEARTBEAT_SECONDS,
    MAX_RETRIES,
    default_storage_url,
    open_storage,
    run_location,
)
from diffsearch.ledger.studies import (
    FINISHED_ATTR,
    best_trial,
    create_or_load_study,
    done_trials,
    is_done,
    is_finished,
    load_study,
    mark_finished,
)

__all__ = [
    "DEFAULT_HEARTBEAT_SECONDS",
    "MAX_RETRIES",
    "default_storage_url",
    "open_storage",
    "run_location",
    "FINISHED_ATTR",
    "best_trial",
    "create_or_load_study",
    "done_trials",
    "is_done",
    "is_finished",
    "load_study",
    "mark_finished",
]
