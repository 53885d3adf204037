"""Searchers by name, one registry per job; one module per algorithm, these files only list them.

- ``SEARCHERS`` (here): Optuna samplers for ``diffsearch hparams``: ``factory(seed) -> BaseSampler``;
- ``tree_registry.TREE_SEARCHERS``: update-rule searchers for ``diffsearch optimizer``;
- ``prompt_registry.PROMPT_SEARCHERS``: prompt searchers for ``diffsearch prompt``.

Adding a searcher is adding its module and one ``SearcherEntry`` line to the registry of its job.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import optuna

from diffsearch.errors import UsageError
from diffsearch.searchers import gp, random, tpe
from diffsearch.searchers.generative_sampler import GenerativeSampler


class SearcherEntry(NamedTuple):
    factory: Callable[..., Any]  # what the job calls; its signature is the registry's
    description: str             # one line for --help and ``diffsearch list``


def lookup(registry: Mapping[str, SearcherEntry], name: str, flag: str = "searcher") -> SearcherEntry:
    """The entry, or a one-line UsageError that lists the known names."""
    if name not in registry:
        raise UsageError(f"unknown {flag} {name!r}; known: {', '.join(registry)}")
    return registry[name]


SEARCHERS = {
    "random": SearcherEntry(random.make, "random search (Optuna RandomSampler)"),
    "tpe": SearcherEntry(tpe.make, "tree-structured Parzen estimator (Optuna TPESampler, multivariate)"),
    "gp": SearcherEntry(gp.make, "Gaussian-process BO (Optuna GPSampler)"),
    "generative": SearcherEntry(lambda seed: GenerativeSampler(seed=seed),
                                "generative HPO: a diffusion model trained on the study's history proposes "
                                "the next configuration"),
}


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    return lookup(SEARCHERS, name).factory(seed)
