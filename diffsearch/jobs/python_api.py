"""``diffsearch.search``: tune a Python function with the engine of ``diffsearch sweep``.

    import diffsearch

    def objective(params, report):
        loss = train(lr=params["lr"], report=report)   # report(step, value) may raise optuna.TrialPruned
        return loss

    result = diffsearch.search(objective, {"lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2}},
                               trials=20, pruner="hyperband")
    result.best_params, result.best_value, result.study

Same searchers, pruners, storage, resume (same study name: no finished trial is repeated) and workers as
the command. ``space`` is a sweep file's ``parameters`` mapping (``when`` conditionals included), or a whole
sweep: a W&B sweep file without ``program`` (its path) or its dict, with method, metric, parameters,
early_terminate and run_cap, which W&B users run with ``wandb.agent(sweep_id, function=train)``.

It lives in the jobs layer because it runs the sweep job (imports run downwards: docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna

from diffsearch.errors import TrialFailed, UsageError
from diffsearch.jobs.sweep import PYTHON_METRIC, SweepOptions, run_sweep
from diffsearch.sweeps.early_terminate import early_terminate_of
from diffsearch.sweeps.schema import read_sweep_file


@dataclass
class SearchResult:
    """What ``search`` returns: the study (every trial) and its best trial."""

    study: optuna.Study
    best_params: dict[str, Any]  # the values the objective got in the best trial (constants included)
    best_value: float
    best_trial: optuna.trial.FrozenTrial
    results: dict[str, Any]  # what results.json holds
    results_file: str


def search(
    objective: Callable[[dict, Callable[[int, float], None]], float] | str,
    space: Mapping[str, Any] | str | Path,
    *,
    direction: str | None = None,
    searcher: str | None = None,
    trials: int | None = None,
    pruner: str | Mapping[str, Any] | None = None,
    storage: str | None = None,
    study: str | None = None,
    workers: int = 1,
    seed: int = 0,
    out: str | None = None,
) -> SearchResult:
    """Search ``space`` for the ``objective``'s best value; every trial is recorded in the study.

    ``objective(params, report) -> float``: ``params`` holds the active parameters (W&B's nested parameters
    as nested dicts); ``report(step, value)`` reports an intermediate value (the pruner may then raise
    ``optuna.TrialPruned``). An exception or a non-finite value fails that trial (``fail_reason``) and the
    search goes on.
    ``space``: a ``parameters`` mapping, or a whole sweep (a sweep file's path, or its dict with
    ``parameters``): its method, metric (name, goal), early_terminate and run_cap apply where the arguments
    below are left out; an argument given wins over the sweep.
    ``direction``: minimize (the default) or maximize. ``searcher``: tpe (the default), random, gp,
    generative, grid, or W&B's bayes (gp). ``trials``: default 20 (a grid: every point). ``pruner``: None,
    "successive_halving" ("sh"), "hyperband", or an ``early_terminate`` mapping ({"type": "hyperband",
    "min_iter": 1, "eta": 3}).
    ``workers`` > 1: processes on this machine (this one included); they import the objective, so pass a
    top-level function of a module or its name, ``"module:function"`` or ``"path/to/file.py:function"``.
    Defaults: study the sweep's name or ``search-<function>-<searcher>``, ``out`` runs/<study>, a SQLite
    storage in ``out``.
    Raises ``UsageError`` (one line) for bad arguments, before any study is written, and ``TrialFailed``
    when no trial completed.
    """
    config, where = _sweep_config(space)
    metric = dict(config.get("metric") or {"name": PYTHON_METRIC})
    if direction is not None:
        metric["goal"] = direction
    config["metric"] = metric
    if pruner is not None:
        config["early_terminate"] = early_terminate_of(pruner)
    if searcher is not None:
        config["method"] = searcher
    config.setdefault("method", "tpe")
    if trials is not None:
        config.pop("run_cap", None)
        config["trials"] = trials
    options = SweepOptions(
        config=config,
        objective=objective,
        where=where,
        workers=workers,
        seed=seed,
        study=study,
        storage=storage,
        out=out,
    )
    results = run_sweep(options)
    from diffsearch.ledger import open_storage

    found = optuna.load_study(study_name=results["study"], storage=open_storage(results["storage"]))
    if results["best"] is None:
        raise TrialFailed(f"no trial of study {results['study']!r} completed: {results['note']}")
    best = found.trials[results["best"]["number"]]
    return SearchResult(
        study=found,
        best_params=results["best"]["params"],
        best_value=best.value,
        best_trial=best,
        results=results,
        results_file=results["results_file"],
    )


def _sweep_config(space: Any) -> tuple[dict[str, Any], str]:
    """The sweep mapping ``space`` stands for, and how messages name it."""
    if isinstance(space, (str, Path)):
        return read_sweep_file(space), str(space)
    if not isinstance(space, Mapping):
        raise UsageError(
            f"diffsearch.search(): space: expected a mapping of parameters, a sweep dict or a "
            f"sweep file's path, got {type(space).__name__}"
        )
    if _is_sweep(space):
        return dict(space), "diffsearch.search()"
    return {"parameters": space}, "diffsearch.search()"


def _is_sweep(space: Mapping[str, Any]) -> bool:
    """A whole sweep's ``parameters`` maps names to settings (mappings); a parameter's settings (a
    parameter that happens to be named "parameters") hold lists and numbers."""
    inner = space.get("parameters")
    return isinstance(inner, Mapping) and bool(inner) and all(isinstance(v, Mapping) for v in inner.values())
