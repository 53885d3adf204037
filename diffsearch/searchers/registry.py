"""Searchers by name, one registry per job; one module per algorithm, these files only list them.

- ``SEARCHERS`` (here): Optuna samplers for ``diffsearch hparams``: ``factory(seed) -> BaseSampler``;
- ``tree_registry.TREE_SEARCHERS``: update-rule searchers for ``diffsearch optimizer``;
- ``prompt_registry.PROMPT_SEARCHERS``: prompt searchers for ``diffsearch prompt``.

Adding a searcher is adding its module and one ``SearcherEntry`` line to the registry of its job. Other
installed packages add searchers by entry points (group ``diffsearch.searchers``, diffsearch/plugins.py):
``lookup`` with a ``job`` finds them, the ``*_searchers()`` functions list them; a built-in name wins.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import optuna

from diffsearch import plugins
from diffsearch.errors import UsageError
from diffsearch.searchers import gp, random, tpe


class SearcherEntry(NamedTuple):
    factory: Callable[..., Any]  # what the job calls; its signature is the registry's
    description: str             # one line for --help and ``diffsearch list``


def lookup(registry: Mapping[str, SearcherEntry], name: str, flag: str = "searcher",
           job: str | None = None) -> SearcherEntry:
    """The entry, or a one-line UsageError that lists the known names. With ``job`` (hparams, optimizer,
    prompt), the searchers that installed packages declare for that job are looked up too."""
    if name in registry:
        if job is not None:
            plugins.warn_shadowed(plugins.SEARCHERS_GROUP, name, f"{job} searcher")
        return registry[name]
    if job is not None:
        found = plugins.find_searcher(job, name)  # imports only the entry points called ``name``
        if found is not None:
            return found
        registry = plugins.searchers(job, registry)
    raise UsageError(f"unknown {flag} {name!r}; known: {', '.join(registry)}")


SEARCHERS = {
    "random": SearcherEntry(random.make, "random search (Optuna RandomSampler)"),
    "tpe": SearcherEntry(tpe.make, "tree-structured Parzen estimator (Optuna TPESampler, multivariate)"),
    "gp": SearcherEntry(gp.make, "Gaussian-process BO (Optuna GPSampler)"),
    "generative": SearcherEntry(lambda seed: _generative(seed),
                                "generative HPO: a diffusion model trained on the study's history proposes "
                                "the next configuration; level with TPE/GP on tabular benchmarks; on "
                                "mixed/conditional and training spaces ahead of random search but behind TPE "
                                "(use tpe), on smooth functions behind GP and TPE (use gp); ~1 s per suggestion "
                                "on an idle core"),
}


def _generative(seed: int) -> optuna.samplers.BaseSampler:
    # imported when chosen: it needs torch, which a sweep of someone else's program need not load
    from diffsearch.searchers.generative_sampler import GenerativeSampler

    return GenerativeSampler(seed=seed)


def hparams_searchers() -> dict[str, SearcherEntry]:
    """``SEARCHERS`` and the hparams searchers of installed packages (for listings)."""
    return plugins.searchers("hparams", SEARCHERS)


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    return lookup(SEARCHERS, name, job="hparams").factory(seed)
