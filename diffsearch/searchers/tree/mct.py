"""Monte Carlo tree traversal over the super-tree of update rules, as in ENOS (Wang et al., NeurIPS 2022).

At each level every child of the current node (each token that may fill the leftmost open slot) is
scored by the mean objective of random completions of it; the search then moves to the best child.
``levels`` x (budget / levels) evaluations, 4 x 32 = 128 by default. Completions that are duplicates or
fail the rejection tests are redrawn and do not use budget; samples worse than ``threshold`` (e.g. the
untrained model's loss, or a failed training) are left out of the means (score thresholding).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from diffsearch.searchers.tree.budget import EvaluateFn, TreeBudget
from diffsearch.spaces.update_rule_space import UpdateRuleSpace
from diffsearch.spaces.update_rules import Program


@dataclass
class LevelRecord:
    node: str  # the partial program expanded, as tokens
    means: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    chosen: str | None = None


def thresholded_mean(scores: Sequence[float], threshold: float) -> float:
    kept = [s for s in scores if math.isfinite(s) and s < threshold]
    return float(np.mean(kept)) if kept else math.inf


def _admit_new(
    budget: TreeBudget, space: UpdateRuleSpace, partial: Program, rng: np.random.Generator, max_tries: int
) -> Program | None:
    """A new valid completion of ``partial``, queued for training (drawing up to ``max_tries``); None if none."""
    for _ in range(max_tries):
        program = space.complete_randomly(partial, rng)
        if program is None:
            continue
        if budget.admit(program):
            return tuple(program)
        if space.is_complete(partial):  # a complete program has one completion: itself
            return None
    return None


def mct_search(
    space: UpdateRuleSpace,
    evaluate: EvaluateFn,
    budget: int = 128,
    levels: int = 4,
    seed: int = 0,
    threshold: float = math.inf,
    max_tries: int = 200,
) -> tuple[TreeBudget, list[LevelRecord]]:
    rng = np.random.default_rng(seed)
    tree_budget = TreeBudget(space, evaluate, budget)
    node: Program = ()
    history: list[LevelRecord] = []
    for level in range(levels):
        target = tree_budget.used + budget // levels + (1 if level < budget % levels else 0)
        children = space.children(node)
        if not children:
            break
        order = [children[i] for i in rng.permutation(len(children))]
        samples: dict[str, list[float]] = {c: [] for c in children}
        exhausted: set[str] = set()
        child_of: dict[Program, str] = {}
        i = 0
        # round robin, so every child gets a sample before any gets a second; the level's samples do
        # not depend on each other's scores, so they are trained as one batch (in parallel by workers)
        while tree_budget.used + len(tree_budget.pending) < target and len(exhausted) < len(order):
            child = order[i % len(order)]
            i += 1
            if child in exhausted:
                continue
            program = _admit_new(tree_budget, space, node + (child,), rng, max_tries)
            if program is None:
                exhausted.add(child)
            else:
                child_of[program] = child
        for program, score in tree_budget.flush():
            samples[child_of[program]].append(score)
        record = LevelRecord(
            " ".join(node),
            {c: thresholded_mean(s, threshold) for c, s in samples.items()},
            {c: len(s) for c, s in samples.items()},
        )
        history.append(record)
        open_children = [c for c in order if not space.is_complete(node + (c,)) and math.isfinite(record.means[c])]
        if not open_children:
            break
        record.chosen = min(open_children, key=lambda c: record.means[c])  # best mean child
        node = node + (record.chosen,)
    # budget left when a level ran out of new programs: completions of the last node, then of the root
    for partial in (node, ()):
        while tree_budget.left > 0:
            if _admit_new(tree_budget, space, partial, rng, max_tries * 5) is None:
                break
        tree_budget.flush()
    return tree_budget, history


def describe(history: list[LevelRecord]) -> str:
    return " -> ".join(r.chosen or "(stop)" for r in history)


__all__ = ["mct_search", "search", "thresholded_mean", "LevelRecord", "describe"]


def search(space: UpdateRuleSpace, evaluate: EvaluateFn, budget: int, seed: int, settings) -> tuple[TreeBudget, dict]:
    """The registry's entry point (see ``tree_registry``): the tree_budget and the levels of the traversal."""
    tree_budget, history = mct_search(space, evaluate, budget, settings.levels, seed, threshold=settings.threshold)
    return tree_budget, {"mct_levels": [asdict(r) for r in history], "mct_path": describe(history)}
