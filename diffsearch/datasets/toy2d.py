"""The 2-D data sets of the thesis study of Optuna HPO for diffusion training: swiss roll, moons,
spirals (and circles).

Each is generated with scikit-learn (or a closed form for spirals) from a fixed seed, so every trial
sees the same points.
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets as skd


def _swiss_roll(n: int, rng: np.random.RandomState) -> np.ndarray:
    points, _ = skd.make_swiss_roll(n, noise=0.5, random_state=rng)
    return points[:, [0, 2]]  # the roll seen from above


def _moons(n: int, rng: np.random.RandomState) -> np.ndarray:
    points, _ = skd.make_moons(n, noise=0.05, random_state=rng)
    return points


def _spirals(n: int, rng: np.random.RandomState) -> np.ndarray:
    # two interleaved Archimedean arms, the classic "two spirals" set
    arm = rng.randint(0, 2, size=n)
    t = np.sqrt(rng.uniform(0.0, 1.0, size=n)) * 3.0 * np.pi  # sqrt: even density along the arm
    angle = t + np.pi * arm
    points = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return points + rng.normal(scale=0.25, size=points.shape)


def _circles(n: int, rng: np.random.RandomState) -> np.ndarray:
    # the thesis study built its "spirals" with make_circles; kept so that variant can be reproduced too
    points, _ = skd.make_circles(n, noise=0.05, factor=0.5, random_state=rng)
    return points


TOY_DATASETS = {
    "swissroll": _swiss_roll,
    "moons": _moons,
    "spirals": _spirals,
    "circles": _circles,
}


def make_toy2d(name: str, n: int = 100_000, seed: int = 0) -> np.ndarray:
    """Return ``n`` points of the named toy set as a float32 (n, 2) array (not yet standardised)."""
    return TOY_DATASETS[name](n, np.random.RandomState(seed)).astype(np.float32)
