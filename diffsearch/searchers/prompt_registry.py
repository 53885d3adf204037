"""Prompt searchers by name (``diffsearch prompt --searcher``); one module per algorithm.

Each entry's factory is the module's ``search(task, space, seed, settings) -> PromptSearchResult``: it
evaluates points through ``task.evaluate_many`` until the budget is spent (see ``prompt_result``).
"""

from __future__ import annotations

from diffsearch.searchers import gpo, gpo_es, prompt_evolution, prompt_random
from diffsearch import plugins
from diffsearch.searchers.registry import SearcherEntry, lookup

PROMPT_SEARCHERS = {
    "random": SearcherEntry(prompt_random.search, "uniform samples of the prompt space"),
    "evolution": SearcherEntry(prompt_evolution.search,
                               "evolution (deap operators): top-10, mutation, uniform crossover"),
    "gpo": SearcherEntry(gpo.search, "Gumbel-softmax over slots, shortcut gradient through SD, then samples"),
    "gpo+es": SearcherEntry(gpo_es.search,
                            "GPO, then evolution seeded from the learned distribution (DPO-Diff, Wang et al., "
                            "ICML 2024)"),
}


def get_prompt_searcher(name: str) -> SearcherEntry:
    return lookup(PROMPT_SEARCHERS, name, "--searcher", job="prompt")  # installed packages' searchers too


def prompt_searchers() -> dict[str, SearcherEntry]:
    """``PROMPT_SEARCHERS`` and the prompt searchers of installed packages (for listings)."""
    return plugins.searchers("prompt", PROMPT_SEARCHERS)
