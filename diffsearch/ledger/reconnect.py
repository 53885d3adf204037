"""A database server that restarts, or drops its connections, under a running study.

Every storage call of a server database (PostgreSQL, MySQL) that fails because the connection went away
is tried again, with growing pauses, for at most ``DIFFSEARCH_DATABASE_RETRY_SECONDS`` (default 60 s);
pooled connections are tested before use, so a call after a restart gets a fresh one. If the server is
still down then, the call raises ``StorageUnavailable`` (one line from the CLI, exit 1) and later calls
of the process fail at once. Other errors (a constraint, a full disk) are raised as before.

A write whose connection broke while it committed may be applied once and then tried again: the ledger's
writes are state changes that refuse to apply twice (a finished trial stays finished), or attrs written
with the same value.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import Any, Callable

from diffsearch.errors import StorageUnavailable, UsageError

RETRY_ENV = "DIFFSEARCH_DATABASE_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 60.0
FIRST_PAUSE, LONGEST_PAUSE = 0.5, 8.0

# PostgreSQL codes of a connection gone (class 08) or a server shutting down / starting up
_CONNECTION_CODES = ("08", "57P01", "57P02", "57P03")


def retry_seconds() -> float:
    text = os.environ.get(RETRY_ENV, "")
    if not text:
        return DEFAULT_RETRY_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise UsageError(f"{RETRY_ENV} must be a number of seconds >= 0 (got {text!r})")
    return seconds


def connection_lost(exc: BaseException) -> BaseException | None:
    """The database error in ``exc``'s chain that says the connection or the server went away, or None."""
    import sqlalchemy.exc

    pool_signals = (sqlalchemy.exc.DisconnectionError, sqlalchemy.exc.InvalidatePoolError)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, pool_signals):
            return current
        if isinstance(current, sqlalchemy.exc.DBAPIError):
            if current.connection_invalidated:
                return current
            if isinstance(current, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
                code = getattr(current.orig, "pgcode", None)
                if code is None or code.startswith(_CONNECTION_CODES):  # no code: the connection itself failed
                    if "database is locked" not in str(current) and "disk" not in str(current).lower():
                        return current
        current = current.__cause__ or current.__context__
    return None


class Reconnecting:
    """Mixed into the RDB storage: each public call retried while the server is away (see module doc)."""

    def _init_reconnect(self, where: str, server: bool = True) -> None:
        self._where, self._server = where, server  # a file database (SQLite) is not waited for
        self._bound = retry_seconds()
        self._local = threading.local()  # nested calls are retried by the outermost one only
        self._down = False  # the bound was spent once: fail at once until a call succeeds
        self._failing_since: float | None = None  # monotonic time of the first failed call of this outage
        self._back_at = float("-inf")  # monotonic time the server answered again after an outage

    def back_within(self, seconds: float) -> bool:
        """Whether the server came back from an outage less than ``seconds`` ago (for this process)."""
        return time.monotonic() - self._back_at < seconds

    def _call(self, method: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if not self._server or getattr(self._local, "depth", 0):
            return method(self, *args, **kwargs)
        start, pause, failed = time.monotonic(), FIRST_PAUSE, False
        while True:
            self._local.depth = 1
            try:
                result = method(self, *args, **kwargs)
            except Exception as exc:
                lost = connection_lost(exc)
                if lost is None:
                    raise
                failed, now = True, time.monotonic()
                if self._failing_since is None:
                    self._failing_since = now
                if self._down or now - start + pause > self._bound:
                    self._down = True
                    reason = str(getattr(lost, "orig", None) or lost).strip().splitlines()
                    raise StorageUnavailable(
                        f"the database at {self._where} did not answer for {now - self._failing_since:.0f} s "
                        f"({reason[0] if reason else type(lost).__name__}); finished trials are kept in it: "
                        f"start it again and rerun the same command to resume (retry bound: {RETRY_ENV})"
                    ) from None
                time.sleep(pause)
                pause = min(2 * pause, LONGEST_PAUSE)
                continue
            finally:
                self._local.depth = 0
            if failed or self._down:
                self._back_at = time.monotonic()
            self._down, self._failing_since = False, None
            return result


def reconnecting(cls: type, names: list[str]) -> type:
    """``cls`` with each method of ``names`` retried through ``Reconnecting._call``."""

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(self: Reconnecting, *args: Any, **kwargs: Any) -> Any:
            return self._call(method, args, kwargs)

        return call

    for name in names:
        setattr(cls, name, wrap(getattr(cls, name)))
    return cls
