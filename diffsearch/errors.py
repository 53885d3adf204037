"""Errors a user can fix. The CLI prints them on one line and exits with code 2."""


class UsageError(ValueError):
    """Bad input: unknown name, malformed file, impossible budget, unreachable storage."""


class TrialDiverged(RuntimeError):
    """Training produced a non-finite loss; the trial is recorded as failed and the study goes on."""
