"""GPO + evolution (the DPO-Diff hybrid): learn the slot distributions with the shortcut gradient, then
run evolution whose first population is sampled from the learned distribution.

The reference code's hybrid ignores the learned distribution (its population starts from scratch); here
the population is the distribution's mode plus distinct argmax-of-Gumbel samples of it. Reference
budget split: about 8 generations of gradient steps, then 32 of evolution (a 20-25% gradient share).
"""

from __future__ import annotations

from diffsearch.searchers import gpo
from diffsearch.searchers.prompt_evolution import POPULATION, evolve
from diffsearch.spaces.prompts import PromptSpace

GRADIENT_SHARE = 0.25


def search(task, space: PromptSpace, seed: int, iterations: int = gpo.ITERATIONS, k: int = 1) -> None:
    logits = gpo.learn(task, space, seed, iterations, k, budget_share=GRADIENT_SHARE)
    task.learned_logits = logits
    evolve(task, space, seed + 1, gpo.sample_candidates(logits, POPULATION, seed + 2))
