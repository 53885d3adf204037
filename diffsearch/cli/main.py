"""Entry point of the ``diffsearch`` command."""

from __future__ import annotations

import importlib
import sys

from diffsearch.cli.parser import Formatter, OneLineParser
from diffsearch.errors import DiskFull, StorageUnavailable, UsageError, one_line
from diffsearch.jobs import JOBS

# Only the module of the command being run is imported (each one loads torch, diffusers, open_clip...
# for its own job), so `diffsearch --help` answers at once and a command pays for its own imports alone.
COMMANDS = {name: (f"diffsearch.cli.{name}", entry.description) for name, entry in JOBS.items()} | {
    "worker": ("diffsearch.cli.worker", "join a study of any job (from any machine) and run its trials"),
    "list": ("diffsearch.cli.listing", "list jobs, spaces, searchers, pruners, objectives, datasets"),
    "report": ("diffsearch.cli.report", "explain a study: importance, best or per-role scores, an HTML page"),
}


def build_parser(command: str | None = None) -> OneLineParser:
    """The parser, with full options for ``command`` (all commands when None) and a summary line for the rest."""
    parser = OneLineParser(
        prog="diffsearch",
        formatter_class=Formatter,
        description="Search the decisions around diffusion models. Every evaluation is recorded as an Optuna trial.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, (module, help_text) in COMMANDS.items():
        if command is None or name == command:
            importlib.import_module(module).add_parser(sub, OneLineParser, Formatter, help_text)
        else:
            sub.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    try:
        parser = build_parser(command if command in COMMANDS else "")  # imports the command's libraries
    except KeyboardInterrupt:  # Ctrl-C while loading: nothing has started, nothing to keep
        sys.stderr.write("diffsearch: interrupted while starting\n")
        return 130
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    import warnings

    import optuna

    from diffsearch.ledger.interrupt import graceful_interrupts

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print our own lines
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        with graceful_interrupts():
            return args.handler(args)
    except UsageError as exc:
        sys.stderr.write(f"diffsearch: error: {one_line(str(exc))}\n")
        return 2
    except StorageUnavailable as exc:  # the database stayed down past the retry bound
        sys.stderr.write(f"diffsearch: error: {one_line(str(exc))}\n")
        return 1
    except Exception as exc:  # a full disk (ours, or the database's): one line, not a traceback
        from diffsearch.run_files import is_disk_full

        if not (isinstance(exc, DiskFull) or is_disk_full(exc)):
            raise
        where = (
            str(exc)
            if isinstance(exc, DiskFull)
            else f"no space left on {getattr(exc, 'filename', None) or 'the disk of the run folder or the storage'}"
        )
        sys.stderr.write(f"diffsearch: error: {where}; free some space and rerun the same command to resume\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(
            "diffsearch: interrupted; finished trials are kept in the storage. Rerun the same command to resume.\n"
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
