"""A PostgreSQL server that drops every connection (a restart, an admin's kill) under a running study."""

from __future__ import annotations

import optuna
import pytest

from diffsearch.ledger import open_storage

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _kill_connections(url: str) -> int:
    import psycopg2

    port = url.rsplit(":", 1)[1].split("/")[0]
    admin = psycopg2.connect(host="127.0.0.1", port=port, user="diffsearch", dbname="postgres")
    admin.autocommit = True
    cursor = admin.cursor()
    cursor.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = 'diffsearch' AND pid <> pg_backend_pid()"
    )
    killed = len(cursor.fetchall())
    admin.close()
    return killed


@pytest.mark.slow
def test_workers_go_on_after_the_server_drops_their_connections(postgres_url):
    storage = open_storage(postgres_url, heartbeat=1)
    study = optuna.create_study(storage=storage, study_name="restart", load_if_exists=True)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert _kill_connections(postgres_url) >= 1
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)  # the pooled connection was dead
    assert len(optuna.load_study(study_name="restart", storage=open_storage(postgres_url)).trials) == 4
