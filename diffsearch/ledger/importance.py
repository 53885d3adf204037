"""Parameter importance computed honestly: over the params every complete trial has.

A conditional param (``weight_decay`` exists only in AdamW trials, ``warmup_ratio`` only with a scheduler)
is missing from part of the trials; Optuna's importance then fits on the subset of trials that have every
param asked about, and ranks such a param on a biased sample. Here importance is computed over the params
common to all complete trials, with fANOVA (seed 0; PED-ANOVA for wide categorical spaces), and the conditional ones are named as left out.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.trial import TrialState

FANOVA = "fANOVA (Optuna FanovaImportanceEvaluator, seed 0)"
PED_ANOVA = "PED-ANOVA (Optuna PedAnovaImportanceEvaluator)"
# fANOVA one-hot encodes categorical params; past this many encoded columns (the optimizer job's program
# tokens: ~200) it takes minutes, and PED-ANOVA (quantile-based, under a few seconds) is used instead
FANOVA_MAX_COLUMNS = 40


def evaluator_for(study: optuna.Study, params: list[str]) -> tuple[str, optuna.importance.BaseImportanceEvaluator]:
    """fANOVA (seed 0), or PED-ANOVA for a wide categorical space; (its name, the evaluator)."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    columns = 0
    for name in params:
        dist = trials[0].distributions[name]
        columns += len(dist.choices) if isinstance(dist, optuna.distributions.CategoricalDistribution) else 1
    if columns <= FANOVA_MAX_COLUMNS:
        return FANOVA, optuna.importance.FanovaImportanceEvaluator(seed=0)
    return PED_ANOVA, optuna.importance.PedAnovaImportanceEvaluator()


class Precomputed(optuna.importance.BaseImportanceEvaluator):
    """Hands importances already computed to ``optuna.visualization.plot_param_importances``."""

    def __init__(self, importances: dict[str, float]):
        self.importances = dict(importances)

    def evaluate(self, study, params=None, *, target=None) -> dict[str, float]:
        return dict(self.importances)


def common_params(study: optuna.Study) -> tuple[list[str], list[str]]:
    """(params every complete trial has, params only some have), each in first-seen order."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    seen: dict[str, int] = {}
    for trial in complete:
        for name in trial.params:
            seen[name] = seen.get(name, 0) + 1
    common = [name for name, n in seen.items() if n == len(complete)]
    return common, [name for name in seen if name not in common]


def param_importance(study: optuna.Study) -> dict[str, Any]:
    """Importance of the common params (sums to 1), the params left out as conditional, the trials used."""
    common, conditional = common_params(study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = [name for name in common if len({repr(t.params[name]) for t in complete}) > 1]
    result: dict[str, Any] = {
        "evaluator": None,
        "trials": len(complete),
        "params": varied,
        "left_out_conditional": conditional,
        "left_out_constant": [name for name in common if name not in varied],
        "importances": {},
    }
    if len(complete) < 2 or not varied:
        return result
    result["evaluator"], evaluator = evaluator_for(study, varied)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importances = optuna.importance.get_param_importances(study, params=varied, evaluator=evaluator)
    result["importances"] = {name: float(value) for name, value in importances.items()}
    return result


def importance_or_none(study: optuna.Study) -> dict[str, Any] | None:
    """``param_importance`` or None when it cannot be computed (no complete trial, a single-objective
    requirement unmet...); results.json then says null rather than the run failing at its very end."""
    try:
        return param_importance(study)
    except Exception:  # importance is a reading aid: never the reason a finished search fails
        return None
