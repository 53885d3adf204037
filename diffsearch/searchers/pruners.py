"""Early stopping by epochs: successive halving and Hyperband (Optuna pruners).

The 2-D protocol of the thesis study of Optuna HPO for diffusion training: minimum resource 8 epochs,
reduction factor 2, so trials are compared at epochs 8, 16, 32, 64 of 100. The trainer scores the model at exactly those checkpoints.
"""

from __future__ import annotations

import optuna

from diffsearch.errors import UsageError

PRUNERS = {
    "none": "train every trial for all epochs",
    "sh": "successive halving (Optuna SuccessiveHalvingPruner)",
    "hyperband": "Hyperband: several successive-halving brackets (Optuna HyperbandPruner)",
}


def make_pruner(name: str, min_epochs: int, epochs: int, reduction_factor: int = 2) -> optuna.pruners.BasePruner:
    if name not in PRUNERS:
        raise UsageError(f"unknown pruner {name!r}; known: {', '.join(PRUNERS)}")
    if name != "none" and not 1 <= min_epochs < epochs:
        raise UsageError(f"--min-epochs {min_epochs} must be at least 1 and below --epochs {epochs}")
    if name == "sh":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=reduction_factor)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_epochs, max_resource=epochs,
                                              reduction_factor=reduction_factor)
    return optuna.pruners.NopPruner()


def report_epochs(name: str, min_epochs: int, epochs: int, reduction_factor: int = 2) -> tuple[int, ...]:
    """Checkpoints min * factor^k below the last epoch (the last epoch is the final score)."""
    if name == "none":
        return ()
    checkpoints, epoch = [], min_epochs
    while epoch < epochs:
        checkpoints.append(epoch)
        epoch *= reduction_factor
    return tuple(checkpoints)
