"""Reading a program's stdout: a JSON object holding the sweep's metric is a report, any other line is a log.

``{"step": 8, "fid": 123.4}`` (what ``diffsearch.report(step=8, fid=123.4)`` prints) reports ``fid`` at
step 8; ``epoch`` or ``iteration`` may stand for ``step``; without any, reports are counted 1, 2, 3...
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from diffsearch.errors import TrialFailed

STEP_KEYS = ("step", "epoch", "iteration")


@dataclass(frozen=True)
class Report:
    step: int | None  # None: the program gave no step key
    value: float
    line: dict[str, Any]  # everything the line said (other metrics too)


def read_report(line: str, metric: str) -> Report | None:
    """The report on this line, or None for an ordinary log line; a malformed report fails the trial."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)  # Python's json reads NaN and Infinity, as json.dumps writes them
    except ValueError:
        return None
    if not isinstance(data, dict) or metric not in data:
        return None
    value = data[metric]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TrialFailed(f"metric {metric!r} was reported as {value!r}, not a number")
    step = next((data[key] for key in STEP_KEYS if key in data), None)
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not float(step).is_integer():
            raise TrialFailed(f"a report's step must be a whole number, got {step!r}")
        step = int(step)
    return Report(step, float(value), data)


def check_finite(report: Report, metric: str, step: int) -> None:
    if not math.isfinite(report.value):
        raise TrialFailed(f"metric {metric!r} was {report.value} at step {step} (the training diverged)")
