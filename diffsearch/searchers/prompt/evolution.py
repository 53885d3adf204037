"""Evolutionary prompt search (EPO, from DPO-Diff, Wang et al., ICML 2024) with deap's variation operators.

Sentences are DNA, word choices are genes. Reference settings: population 20; each generation keeps the
top 10 of everything evaluated, and adds 10 mutants (each gene redrawn with probability 0.1) and 10
uniform crossovers of two parents. The loop is plain (deap's style), using ``tools.mutUniformInt`` and
``tools.cxUniform`` on lists; fitness lives in the task's record, not in deap's global ``creator``.
"""

from __future__ import annotations

import random

import numpy as np
from deap import tools

from diffsearch.searchers.prompt.result import PromptSearchResult, PromptSearchSettings
from diffsearch.spaces.prompts import PromptSpace

POPULATION, TOP_K, MUTANTS, CROSSOVERS, GENE_PROB = 20, 10, 10, 10, 0.1


def evolve(
    task,
    space: PromptSpace,
    seed: int,
    initial: list[tuple[int, ...]],
    population: int = POPULATION,
    top_k: int = TOP_K,
    mutants: int = MUTANTS,
    crossovers: int = CROSSOVERS,
    gene_prob: float = GENE_PROB,
    max_rounds: int = 1000,
) -> None:
    """Evaluate ``initial`` (padded with random points to ``population``), then evolve until the budget ends."""
    rng = np.random.default_rng(seed)
    py_rng = random.Random(seed)  # deap's operators draw from the ``random`` module
    upper = [n - 1 for n in space.sizes()]
    first = list(dict.fromkeys(tuple(p) for p in initial))
    tries = 0
    while len(first) < population and tries < 50 * population:
        first = list(dict.fromkeys(first + [space.sample(rng)]))
        tries += 1
    task.evaluate_many(first)  # each generation is one batch: workers generate its images in parallel
    for _ in range(max_rounds):
        if task.exhausted:
            return
        scored = [(p, e.value) for p, e in task.seen.items() if e.value is not None]
        if not scored:
            return
        parents = [p for p, _ in sorted(scored, key=lambda pv: pv[1])[:top_k]]
        children = []
        state = random.getstate()
        random.seed(py_rng.random())
        try:
            for _ in range(mutants):
                (child,) = tools.mutUniformInt(list(py_rng.choice(parents)), low=0, up=upper, indpb=gene_prob)
                children.append(tuple(child))
            for _ in range(crossovers):
                a, b = (list(p) for p in py_rng.sample(parents, 2)) if len(parents) > 1 else (list(parents[0]),) * 2
                child, _ = tools.cxUniform(a, b, indpb=0.5)
                children.append(tuple(child))
        finally:
            random.setstate(state)
        task.evaluate_many([c for c in dict.fromkeys(children) if c not in task.seen])


def search(task, space: PromptSpace, seed: int, settings: PromptSearchSettings | None = None) -> PromptSearchResult:
    """Evolution from the user's input and random points."""
    evolve(task, space, seed, [space.user_point()])
    return PromptSearchResult()
