"""Searchers by name, one subpackage per search problem: hparams/ (Optuna samplers and the pruners), tree/
(update rules), prompt/ (negative prompts, rewordings), noise/ (initial noise), schedule/ (sampling steps).
The hparams registry is re-exported here, as before the subpackages."""

from diffsearch.searchers.hparams.registry import SEARCHERS, make_sampler
from diffsearch.searchers.hparams.pruners import PRUNERS, make_pruner, report_epochs

__all__ = ["SEARCHERS", "make_sampler", "PRUNERS", "make_pruner", "report_epochs"]
