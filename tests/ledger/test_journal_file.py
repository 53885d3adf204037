"""A journal whose last record was cut short (a worker killed inside a write, a full disk) opens past it."""

from __future__ import annotations

import threading
import time

import optuna
import pytest

from diffsearch.errors import UsageError
from diffsearch.ledger import open_storage
from diffsearch.ledger.journal_file import JournalFile

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _study_with_trials(path, n: int) -> None:
    study = optuna.create_study(storage=open_storage(str(path), heartbeat=1), study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=n)


def _records(path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_a_torn_last_record_is_moved_aside_and_every_complete_record_kept(tmp_path, capsys):
    journal = tmp_path / "study.log"
    _study_with_trials(journal, 3)
    complete = _records(journal)
    journal.write_bytes(b"".join(complete) + complete[-1][:-9])  # a record cut short, as by a kill mid-write

    study = optuna.load_study(storage=open_storage(str(journal), heartbeat=1), study_name="s")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "last record was cut short" in err[0] and ".torn-" in err[0]
    saved = list(tmp_path.glob("study.log.torn-*"))
    assert len(saved) == 1 and saved[0].read_bytes() == complete[-1][:-9]
    assert _records(journal) == complete  # nothing complete was dropped
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3

    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)  # writes after it stay readable
    again = optuna.load_study(storage=open_storage(str(journal), heartbeat=1), study_name="s")
    assert len(again.trials) == 5 and all(t.state == optuna.trial.TrialState.COMPLETE for t in again.trials)


def test_a_record_torn_by_another_writer_while_open_is_cut_before_the_next_write(tmp_path):
    # Optuna 5.1 alone glues the next record onto the torn bytes; the study then no longer opens
    journal = tmp_path / "study.log"
    _study_with_trials(journal, 1)
    study = optuna.load_study(storage=open_storage(str(journal), heartbeat=1), study_name="s")
    with open(journal, "ab") as f:
        f.write(b'{"op_code":5,"worker_id":"x","study_id":0,"datetime_st')  # another process died here
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    again = optuna.load_study(storage=open_storage(str(journal), heartbeat=1), study_name="s")
    assert [t.state for t in again.trials] == [optuna.trial.TrialState.COMPLETE] * 2


def test_the_cut_waits_for_optunas_journal_lock(tmp_path):
    journal = tmp_path / "study.log"
    _study_with_trials(journal, 1)
    whole = journal.read_bytes()
    backend = JournalFile(str(journal))
    backend._lock.acquire()  # a writer in the middle of its append
    with open(journal, "ab") as f:
        f.write(b'{"op_code":')
    opened = threading.Event()
    threading.Thread(target=lambda: (JournalFile(str(journal)), opened.set()), daemon=True).start()
    time.sleep(0.5)
    assert not opened.is_set() and journal.read_bytes() != whole  # nothing cut while the writer holds it
    backend._lock.release()
    assert opened.wait(10) and journal.read_bytes() == whole


def test_a_damaged_record_inside_the_journal_is_refused_in_one_line_saying_how_to_repair(tmp_path):
    journal = tmp_path / "study.log"
    _study_with_trials(journal, 2)
    lines = _records(journal)
    lines[2] = b"{not json\n"
    journal.write_bytes(b"".join(lines))
    with pytest.raises(UsageError) as caught:
        optuna.load_study(storage=open_storage(str(journal), heartbeat=1), study_name="s")
    message = str(caught.value)
    assert "\n" not in message and "line 3" in message and f"head -n 2 {journal}" in message
