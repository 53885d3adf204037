"""Update-rule searchers by name (``diffsearch optimizer --searcher``); one module per algorithm.

Each entry's value is the module's ``search(space, evaluate, budget, seed, settings) -> (tree_budget,
extras)`` (``tree_budget.TreeSearcher``): ``evaluate`` (a ``TreeEvaluator``) trains programs through the
ledger, ``evaluate.many`` a batch on every worker; the ``TreeBudget`` holds every program admitted, scored or
rejected, and ``extras`` the searcher's own records for results.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diffsearch import plugins
from diffsearch.registry import Entry, Registry
from diffsearch.searchers.tree import mct
from diffsearch.searchers.tree import evolution as tree_evolution
from diffsearch.searchers.tree import random_search as tree_random
from diffsearch.searchers.base import searcher_adapter
from diffsearch.searchers.tree.budget import TreeSearcher
from diffsearch.spaces.update_rules import Program


@dataclass
class TreeSearchSettings:
    """The options a tree searcher may use; each reads only its own."""

    levels: int = 4  # mct: levels of the traversal
    threshold: float = float("inf")  # mct: scores not below it are left out of the means
    batch: int = 1  # evolution: children trained at once
    start: list[Program] = field(default_factory=list)  # evolution: programs in the first population


TREE_SEARCHERS: Registry[TreeSearcher] = Registry(
    "optimizer searcher", plugins.SEARCHERS_GROUP, searcher_adapter("optimizer")
)
TREE_SEARCHERS.register(
    "mct",
    mct.search,
    "Monte Carlo tree traversal: levels x samples, best mean child expanded (ENOS, Wang et al., NeurIPS 2022)",
)
TREE_SEARCHERS.register("random", tree_random.search, "random programs grown top-down")
TREE_SEARCHERS.register(
    "evolution", tree_evolution.search, "deap gp: tournament, one-point crossover, subtree mutation"
)


def get_tree_searcher(name: str) -> Entry[TreeSearcher]:
    return TREE_SEARCHERS.lookup(name, "searcher")  # installed packages' searchers too


def tree_searchers() -> dict[str, Entry[TreeSearcher]]:
    """``TREE_SEARCHERS`` and the optimizer searchers of installed packages (for listings)."""
    return TREE_SEARCHERS.all()
