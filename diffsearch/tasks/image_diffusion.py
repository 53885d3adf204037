"""Train a UNet on images with a config and score its samples by FID (KID beside it).

The reference is the Inception features of the first ``fid_samples`` training images (cached on disk);
every trial generates ``fid_samples`` images and is scored against it, at the end and at the pruning
checkpoints. The same reference scores real held-out images for the sanity row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from diffsearch.backends.unet_trainer import TrainedUNet, resolve_device, train_unet
from diffsearch.datasets.images import ImageData
from diffsearch.errors import TrialDiverged, UsageError
from diffsearch.objectives.fid import FidReference, inception_features
from diffsearch.tasks.evaluation import TrainingEvaluation

IMAGE_PARTS = ("fid", "kid", "kid_std")


@dataclass
class ImageDiffusionTask:
    data: ImageData
    epochs: int = 30
    width: float = 1.0
    fid_samples: int = 1000
    sample_steps: int = 50
    sampler: str = "ddim"
    device: str = "auto"
    _reference: FidReference | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.device = resolve_device(self.device)
        if self.fid_samples < 2:
            raise UsageError(f"--fid-samples must be at least 2 (got {self.fid_samples})")
        if self.sample_steps < 1:
            raise UsageError(f"--sample-steps must be at least 1 (got {self.sample_steps})")

    def reference_key(self, split: str, count: int) -> str:
        return f"{self.data.key}-{split}-n{count}"

    @property
    def reference(self) -> FidReference:
        """Features of the first ``fid_samples`` training images (computed once, then read from disk)."""
        if self._reference is None:
            count = min(self.fid_samples, len(self.data.train))
            self._reference = FidReference.cached(
                self.reference_key("train", count), lambda: self.data.train[:count], self.device
            )
        return self._reference

    def score(self, images: np.ndarray, kid_seed: int = 0) -> tuple[float, dict[str, float]]:
        parts = self.reference.score(inception_features(images, self.device), kid_seed)
        return parts["fid"], parts

    def sanity(self) -> dict[str, float]:
        """FID / KID of real held-out images against the training reference: the floor for this count."""
        count = min(self.fid_samples, len(self.data.eval))
        features = FidReference.cached(
            self.reference_key("eval", count), lambda: self.data.eval[:count], self.device
        ).features
        return {**self.reference.score(features), "count": count}

    def sample(self, trained: TrainedUNet, seed: int) -> np.ndarray:
        images = trained.sample(self.fid_samples, torch.Generator().manual_seed(seed), self.sample_steps, self.sampler)
        return images

    def evaluate(
        self,
        config: dict[str, Any],
        seed: int,
        report: Callable[[int, float], None] | None = None,
        report_epochs: tuple[int, ...] = (),
    ) -> TrainingEvaluation:
        """Train with ``config``; ``report(epoch, fid)`` gets the FID at each checkpoint epoch."""
        start = time.perf_counter()
        self.reference  # noqa: B018 - compute (or load) the reference before training, not inside a trial's pruning
        on_checkpoint = None
        if report is not None:
            on_checkpoint = lambda epoch, trained: report(epoch, self.score(self.sample(trained, seed + 1))[0])  # noqa: E731
        trained = train_unet(
            config, self.data.train_tensor(), self.epochs, seed, self.width, self.device, on_checkpoint, report_epochs
        )
        samples = self.sample(trained, seed + 2)
        score, parts = self.score(samples)
        if not np.isfinite(score):
            raise TrialDiverged(f"FID is {score}")
        return TrainingEvaluation(score, parts, time.perf_counter() - start, samples, trained.epoch_losses)
