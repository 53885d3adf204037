"""Entry point of the ``diffsearch`` command."""

from __future__ import annotations

import sys

from diffsearch.cli import hparams, listing, optimizer, prompt, worker
from diffsearch.cli.parser import Formatter, OneLineParser
from diffsearch.errors import UsageError


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="diffsearch", formatter_class=Formatter,
                           description="Search the decisions around diffusion models. "
                                       "Every evaluation is recorded as an Optuna trial.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for module in (hparams, optimizer, prompt, worker, listing):
        module.add_parser(sub, OneLineParser, Formatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    import warnings

    import optuna

    from diffsearch.interrupt import graceful_interrupts

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # we print our own lines
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        with graceful_interrupts():
            return args.handler(args)
    except UsageError as exc:
        sys.stderr.write(f"diffsearch: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("diffsearch: interrupted; finished trials are kept in the storage. "
                         "Rerun the same command to resume.\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
