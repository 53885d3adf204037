"""Update-rule searchers by name (``diffsearch optimizer --searcher``); one module per algorithm.

Each entry's factory is the module's ``search(space, evaluate, budget, seed, settings) -> (book, extras)``:
``evaluate`` trains programs through the ledger (``evaluate.many`` trains a batch on every worker), the
book (``TreeBudget``) holds every program admitted, scored or rejected, and ``extras`` the searcher's own
records for results.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diffsearch.searchers import mct, tree_evolution, tree_random
from diffsearch import plugins
from diffsearch.searchers.registry import SearcherEntry, lookup
from diffsearch.spaces.update_rules import Program


@dataclass
class TreeSearchSettings:
    """The options a tree searcher may use; each reads only its own."""

    levels: int = 4                                   # mct: levels of the traversal
    threshold: float = float("inf")                   # mct: scores not below it are left out of the means
    batch: int = 1                                    # evolution: children trained at once
    start: list[Program] = field(default_factory=list)  # evolution: programs in the first population


TREE_SEARCHERS = {
    "mct": SearcherEntry(mct.search, "Monte Carlo tree traversal: levels x samples, best mean child expanded "
                                     "(ENOS, Wang et al., NeurIPS 2022)"),
    "random": SearcherEntry(tree_random.search, "random programs grown top-down"),
    "evolution": SearcherEntry(tree_evolution.search, "deap gp: tournament, one-point crossover, subtree mutation"),
}


def get_tree_searcher(name: str) -> SearcherEntry:
    return lookup(TREE_SEARCHERS, name, job="optimizer")  # installed packages' searchers too


def tree_searchers() -> dict[str, SearcherEntry]:
    """``TREE_SEARCHERS`` and the optimizer searchers of installed packages (for listings)."""
    return plugins.searchers("optimizer", TREE_SEARCHERS)
