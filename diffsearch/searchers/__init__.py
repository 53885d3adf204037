"""Searchers by name. TPE, GP and random are Optuna samplers; pruners live in pruners.py."""

from diffsearch.searchers.registry import SEARCHERS, make_sampler
from diffsearch.searchers.pruners import PRUNERS, make_pruner, report_epochs

__all__ = ["SEARCHERS", "make_sampler", "PRUNERS", "make_pruner", "report_epochs"]
