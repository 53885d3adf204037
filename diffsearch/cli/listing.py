"""``diffsearch list``: what can be run."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from diffsearch.datasets import TOY_DATASETS
from diffsearch.datasets.images import IMAGE_DATASETS
from diffsearch.jobs import JOBS
from diffsearch.objectives import OBJECTIVES
from diffsearch.searchers import PRUNERS, SEARCHERS
from diffsearch.spaces import SPACES
from diffsearch.spaces.prompts import PROMPT_SPACES
from diffsearch.searchers.prompt_registry import PROMPT_SEARCHERS


def add_parser(subparsers, parser_class, formatter, help_text: str) -> None:
    p = subparsers.add_parser("list", help=help_text)
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    table = Table(title="diffsearch")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("what it is")
    for kind, entries in (
        ("job", JOBS),
        ("space", {name: space.description for name, space in SPACES.items()}),
        ("searcher", {name: text for name, (_, text) in SEARCHERS.items()}),
        ("pruner", PRUNERS),
        ("objective", OBJECTIVES),
        ("dataset", {name: "2-D toy set, 100,000 points, 20,000 held out" for name in TOY_DATASETS}
         | {"FILE.npy / FILE.csv": "your own N x D float matrix, 80/20 split"}
         | IMAGE_DATASETS | {"FOLDER": "your own images (or a saved Hugging Face dataset), 80/20 split, 64x64"}),
        ("prompt space", PROMPT_SPACES),
        ("prompt searcher", {name: text for name, (_, text) in PROMPT_SEARCHERS.items()}),
        ("objective", {"clip": "spherical CLIP loss 2*arcsin(|a/|a|-b/|b||/2)^2 of images vs the prompt"}),
        ("dataset", {"prompts.txt": "our prompt set for diffsearch prompt --prompts (12 prompts)",
                     "negative_words.txt": "our negative-word library (~200 words) for the library space"}),
    ):
        for name, text in entries.items():
            table.add_row(kind, name, text)
    from diffsearch.jobs.optimizer import TREE_SEARCHERS
    from diffsearch.tasks.optimizer_tasks import TASKS

    table.add_row("space", "update-rules", "expression trees of update rules (diffsearch optimizer)")
    for name, text in TREE_SEARCHERS.items():
        table.add_row("searcher", f"{name} (optimizer)", text)
    for name, text in TASKS.items():
        table.add_row("task", f"{name} (optimizer)", text)
    Console().print(table)
    return 0
