"""Evolution over update-rule trees with deap's gp module (one-point crossover, uniform subtree mutation).

Steady state: a parent pair is picked by tournament, the child replaces the worst of the population.
deap's ``creator`` (a global registry) is not used: fitness lives next to each tree. Children that break
the length bound or the redundancy constraints, duplicates and rejected programs are redrawn and do not
use budget.

``start`` programs (e.g. Adam) open the first population before the random ones, as the Lion search
(Chen et al. 2023) starts from AdamW: the children are then variations of a rule known to work.
"""

from __future__ import annotations

import math
import random
from functools import partial
from typing import Sequence

import numpy as np
from deap import gp

from diffsearch.searchers.tree.budget import EvaluateFn, TreeBudget
from diffsearch.spaces.update_rule_space import UpdateRuleSpace
from diffsearch.spaces.update_rules import BINARY, LEAVES, UNARY, Program, violations

_DEAP_NAME = {"1": "one", "2": "two"}  # deap terminal names must be identifiers
_TOKEN = {v: k for k, v in _DEAP_NAME.items()}


def primitive_set(space: UpdateRuleSpace | None = None) -> gp.PrimitiveSet:
    """deap's primitives: the space's tokens (without --matrix-ops, the same set and order as before them)."""
    tokens = set(space.tokens if space is not None else UpdateRuleSpace().tokens)
    pset = gp.PrimitiveSet("update", 0)
    for name in (n for n in UNARY if n in tokens):
        pset.addPrimitive(lambda x: x, 1, name=name)  # never compiled: we evaluate our own way
    for name in BINARY:
        pset.addPrimitive(lambda x, y: x, 2, name=name)
    for leaf in (n for n in LEAVES if n in tokens):
        pset.addTerminal(leaf, name=_DEAP_NAME.get(leaf, leaf))
    return pset


def to_tokens(tree: gp.PrimitiveTree) -> Program:
    return tuple(_TOKEN.get(node.name, node.name) for node in tree)


def to_tree(program: Program, pset: gp.PrimitiveSet) -> gp.PrimitiveTree:
    return gp.PrimitiveTree([pset.mapping[_DEAP_NAME.get(t, t)] for t in program])


def evolution_search(
    space: UpdateRuleSpace,
    evaluate: EvaluateFn,
    budget: int = 128,
    seed: int = 0,
    population: int = 16,
    tournament: int = 3,
    crossover: float = 0.5,
    max_misses: int = 5000,
    batch: int = 1,
    start: Sequence[Program] = (),
) -> TreeBudget:
    """``batch`` children are bred from the same population and trained together (one per worker);
    with ``batch=1`` this is the classic steady state.

    deap draws from Python's global ``random`` module: it is seeded with ``seed`` for the search (so a
    rerun replays the same draws) and put back as it was afterwards."""
    state = random.getstate()
    random.seed(seed)
    try:
        return _evolve(space, evaluate, budget, seed, population, tournament, crossover, max_misses, batch, start)
    finally:
        random.setstate(state)


def _evolve(
    space: UpdateRuleSpace,
    evaluate: EvaluateFn,
    budget: int,
    seed: int,
    population: int,
    tournament: int,
    crossover: float,
    max_misses: int,
    batch: int,
    start: Sequence[Program],
) -> TreeBudget:
    rng = np.random.default_rng(seed)
    pset = primitive_set(space)
    tree_budget = TreeBudget(space, evaluate, budget)
    for program in start[: min(population, budget)]:
        tree_budget.admit(program)
    misses = 0
    while tree_budget.left > 0 and len(tree_budget.pending) < min(population, budget) and misses < max_misses:
        misses = 0 if tree_budget.admit(space.sample(rng)) else misses + 1
    pop: list[tuple[Program, float]] = tree_budget.flush()
    grow = partial(gp.genGrow, min_=0, max_=2)

    def pick() -> Program:
        contenders = [pop[int(i)] for i in rng.integers(len(pop), size=tournament)]
        return min(contenders, key=lambda ps: ps[1])[0]

    misses = 0
    while tree_budget.left > 0 and pop and misses < max_misses:
        while tree_budget.left > 0 and len(tree_budget.pending) < batch and misses < max_misses:
            if rng.random() < crossover and len(pop) > 1:
                child, _ = gp.cxOnePoint(to_tree(pick(), pset), to_tree(pick(), pset))
            else:
                (child,) = gp.mutUniform(to_tree(pick(), pset), expr=grow, pset=pset)
            program = to_tokens(child)
            admitted = len(program) <= space.max_length and not violations(program) and tree_budget.admit(program)
            misses = 0 if admitted else misses + 1
        for program, score in tree_budget.flush():
            worst = max(range(len(pop)), key=lambda i: (pop[i][1], -i))
            if score <= pop[worst][1] or not math.isfinite(pop[worst][1]):
                pop[worst] = (program, score)
    return tree_budget


def search(space: UpdateRuleSpace, evaluate: EvaluateFn, budget: int, seed: int, settings) -> tuple[TreeBudget, dict]:
    """The registry's entry point (see ``tree_registry``): ``settings.batch`` children per generation,
    ``settings.start`` in the first population."""
    return evolution_search(space, evaluate, budget, seed, batch=settings.batch, start=settings.start), {}
