"""``diffsearch list``: what can be run, read from the registries (jobs, spaces, searchers, ...), with the
searchers and spaces of installed packages (entry points, diffsearch/plugins.py); an entry point that
cannot be loaded is a row saying why (and a line on stderr), not a crash."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from diffsearch import plugins
from diffsearch.datasets import TOY_DATASETS
from diffsearch.datasets.images import IMAGE_DATASETS
from diffsearch.jobs import JOBS
from diffsearch.objectives import OBJECTIVES
from diffsearch.objectives.rewards import REWARDS
from diffsearch.searchers import PRUNERS
from diffsearch.searchers.prompt_registry import prompt_searchers
from diffsearch.searchers.registry import hparams_searchers
from diffsearch.searchers.tree_registry import tree_searchers
from diffsearch.spaces.training import training_spaces
from diffsearch.spaces.prompts import PROMPT_SPACES
from diffsearch.searchers.schedule.registry import SCHEDULE_SEARCHERS
from diffsearch.spaces.schedules import describe_space
from diffsearch.tasks.optimizer_tasks import SCORES, TASKS


def add_parser(subparsers, parser_class, formatter, help_text: str) -> None:
    p = subparsers.add_parser("list", help=help_text, description="Everything a command line can name, "
                              "read from the registries.", formatter_class=formatter)
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (the README's) instead")
    p.set_defaults(handler=main)


def rows() -> list[tuple[str, str, str]]:
    """(kind, name, what it is) for everything a user can name on the command line, job by job."""
    described = lambda registry: {name: entry.description for name, entry in registry.items()}  # noqa: E731
    sections = (
        ("job", {name: entry.description for name, entry in JOBS.items()}
         | {"worker": "join a study of any job from any machine and run its trials"}),
        ("hparams space", {name: space.description for name, space in training_spaces().items()}),
        ("hparams searcher", described(hparams_searchers())),
        ("hparams pruner", PRUNERS),
        ("hparams objective", OBJECTIVES),
        ("hparams dataset", {name: "2-D toy set, 100,000 points, 20,000 held out" for name in TOY_DATASETS}
         | {"FILE.npy / FILE.csv": "your own N x D float matrix, 80/20 split"}
         | IMAGE_DATASETS | {"FOLDER": "your own images (or a saved Hugging Face dataset), 80/20 split, 64x64"}),
        ("optimizer space", {"update-rules": "expression trees of update rules"}),
        ("optimizer searcher", described(tree_searchers())),
        ("optimizer task", TASKS),
        ("optimizer score", SCORES),
        ("prompt space", PROMPT_SPACES),
        ("prompt searcher", described(prompt_searchers())),
        ("prompt reward", REWARDS),
        ("schedule space", {"schedule": describe_space()}),
        ("schedule searcher", described(SCHEDULE_SEARCHERS.all())),
        ("prompt dataset", {"prompts.txt": "our prompt set for diffsearch prompt --prompts (12 prompts)",
                            "negative_words.txt": "our negative-word library (~200 words) for the library space"}),
    )
    broken = [("broken plugin", name, error) for group in (plugins.SEARCHERS_GROUP, plugins.SPACES_GROUP)
              for name, error in plugins.broken(group)]
    for _, _, error in broken:
        sys.stderr.write(f"diffsearch: warning: {error}\n")
    return [(kind, name, text) for kind, entries in sections for name, text in entries.items()] + broken


def markdown() -> str:
    lines = ["| kind | name | what it is |", "|---|---|---|"]
    cell = lambda text: text.replace("|", "\\|")  # noqa: E731  (a formula's |x| must not end the cell)
    lines += [f"| {kind} | `{name}` | {cell(text)} |" for kind, name, text in rows()]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown(), end="")
        return 0
    table = Table(title="diffsearch")
    for column in ("kind", "name", "what it is"):
        table.add_column(column)
    for row in rows():
        table.add_row(*row)
    Console().print(table)
    return 0
