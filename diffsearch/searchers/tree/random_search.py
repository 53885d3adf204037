"""Random search over update-rule trees: grow whole programs top-down, uniformly among allowed tokens."""

from __future__ import annotations

import numpy as np

from diffsearch.searchers.tree.budget import EvaluateFn, TreeBudget
from diffsearch.spaces.update_rule_space import UpdateRuleSpace


def random_tree_search(
    space: UpdateRuleSpace, evaluate: EvaluateFn, budget: int = 128, seed: int = 0, max_misses: int = 5000
) -> TreeBudget:
    """Stops after ``budget`` evaluations, or after ``max_misses`` draws in a row brought nothing new.

    Draws do not depend on scores: every admitted program is trained in one batch (by all workers).
    """
    rng = np.random.default_rng(seed)
    tree_budget = TreeBudget(space, evaluate, budget)
    misses = 0
    while tree_budget.left > 0 and misses < max_misses:
        misses = 0 if tree_budget.admit(space.sample(rng)) else misses + 1
    tree_budget.flush()
    return tree_budget


def search(space: UpdateRuleSpace, evaluate: EvaluateFn, budget: int, seed: int, settings) -> tuple[TreeBudget, dict]:
    """The registry's entry point (see ``tree.registry``)."""
    return random_tree_search(space, evaluate, budget, seed), {}
