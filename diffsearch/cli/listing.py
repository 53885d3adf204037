"""``diffsearch list``: what can be run, read from the registries (each a ``diffsearch.registry.Registry``:
jobs, spaces, searchers, pruners, rewards, tasks ...), with the entries of installed packages (entry
points, diffsearch/plugins.py); an entry point that cannot be loaded is a row saying why (and a line on
stderr), not a crash."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from diffsearch.backends.families import FAMILIES
from diffsearch.datasets import TOY_DATASETS
from diffsearch.datasets.images import IMAGE_DATASETS
from diffsearch.jobs import JOBS
from diffsearch.objectives import OBJECTIVES
from diffsearch.objectives.rewards import REWARDS
from diffsearch.registry import Registry
from diffsearch.searchers import PRUNERS
from diffsearch.searchers.prompt.registry import PROMPT_SEARCHERS
from diffsearch.searchers.hparams.registry import SEARCHERS
from diffsearch.searchers.tree.registry import TREE_SEARCHERS
from diffsearch.spaces.prompts import PROMPT_SPACES
from diffsearch.spaces.training import SPACES
from diffsearch.searchers.schedule.registry import SCHEDULE_SEARCHERS
from diffsearch.spaces.schedules import describe_space
from diffsearch.tasks.optimizer_tasks import SCORES, TASKS


def add_parser(subparsers, parser_class, formatter, help_text: str) -> None:
    p = subparsers.add_parser(
        "list",
        help=help_text,
        description="Everything a command line can name, read from the registries.",
        formatter_class=formatter,
    )
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (the README's) instead")
    p.set_defaults(handler=main)


def rows() -> list[tuple[str, str, str]]:
    """(kind, name, what it is) for everything a user can name on the command line, job by job."""
    sections: tuple[tuple[str, dict[str, str]], ...] = (
        ("job", JOBS.descriptions() | {"worker": "join a study of any job from any machine and run its trials"}),
        ("hparams space", SPACES.descriptions()),
        ("hparams searcher", SEARCHERS.descriptions()),
        ("hparams pruner", PRUNERS.descriptions()),
        ("hparams objective", OBJECTIVES.descriptions()),
        (
            "hparams dataset",
            {name: "2-D toy set, 100,000 points, 20,000 held out" for name in TOY_DATASETS}
            | {"FILE.npy / FILE.csv": "your own N x D float matrix, 80/20 split"}
            | IMAGE_DATASETS
            | {"FOLDER": "your own images (or a saved Hugging Face dataset), 80/20 split, 64x64"},
        ),
        ("optimizer space", {"update-rules": "expression trees of update rules"}),
        ("optimizer searcher", TREE_SEARCHERS.descriptions()),
        ("optimizer task", TASKS.descriptions()),
        ("optimizer score", SCORES.descriptions()),
        ("prompt space", PROMPT_SPACES.descriptions()),
        ("prompt searcher", PROMPT_SEARCHERS.descriptions()),
        ("prompt reward", REWARDS.descriptions()),
        ("prompt pipeline", FAMILIES.descriptions()),
        ("noise space", _noise_spaces()),
        ("noise searcher", _noise_searchers()),
        ("noise verifier", _noise_verifiers()),
        ("schedule space", {"schedule": describe_space()}),
        ("schedule searcher", SCHEDULE_SEARCHERS.descriptions()),
        (
            "prompt dataset",
            {
                "prompts.txt": "our prompt set for diffsearch prompt --prompts (12 prompts)",
                "negative_words.txt": "our negative-word library (~200 words) for the library space",
            },
        ),
    )
    plugged: tuple[Registry, ...] = (SEARCHERS, TREE_SEARCHERS, PROMPT_SEARCHERS, SPACES, REWARDS)
    broken = [
        ("broken plugin", name, error)
        for name, error in dict(pair for registry in plugged for pair in registry.broken()).items()
    ]
    for _, _, error in broken:
        sys.stderr.write(f"diffsearch: warning: {error}\n")
    return [(kind, name, text) for kind, entries in sections for name, text in entries.items()] + broken


def _noise_spaces() -> dict[str, str]:
    from diffsearch.spaces.noise import NOISE_SPACES

    return NOISE_SPACES


def _noise_searchers() -> dict[str, str]:
    from diffsearch.searchers.noise.registry import NOISE_SEARCHERS

    return {name: entry.description for name, entry in NOISE_SEARCHERS.all().items()}


def _noise_verifiers() -> dict[str, str]:
    from diffsearch.objectives.ensemble import ENSEMBLES

    return {"any --reward": "every prompt reward above (installed packages' too)"} | {
        f"a,b --ensemble {k}": v for k, v in ENSEMBLES.items()
    }


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
