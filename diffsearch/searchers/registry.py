"""Name -> searcher. One module per algorithm; this file only lists them."""

from __future__ import annotations

import optuna

from diffsearch.errors import UsageError
from diffsearch.searchers import gp, random, tpe

SEARCHERS = {
    "random": (random.make, "random search (Optuna RandomSampler)"),
    "tpe": (tpe.make, "tree-structured Parzen estimator (Optuna TPESampler, multivariate)"),
    "gp": (gp.make, "Gaussian-process BO (Optuna GPSampler)"),
}


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name not in SEARCHERS:
        raise UsageError(f"unknown searcher {name!r}; known: {', '.join(SEARCHERS)}")
    return SEARCHERS[name][0](seed)
