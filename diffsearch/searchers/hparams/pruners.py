"""Early stopping by epochs: successive halving and Hyperband (Optuna pruners).

The 2-D protocol of the thesis study of Optuna HPO for diffusion training: minimum resource 8 epochs,
reduction factor 2, so trials are compared at epochs 8, 16, 32, 64 of 100. The trainer scores the model at exactly those checkpoints.
"""

from __future__ import annotations

from typing import Callable

import optuna

from diffsearch.errors import UsageError
from diffsearch.registry import Registry

# make(min_epochs, epochs, reduction_factor) -> the Optuna pruner
PrunerFactory = Callable[[int, int, int], optuna.pruners.BasePruner]

PRUNERS: Registry[PrunerFactory] = Registry("pruner")
PRUNERS.register(
    "none", lambda low, high, factor: optuna.pruners.NopPruner(), "train every trial for all epochs", prunes=False
)
PRUNERS.register(
    "sh",
    lambda low, high, factor: optuna.pruners.SuccessiveHalvingPruner(min_resource=low, reduction_factor=factor),
    "successive halving (Optuna SuccessiveHalvingPruner)",
    prunes=True,
)
PRUNERS.register(
    "hyperband",
    lambda low, high, factor: optuna.pruners.HyperbandPruner(
        min_resource=low, max_resource=high, reduction_factor=factor
    ),
    "Hyperband: several successive-halving brackets (Optuna HyperbandPruner)",
    prunes=True,
)


def make_pruner(name: str, min_epochs: int, epochs: int, reduction_factor: int = 2) -> optuna.pruners.BasePruner:
    entry = PRUNERS.lookup(name)
    if entry.can("prunes") and not 1 <= min_epochs < epochs:
        raise UsageError(f"--min-epochs {min_epochs} must be at least 1 and below --epochs {epochs}")
    return entry.value(min_epochs, epochs, reduction_factor)


def report_epochs(name: str, min_epochs: int, epochs: int, reduction_factor: int = 2) -> tuple[int, ...]:
    """Checkpoints min * factor^k below the last epoch (the last epoch is the final score)."""
    if not PRUNERS.lookup(name).can("prunes"):
        return ()
    checkpoints, epoch = [], min_epochs
    while epoch < epochs:
        checkpoints.append(epoch)
        epoch *= reduction_factor
    return tuple(checkpoints)
