"""Prompt searchers by name (``diffsearch prompt --searcher``); one module per algorithm.

Each entry's value is the module's ``search(task, space, seed, settings) -> PromptSearchResult``
(``prompt_result.PromptSearcher``): it evaluates points through ``task.evaluate_many`` until the budget is
spent. ``needs_gradient``: the searcher backpropagates through the reward (DPO-Diff's shortcut gradient),
so the job refuses a reward without one before anything starts.
"""

from __future__ import annotations

from diffsearch import plugins
from diffsearch.registry import Entry, Registry
from diffsearch.searchers.prompt import gpo
from diffsearch.searchers.prompt import gpo_es
from diffsearch.searchers.prompt import evolution as prompt_evolution
from diffsearch.searchers.prompt import random_search as prompt_random
from diffsearch.searchers.base import searcher_adapter
from diffsearch.searchers.prompt.result import PromptSearcher

PROMPT_SEARCHERS: Registry[PromptSearcher] = Registry(
    "prompt searcher", plugins.SEARCHERS_GROUP, searcher_adapter("prompt")
)
PROMPT_SEARCHERS.register("random", prompt_random.search, "uniform samples of the prompt space")
PROMPT_SEARCHERS.register(
    "evolution", prompt_evolution.search, "evolution (deap operators): top-10, mutation, uniform crossover"
)
PROMPT_SEARCHERS.register(
    "gpo", gpo.search, "Gumbel-softmax over slots, shortcut gradient through SD, then samples", needs_gradient=True
)
PROMPT_SEARCHERS.register(
    "gpo+es",
    gpo_es.search,
    "GPO, then evolution seeded from the learned distribution (DPO-Diff, Wang et al., ICML 2024)",
    needs_gradient=True,
)


def get_prompt_searcher(name: str) -> Entry[PromptSearcher]:
    return PROMPT_SEARCHERS.lookup(name, "--searcher")  # installed packages' searchers too


def prompt_searchers() -> dict[str, Entry[PromptSearcher]]:
    """``PROMPT_SEARCHERS`` and the prompt searchers of installed packages (for listings)."""
    return PROMPT_SEARCHERS.all()
