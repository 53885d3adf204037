"""Hparams searchers by name (``diffsearch hparams --searcher``, a sweep's ``method``): Optuna samplers.

The three searcher registries, one per search problem, each a ``Registry`` (diffsearch/registry.py):

- ``SEARCHERS`` (here): ``make(seed) -> optuna.samplers.BaseSampler`` (``base.HparamsSearcher``);
- ``tree.registry.TREE_SEARCHERS``: update-rule searchers for ``diffsearch optimizer``;
- ``prompt.registry.PROMPT_SEARCHERS``: prompt searchers for ``diffsearch prompt``.

Adding a searcher is adding its module and one ``register`` line to the registry of its job. Other
installed packages add searchers by entry points (group ``diffsearch.searchers``, searchers/base.py says
what the object may be); a built-in name wins.
"""

from __future__ import annotations

from typing import Any, Mapping

import optuna

from diffsearch import plugins
from diffsearch.errors import UsageError
from diffsearch.registry import Entry, Registry
from diffsearch.searchers.hparams import gp
from diffsearch.searchers.hparams import random_search
from diffsearch.searchers.hparams import tpe
from diffsearch.searchers.base import HparamsSearcher, SearcherEntry, searcher_adapter

__all__ = ["SEARCHERS", "SearcherEntry", "hparams_searchers", "lookup", "make_sampler"]


def _generative(seed: int) -> optuna.samplers.BaseSampler:
    # imported when chosen: it needs torch, which a sweep of someone else's program need not load
    from diffsearch.searchers.hparams.generative_sampler import GenerativeSampler

    return GenerativeSampler(seed=seed)


SEARCHERS: Registry[HparamsSearcher] = Registry(
    "hparams searcher", plugins.SEARCHERS_GROUP, searcher_adapter("hparams")
)
SEARCHERS.register("random", random_search.make, "random search (Optuna RandomSampler)")
SEARCHERS.register("tpe", tpe.make, "tree-structured Parzen estimator (Optuna TPESampler, multivariate)")
SEARCHERS.register("gp", gp.make, "Gaussian-process BO (Optuna GPSampler)")
SEARCHERS.register(
    "generative",
    _generative,
    "generative HPO: a diffusion model trained on the study's history proposes the next "
    "configuration; level with TPE/GP on tabular benchmarks; on mixed/conditional and training "
    "spaces ahead of random search but behind TPE (use tpe), on smooth functions behind GP and "
    "TPE (use gp); ~1 s per suggestion on an idle core",
)


def lookup(
    registry: Registry[Any] | Mapping[str, Any], name: str, flag: str = "searcher", job: str | None = None
) -> Any:
    """``registry.lookup(name, flag)``, for callers written before ``Registry`` (``job`` is the registry's
    own); a plain mapping of entries gets the same one-line refusal."""
    if isinstance(registry, Registry):
        return registry.lookup(name, flag)
    if name not in registry:
        raise UsageError(f"unknown {flag} {name!r}; known: {', '.join(registry)}")
    return registry[name]


def hparams_searchers() -> dict[str, Entry[HparamsSearcher]]:
    """``SEARCHERS`` and the hparams searchers of installed packages (for listings)."""
    return SEARCHERS.all()


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    return SEARCHERS.lookup(name, "searcher").value(seed)
