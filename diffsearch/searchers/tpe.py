"""Tree-structured Parzen estimator (Optuna's TPESampler), the seed's "Bayesian optimization".

Multivariate and grouped so the conditional parameters (warm-up, weight decay) are modelled jointly
with the choice that enables them; constant_liar keeps parallel workers from proposing the same point.
"""

import optuna


def make(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)
