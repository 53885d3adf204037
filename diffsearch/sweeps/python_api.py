"""``diffsearch.search``: tune a Python function with the engine of ``diffsearch sweep``.

    import diffsearch

    def objective(params, report):
        loss = train(lr=params["lr"], report=report)   # report(step, value) may raise optuna.TrialPruned
        return loss

    result = diffsearch.search(objective, {"lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2}},
                               trials=20, pruner="hyperband")
    result.best_params, result.best_value, result.study

Same searchers, pruners, storage, resume (same study name: no finished trial is repeated) and workers as
the command; ``space`` is a sweep file's ``parameters`` mapping (``when`` conditionals included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import optuna

from diffsearch.errors import TrialFailed


@dataclass
class SearchResult:
    """What ``search`` returns: the study (every trial) and its best trial."""

    study: optuna.Study
    best_params: dict[str, Any]     # the values the objective got in the best trial (constants included)
    best_value: float
    best_trial: optuna.trial.FrozenTrial
    results: dict[str, Any]         # what results.json holds
    results_file: str


def search(objective: Callable[[dict, Callable[[int, float], None]], float] | str,
           space: Mapping[str, Any], *, direction: str = "minimize", searcher: str = "tpe", trials: int = 20,
           pruner: str | Mapping[str, Any] | None = None, storage: str | None = None, study: str | None = None,
           workers: int = 1, seed: int = 0, out: str | None = None) -> SearchResult:
    """Search ``space`` for the ``objective``'s best value; every trial is recorded in the study.

    ``objective(params, report) -> float``: ``params`` holds the active parameters; ``report(step,
    value)`` reports an intermediate value (the pruner may then raise ``optuna.TrialPruned``). An
    exception or a non-finite value fails that trial (``fail_reason``) and the search goes on.
    ``searcher``: tpe, random, gp, generative or grid. ``pruner``: None, "successive_halving" ("sh"),
    "hyperband", or an ``early_terminate`` mapping ({"type": "hyperband", "min_iter": 1, "eta": 3}).
    ``workers`` > 1: processes on this machine (this one included); they import the objective, so pass a
    top-level function of a module or its name, ``"module:function"`` or ``"path/to/file.py:function"``.
    Defaults: study ``search-<function>-<searcher>``, ``out`` runs/<study>, a SQLite storage in ``out``.
    Raises ``UsageError`` (one line) for bad arguments, before any study is written, and ``TrialFailed``
    when no trial completed.
    """
    from diffsearch.jobs.sweep import PYTHON_METRIC, SweepOptions, run_sweep
    from diffsearch.sweeps.early_terminate import early_terminate_of

    config = {"metric": {"name": PYTHON_METRIC, "goal": direction}, "parameters": space,
              "early_terminate": early_terminate_of(pruner), "trials": trials, "method": searcher}
    options = SweepOptions(config=config, objective=objective, where="diffsearch.search()", workers=workers,
                           seed=seed, study=study, storage=storage, out=out)
    results = run_sweep(options)
    from diffsearch.ledger import open_storage

    found = optuna.load_study(study_name=results["study"], storage=open_storage(results["storage"]))
    if results["best"] is None:
        raise TrialFailed(f"no trial of study {results['study']!r} completed: {results['note']}")
    best = found.trials[results["best"]["number"]]
    return SearchResult(study=found, best_params=results["best"]["params"], best_value=best.value,
                        best_trial=best, results=results, results_file=results["results_file"])
