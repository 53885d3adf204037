"""Errors a user can fix, and trial failures the study records and survives."""


class UsageError(ValueError):
    """Bad input: unknown name, malformed file, impossible budget, unreachable storage.

    The CLI prints it on one line and exits with code 2.
    """


class TrialFailed(RuntimeError):
    """A trial that cannot give a score; it is recorded as failed (with its reason) and the study goes on."""


class TrialDiverged(TrialFailed):
    """Training produced a non-finite loss or non-finite samples."""


class TrialOutOfMemory(TrialFailed):
    """The configuration does not fit in the device's (or host's) memory."""


class DiskFull(TrialFailed):
    """No space left where a file had to be written: the trial fails (recorded), or the run stops in one line."""


class TrialTimedOut(TrialFailed):
    """The trial ran past ``--trial-timeout``; it is recorded as failed with ``timeout after N s``."""


_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines (and some terminals) break on


def one_line(text: str) -> str:
    """``text`` on one line: a line break that came from the user's input is shown escaped (``\\x1e``)."""
    return "".join(repr(c)[1:-1] if c in _LINE_BREAKS else c for c in text)


class StorageUnavailable(RuntimeError):
    """The database server stopped answering and did not come back within the retry bound.

    The CLI prints it on one line and exits with code 1; finished trials are kept in the database.
    """
