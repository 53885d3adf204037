"""``diffsearch.report(step=8, fid=123.4)``: one JSON line on stdout, for a program tuned by ``diffsearch sweep``.

The sweep reads the program's stdout line by line; a JSON object holding the sweep's metric is a report
(``{"step": 8, "fid": 123.4}``), any other line is an ordinary log line. This module imports nothing heavy
(no torch, no optuna), so a training program pays nothing for it, and runs the same outside a sweep.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def report(step: int | None = None, **metrics: Any) -> None:
    """Print ``{"step": step, **metrics}`` as one line and flush it, so the sweep sees it at once.

    ``step`` (an epoch, an iteration) is what a pruner compares trials at; without it the sweep counts
    reports 1, 2, 3... Metric values may be Python numbers or numpy / torch scalars.
    """
    if not metrics:
        raise TypeError("diffsearch.report() needs at least one metric, e.g. report(step=8, fid=123.4)")
    line = {"step": step, **metrics} if step is not None else dict(metrics)
    sys.stdout.write(json.dumps(line, default=_plain_number) + "\n")
    sys.stdout.flush()


def _plain_number(value: Any) -> Any:
    # numpy and torch scalars (and 0-d tensors) have .item(); nothing is imported to recognise them
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "__float__"):
        return float(value)
    raise TypeError(f"diffsearch.report(): {type(value).__name__} is not a number")
