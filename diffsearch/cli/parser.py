"""argparse with the project's error habit: one line on stderr, exit code 2, no usage dump."""

from __future__ import annotations

import argparse
import sys

from diffsearch.errors import one_line


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see --help)\n")
        raise SystemExit(2)


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Examples kept as written; defaults shown, except the empty ones and those the help already gives."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or "(default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def add_worker_arguments(p: argparse.ArgumentParser, work: str, join: str = "diffsearch worker") -> None:
    """``--workers`` and ``--heartbeat``, the same in every job."""
    from diffsearch.ledger import DEFAULT_HEARTBEAT_SECONDS

    p.add_argument(
        "--workers",
        "--jobs",
        type=int,
        default=1,
        dest="workers",
        metavar="N",
        help=f"processes on this machine {work}, this one included (N - 1 are started beside it); "
        f"more can join from anywhere with `{join}`",
    )
    p.add_argument(
        "--heartbeat",
        type=int,
        default=DEFAULT_HEARTBEAT_SECONDS,
        help="seconds between heartbeats of a running trial; a trial silent for 3 beats (its worker "
        "died) is marked failed and re-run",
    )


def add_trial_timeout(p: argparse.ArgumentParser, trial: str) -> None:
    """``--trial-timeout``: a trial running longer is stopped and recorded failed ("timeout after N s")."""
    p.add_argument(
        "--trial-timeout",
        type=float,
        metavar="SECONDS",
        help=f"{trial} still running after this long is stopped at its next step and its trial "
        "failed with the reason (timeout after N s); the search goes on",
    )
