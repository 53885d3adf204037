"""Optuna's own model-based samplers on the schedule space: TPE, GP, and random search as the floor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import optuna

from diffsearch.spaces.schedules import ScheduleSpace


@dataclass(frozen=True)
class OptunaSearcher:
    make: Callable[[int], optuna.samplers.BaseSampler]

    def sampler(self, space: ScheduleSpace, seed: int) -> optuna.samplers.BaseSampler:
        return self.make(seed)


def tpe(seed: int) -> optuna.samplers.BaseSampler:
    from diffsearch.searchers.hparams import tpe as hparams_tpe

    return hparams_tpe.make(seed)


def gp(seed: int) -> optuna.samplers.BaseSampler:
    import warnings

    with warnings.catch_warnings():  # deterministic_objective is marked experimental (same images, same value)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(seed=seed, deterministic_objective=True)


def random(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)
