"""Random search: every configuration drawn independently (Optuna's RandomSampler)."""

import optuna


def make(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)
