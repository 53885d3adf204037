"""W&B's ``early_terminate`` as one of our pruners (successive halving, Hyperband: searchers/hparams/pruners.py).

Steps here are whatever the program reports as ``step`` (epochs, iterations): ``min_iter`` is the first
rung, ``eta`` the reduction factor, ``max_iter`` Hyperband's largest budget (Optuna's ``"auto"`` when left
out: the largest step reported by the first trial that runs to the end).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import optuna

from diffsearch.searchers.hparams.pruners import make_pruner


def make_sweep_pruner(early: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    if early is None:
        return make_pruner("none", 1, 2)
    if early["type"] == "successive_halving":
        # successive halving has no maximum; make_pruner only checks that min_iter lies below it
        return make_pruner("sh", early["min_iter"], early["max_iter"] or math.inf, early["eta"])
    if early["max_iter"] is None:
        return optuna.pruners.HyperbandPruner(
            min_resource=early["min_iter"], max_resource="auto", reduction_factor=early["eta"]
        )
    return make_pruner("hyperband", early["min_iter"], early["max_iter"], early["eta"])


PRUNER_NAMES = {
    "none": None,
    "sh": "successive_halving",
    "successive_halving": "successive_halving",
    "hyperband": "hyperband",
}


def early_terminate_of(pruner: str | Mapping[str, Any] | None) -> Any:
    """The Python API's ``pruner`` (a name or an ``early_terminate`` mapping) as an ``early_terminate`` spec."""
    from diffsearch.errors import UsageError

    if pruner is None or isinstance(pruner, Mapping):
        return pruner
    if isinstance(pruner, str) and pruner in PRUNER_NAMES:
        kind = PRUNER_NAMES[pruner]
        return None if kind is None else {"type": kind}
    raise UsageError(
        f"pruner: expected one of {', '.join(PRUNER_NAMES)} or an early_terminate mapping "
        f"such as {{'type': 'hyperband', 'min_iter': 1, 'eta': 3}}, got {pruner!r}"
    )
