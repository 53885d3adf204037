"""Ctrl-C that never cuts a storage write in half.

A KeyboardInterrupt raised while Optuna is committing to SQLite can leave the trial RUNNING and the
connection locked (Optuna then fails with "Should not reach"). So the first Ctrl-C only asks to stop:
training and evaluation loops call ``stop_point()`` between steps, where stopping is safe, and the
trial in progress is recorded as failed as usual. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from diffsearch.ledger.trial_timeout import check_deadline

_requested = False


def stop_point() -> None:
    """Raise KeyboardInterrupt here if the user asked to stop (TrialTimedOut if the trial ran too long)."""
    if _requested:
        raise KeyboardInterrupt
    check_deadline()


def _on_sigint(signum, frame) -> None:
    global _requested
    if _requested:
        raise KeyboardInterrupt
    _requested = True
    sys.stderr.write("\ndiffsearch: stopping at the next safe point (Ctrl-C again to stop at once)\n")


@contextmanager
def graceful_interrupts() -> Iterator[None]:
    """Install the two-step Ctrl-C handler for the duration of a job (main thread only)."""
    global _requested
    if (
        threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    ):  # background jobs keep ignoring it
        yield
        return
    previous = signal.signal(signal.SIGINT, _on_sigint)
    _requested = False
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False
