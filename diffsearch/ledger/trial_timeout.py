"""``--trial-timeout``: a trial that runs too long is failed with its reason, and the study goes on.

Like Ctrl-C (interrupt.py), the limit first stops the trial at its next safe point: training and
evaluation loops call ``stop_point()`` between steps, which raises ``TrialTimedOut`` once the deadline
has passed, so no storage write is cut in half. A trial that hangs where no safe point is reached (a
blocked read, a loop of its own) is stopped ``HARD_GRACE_SECONDS`` later by a SIGALRM raised where it
hangs (main thread only, which is where every job and worker runs its trials).

The limit is a study attr (``TIME_LIMIT_ATTR``), so every worker of the study, on any machine, applies
it. ``diffsearch sweep`` has its own (it stops the trial's program; sweeps/program_trial.py).
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from diffsearch.errors import TrialTimedOut, UsageError

TIME_LIMIT_ATTR = "trial_time_limit"  # seconds, or None: no limit
HARD_GRACE_SECONDS = 10.0  # after the deadline, how long a trial may take to reach a safe point

_deadline: float | None = None
_seconds: float | None = None


def check_trial_timeout(seconds: float | None) -> None:
    """``--trial-timeout``: None (no limit) or a finite number of seconds above 0."""
    if seconds is not None and not (isinstance(seconds, (int, float)) and 0 < seconds < float("inf")):
        raise UsageError(f"--trial-timeout must be a number of seconds above 0 (got {seconds!r})")


def reason(seconds: float) -> str:
    return f"timeout after {seconds:g} s (--trial-timeout)"


def check_deadline() -> None:
    """Raise ``TrialTimedOut`` if the running trial is past its limit (called by ``stop_point``)."""
    if _deadline is not None and time.monotonic() >= _deadline:
        raise TrialTimedOut(reason(_seconds))


def _on_alarm(signum, frame) -> None:
    # first alarm: the deadline (stop_point raises from now on); the next: the trial never reached one
    if _deadline is not None and time.monotonic() >= _deadline + HARD_GRACE_SECONDS * 0.999:
        raise TrialTimedOut(reason(_seconds))


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Run the body (one trial) under a limit of ``seconds`` (None or 0: no limit)."""
    global _deadline, _seconds
    if not seconds:
        yield
        return
    _deadline, _seconds = time.monotonic() + seconds, seconds
    main = threading.current_thread() is threading.main_thread()
    if main:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds, HARD_GRACE_SECONDS)
    try:
        yield
    finally:
        _deadline = _seconds = None
        if main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
