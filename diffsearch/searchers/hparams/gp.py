"""Gaussian-process Bayesian optimisation (Optuna's GPSampler; needs torch and scipy)."""

import optuna


def make(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed)
