"""What every noise searcher is: a class with ``search(task, settings)`` that spends the task's NFE budget.

The job has already scored the user's own image (their seed, or their latent file) as the first candidate,
so every searcher compares against it and never returns something the verifier likes less. A searcher
plans within ``task.remaining`` (``NoiseTask.charge`` refuses more: a searcher bug, not a user error) and
ends with ``spend_rest``: whole generations still left go to random seeds, so what is left unspent is less
than one generation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from diffsearch.spaces.noise import Candidate
from diffsearch.tasks.noise_task import NoiseTask


@dataclass
class NoiseSearchSettings:
    neighbours: int = 4  # zero-order: neighbours per step
    radius: float = 0.5  # zero-order: distance of a neighbour (per unit variance)
    branches: int = 4  # paths: candidates per kept state at a branching step
    branch_at: tuple[float, ...] = (0.5,)  # paths: where to re-noise, as fractions of the steps
    resample_at: tuple[float, ...] = (0.25, 0.5, 0.75)  # particles: resampling points, fractions of the steps
    potential: float = 1.0  # particles: lambda of the potential exp(lambda * z-score)
    lr: float = 0.1  # gradient: Adam learning rate on the initial latent


class NoiseSearcher(ABC):
    """A noise searcher; registered in searchers/noise/registry.py (plugins: entry-point group
    ``diffsearch.noise_searchers``)."""

    name = ""

    @abstractmethod
    def search(self, task: NoiseTask, settings: NoiseSearchSettings) -> dict:
        """Spend the task's budget; what it did (rounds, moves ...) for results.json."""


def spend_rest(task: NoiseTask) -> int:
    """Whole generations left, spent on random seeds (best-of-N); how many."""
    n = task.generations_left()
    for start in range(0, n, task.batch):
        k = min(task.batch, n - start)
        task.evaluate([Candidate(seed=s) for s in task.random_seeds(k)])
    return n


def steps_at(fractions: tuple[float, ...], steps: int) -> list[int]:
    """Step indices (1 .. steps-1) at the given fractions of the schedule, sorted, without repeats."""
    return sorted({min(steps - 1, max(1, round(f * steps))) for f in fractions})
