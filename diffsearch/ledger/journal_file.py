"""Optuna's journal file, made safe against a torn last record.

A worker killed inside a write, or a disk that filled up, can leave the journal's last record cut short
(no final newline). Optuna 5.1 reads past it, but the next record appended is glued onto the torn
bytes, and from then on the study fails to open with a JSON decode error. So, under Optuna's own
journal lock (the one every writer takes), the torn bytes after the last complete record are moved
aside to ``<journal>.torn-<time>`` before the journal is opened and before every append; complete
records are never touched. A record that is damaged in the middle of the file is refused in one line
that says how to repair it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Generator

from optuna.storages.journal import JournalFileBackend

from diffsearch.errors import UsageError
from diffsearch.ledger.optuna_private import journal_lock

_CHUNK = 1 << 16


class JournalFile(JournalFileBackend):
    """``JournalFileBackend`` that cuts a torn last record (saved beside the journal) instead of writing
    after it, and names a damaged record with the command that repairs it."""

    def __init__(self, file_path: str):
        super().__init__(file_path)
        with journal_lock(self._lock):
            cut_torn_tail(self._file_path)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        # Optuna's append, with the torn-tail check inside the same lock (a writer may have died since)
        with journal_lock(self._lock):
            cut_torn_tail(self._file_path)
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            with open(self._file_path, "ab") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        try:
            yield from super().read_logs(log_number_from)
        except ValueError as exc:  # json.JSONDecodeError included: a complete line that is not a record
            raise UsageError(damaged_record_message(self._file_path)) from exc


def cut_torn_tail(path: str) -> Path | None:
    """Move the bytes after the last newline of ``path`` (a record cut short) to ``<path>.torn-<time>``
    and truncate the journal there; the saved file, or None when the journal ends with a whole record.
    The caller holds the journal's lock."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        keep = _after_last_newline(f, size)
        f.seek(keep)
        torn = f.read()
        saved = Path(f"{path}.torn-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        saved.write_bytes(torn)
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    sys.stderr.write(
        f"diffsearch: journal {path}: its last record was cut short ({len(torn)} bytes, a write "
        f"that never finished); moved to {saved}, the journal keeps every complete record\n"
    )
    return saved


def _after_last_newline(f, size: int) -> int:
    """The offset just past the file's last newline (0 when it has none)."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        f.seek(start)
        at = f.read(end - start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def damaged_record_message(path: str) -> str:
    """One line: which record of the journal is damaged, and how to keep what comes before it."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                json.loads(line)
            except ValueError:
                return (
                    f"journal {path}: line {number} is not a complete record (the file was edited or "
                    f"damaged), so the records after it cannot be trusted; keep a copy, then keep the "
                    f"records before it with: head -n {number - 1} {path} > repaired.log"
                )
    return f"journal {path}: a record could not be read (the file changed while it was read); run again"
