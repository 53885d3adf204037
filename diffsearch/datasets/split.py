"""Train / held-out split and standardisation shared by every vector data set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffsearch.datasets.toy2d import TOY_DATASETS, make_toy2d
from diffsearch.datasets.vector_file import load_vector_file
from diffsearch.errors import UsageError


@dataclass(frozen=True)
class VectorData:
    """Standardised points: ``train`` for fitting, ``held_out`` (fixed) for scoring every trial."""

    name: str
    train: np.ndarray
    held_out: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])


def split_and_standardise(name: str, points: np.ndarray, held_out_fraction: float = 0.2, seed: int = 0) -> VectorData:
    order = np.random.RandomState(seed).permutation(len(points))
    n_held = max(1, int(round(len(points) * held_out_fraction)))
    held, train = points[order[:n_held]], points[order[n_held:]]
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    as32 = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return VectorData(name, as32(train), as32(held), mean.astype(np.float32), std.astype(np.float32))


def load_vector_data(spec: str, n_points: int = 100_000, held_out: int = 20_000, seed: int = 0) -> VectorData:
    """A built-in toy set by name (``moons``) or a user's ``.npy`` / ``.csv`` file by path.

    Toy sets have ``n_points`` points of which ``held_out`` are kept for evaluation (the thesis
    study's 100,000 / 20,000); a user's file is split 80 / 20.
    """
    if spec in TOY_DATASETS:
        if not 0 < held_out < n_points:
            raise UsageError(f"held-out count {held_out} must lie between 0 and the {n_points} points")
        return split_and_standardise(spec, make_toy2d(spec, n_points, seed), held_out / n_points, seed)
    if Path(spec).suffix.lower() in (".npy", ".csv") or Path(spec).exists():
        return split_and_standardise(Path(spec).stem, load_vector_file(spec), 0.2, seed)
    known = ", ".join(sorted(TOY_DATASETS))
    raise UsageError(
        f"unknown dataset {spec!r}: use one of {known}, a path to a .npy / .csv file, "
        "an image set (digits, mnist, fashion-mnist) or an existing folder of images"
    )
