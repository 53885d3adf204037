"""The progress bar with the running best, and the end of every command: a table or results.json."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def best_so_far_bar(console: Console, unit: str | None = None) -> Iterator[Callable[..., None]]:
    """Yield ``update(name, done, total, best)``; one bar per name, shown from the first update on.

    The bar starts only with the first finished evaluation, so bad input prints one line and nothing else.
    ``unit``: count fractional progress in that unit (e.g. generations) instead of whole items.
    """
    count = MofNCompleteColumn() if unit is None else TextColumn("{task.completed:.1f}/{task.total:.0f} " + unit)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        count,
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
        console=console,
    )
    tasks: dict[str, int] = {}

    def update(name: str, done: float, total: float, best: float | None) -> None:
        if not bar.live.is_started:
            bar.start()
        if name not in tasks:
            tasks[name] = bar.add_task(name[:40], total=total, best="-")
        bar.update(tasks[name], completed=done, total=total, best="-" if best is None else f"{best:.4f}")

    try:
        yield update
    finally:
        if bar.live.is_started:  # a bar never shown must not print (bad input: exactly one line)
            bar.stop()


def finish(results: dict, as_json: bool, print_summary: Callable[[dict, Console], None]) -> int:
    """``--json``: results.json on stdout; otherwise the command's table."""
    if as_json:
        with open(results["results_file"]) as handle:
            sys.stdout.write(json.dumps(json.load(handle), indent=2) + "\n")
    else:
        print_summary(results, Console())
    return 0


def params_table(title: str, params: dict, column: str = "hyperparameter", fmt: Callable = str):
    """The best trial's parameters, one row each: the table every job's summary ends with."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column(column)
    table.add_column("value", justify="right")
    for name, value in params.items():
        table.add_row(name, fmt(value))
    return table
