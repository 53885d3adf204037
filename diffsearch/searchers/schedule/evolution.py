"""Evolutionary search over timesteps (AutoDiffusion, Li et al., ICCV 2023), as an Optuna sampler.

AutoDiffusion keeps a population of schedules, takes the best ``top_k`` as parents, and makes children by
crossover (each gene from one of two parents) and mutation (each gene re-drawn with a probability). Here
the population is the study's finished trials: until ``population`` trials have finished, points are drawn
at random (the job enqueues the baselines first, so the first generation holds them); after that each new
trial is a child of two parents drawn from the ``top_k`` best so far (steady-state evolution). A gene is a
gap of the schedule space (a float in [0, 1], mutated by a Gaussian step, clipped to the box) or the
solver order (mutated to another order). Children are seeded by (seed, trial number), so a resumed or
shared search proposes the same children from the same history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from diffsearch.spaces.schedules import ScheduleSpace


@dataclass(frozen=True)
class EvolutionSearcher:
    population: int = 10
    top_k: int = 5
    mutation: float = 0.3  # probability that a gene mutates
    step: float = 0.15  # Gaussian mutation step of a gap (the box is [0, 1])

    def sampler(self, space: ScheduleSpace, seed: int) -> optuna.samplers.BaseSampler:
        return EvolutionSampler(self, seed)


class EvolutionSampler(optuna.samplers.BaseSampler):
    def __init__(self, settings: EvolutionSearcher, seed: int = 0):
        self.settings, self.seed = settings, seed
        self._random = optuna.samplers.RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return optuna.search_space.intersection_search_space(study.get_trials(deepcopy=False))

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        s = self.settings
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and np.isfinite(t.value) and set(search_space) <= set(t.params)
        ]
        if not search_space or len(done) < s.population:
            return {}  # the first generation: random points (beside the enqueued baselines)
        rng = np.random.default_rng([self.seed, trial.number])
        parents = sorted(done, key=lambda t: t.value)[: s.top_k]
        seen = {tuple(sorted(t.params.items())) for t in done}
        for _ in range(20):  # a child equal to an evaluated point is drawn again
            a, b = (parents[i] for i in rng.choice(len(parents), 2, replace=len(parents) < 2))
            child = {
                name: self._gene(rng, dist, a.params[name] if rng.random() < 0.5 else b.params[name])
                for name, dist in search_space.items()
            }
            if tuple(sorted(child.items())) not in seen:
                return child
        return child

    def _gene(self, rng: np.random.Generator, dist: BaseDistribution, value: Any) -> Any:
        if rng.random() >= self.settings.mutation:
            return value
        if isinstance(dist, FloatDistribution):
            return float(
                np.clip(value + rng.normal(0.0, self.settings.step * (dist.high - dist.low)), dist.low, dist.high)
            )
        if isinstance(dist, CategoricalDistribution):
            others = [c for c in dist.choices if c != value]
            return others[rng.integers(len(others))] if others else value
        return value

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)
