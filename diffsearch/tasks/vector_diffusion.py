"""Train the MLP denoiser on vector data with a config and score its samples by PRDC."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from diffsearch.backends.vector_trainer import checked_samples, train_denoiser
from diffsearch.datasets import VectorData
from diffsearch.objectives.prdc import prdc, prdc_loss
from diffsearch.tasks.evaluation import TrainingEvaluation

import torch


@dataclass
class VectorDiffusionTask:
    data: VectorData
    epochs: int = 100
    k: int = 5
    sample_count: int | None = None  # default: as many samples as held-out points

    def score(self, samples: np.ndarray) -> tuple[float, dict[str, float]]:
        parts = prdc(self.data.held_out, samples, k=self.k)
        return prdc_loss(parts), parts

    def evaluate(
        self,
        config: dict[str, Any],
        seed: int,
        report: Callable[[int, float], None] | None = None,
        report_epochs: tuple[int, ...] = (),
    ) -> TrainingEvaluation:
        """Train with ``config``; ``report(epoch, score)`` gets the PRDC loss at each checkpoint epoch."""
        start = time.perf_counter()
        n = self.sample_count or len(self.data.held_out)
        on_checkpoint = None
        if report is not None:
            on_checkpoint = lambda epoch, sample_fn: report(epoch, self.score(sample_fn())[0])  # noqa: E731
        trained = train_denoiser(config, self.data.train, self.epochs, seed, on_checkpoint, report_epochs, n)
        samples = checked_samples(trained, n, torch.Generator().manual_seed(seed + 2))
        score, parts = self.score(samples)
        return TrainingEvaluation(score, parts, time.perf_counter() - start, samples, trained.epoch_losses)
