"""Tree-structured Parzen estimator (Optuna's TPESampler), the "Bayesian optimization" of the thesis study
of Optuna HPO for diffusion training.

Multivariate and grouped so the conditional parameters (warm-up, weight decay) are modelled jointly
with the choice that enables them; constant_liar keeps parallel workers from proposing the same point.
"""

import warnings

import optuna


def make(seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # `group` is marked experimental but has been stable since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)
