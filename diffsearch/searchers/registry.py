"""Name -> searcher. One module per algorithm; this file only lists them."""

from __future__ import annotations

import optuna

from diffsearch.errors import UsageError
from diffsearch.searchers import gp, random, tpe
from diffsearch.searchers.generative_sampler import GenerativeSampler

SEARCHERS = {
    "random": (random.make, "random search (Optuna RandomSampler)"),
    "tpe": (tpe.make, "tree-structured Parzen estimator (Optuna TPESampler, multivariate)"),
    "gp": (gp.make, "Gaussian-process BO (Optuna GPSampler)"),
    "generative": (lambda seed: GenerativeSampler(seed=seed),
                   "generative HPO: a diffusion model proposes the next configuration (seed 001)"),
}


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name not in SEARCHERS:
        raise UsageError(f"unknown searcher {name!r}; known: {', '.join(SEARCHERS)}")
    return SEARCHERS[name][0](seed)
