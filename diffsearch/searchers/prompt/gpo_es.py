"""GPO + evolution (the DPO-Diff hybrid): learn the slot distributions with the shortcut gradient, then
run evolution whose first population is sampled from the learned distribution.

The reference code's hybrid ignores the learned distribution (its population starts from scratch); here
the population is the distribution's mode plus distinct argmax-of-Gumbel samples of it. Reference
budget split: about 8 generations of gradient steps, then 32 of evolution (a 20-25% gradient share).
"""

from __future__ import annotations

from diffsearch.searchers.prompt import gpo
from diffsearch.searchers.prompt.evolution import POPULATION, evolve
from diffsearch.searchers.prompt.result import PromptSearchResult, PromptSearchSettings
from diffsearch.spaces.prompts import PromptSpace

GRADIENT_SHARE = 0.25


def search(task, space: PromptSpace, seed: int, settings: PromptSearchSettings) -> PromptSearchResult:
    learned = gpo.learn(task, space, seed, settings.iterations, settings.k, budget_share=GRADIENT_SHARE)
    evolve(task, space, seed + 1, gpo.sample_candidates(learned.learned_logits, POPULATION, seed + 2))
    return learned
