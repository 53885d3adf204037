"""What one evaluation of a task returns: ``TrainingEvaluation`` (a training run of the hparams job, vectors
or images) and ``RuleEvaluation`` (an update rule scored by the optimizer job's task, built in or yours)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TrainingEvaluation:
    score: float  # the value the searchers minimise (PRDC loss, FID)
    parts: dict[str, float]  # every part of the score, stored as user attrs on the trial
    seconds: float
    samples: np.ndarray  # what the trained model generated
    epoch_losses: list[float] = field(default_factory=list)


@dataclass
class RuleEvaluation:
    """An update rule's score on a task: the lr the grid chose, its final score and curve."""

    lr: float
    score: float
    curve: list[float]
    grid: dict[str, float]  # proxy loss per lr ("inf": diverged)
    seconds: float
    final_loss: float | None = None  # the fixed-batch loss, when the score is something else
