"""Prompt searchers by name (``diffsearch prompt --searcher``); one module per algorithm."""

from __future__ import annotations

from diffsearch.errors import UsageError
from diffsearch.searchers import gpo, gpo_es, prompt_evolution, prompt_random

PROMPT_SEARCHERS = {
    "random": (prompt_random.search, "uniform samples of the prompt space"),
    "evolution": (prompt_evolution.search, "evolution (deap operators): top-10, mutation, uniform crossover"),
    "gpo": (gpo.search, "Gumbel-softmax over slots, shortcut gradient through SD, then samples"),
    "gpo+es": (gpo_es.search, "GPO, then evolution seeded from the learned distribution (DPO-Diff)"),
}


def get_prompt_searcher(name: str):
    if name not in PROMPT_SEARCHERS:
        raise UsageError(f"unknown --searcher {name!r} for prompts; known: {', '.join(PROMPT_SEARCHERS)}")
    return PROMPT_SEARCHERS[name][0]
