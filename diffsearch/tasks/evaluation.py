"""What a training evaluation returns, whatever the data (vectors or images)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Evaluation:
    score: float                    # the value the searchers minimise (PRDC loss, FID)
    parts: dict[str, float]         # every part of the score, stored as user attrs on the trial
    seconds: float
    samples: np.ndarray             # what the trained model generated
    epoch_losses: list[float] = field(default_factory=list)
